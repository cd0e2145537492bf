from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from monitoring.models import ProcessHeartbeat


@admin.register(ProcessHeartbeat)
class ProcessHeartbeatAdmin(admin.ModelAdmin):
    """Read-only view of which beat and worker processes are alive, per host."""

    list_display = ("role", "host", "pid", "node", "queues", "started_at", "last_seen", "state")
    list_filter = ("role", "host")
    ordering = ("role", "host", "pid")

    @admin.display(description=_("state"))
    def state(self, obj: ProcessHeartbeat) -> str:
        stale = timezone.now() - obj.last_seen > dt.timedelta(seconds=settings.LIVENESS_STALE_SECONDS)
        colour, word = ("#b00020", _("stale")) if stale else ("#1b7f3b", _("alive"))
        return format_html('<strong style="color:{}">{}</strong>', colour, word)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
