"""Liveness rows of beat and workers (DESIGN "Mechanisms: Liveness")."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from monitoring.models import ProcessHeartbeat

Role = ProcessHeartbeat.Role
T = TypeVar("T")


def record(role: str, *, node: str = "", queues: Iterable[str] = (), started_at: dt.datetime | None = None) -> None:
    """Write (or refresh) this process's liveness row."""
    now = timezone.now()
    ProcessHeartbeat.objects.update_or_create(
        role=role,
        host=settings.HOSTNAME,
        pid=os.getpid(),
        defaults={"node": node[:200], "queues": ",".join(queues)[:500], "last_seen": now},
        create_defaults={
            "node": node[:200],
            "queues": ",".join(queues)[:500],
            "last_seen": now,
            "started_at": started_at or now,
        },
    )


def forget(role: str) -> None:
    """Remove this process's row on a clean shutdown, so it stops counting at once."""
    ProcessHeartbeat.objects.filter(role=role, host=settings.HOSTNAME, pid=os.getpid()).delete()


def fresh(role: str, *, now: dt.datetime | None = None) -> list[ProcessHeartbeat]:
    """Return the rows of ``role`` seen within ``LIVENESS_STALE_SECONDS``."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.LIVENESS_STALE_SECONDS)
    return list(ProcessHeartbeat.objects.filter(role=role, last_seen__gte=cutoff).order_by("host", "pid"))


def alive_hosts(*, now: dt.datetime | None = None) -> list[str]:
    """Return the hosts that have at least one fresh worker."""
    return sorted({row.host for row in fresh(Role.WORKER, now=now)})


def prune(*, older_than: dt.timedelta = dt.timedelta(hours=1), now: dt.datetime | None = None) -> int:
    """Delete rows of processes gone for longer than ``older_than``."""
    now = now or timezone.now()
    deleted, _ = ProcessHeartbeat.objects.filter(last_seen__lt=now - older_than).delete()
    return deleted


def safely(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` from a timer thread: fresh connection, closed afterwards."""
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        from django.db import connection

        connection.close()
