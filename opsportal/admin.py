"""Admin of the portal's own settings: the components of the public status page."""

from __future__ import annotations

from django.contrib import admin
from django.core.cache import cache
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from opsportal.models import PublicComponent
from opsportal.public_status import CACHE_KEY


@admin.register(PublicComponent)
class PublicComponentAdmin(admin.ModelAdmin):
    """Opt components into the public status page and say what each reflects."""

    list_display = ("name", "order", "enabled", "reflects")
    list_editable = ("order", "enabled")
    list_filter = ("enabled",)
    search_fields = ("name", "metric")
    filter_horizontal = ("alert_rules", "thresholds")
    fieldsets = (
        (
            _("Shown to the public"),
            {
                "fields": ("name", "description", "order", "enabled"),
                "description": _(
                    "Only the name, the description, the state and incident start/end times are published."
                ),
            },
        ),
        (
            _("What the state reflects"),
            {
                "fields": ("metric", "labels", "alert_rules", "thresholds"),
                "description": _(
                    "A metric (worst status of its matching series) and/or alert rules and thresholds "
                    "(down while one of their critical alerts fires). None of this is shown to the public."
                ),
            },
        ),
    )

    @admin.display(description=_("reflects"))
    def reflects(self, obj: PublicComponent) -> str:
        parts = []
        if obj.metric:
            match = ", ".join(f"{k}={v}" for k, v in sorted((obj.labels or {}).items()))
            parts.append(f"{obj.metric}{{{match}}}" if match else obj.metric)
        rules = len(obj.alert_rules.all())
        thresholds = len(obj.thresholds.all())
        if rules:
            parts.append(str(_("%(n)d rule(s)") % {"n": rules}))
        if thresholds:
            parts.append(str(_("%(n)d threshold(s)") % {"n": thresholds}))
        return "; ".join(parts) or "—"

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("alert_rules", "thresholds")

    def save_related(self, request, form, formsets, change):  # type: ignore[no-untyped-def]
        super().save_related(request, form, formsets, change)
        cache.delete(CACHE_KEY)  # the public page shows the edit now, not after its cache expires

    def delete_model(self, request, obj):  # type: ignore[no-untyped-def]
        super().delete_model(request, obj)
        cache.delete(CACHE_KEY)

    def delete_queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        super().delete_queryset(request, queryset)
        cache.delete(CACHE_KEY)

    def view_on_site(self, obj: PublicComponent) -> str:
        return reverse("public-status")
