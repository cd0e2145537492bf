"""Alerts in the admin: read-only, with every transition (time, value, cause) inline."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from alerts.admin.rules import SEVERITY_COLOURS
from alerts.models import Alert, AlertTransition

STATE_COLOURS: dict[str, str] = {
    Alert.State.PENDING: "#b26a00",
    Alert.State.FIRING: "#b00020",
    Alert.State.ACKNOWLEDGED: "#417690",
    Alert.State.RESOLVED: "#1b7f3b",
}
OPEN_STATES = (Alert.State.PENDING, Alert.State.FIRING, Alert.State.ACKNOWLEDGED)


class OpenFilter(admin.SimpleListFilter):
    title = _("open")
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("yes", _("open (pending, firing, acknowledged)")), ("no", _("resolved"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "yes":
            return queryset.filter(state__in=OPEN_STATES)
        if self.value() == "no":
            return queryset.filter(state=Alert.State.RESOLVED)
        return queryset


class TransitionInline(admin.TabularInline):
    model = AlertTransition
    fields = ("at", "event", "from_state", "to_state", "value", "cause")
    readonly_fields = fields
    ordering = ("at", "id")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are written by the engine only; the admin shows them and their history."""

    list_display = ("state_badge", "severity_badge", "name", "label_text", "active_since", "value_text", "source")
    list_display_links = ("state_badge", "name")
    list_filter = (OpenFilter, "state", "severity", "source", ("rule", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("rule",)
    search_fields = ("name", "summary", "fingerprint")
    ordering = ("-active_since", "-id")
    date_hierarchy = "active_since"
    show_full_result_count = False
    list_per_page = 100
    inlines = (TransitionInline,)
    fieldsets = (
        (None, {"fields": ("name", "rule_link", "source", "state", "severity", "summary", "label_text", "value")}),
        (
            _("Timeline"),
            {"fields": ("active_since", "fired_at", "last_true_at", "last_notified_at", "resolved_at")},
        ),
        (_("Acknowledgement"), {"fields": ("acknowledged_at", "acknowledged_by"), "classes": ("collapse",)}),
        (_("Identity"), {"fields": ("fingerprint",), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "name",
        "rule_link",
        "source",
        "state",
        "severity",
        "summary",
        "label_text",
        "value",
        "active_since",
        "fired_at",
        "last_true_at",
        "last_notified_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
        "fingerprint",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj: Alert) -> SafeString:
        return format_html(
            '<strong style="color:{}">{}</strong>', STATE_COLOURS.get(obj.state, "#333"), obj.get_state_display()
        )

    @admin.display(description=_("severity"), ordering="severity")
    def severity_badge(self, obj: Alert) -> SafeString:
        return format_html('<span style="color:{}">{}</span>', SEVERITY_COLOURS.get(obj.severity, "#333"), obj.severity)

    @admin.display(description=_("labels"))
    def label_text(self, obj: Alert) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted((obj.labels or {}).items())) or "—"

    @admin.display(description=_("value"), ordering="value")
    def value_text(self, obj: Alert) -> str:
        return "—" if obj.value is None else f"{obj.value:g}"

    @admin.display(description=_("rule"))
    def rule_link(self, obj: Alert) -> Any:
        if obj.rule_id is None:
            return "—"
        url = reverse("admin:alerts_alertrule_change", args=[obj.rule_id])
        return format_html('<a href="{}">{}</a>', url, obj.rule)
