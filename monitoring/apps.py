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
    ]
