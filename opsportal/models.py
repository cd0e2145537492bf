from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class LiveEvent(models.Model):
    """One live update for the status pages, written in the transaction of the change it announces.

    Every web process polls this table and fans new rows out to its own WebSocket
    clients (see :mod:`opsportal.live`); rows are pruned after a few minutes.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(_("kind"), max_length=32)
    payload = models.JSONField(_("payload"), default=dict)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("live event")
        verbose_name_plural = _("live events")

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"


class PublicComponent(models.Model):
    """One component shown on the public status page, opted in by an operator.

    It reflects a metric (the worst status of the series whose labels match) and/or
    alert rules and thresholds (down while one of their critical or emergency alerts
    fires). The public page shows only its name, its state and when incidents started
    and ended: never hosts, labels, values or expressions.
    """

    name = models.CharField(_("name"), max_length=100, help_text=_("Shown to the public, e.g. “Website” or “API”."))
    description = models.CharField(_("description"), max_length=300, blank=True, help_text=_("Shown to the public."))
    order = models.PositiveIntegerField(_("order"), default=0, help_text=_("Lower comes first on the page."))
    enabled = models.BooleanField(_("shown on the public page"), default=True)
    metric = models.CharField(
        _("metric"),
        max_length=200,
        blank=True,
        help_text=_("Series of this metric decide the state: critical → down; warning, stale, unknown → degraded."),
    )
    labels = models.JSONField(
        _("label match"),
        default=dict,
        blank=True,
        help_text=_('Only series with these labels, e.g. {"host": "web-1"}. Empty: every series of the metric.'),
    )
    alert_rules = models.ManyToManyField(
        "alerts.AlertRule",
        verbose_name=_("alert rules"),
        blank=True,
        related_name="public_components",
        help_text=_("Down while one of their critical/emergency alerts fires; degraded for a warning alert."),
    )
    thresholds = models.ManyToManyField(
        "monitoring.Threshold",
        verbose_name=_("thresholds"),
        blank=True,
        related_name="public_components",
        help_text=_("Down while one of their critical alerts fires; degraded for a warning alert."),
    )

    class Meta:
        verbose_name = _("public component")
        verbose_name_plural = _("public components")
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from monitoring.models.thresholds import LABEL_NAME, METRIC_NAME

        errors: dict[str, str] = {}
        if self.metric and not METRIC_NAME.match(self.metric):
            errors["metric"] = str(_("Not a metric name: use letters, digits, _ and :."))
        if self.labels is None:
            self.labels = {}
        if not isinstance(self.labels, dict) or not all(
            isinstance(v, str) and LABEL_NAME.match(str(k)) for k, v in self.labels.items()
        ):
            errors["labels"] = str(_('Must be an object of label names to text, e.g. {"host": "web-1"}.'))
        elif self.labels and not self.metric:
            errors["labels"] = str(_("A label match needs a metric."))
        if errors:
            raise ValidationError(errors)
