from __future__ import annotations

from celery import shared_task

from opsportal import deadman


@shared_task(name="opsportal.deadman_ping", ignore_result=True)
def deadman_ping() -> str:
    """Ping OPSPORTAL_DEADMAN_URL (a no-op when it is unset)."""
    return deadman.ping()
