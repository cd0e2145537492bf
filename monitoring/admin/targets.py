"""HTTP/TCP targets: edit, see the last result, probe now."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from monitoring.collectors import probes
from monitoring.models import Target

#: Targets one "probe now" may take (they run in parallel, each within its timeout).
MAX_PROBE_NOW = 50


class LastResultFilter(admin.SimpleListFilter):
    title = _("last result")
    parameter_name = "result"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("up", _("up")), ("down", _("down")), ("never", _("never probed"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Target]) -> QuerySet[Target]:
        value = self.value()
        if value == "up":
            return queryset.filter(last_success=True)
        if value == "down":
            return queryset.filter(last_success=False)
        if value == "never":
            return queryset.filter(last_success__isnull=True)
        return queryset


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "address", "interval", "enabled", "last_result", "last_checked_at", "last_error")
    list_filter = (LastResultFilter, "kind", "enabled")
    search_fields = ("name", "address")
    ordering = ("name",)
    actions = ("probe_now",)
    readonly_fields = ("last_checked_at", "last_result", "last_duration_ms", "last_error")
    fieldsets = (
        (None, {"fields": ("name", "kind", "address", "enabled")}),
        (
            _("Schedule"),
            {
                "fields": ("interval", "timeout"),
                "description": _(
                    "Due targets are probed by the 10-second probe cycle, each at its own interval. "
                    "A probe that takes longer than its timeout counts as failed."
                ),
            },
        ),
        (
            _("HTTP checks"),
            {
                "fields": ("expected_status", "keyword", "verify_tls"),
                "description": _(
                    "Only for HTTP(S) URLs. Empty expected status: any status below 400 is success. "
                    "Redirects are followed unless a 3xx status is expected."
                ),
            },
        ),
        (_("Last result"), {"fields": ("last_checked_at", "last_result", "last_duration_ms", "last_error")}),
    )

    @admin.display(description=_("last result"), ordering="last_success")
    def last_result(self, obj: Target) -> SafeString:
        if obj.last_success is None:
            return format_html('<span style="color:#6b6b6b">{}</span>', _("never probed"))
        colour, word = ("#1b7f3b", _("up")) if obj.last_success else ("#b00020", _("down"))
        if obj.last_duration_ms is None:
            return format_html('<strong style="color:{}">{}</strong>', colour, word)
        return format_html('<strong style="color:{}">{}</strong> · {} ms', colour, word, f"{obj.last_duration_ms:.0f}")

    @admin.action(description=_("Probe the selected targets now"), permissions=["change"])
    def probe_now(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        targets = list(queryset[: MAX_PROBE_NOW + 1])
        if len(targets) > MAX_PROBE_NOW:
            self.message_user(
                request, _("Select at most %(n)d targets to probe at once.") % {"n": MAX_PROBE_NOW}, messages.ERROR
            )
            return
        results = probes.probe_now(targets)
        down = [t for t in targets if not results[t.pk].success]
        up = len(targets) - len(down)
        summary = ngettext("%(n)d target probed: %(up)d up", "%(n)d targets probed: %(up)d up", len(targets)) % {
            "n": len(targets),
            "up": up,
        }
        if down:
            details = "; ".join(f"{t.name}: {results[t.pk].error}" for t in down)
            self.message_user(request, f"{summary}, {len(down)} down ({details}).", messages.WARNING)
        else:
            self.message_user(request, f"{summary}.", messages.SUCCESS)
