from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AlertsConfig(AppConfig):
    """Rules, alerts, silences, escalation, notification channels and deliveries."""

    name = "alerts"
    verbose_name = _("Alerts")

    #: Default periodic tasks, seeded once by ``opsportal`` after migrate (never updated).
    periodic_tasks = [
        {
            "name": "Alerts: evaluate rules and thresholds",
            "task": "alerts.evaluate",
            "every_seconds": 10,
            "expire_seconds": 8,
            "description": "One single-flight cycle: every enabled rule, thresholds at warning or critical, "
            "alert transitions and their deliveries. New samples also start one at once.",
        },
        {
            "name": "Alerts: delivery sweep (re-kick due deliveries, release expired leases)",
            "task": "alerts.delivery_sweep",
            "every_seconds": 10,
            "expire_seconds": 8,
        },
    ]

    def ready(self) -> None:
        # Kick an evaluation when a sample a rule reads arrives (connects receivers only).
        from alerts import engine

        engine.connect_signals()
