from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class OpsPortalConfig(AppConfig):
    """The project package: composes the apps, seeds defaults after migrate."""

    name = "opsportal"
    verbose_name = _("OpsPortal")

    def ready(self) -> None:
        # Make our Celery app the default one, so shared_task.delay() in web
        # processes uses our broker settings. No background work starts here:
        # management commands import this too.
        from opsportal import celery  # noqa: F401
        from opsportal.seeding import seed_defaults

        post_migrate.connect(seed_defaults, sender=self, dispatch_uid="opsportal.seed_defaults")
