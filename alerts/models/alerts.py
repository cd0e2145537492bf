from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils.translation import gettext_lazy as _


class Severity(models.TextChoices):
    INFO = "info", _("info")
    WARNING = "warning", _("warning")
    CRITICAL = "critical", _("critical")
    EMERGENCY = "emergency", _("emergency")


class AlertRule(models.Model):
    """A named expression in the rule language; each series it returns true for is an alert."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    expr = models.TextField(_("expression"), help_text=_("Rule language, e.g. avg_over_time(x[5m]) > 85."))
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices, default=Severity.WARNING)
    for_duration = models.DurationField(
        _("for"), default=dt.timedelta(0), help_text=_("How long the expression must hold before the alert fires.")
    )
    keep_firing_for = models.DurationField(
        _("keep firing for"),
        default=dt.timedelta(0),
        help_text=_("Keep a firing alert open this long after the expression turns false (damps flapping)."),
    )
    repeat_interval = models.DurationField(
        _("repeat interval"), default=dt.timedelta(hours=4), help_text=_("Re-notify a still-firing alert this often.")
    )
    labels = models.JSONField(_("extra labels"), default=dict, blank=True)
    summary = models.CharField(_("summary"), max_length=300, blank=True)
    runbook = models.TextField(_("runbook / recommended action"), blank=True)
    channels = models.ManyToManyField(
        "alerts.NotificationChannel",
        verbose_name=_("notification channels"),
        blank=True,
        related_name="rules",
        help_text=_("Where this rule's alerts are announced. None: the alerts are only shown, never sent."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    last_error = models.TextField(
        _("last evaluation error"),
        blank=True,
        editable=False,
        help_text=_("Why the latest evaluation of this rule failed; empty while it evaluates."),
    )
    last_error_at = models.DateTimeField(_("failing since"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check what an operator can get wrong; every error names its field (admin and ``loadconfig``)."""
        from django.core.exceptions import ValidationError

        from alerts.rules import RuleError, parse
        from monitoring.models.thresholds import LABEL_NAME

        errors: dict[str, list[str]] = {}
        try:
            parse(self.expr or "")
        except RuleError as error:
            errors.setdefault("expr", []).append(str(error))
        if self.labels is None:
            self.labels = {}
        if not isinstance(self.labels, dict):
            errors.setdefault("labels", []).append(
                str(_('must be an object of label names to text, e.g. {"team": "ops"}'))
            )
        else:
            for key, value in self.labels.items():
                if not LABEL_NAME.match(str(key)):
                    message = _("“%(key)s” is not a label name: use letters, digits and _") % {"key": key}
                    errors.setdefault("labels", []).append(str(message))
                elif not isinstance(value, str):
                    message = _('the value of “%(key)s” must be text, e.g. "%(value)s"') % {"key": key, "value": value}
                    errors.setdefault("labels", []).append(str(message))
        for name in ("for_duration", "keep_firing_for", "repeat_interval"):
            value = getattr(self, name)
            if value is not None and value < dt.timedelta(0):
                errors.setdefault(name, []).append(str(_("must be zero or more")))
        if errors:
            raise ValidationError(errors)


class Alert(models.Model):
    """One occurrence of a problem: a rule (or threshold, or heartbeat) and one label set.

    Identity is the source name plus labels (``fingerprint``); at most one alert per
    fingerprint is open at a time. A new breach after resolution is a new row.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        FIRING = "firing", _("firing")
        ACKNOWLEDGED = "acknowledged", _("acknowledged")
        RESOLVED = "resolved", _("resolved")

    class Source(models.TextChoices):
        RULE = "rule", _("alert rule")
        THRESHOLD = "threshold", _("threshold")
        HEARTBEAT = "heartbeat", _("heartbeat")

    source = models.CharField(_("source"), max_length=16, choices=Source.choices, default=Source.RULE)
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    name = models.CharField(_("rule name"), max_length=300, help_text=_("Rule, threshold or heartbeat name."))
    fingerprint = models.CharField(_("fingerprint"), max_length=64, db_index=True)
    labels = models.JSONField(_("labels"), default=dict)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, db_index=True)
    summary = models.CharField(_("summary"), max_length=500, blank=True)
    value = models.FloatField(_("value"), null=True, blank=True)
    active_since = models.DateTimeField(_("active since"), help_text=_("When the condition first held (pending)."))
    fired_at = models.DateTimeField(_("fired at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    last_true_at = models.DateTimeField(_("condition last true"), null=True, blank=True)
    last_notified_at = models.DateTimeField(_("last notified"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.CharField(_("acknowledged by"), max_length=150, blank=True)
    next_escalation_at = models.DateTimeField(_("next escalation at"), null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-active_since"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~models.Q(state="resolved"),
                name="alert_one_open_per_fingerprint",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.labels} [{self.state}]"


class AlertTransition(models.Model):
    """Every state change of an alert: when, to what, with which value and why.

    Deliveries are written in the same transaction as the transition (outbox).
    """

    class Event(models.TextChoices):
        PENDING = "pending", _("pending")
        FIRING = "firing", _("firing")
        REPEAT = "repeat", _("repeat notification")
        ACKNOWLEDGED = "acknowledged", _("acknowledged")
        ESCALATED = "escalated", _("escalated")
        RESOLVED = "resolved", _("resolved")
        #: A recorded change that is not announced (e.g. a threshold alert falling back from critical to warning).
        CHANGED = "changed", _("changed")

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="transitions")
    event = models.CharField(_("event"), max_length=16, choices=Event.choices)
    from_state = models.CharField(_("from"), max_length=16, blank=True)
    to_state = models.CharField(_("to"), max_length=16)
    at = models.DateTimeField(_("at"), db_index=True)
    value = models.FloatField(_("value"), null=True, blank=True)
    cause = models.CharField(_("cause"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("alert transition")
        verbose_name_plural = _("alert transitions")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.event} @ {self.at:%Y-%m-%d %H:%M:%S}"


class EvaluationLease(models.Model):
    """Single-flight claim of a periodic cycle (evaluation, sweeps): one row per cycle name."""

    name = models.CharField(_("cycle"), max_length=64, unique=True)
    owner = models.CharField(_("owner"), max_length=200, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    rerun_requested = models.BooleanField(_("rerun requested"), default=False)
    last_started_at = models.DateTimeField(_("last started"), null=True, blank=True)
    last_finished_at = models.DateTimeField(_("last finished"), null=True, blank=True)
    last_duration_ms = models.FloatField(_("last duration (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("evaluation lease")
        verbose_name_plural = _("evaluation leases")

    def __str__(self) -> str:
        return self.name
