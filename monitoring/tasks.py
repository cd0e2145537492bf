from __future__ import annotations

from celery import Task, shared_task

from monitoring import collectors, dispatch, liveness, retention, rollups, status


@shared_task(name="monitoring.housekeeping")
def housekeeping() -> str:
    """Prune liveness rows of processes gone for more than an hour."""
    return f"pruned {liveness.prune()} liveness rows"


@shared_task(name="monitoring.evaluate_status")
def evaluate_status() -> str:
    """Set every series' status from the thresholds (see monitoring.status)."""
    return str(status.evaluate())


@shared_task(name="monitoring.rollup")
def rollup() -> str:
    """Roll new raw samples up to minutes and new minutes up to hours (see monitoring.rollups)."""
    return str(rollups.run())


@shared_task(name="monitoring.retention")
def enforce_retention() -> str:
    """Delete samples and rollups past their keep period, in batches (see monitoring.retention)."""
    return str(retention.enforce())


@shared_task(name="monitoring.dispatch_collection", bind=True)
def dispatch_collection(self: Task, collector: str) -> str:
    """Send ``collector`` to every host that should run it (see monitoring.dispatch)."""
    expires = self.request.expires  # beat's expiry, from the periodic task's expire_seconds
    hosts = dispatch.dispatch(collector, expires=str(expires) if expires else None, run_here=True)
    return f"{collector}: {', '.join(hosts) or 'no live host'}"


@shared_task(name="monitoring.collect")
def collect(collector: str, interval_seconds: int | None = None) -> str:
    """Run one collector on this host and record what it read (see monitoring.collectors)."""
    return collectors.run(collector, interval_seconds=interval_seconds).summary()
