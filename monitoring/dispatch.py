"""Per-host collection (DESIGN "Mechanisms: Per-host collection").

Each collector has its own periodic task, which calls :func:`dispatch`. A host
collector (``system``, ``process``) is sent to the queue ``host.<name>`` of every
host with a fresh worker liveness row, so each host reports itself; a cluster
collector (``database``, ``broker``, ``celery``, ``probes``) is sent to one host,
the leader, so its series keep one ``host`` label. Every message carries an expiry
below the interval, so a backlog never replays: a host that cannot keep up skips
cycles instead of running them late.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from monitoring import liveness
from monitoring.collectors import Scope, registry, run

logger = logging.getLogger(__name__)

COLLECT_TASK = "monitoring.collect"
DISPATCH_TASK = "monitoring.dispatch_collection"
#: Expiry of a dispatched collection when the dispatcher has none of its own (80 % of 10 s).
DEFAULT_EXPIRES = dt.timedelta(seconds=8)


def host_queue(host: str) -> str:
    """Return the queue only ``host``'s workers consume (the one ``opsportal.celery`` adds)."""
    return f"host.{host}"


def leader_host(*, now: dt.datetime | None = None) -> str | None:
    """Return the host that runs the cluster collectors: the one with the longest-running live worker.

    Stable while that worker lives (a host joining later does not take over), so the
    cluster series keep their ``host`` label; when it dies the next-oldest takes over.
    """
    workers = liveness.fresh(liveness.Role.WORKER, now=now)
    if not workers:
        return None
    return min(workers, key=lambda row: (row.started_at, row.host)).host


def hosts_for(collector: str, *, now: dt.datetime | None = None) -> list[str]:
    """Return the hosts that should run ``collector`` now."""
    if registry[collector].scope == Scope.HOST:
        return liveness.alive_hosts(now=now)
    leader = leader_host(now=now)
    return [leader] if leader else []


def schedule_seconds(collector: str) -> int | None:
    """Return the interval of ``collector``'s periodic task as edited in the admin (None: not found)."""
    import json

    from django_celery_beat.models import PeriodicTask

    tasks = PeriodicTask.objects.filter(
        task=DISPATCH_TASK, kwargs__contains=f'"{collector}"', interval__isnull=False
    ).select_related("interval")
    for task in tasks:
        try:
            if json.loads(task.kwargs or "{}").get("collector") == collector:
                return int(task.interval.schedule.run_every.total_seconds())  # type: ignore[union-attr]
        except (ValueError, AttributeError):
            continue
    return None


def _parse_expires(expires: dt.datetime | str | None, now: dt.datetime) -> dt.datetime:
    if isinstance(expires, str):
        try:
            expires = dt.datetime.fromisoformat(expires)
        except ValueError:
            expires = None
    if isinstance(expires, dt.datetime):
        return expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
    return now + DEFAULT_EXPIRES


def dispatch(
    collector: str,
    *,
    now: dt.datetime | None = None,
    expires: dt.datetime | str | None = None,
    run_here: bool = False,
) -> list[str]:
    """Enqueue one run of ``collector`` per host that should run it; return those hosts.

    ``expires`` is the dispatcher's own expiry (beat sets it from the periodic task's
    ``expire_seconds``), so a collection is never run later than its cycle allowed.
    With ``run_here`` (a worker dispatching) the share of this very host runs in
    process instead of making a round trip through the broker.
    """
    from celery import current_app

    if collector not in registry:
        raise ValueError(f"unknown collector {collector!r}; known: {', '.join(sorted(registry))}")
    now = now or timezone.now()
    deadline = _parse_expires(expires, now)
    hosts = hosts_for(collector, now=now)
    # The series of a collector scheduled every minute must not turn stale after 30 s.
    interval = schedule_seconds(collector) if hosts else None
    kwargs = {"collector": collector, "interval_seconds": interval}
    for host in hosts:
        if run_here and host == settings.HOSTNAME:
            continue
        current_app.send_task(COLLECT_TASK, kwargs=kwargs, queue=host_queue(host), expires=deadline)
    if run_here and settings.HOSTNAME in hosts and timezone.now() < deadline:
        logger.debug("%s", run(collector, interval_seconds=interval).summary())
    if not hosts:
        logger.warning("collector %s: no host has a live worker; nothing dispatched", collector)
    return hosts
