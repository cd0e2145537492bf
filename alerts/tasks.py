"""Celery tasks of the alerts app: kicks only, the database rows are the truth."""

from __future__ import annotations

from celery import shared_task

from alerts import outbox


@shared_task(name="alerts.deliver", ignore_result=True)
def deliver(delivery_ids: list[int] | None = None) -> str:
    """Claim and send these deliveries (every due one when none are given)."""
    return str(outbox.deliver_due(delivery_ids))


@shared_task(name="alerts.delivery_sweep", ignore_result=True)
def delivery_sweep() -> str:
    """Release expired leases and re-kick every due delivery, so a lost kick loses nothing."""
    return str(outbox.sweep())


@shared_task(name="alerts.evaluate", ignore_result=True)
def evaluate(kick: bool = False) -> str:
    """Run one evaluation cycle of rules and thresholds (single-flight; a kick asks a running one to rerun)."""
    from alerts import engine

    return str(engine.run(kick=kick))
