from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class OpsPortalConfig(AppConfig):
    """The project package: composes the apps, seeds defaults after migrate."""

    name = "opsportal"
    verbose_name = _("OpsPortal")

    periodic_tasks = [
        {
            "name": "Dead-man ping (OPSPORTAL_DEADMAN_URL)",
            "task": "opsportal.deadman_ping",
            "every_seconds": 10,
            "description": "Proves beat, broker and a worker all run; an outside monitor notices when pings stop.",
        },
        {
            "name": "Live updates: prune delivered events",
            "task": "opsportal.prune_live_events",
            "every_seconds": 60,
            "description": "Delete live events older than five minutes; every web process has read them by then.",
        },
    ]

    def ready(self) -> None:
        # Make our Celery app the default one, so shared_task.delay() in web
        # processes uses our broker settings. No background work starts here:
        # management commands import this too.
        from opsportal import celery, live_wiring  # noqa: F401
        from opsportal.seeding import seed_defaults
        from opsportal.sqlite import on_connection_created

        # Receivers only: they publish live events when other apps send their signals.
        live_wiring.connect()

        post_migrate.connect(seed_defaults, sender=self, dispatch_uid="opsportal.seed_defaults")
        connection_created.connect(on_connection_created, dispatch_uid="opsportal.sqlite_wal")
