from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils.translation import gettext_lazy as _


class Threshold(models.Model):
    """Where "warning" and "critical" start for a metric (optionally only some of its series).

    ``labels`` is a match: a series is covered when every given label has the given
    value. ``clear`` adds hysteresis: once breached, a series returns to healthy only
    when its value is back past ``clear``. ``for_duration`` is how long a breach must
    last before it counts.
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
