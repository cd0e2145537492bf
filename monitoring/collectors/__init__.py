"""Collectors: one module per source, one base class, one registry.

``registry`` maps a collector's name to its instance; :func:`run` collects and
records. Host collectors (``system``, ``process``) run on every host with a live
worker; cluster collectors (``database``, ``broker``, ``celery``, ``probes``) run
once, on one host (see :mod:`monitoring.dispatch`).
"""

from __future__ import annotations

from monitoring.collectors import broker, celery, database, probes, process, system  # noqa: F401 - registration
from monitoring.collectors.base import Collector, RunResult, Scope, register, registry, run

__all__ = ["Collector", "RunResult", "Scope", "names", "register", "registry", "run"]


def names(scope: Scope | None = None) -> list[str]:
    """Return the registered collectors' names (of one scope): host collectors first, then by name."""
    chosen = [name for name, c in registry.items() if scope is None or c.scope == scope]
    return sorted(chosen, key=lambda name: (registry[name].scope != Scope.HOST, name))
