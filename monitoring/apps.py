from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    """Series, samples, thresholds, collectors, heartbeats and process liveness."""

    name = "monitoring"
    verbose_name = _("Monitoring")

    #: Default periodic tasks, seeded once by ``opsportal`` after migrate (never updated).
    periodic_tasks = [
        {
            "name": "Housekeeping: prune stale liveness rows and broker files",
            "task": "monitoring.housekeeping",
            "every_seconds": 60,
        },
        {
            "name": "Series status: evaluate thresholds",
            "task": "monitoring.evaluate_status",
            "every_seconds": 10,
            "description": "Set each series' status (healthy, warning, critical, unknown, stale) from the thresholds.",
        },
    ]

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from monitoring.defaults import on_post_migrate

        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="monitoring.default_thresholds")
