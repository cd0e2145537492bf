from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

#: Longest timeout a probe may have: a worker thread waits this long at most.
MAX_TIMEOUT = dt.timedelta(seconds=60)
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?)$")


def split_host_port(address: str) -> tuple[str, int]:
    """Return (host, port) of ``host:port`` or ``[v6]:port``; raise ValueError otherwise."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep or not host or not _HOST.match(host) or not port_text.isdigit():
        raise ValueError("expected host:port, e.g. db.internal:5432 or [::1]:6379")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return host.strip("[]"), port


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
    last_duration_ms = models.FloatField(_("last duration (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("target")
        verbose_name_plural = _("targets")
        ordering = ["name"]
        constraints = [
            # The same rules as clean(), for writers that bypass forms.
            models.CheckConstraint(condition=models.Q(interval__gt=dt.timedelta(0)), name="target_interval_positive"),
            models.CheckConstraint(condition=models.Q(timeout__gt=dt.timedelta(0)), name="target_timeout_positive"),
            models.CheckConstraint(
                condition=models.Q(timeout__lt=models.F("interval")), name="target_timeout_below_interval"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, object] = {}
        address = (self.address or "").strip()
        self.address = address
        if self.kind == self.Kind.HTTP:
            parts = urlsplit(address)
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
                valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and " " not in address
            except ValueError:
                valid = False
            if not valid:
                errors["address"] = _("Enter an http:// or https:// URL with a host, e.g. https://example.com/health.")
        else:
            try:
                split_host_port(address)
            except ValueError as error:
                errors["address"] = _("Enter host:port, e.g. db.internal:5432 (%(problem)s).") % {"problem": error}
            if self.keyword:
                errors["keyword"] = _("A keyword can only be checked in an HTTP response.")
        if self.interval is not None and self.interval <= dt.timedelta(0):
            errors["interval"] = _("The interval must be positive.")
        if self.timeout is not None:
            if self.timeout <= dt.timedelta(0):
                errors["timeout"] = _("The timeout must be positive.")
            elif self.timeout > MAX_TIMEOUT:
                limit = int(MAX_TIMEOUT.total_seconds())
                errors["timeout"] = _("The timeout is at most %(max)s seconds.") % {"max": limit}
            elif self.interval is not None and self.interval > dt.timedelta(0) and self.timeout >= self.interval:
                errors["timeout"] = _("The timeout must be shorter than the interval, so probes never overlap.")
        if self.expected_status is not None and not 100 <= self.expected_status <= 599:
            errors["expected_status"] = _("An HTTP status is between 100 and 599.")
        if errors:
            raise ValidationError(errors)
