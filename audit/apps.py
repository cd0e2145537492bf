from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    """The append-only, hash-chained audit log (later issue)."""

    name = "audit"
    verbose_name = _("Audit")
