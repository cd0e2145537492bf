"""Deliveries in the admin: read-only, with every attempt, filtered by what needs attention."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from alerts.models import Delivery, DeliveryAttempt

STATE_COLOURS: dict[str, str] = {
    Delivery.State.PENDING: "#8a6d00",
    Delivery.State.SENDING: "#1f5fa8",
    Delivery.State.DELIVERED: "#1b7f3b",
    Delivery.State.FAILED: "#b00020",
    Delivery.State.EXPIRED: "#b00020",
}


class AttentionFilter(admin.SimpleListFilter):
    title = _("attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("failing", _("failing (retrying, failed or expired)")),
            ("pending", _("pending (not delivered yet)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "failing":
            retrying = Q(state__in=Delivery.OPEN_STATES) & ~Q(last_error="")
            return queryset.filter(retrying | Q(state__in=[Delivery.State.FAILED, Delivery.State.EXPIRED]))
        if self.value() == "pending":
            return queryset.filter(state__in=Delivery.OPEN_STATES)
        return queryset


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("started_at", "duration_ms", "outcome", "status_code", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("started_at", "id")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every message on its way or sent; the outbox itself, so nothing here is editable."""

    list_display = (
        "id",
        "created_at",
        "alert_link",
        "event",
        "channel",
        "state_badge",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "short_error",
    )
    list_filter = (AttentionFilter, "state", "channel", "event")
    list_select_related = ("channel", "alert")
    search_fields = ("alert__name", "channel__name", "delivery_id")
    show_full_result_count = False
    inlines = [DeliveryAttemptInline]
    fields = (
        "delivery_id",
        "alert_link",
        "transition",
        "channel",
        "event",
        "state_badge",
        "attempts",
        "created_at",
        "send_after",
        "next_attempt_at",
        "delivered_at",
        "owner",
        "lease_until",
        "last_status_code",
        "last_error",
        "batch",
        "payload_json",
    )
    readonly_fields = fields

    @admin.display(description=_("alert"), ordering="alert__name")
    def alert_link(self, obj: Delivery) -> str:
        url = reverse("admin:alerts_delivery_changelist") + f"?alert__id__exact={obj.alert_id}"
        return format_html('<a href="{}">{}</a>', url, obj.alert.name)

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj: Delivery) -> str:
        return format_html(
            '<strong style="color:{}">{}</strong>', STATE_COLOURS.get(obj.state, "#444"), obj.get_state_display()
        )

    @admin.display(description=_("last error"))
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:120] + ("…" if len(obj.last_error) > 120 else "")

    @admin.display(description=_("payload"))
    def payload_json(self, obj: Delivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))
