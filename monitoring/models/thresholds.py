from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

#: Prometheus metric and label names (also what ``monitoring.storage`` accepts).
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: A threshold's label match never needs more labels than a series may carry.
MAX_MATCH_LABELS = 10

#: Metric names DESIGN promises; a threshold on another well-formed name is allowed
#: (a pushed metric may appear later), the admin just says no series has it yet.
KNOWN_METRICS = frozenset(
    {
        "system_cpu_usage_percent",
        "system_load1",
        "system_load5",
        "system_load15",
        "system_memory_usage_percent",
        "system_memory_available_bytes",
        "system_swap_usage_percent",
        "system_disk_usage_percent",
        "system_disk_read_bytes_total",
        "system_disk_written_bytes_total",
        "system_network_receive_bytes_total",
        "system_network_transmit_bytes_total",
        "process_resident_memory_bytes",
        "process_cpu_usage_percent",
        "process_open_fds",
        "db_up",
        "db_query_latency_ms",
        "db_connections_active",
        "db_size_bytes",
        "broker_up",
        "broker_latency_ms",
        "celery_workers_alive",
        "celery_queue_length",
        "http_request_duration_seconds",
        "http_requests_total",
        "http_request_duration_p95_seconds",
        "http_requests_error_ratio",
        "probe_success",
        "probe_duration_ms",
        "probe_tls_days_left",
        "heartbeat_seconds_since_ping",
        "backup_last_success_age_seconds",
    }
)


def unknown_metrics(names: Iterable[str]) -> set[str]:
    """Return the names that are neither a built-in metric nor the name of any series (likely typos)."""
    from monitoring.models.series import Series

    candidates = {name for name in names if name not in KNOWN_METRICS}
    if not candidates:
        return set()
    return candidates - set(Series.objects.filter(name__in=candidates).values_list("name", flat=True).distinct())


def _num(value: float) -> str:
    return f"{value:g}"


