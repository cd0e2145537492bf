"""Series browser (read-only) and retention settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from monitoring import reads
from monitoring.models import Retention, Series

STATUS_COLOURS: dict[str, str] = {
    Series.Status.HEALTHY: "#1b7f3b",
    Series.Status.WARNING: "#b26a00",
    Series.Status.CRITICAL: "#b00020",
    Series.Status.UNKNOWN: "#6b6b6b",
    Series.Status.STALE: "#6b4fa0",
}
#: Span of the list's sparklines, and how many points each has.
SPARKLINE_SPAN = dt.timedelta(hours=1)
SPARKLINE_POINTS = 60
#: Hosts listed in the filter; beyond that, search or filter by URL.
MAX_HOSTS_IN_FILTER = 200


class HostFilter(admin.SimpleListFilter):
    """Filter series by the host that reports them."""

    title = _("host")
    parameter_name = "host"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        hosts = Series.objects.order_by("host").values_list("host", flat=True).distinct()[:MAX_HOSTS_IN_FILTER]
        return [(host, host or _("(none)")) for host in hosts]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Series]) -> QuerySet[Series]:
        value = self.value()
        return queryset if value is None else queryset.filter(host=value)


class SeriesChangeList(ChangeList):
    """Change list that reads the last hour of every series on the page in one batch."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        now = timezone.now()
        points = reads.range_read(
            [s.pk for s in self.result_list], now - SPARKLINE_SPAN, now, max_points=SPARKLINE_POINTS, now=now
        )
        for series in self.result_list:
            series.sparkline_points = points.get(series.pk, [])


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    """Browse series: latest value, status and the last hour at a glance. View only."""

    list_display = ("name", "label_text", "host", "latest", "status_badge", "last_hour", "last_at", "history_link")
    list_filter = (HostFilter, "status")
    search_fields = ("name",)
    ordering = ("name", "labels_key")
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = ("created_at", "last_day")
    fieldsets = (
        (None, {"fields": ("name", "labels", "host", "kind", "interval_seconds", "created_at")}),
        (
            _("Latest value"),
            {
                "fields": ("last_value", "last_at", "last_day"),
                "description": _("From the series' latest-value cache; the chart reads rollups."),
            },
        ),
        (
            _("Threshold state"),
            {
                "fields": ("status", "status_since", "breach_level", "breach_since"),
                "description": _("Maintained by the status evaluation from the thresholds."),
            },
        ),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SeriesChangeList

    @admin.display(description=_("labels"))
    def label_text(self, obj: Series) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(obj.labels.items()) if k != "host") or "—"

    @admin.display(description=_("latest value"), ordering="last_value")
    def latest(self, obj: Series) -> str:
        return "—" if obj.last_value is None else f"{obj.last_value:g}"

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Series) -> SafeString:
        colour = STATUS_COLOURS.get(obj.status, "#6b6b6b")
        return format_html(
            '<span style="display:inline-block;width:.7em;height:.7em;border-radius:50%;background:{}"></span> '
            '<span style="color:{}">{}</span>',
            colour,
            colour,
            obj.get_status_display(),
        )

    @admin.display(description=_("last hour"))
    def last_hour(self, obj: Series) -> SafeString:
        return reads.sparkline_svg(getattr(obj, "sparkline_points", []))

    @admin.display(description=_("history"))
    def history_link(self, obj: Series) -> SafeString:
        return format_html('<a href="{}">{}</a>', reverse("series-history", args=[obj.pk]), _("chart"))

    def view_on_site(self, obj: Series) -> str:
        return reverse("series-history", args=[obj.pk])

    @admin.display(description=_("last 24 hours"))
    def last_day(self, obj: Series) -> SafeString:
        now = timezone.now()
        points = reads.range_read([obj.pk], now - dt.timedelta(days=1), now, max_points=288, now=now)
        return reads.sparkline_svg(points[obj.pk], width=480, height=80)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Retention)
class RetentionAdmin(admin.ModelAdmin):
    """How long each resolution is kept; the three rows are installed after migrate."""

    list_display = ("resolution_name", "keep")
    ordering = ("resolution",)
    readonly_fields = ("resolution",)
    fields = ("resolution", "keep")

    @admin.display(description=_("resolution"), ordering="resolution")
    def resolution_name(self, obj: Retention) -> str:
        return str(obj.get_resolution_display())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
