"""Where notifications go, and the outbox of messages on their way there.

A :class:`Delivery` is written in the same transaction as the alert transition it
announces (see :mod:`alerts.outbox`); the row, not a broker message, is the truth.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from alerts.fields import EncryptedTextField, UndecryptableSecret
from alerts.models.alerts import Alert, AlertTransition


class NotificationChannel(models.Model):
    """A receiver of notifications: one webhook URL, one list of mail addresses, ..."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", _("webhook")
        EMAIL = "email", _("email")
        SLACK = "slack", _("Slack")
        DISCORD = "discord", _("Discord")
        SMS = "sms", _("SMS")
        APPRISE = "apprise", _("Apprise")

    #: Kinds whose target is itself a credential (a URL with a token in it).
    SECRET_TARGET_KINDS = frozenset({Kind.WEBHOOK, Kind.SLACK, Kind.DISCORD, Kind.SMS, Kind.APPRISE})
    #: Kinds read by people: a burst of alerts is grouped into one message.
    HUMAN_KINDS = frozenset({Kind.EMAIL, Kind.SLACK, Kind.DISCORD, Kind.SMS})

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    target = EncryptedTextField(
        _("target"),
        help_text=_(
            "Webhook: the URL that receives a JSON POST. Email: one or more addresses, comma-separated. "
            "Stored encrypted."
        ),
    )
    secret = EncryptedTextField(
        _("signing secret"),
        blank=True,
        default="",
        help_text=_(
            "Optional. When set, webhooks carry X-OpsPortal-Signature: sha256=<HMAC of the body>. Stored encrypted."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    send_resolved = models.BooleanField(
        _("send resolved notices"), default=True, help_text=_("Also notify when an alert resolves.")
    )
    flagged_at = models.DateTimeField(
        _("flagged at"),
        null=True,
        blank=True,
        help_text=_("Set when the receiver refused a message for good (e.g. HTTP 404); cleared by a good test."),
    )
    flag_reason = models.CharField(_("flag reason"), max_length=500, blank=True)
    failures_total = models.PositiveBigIntegerField(
        _("failed attempts"), default=0, editable=False, help_text=_("Attempts that did not deliver, ever.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("notification channel")
        verbose_name_plural = _("notification channels")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def groups_messages(self) -> bool:
        return self.kind in self.HUMAN_KINDS

    def clean(self) -> None:
        super().clean()
        try:
            target = self.target or ""
        except UndecryptableSecret as exc:
            raise ValidationError({"target": str(exc)}) from None
        errors = target_errors(self.kind, target)
        if errors:
            raise ValidationError({"target": errors})

    def recipients(self) -> list[str]:
        """Return the addresses of an email channel."""
        return [a.strip() for a in (self.target or "").split(",") if a.strip()]


def target_errors(kind: str, target: str) -> list[str]:
    """Return what is wrong with ``target`` for a channel of ``kind`` (empty when fine).

    The messages never repeat the target: it may be a credential.
    """
    target = target.strip()
    if not target:
        return [str(_("A target is required."))]
    if kind == NotificationChannel.Kind.EMAIL:
        bad = []
        for index, address in enumerate(a.strip() for a in target.split(",")):
            try:
                validate_email(address)
            except ValidationError:
                bad.append(index + 1)
        if bad:
            return [str(_("Not a valid email address (position %(pos)s in the list).")) % {"pos": bad[0]}]
        return []
    if kind in (NotificationChannel.Kind.WEBHOOK, NotificationChannel.Kind.SLACK, NotificationChannel.Kind.DISCORD):
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError:
            return [str(_("Expected an http:// or https:// URL."))]
    return []


class Delivery(models.Model):
    """One notification of one alert transition to one channel, until it is delivered or given up.

    ``delivery_id`` is sent as ``X-OpsPortal-Delivery`` and stays the same across
    retries, so a receiver can drop duplicates. Deliveries of one alert to one channel
    go out in transition order: one is not sent while an earlier one is still open.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")

    #: States in which a delivery is still on its way (and holds back later ones).
    OPEN_STATES = (State.PENDING, State.SENDING)

    id = models.BigAutoField(primary_key=True)
    transition = models.ForeignKey(
        AlertTransition, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("transition")
    )
    # Copied from the transition, so the in-order check needs no join.
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("alert"))
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("channel")
    )
    delivery_id = models.UUIDField(_("delivery id"), default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(_("event"), max_length=16)
    payload = models.JSONField(
        _("payload"), help_text=_("The message as frozen when the transition happened; every retry sends it again.")
    )
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), db_index=True)
    send_after = models.DateTimeField(
        _("send after"), null=True, blank=True, help_text=_("End of the group wait of a human channel.")
    )
    batch = models.UUIDField(
        _("batch"),
        null=True,
        blank=True,
        db_index=True,
        help_text=_("Deliveries sent together as one grouped message; a retry resends the same group."),
    )
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    owner = models.CharField(_("claimed by"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last status code"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["alert", "channel", "transition"], name="delivery_order_idx"),
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: when, how long, and what the receiver said."""

    class Outcome(models.TextChoices):
        OK = "ok", _("delivered")
        RETRY = "retry", _("will retry")
        PERMANENT = "permanent", _("refused for good")

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    started_at = models.DateTimeField(_("started at"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.outcome}"
