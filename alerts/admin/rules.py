"""Alert rules in the admin: the expression checked on save, and a preview of what it returns now."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import DatabaseError, transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from alerts import engine
from alerts.models import Alert, AlertRule
from alerts.rules import RuleError
from monitoring.admin.thresholds import DurationTextField
from monitoring.durations import format_duration

#: Series a preview lists at most (the count says how many there are).
PREVIEW_ROWS = 20
SEVERITY_COLOURS = {"info": "#417690", "warning": "#b26a00", "critical": "#b00020", "emergency": "#6a0dad"}


class AlertRuleForm(forms.ModelForm):
    for_duration = DurationTextField(
        label=_("for"),
        required=False,
        help_text=_("How long the expression must hold before the alert fires, e.g. 0s, 30s, 5m. Empty: at once."),
    )
    keep_firing_for = DurationTextField(
        label=_("keep firing for"),
        required=False,
        help_text=_("Keep a firing alert open this long after the expression turns false (damps flapping)."),
    )
    repeat_interval = DurationTextField(
        label=_("repeat interval"),
        required=False,
        help_text=_("Announce a still-firing alert again this often, e.g. 4h. 0s: never."),
    )

    class Meta:
        model = AlertRule
        fields = (
            "name",
            "enabled",
            "severity",
            "expr",
            "for_duration",
            "keep_firing_for",
            "channels",
            "repeat_interval",
            "summary",
            "runbook",
            "labels",
        )
        widgets = {
            "expr": forms.Textarea(attrs={"rows": 3, "cols": 90, "spellcheck": "false", "class": "vLargeTextField"}),
            "channels": forms.CheckboxSelectMultiple,
        }
        help_texts = {
            "expr": _(
                "Rule language, e.g. avg_over_time(system_cpu_usage_percent[5m]) > 85 and system_load1 > 4. "
                "Each series the expression returns is its own alert (its labels identify it)."
            ),
            "summary": _("One line for the notification; {{ $value }} and {{ $labels.host }} are filled in."),
            "labels": _('Extra labels added to every alert of this rule, e.g. {"team": "ops"}.'),
        }

    def clean_for_duration(self) -> dt.timedelta:
        return self.cleaned_data.get("for_duration") or dt.timedelta(0)

    def clean_keep_firing_for(self) -> dt.timedelta:
        return self.cleaned_data.get("keep_firing_for") or dt.timedelta(0)

    def clean_repeat_interval(self) -> dt.timedelta:
        value = self.cleaned_data.get("repeat_interval")
        return AlertRule._meta.get_field("repeat_interval").default if value is None else value


class HealthFilter(admin.SimpleListFilter):
    title = _("evaluation")
    parameter_name = "evaluation"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("failing", _("failing")), ("ok", _("evaluates"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> QuerySet[AlertRule]:
        if self.value() == "failing":
            return queryset.exclude(last_error="")
        if self.value() == "ok":
            return queryset.filter(last_error="")
        return queryset


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = (
        "name",
        "severity_badge",
        "expression",
        "for_text",
        "channel_names",
        "open_alerts",
        "enabled",
        "health",
    )
    list_filter = ("enabled", "severity", HealthFilter, "channels")
    search_fields = ("name", "expr", "summary")
    ordering = ("name",)
    actions = ("enable", "disable")
    save_on_top = True
    readonly_fields = ("preview", "last_error", "last_error_at")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "severity")}),
        (
            _("Condition"),
            {
                "fields": ("expr", "for_duration", "keep_firing_for", "preview"),
                "description": _(
                    "The expression is checked when you save; the preview shows what the saved expression returns "
                    "right now. Save and continue editing to preview a change."
                ),
            },
        ),
        (
            _("Notification"),
            {
                "fields": ("channels", "repeat_interval", "summary", "runbook", "labels"),
                "description": _(
                    "Alerts of this rule go to these channels only. A rule without channels shows its alerts on the "
                    "status page and in the admin, and sends nothing."
                ),
            },
        ),
        (_("Evaluation"), {"fields": ("last_error", "last_error_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRule]:
        open_states = Q(alerts__state__in=(Alert.State.PENDING, Alert.State.FIRING, Alert.State.ACKNOWLEDGED))
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("alerts", filter=open_states, distinct=True))
            .prefetch_related("channels")
        )

    @admin.display(description=_("severity"), ordering="severity")
    def severity_badge(self, obj: AlertRule) -> SafeString:
        colour = SEVERITY_COLOURS.get(obj.severity, "#333")
        return format_html('<strong style="color:{}">{}</strong>', colour, obj.get_severity_display())

    @admin.display(description=_("expression"), ordering="expr")
    def expression(self, obj: AlertRule) -> SafeString:
        text = obj.expr if len(obj.expr) <= 80 else obj.expr[:79] + "…"
        return format_html("<code>{}</code>", text)

    @admin.display(description=_("for"), ordering="for_duration")
    def for_text(self, obj: AlertRule) -> str:
        return format_duration(obj.for_duration or dt.timedelta(0))

    @admin.display(description=_("channels"))
    def channel_names(self, obj: AlertRule) -> str:
        return ", ".join(c.name for c in obj.channels.all()) or "—"

    @admin.display(description=_("open alerts"), ordering="open_count")
    def open_alerts(self, obj: AlertRule) -> Any:
        count = getattr(obj, "open_count", 0)
        if not count:
            return "0"
        url = reverse("admin:alerts_alert_changelist") + f"?rule__id__exact={obj.pk}&open=yes"
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description=_("evaluation"), boolean=False)
    def health(self, obj: AlertRule) -> Any:
        if obj.last_error:
            return format_html('<span style="color:#b00020" title="{}">⚠ {}</span>', obj.last_error, _("failing"))
        return "✓"

    @admin.display(description=_("preview (now)"))
    def preview(self, obj: AlertRule) -> SafeString:
        if obj is None or not obj.pk:
            return format_html("<em>{}</em>", _("Save the rule to see what its expression returns right now."))
        now = timezone.now()
        try:
            results = engine.preview(obj.expr, now)
        except RuleError as error:
            return format_html('<span class="errornote">{}</span>', str(error))
        except DatabaseError:
            return format_html("<em>{}</em>", _("The series cannot be read right now."))
        if not results:
            return format_html(
                "<strong>{}</strong> — {}",
                _("no data"),
                _("no series matches now, or the comparison is false for every one (the rule would not fire)."),
            )
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            (
                (", ".join(f'{k}="{v}"' for k, v in sorted(r.labels.items())) or "{}", f"{r.value:g}")
                for r in results[:PREVIEW_ROWS]
            ),
        )
        more = ""
        if len(results) > PREVIEW_ROWS:
            more = format_html("<p>{}</p>", _("… and %(n)d more.") % {"n": len(results) - PREVIEW_ROWS})
        count = ngettext("%(n)d series would fire", "%(n)d series would fire", len(results)) % {"n": len(results)}
        return format_html(
            "<p>{} ({} {})</p><table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>{}",
            count,
            _("at"),
            now.strftime("%Y-%m-%d %H:%M:%S UTC"),
            _("labels"),
            _("value"),
            rows,
            more,
        )

    def save_model(self, request: HttpRequest, obj: AlertRule, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Evaluate at once rather than at the next tick (the periodic cycle would within 10 s anyway).
        transaction.on_commit(engine.kick)

    @admin.action(description=_("Enable selected rules"))
    def enable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description=_("Disable selected rules"))
    def disable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[AlertRule], enabled: bool) -> None:
        count = 0
        for rule in queryset.exclude(enabled=enabled):
            rule.enabled = enabled
            rule.save(update_fields=["enabled", "updated_at"])
            count += 1
        if count:
            transaction.on_commit(engine.kick)
        word = _("enabled") if enabled else _("disabled")
        self.message_user(
            request,
            ngettext("%(n)d rule %(word)s.", "%(n)d rules %(word)s.", count) % {"n": count, "word": word},
            messages.SUCCESS,
        )
