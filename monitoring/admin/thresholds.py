"""Thresholds: where warning and critical start, per metric and optional label match."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.dateparse import parse_duration as parse_django_duration
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from monitoring import status
from monitoring.durations import HINT, format_duration, parse_duration
from monitoring.models import Series, Threshold
from monitoring.models.thresholds import unknown_metrics

STATUS_COLOURS = {
    status.HEALTHY: "#1b7f3b",
    status.WARNING: "#b26a00",
    status.CRITICAL: "#b00020",
    status.UNKNOWN: "#6b6b6b",
    status.STALE: "#6b4fa0",
}


class DurationTextField(forms.Field):
    """A duration written as operators write it in YAML (``1m``, ``1h30m``); ``HH:MM:SS`` works too."""

    widget = forms.TextInput(attrs={"size": 12, "placeholder": "0s"})
    default_error_messages = {"invalid": _("Enter %(hint)s.") % {"hint": HINT}}

    def to_python(self, value: Any) -> dt.timedelta | None:
        if value in self.empty_values:
            return None
        if isinstance(value, dt.timedelta):
            return value
        text = str(value).strip()
        try:
            return parse_duration(text)
        except ValueError:
            parsed = parse_django_duration(text)
            if parsed is None:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
            return parsed

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dt.timedelta):
            return format_duration(value) if value >= dt.timedelta(0) else str(value)
        return value


class ThresholdForm(forms.ModelForm):
    for_duration = DurationTextField(
        label=_("for"),
        required=False,
        help_text=_("How long a breach must last before the status changes, e.g. 30s, 5m, 1h30m. Empty: at once."),
    )

    class Meta:
        model = Threshold
        fields = (
            "metric",
            "labels",
            "enabled",
            "description",
            "direction",
            "warning",
            "critical",
            "clear",
            "for_duration",
            "channels",
        )
        help_texts = {
            "warning": _("The series shows warning at or beyond this value (≥ for “above”, ≤ for “below”)."),
            "critical": _("The series shows critical at or beyond this value; must be beyond warning."),
            "direction": _("Whether higher values are worse (CPU, disk) or lower ones (free space, TLS days left)."),
            "metric": _("A metric name, e.g. system_cpu_usage_percent or a pushed metric's name."),
            "enabled": _("A disabled threshold is ignored; the next most specific one decides."),
        }

    def clean_for_duration(self) -> dt.timedelta:
        return self.cleaned_data.get("for_duration") or dt.timedelta(0)


class MetricFilter(admin.SimpleListFilter):
    """Filter thresholds by metric (only metrics that have thresholds are listed)."""

    title = _("metric")
    parameter_name = "metric"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        metrics = Threshold.objects.order_by("metric").values_list("metric", flat=True).distinct()
        return [(m, m) for m in metrics]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Threshold]) -> QuerySet[Threshold]:
        value = self.value()
        return queryset if value is None else queryset.filter(metric=value)


class ScopeFilter(admin.SimpleListFilter):
    """Thresholds for every series of a metric, or only those with given labels."""

    title = _("scope")
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("all", _("every series of the metric")), ("labels", _("series with given labels"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Threshold]) -> QuerySet[Threshold]:
        if self.value() == "all":
            return queryset.filter(labels_key="{}")
        if self.value() == "labels":
            return queryset.exclude(labels_key="{}")
        return queryset


class ThresholdChangeList(ChangeList):
    """Change list that works out, for the thresholds on the page, which series each one decides."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        metrics = {t.metric for t in self.result_list}
        index = status.ThresholdIndex.load()
        decided: dict[int, list[str]] = {}
        rows = Series.objects.filter(name__in=metrics).values_list("name", "labels", "status")
        for name, labels, series_status in rows.iterator(chunk_size=2000):
            threshold_id = index.threshold_id_for(name, labels or {})
            if threshold_id is not None:
                decided.setdefault(threshold_id, []).append(series_status)
        for threshold in self.result_list:
            threshold.decided_statuses = decided.get(threshold.pk, [])


@admin.register(Threshold)
class ThresholdAdmin(admin.ModelAdmin):
    """Edit thresholds; the list shows the levels and what the series they decide look like now."""

    form = ThresholdForm
    list_display = (
        "metric",
        "label_match",
        "direction",
        "warning",
        "critical",
        "clear",
        "for_text",
        "enabled",
        "series",
    )
    list_display_links = ("metric", "label_match")
    list_filter = ("enabled", "direction", ScopeFilter, MetricFilter)
    search_fields = ("metric", "description")
    ordering = ("metric", "labels_key")
    actions = ("enable", "disable")
    save_on_top = True
    fieldsets = (
        (
            None,
            {
                "fields": ("metric", "labels", "enabled", "description"),
                "description": _(
                    "A threshold covers every series of its metric whose labels include the given ones. "
                    "When several cover a series, the one with the most labels decides."
                ),
            },
        ),
        (
            _("Levels"),
            {
                "fields": ("direction", "warning", "critical", "clear", "for_duration"),
                "description": _(
                    "Set warning, critical or both. “Clear at” adds hysteresis: a breached series turns healthy "
                    "only once its value is back past it. A series with no sample for three of its intervals "
                    "is stale whatever its value."
                ),
            },
        ),
        (
            _("Notifications"),
            {
                "fields": ("channels",),
                "description": _(
                    'Names of the notification channels alerts from this threshold go to, e.g. ["ops-hook"].'
                ),
            },
        ),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ThresholdChangeList

    @admin.display(description=_("labels"), ordering="labels_key")
    def label_match(self, obj: Threshold) -> Any:
        if not obj.labels:
            return _("(every series)")
        return ", ".join(f"{k}={v}" for k, v in sorted(obj.labels.items()))

    @admin.display(description=_("for"), ordering="for_duration")
    def for_text(self, obj: Threshold) -> str:
        return format_duration(obj.for_duration) if obj.for_duration else "—"

    @admin.display(description=_("series decided"))
    def series(self, obj: Threshold) -> str:
        statuses: list[str] = getattr(obj, "decided_statuses", [])
        if not statuses:
            return "—"
        worst = status.worst(statuses)
        return format_html(
            '{} · <strong style="color:{}">{}</strong>',
            ngettext("%(n)d series", "%(n)d series", len(statuses)) % {"n": len(statuses)},
            STATUS_COLOURS.get(worst, "#6b6b6b"),
            Series.Status(worst).label if worst in Series.Status.values else worst,
        )

    def save_model(self, request: HttpRequest, obj: Threshold, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if unknown_metrics([obj.metric]):
            self.message_user(
                request,
                _(
                    "Check the spelling of “%(metric)s”: it is not a metric the portal collects and no series "
                    "has that name yet. The threshold applies as soon as a series with this name reports."
                )
                % {"metric": obj.metric},
                messages.WARNING,
            )

    @admin.action(description=_("Enable selected thresholds"))
    def enable(self, request: HttpRequest, queryset: QuerySet[Threshold]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description=_("Disable selected thresholds"))
    def disable(self, request: HttpRequest, queryset: QuerySet[Threshold]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Threshold], enabled: bool) -> None:
        # save() one by one (a handful of rows) so updated_at moves and signals (audit) fire.
        count = 0
        for threshold in queryset.exclude(enabled=enabled):
            threshold.enabled = enabled
            threshold.save(update_fields=["enabled", "updated_at"])
            count += 1
        word = _("enabled") if enabled else _("disabled")
        self.message_user(
            request,
            ngettext("%(n)d threshold %(word)s.", "%(n)d thresholds %(word)s.", count) % {"n": count, "word": word},
            messages.SUCCESS,
        )
