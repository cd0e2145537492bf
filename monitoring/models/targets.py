from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils.translation import gettext_lazy as _


class Target(models.Model):
    """An HTTP(S) URL or a TCP host:port probed on an interval.

    Produces ``probe_success{target}``, ``probe_duration_ms{target}`` and, for HTTPS,
    ``probe_tls_days_left{target}``.
    """

    class Kind(models.TextChoices):
        HTTP = "http", _("HTTP(S) URL")
        TCP = "tcp", _("TCP host:port")

    name = models.CharField(_("name"), max_length=100, unique=True, help_text=_("The value of the target label."))
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.HTTP)
    address = models.CharField(_("URL or host:port"), max_length=500)
    interval = models.DurationField(_("interval"), default=dt.timedelta(seconds=60))
    timeout = models.DurationField(_("timeout"), default=dt.timedelta(seconds=5))
    expected_status = models.PositiveSmallIntegerField(_("expected status"), null=True, blank=True, default=200)
    keyword = models.CharField(_("keyword"), max_length=200, blank=True, help_text=_("Text the body must contain."))
    verify_tls = models.BooleanField(_("verify TLS"), default=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    last_checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    last_success = models.BooleanField(_("last result"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("target")
        verbose_name_plural = _("targets")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
