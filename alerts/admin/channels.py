"""Notification channels in the admin: secrets masked, never echoed, a test button."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from alerts import outbox
from alerts.fields import UndecryptableSecret, mask
from alerts.models import Delivery, NotificationChannel

#: Most channels one "send test" click sends to (each send waits up to the transport timeout).
MAX_TEST_CHANNELS = 10


def masked(channel: NotificationChannel, field: str) -> str:
    """Return the hint of a stored secret, or a warning when it cannot be decrypted."""
    try:
        return mask(getattr(channel, field))
    except UndecryptableSecret:
        return str(_("⚠ cannot be decrypted — enter it again"))


class NotificationChannelForm(forms.ModelForm):
    """Target and secret are write-only: the form shows a hint, and an empty field keeps the stored value."""

    target = forms.CharField(
        label=_("target"),
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"size": 80, "autocomplete": "off", "spellcheck": "false"}),
    )
    secret = forms.CharField(
        label=_("signing secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_secret = forms.BooleanField(label=_("remove the signing secret"), required=False)

    class Meta:
        model = NotificationChannel
        # target and secret are handled by hand, so the stored values are never read into the form.
        fields = ["name", "kind", "enabled", "send_resolved"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target_help = NotificationChannel._meta.get_field("target").help_text
        secret_help = NotificationChannel._meta.get_field("secret").help_text
        if self.instance.pk:
            stored = masked(self.instance, "target")
            self.fields["target"].help_text = format_html(
                "{} {} <code>{}</code> — {}", target_help, _("Stored:"), stored, _("leave empty to keep it.")
            )
            stored_secret = masked(self.instance, "secret") if self.instance.__dict__.get("secret") else ""
            if stored_secret:
                self.fields["secret"].help_text = format_html(
                    "{} {} <code>{}</code> — {}", secret_help, _("Stored:"), stored_secret, _("leave empty to keep it.")
                )
            else:
                self.fields["secret"].help_text = secret_help
                del self.fields["clear_secret"]
        else:
            self.fields["target"].required = True
            self.fields["target"].help_text = target_help
            self.fields["secret"].help_text = secret_help
            del self.fields["clear_secret"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # An empty field keeps the stored value; the model's clean() says so if it cannot be read.
        if data.get("target"):
            self.instance.target = data["target"]
        if data.get("secret"):
            self.instance.secret = data["secret"]
        elif data.get("clear_secret"):
            self.instance.secret = ""
        return data

    @property
    def secrets_changed(self) -> bool:
        return bool(self.cleaned_data.get("target") or self.cleaned_data.get("secret"))


class FlagFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "flagged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("flagged")), ("no", _("not flagged"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(flagged_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(flagged_at__isnull=True)
        return queryset


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "kind", "target_hint", "signed", "enabled", "send_resolved", "open_deliveries", "status")
    list_filter = ("kind", "enabled", FlagFilter)
    search_fields = ("name",)
    actions = ["send_test_notification"]
    readonly_fields = ("flagged_at", "flag_reason", "failures_total", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "send_resolved")}),
        (
            _("Where to"),
            {
                "description": _(
                    "The target and the secret are stored encrypted and never shown again in full. "
                    "Leave a field empty to keep what is stored."
                ),
                "fields": ("target", "secret", "clear_secret"),
            },
        ),
        (
            _("Health"),
            {
                "description": _(
                    "A channel is flagged when its receiver refuses a message for good (e.g. HTTP 404, "
                    "SMTP 550). Fix the target, then send a test notification: a good test clears the flag."
                ),
                "fields": ("flagged_at", "flag_reason", "failures_total", "created_at", "updated_at"),
            },
        ),
    )

    # The model's target and secret never reach a form: the form's own write-only
    # fields stand in for them, so the stored values are not read, rendered or cleaned.
    exclude = ("target", "secret")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        swap: dict[str, str | None]
        if obj is not None and not self.has_change_permission(request, obj):
            # A read-only page would print the decrypted values: show the hints instead.
            swap = {"target": "target_hint", "secret": "secret_hint", "clear_secret": None}
        elif obj is None or not obj.__dict__.get("secret"):
            swap = {"clear_secret": None}  # no stored secret: nothing to remove
        else:
            return fieldsets
        result = []
        for name, opts in fieldsets:
            fields = [swap.get(f, f) for f in opts["fields"] if isinstance(f, str)]
            result.append((name, {**opts, "fields": tuple(f for f in fields if f)}))
        return result

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationChannel]:
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("deliveries", filter=Q(deliveries__state__in=Delivery.OPEN_STATES)))
        )

    @admin.display(description=_("target"))
    def target_hint(self, obj: NotificationChannel) -> str:
        return masked(obj, "target")

    @admin.display(description=_("signing secret"))
    def secret_hint(self, obj: NotificationChannel) -> str:
        return masked(obj, "secret") if obj.__dict__.get("secret") else "—"

    @admin.display(description=_("signed"), boolean=True)
    def signed(self, obj: NotificationChannel) -> bool:
        return bool(obj.__dict__.get("secret"))

    @admin.display(description=_("open deliveries"), ordering="open_count")
    def open_deliveries(self, obj: NotificationChannel) -> int:
        return getattr(obj, "open_count", 0)

    @admin.display(description=_("status"), ordering="flagged_at")
    def status(self, obj: NotificationChannel) -> str:
        if obj.flagged_at:
            return format_html(
                '<strong style="color:#b00020" title="{}">{}</strong> {}',
                obj.flag_reason,
                _("flagged"),
                obj.flag_reason[:80],
            )
        return format_html('<span style="color:#1b7f3b">{}</span>', _("ok"))

    def save_model(self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool) -> None:
        if change and getattr(form, "secrets_changed", False):
            # A new target or secret is a fix attempt: the old refusal no longer says anything.
            obj.flagged_at = None
            obj.flag_reason = ""
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Send test notification"), permissions=["change"])
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        channels = list(queryset.order_by("name")[: MAX_TEST_CHANNELS + 1])
        if len(channels) > MAX_TEST_CHANNELS:
            self.message_user(
                request,
                _("Select at most %(n)d channels at a time.") % {"n": MAX_TEST_CHANNELS},
                messages.WARNING,
            )
            return
        for channel in channels:
            result = outbox.send_test(channel, requested_by=request.user.get_username())
            level = messages.SUCCESS if result.delivered else messages.ERROR
            self.message_user(request, f"{channel.name}: {result.describe()}", level)