class Threshold(models.Model):
    """Where "warning" and "critical" start for a metric (optionally only some of its series).

    ``labels`` is a match: a series is covered when every given label has the given
    value; when several thresholds cover a series, the one with the most labels decides.
    ``clear`` adds hysteresis: once breached, a series returns to healthy only when its
    value is back past ``clear``. ``for_duration`` is how long a breach must last
    before it counts.
    """

    class Direction(models.TextChoices):
        ABOVE = "above", _("above (higher is worse)")
        BELOW = "below", _("below (lower is worse)")

    metric = models.CharField(_("metric"), max_length=200, help_text=_("Metric name, e.g. system_cpu_usage_percent."))
    labels = models.JSONField(
        _("labels"), default=dict, blank=True, help_text=_('Only series with these labels, e.g. {"mount": "/"}.')
    )
    labels_key = models.CharField(_("labels key"), max_length=2000, editable=False, default="{}")
    warning = models.FloatField(_("warning at"), null=True, blank=True)
    critical = models.FloatField(_("critical at"), null=True, blank=True)
    direction = models.CharField(_("direction"), max_length=8, choices=Direction.choices, default=Direction.ABOVE)
    for_duration = models.DurationField(
        _("for"), default=dt.timedelta(0), help_text=_("How long a breach must last before the status changes.")
    )
    clear = models.FloatField(
        _("clear at"),
        null=True,
        blank=True,
        help_text=_("Hysteresis: a breached series is healthy again only once past this level. Empty: no hysteresis."),
    )
    channels = models.JSONField(
        _("notification channels"), default=list, blank=True, help_text=_("Names of the channels alerts go to.")
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.TextField(_("description"), blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("threshold")
        verbose_name_plural = _("thresholds")
        ordering = ["metric", "labels_key"]
        constraints = [models.UniqueConstraint(fields=["metric", "labels_key"], name="threshold_identity")]

    def __str__(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted((self.labels or {}).items()))
        return f"{self.metric}{{{inner}}}" if inner else self.metric

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.labels = self.labels or {}
        self.labels_key = self.compute_labels_key()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "labels" in update_fields:
            kwargs["update_fields"] = {*update_fields, "labels_key"}
        super().save(*args, **kwargs)

    def compute_labels_key(self) -> str:
        from monitoring.storage import labels_key

        return labels_key(self.labels if isinstance(self.labels, dict) else {})

    def clean(self) -> None:
        """Check the invariants an operator can break; every error names its field."""
        errors: dict[str, list[Any]] = {}

        def error(name: str, message: Any) -> None:  # text or lazy text
            errors.setdefault(name, []).append(message)

        if self.metric and not METRIC_NAME.match(self.metric):
            error(
                "metric",
                _("“%(name)s” is not a metric name: use letters, digits, _ and :, not starting with a digit")
                % {"name": self.metric},
            )
        self._clean_labels(error)
        self._clean_levels(error)
        if self.for_duration is not None and self.for_duration < dt.timedelta(0):
            error("for_duration", _("must be zero or more"))
        if self.channels is None:
            self.channels = []
        if not isinstance(self.channels, list) or not all(isinstance(c, str) and c.strip() for c in self.channels):
            error("channels", _('must be a list of channel names, e.g. ["ops-hook"]'))
        if "metric" not in errors and "labels" not in errors and self.metric:
            self.labels_key = self.compute_labels_key()
            clash = Threshold.objects.filter(metric=self.metric, labels_key=self.labels_key).exclude(pk=self.pk)
            if clash.exists():
                error("labels", _("a threshold for %(name)s with these labels already exists") % {"name": self})
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: Any = None) -> None:
        # clean() reports the (metric, labels) clash on the labels field, in words;
        # Django's generic "… with this Metric and Labels key already exists" would repeat it.
        super().validate_constraints(exclude={*(exclude or ()), "labels_key"})

    def _clean_labels(self, error: Any) -> None:
        if self.labels is None:
            self.labels = {}
        if not isinstance(self.labels, dict):
            error("labels", _('must be an object of label names to values, e.g. {"mount": "/"}'))
            return
        if len(self.labels) > MAX_MATCH_LABELS:
            error("labels", _("at most %(n)d labels") % {"n": MAX_MATCH_LABELS})
        for key, value in self.labels.items():
            if not LABEL_NAME.match(key):
                error("labels", _("“%(key)s” is not a label name: use letters, digits and _") % {"key": key})
            elif not isinstance(value, str):
                message = _('the value of “%(key)s” must be text, e.g. "%(value)s"') % {"key": key, "value": value}
                error("labels", message)

    def _clean_levels(self, error: Any) -> None:
        for name in ("warning", "critical", "clear"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                error(name, _("must be a finite number"))
                return
        warning, critical, clear = self.warning, self.critical, self.clear
        if warning is None and critical is None:
            error("warning", _("set a warning level, a critical level or both"))
            error("critical", _("set a warning level, a critical level or both"))
            return
        above = self.direction != self.Direction.BELOW
        if warning is not None and critical is not None:
            if above and critical <= warning:
                error("critical", _("must be above warning (%(w)s)") % {"w": _num(warning)})
            elif not above and critical >= warning:
                error("critical", _("must be below warning (%(w)s)") % {"w": _num(warning)})
        if clear is not None:
            # The breach starts at the lower of the two levels (in the direction).
            level, level_name = (warning, _("warning")) if warning is not None else (critical, _("critical"))
            assert level is not None
            if above and clear >= level:
                error(
                    "clear",
                    _("must be below %(name)s (%(v)s): a breached series clears on the healthy side")
                    % {"name": level_name, "v": _num(level)},
                )
            elif not above and clear <= level:
                error(
                    "clear",
                    _("must be above %(name)s (%(v)s): a breached series clears on the healthy side")
                    % {"name": level_name, "v": _num(level)},
                )
