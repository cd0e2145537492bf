from __future__ import annotations

from celery import shared_task

from monitoring import liveness, status


@shared_task(name="monitoring.housekeeping")
def housekeeping() -> str:
    """Prune liveness rows of processes gone for more than an hour."""
    return f"pruned {liveness.prune()} liveness rows"


@shared_task(name="monitoring.evaluate_status")
def evaluate_status() -> str:
    """Set every series' status from the thresholds (see monitoring.status)."""
    return str(status.evaluate())
