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
        {
            "name": "Storage: roll samples up to 1-minute and 1-hour buckets",
            "task": "monitoring.rollup",
            "every_seconds": 60,
            "expire_seconds": 50,
            "description": "Min, max, avg, count and last per bucket; resumes from where the last run stopped.",
        },
        {
            "name": "Storage: delete data past its retention",
            "task": "monitoring.retention",
            "every_seconds": 600,
            "expire_seconds": 540,
            "description": "Keep periods per resolution are edited under Monitoring > Retention.",
        },
        *[
            {
                "name": f"Collection: {collector} ({where})",
                "task": "monitoring.dispatch_collection",
                "every_seconds": 10,
                "kwargs": {"collector": collector},
                "description": description,
            }
            for collector, where, description in (
                ("system", "every host", "CPU, load, memory, swap, disks, network and process counts of each host."),
                ("process", "every host", "Memory, CPU, open files and threads of the portal's own processes."),
                ("database", "once", "Database up, SELECT 1 latency, connections and size."),
                ("broker", "once", "Broker and channel layer up and round-trip latency."),
                ("celery", "once", "Workers and beat alive, queue lengths."),
                ("probes", "once", "Probes the HTTP/TCP targets that are due (each target has its own interval)."),
            )
        ],
    ]

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from monitoring.defaults import on_post_migrate

        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="monitoring.default_thresholds")

        from monitoring.retention import seed_defaults as seed_retention

        post_migrate.connect(seed_retention, sender=self, dispatch_uid="monitoring.default_retention")

        # Celery task counters: connects signal receivers only, starts nothing.
        from monitoring import signals  # noqa: F401
