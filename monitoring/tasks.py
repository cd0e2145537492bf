from __future__ import annotations

from celery import shared_task

from monitoring import liveness


@shared_task(name="monitoring.housekeeping")
def housekeeping() -> str:
    """Prune liveness rows of processes gone for more than an hour."""
    return f"pruned {liveness.prune()} liveness rows"
