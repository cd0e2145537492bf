from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from opsportal import history, public_status, views

admin.site.site_header = "OpsPortal"
admin.site.site_title = "OpsPortal"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="status", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("status/", views.status_page, name="status"),
    path("status/public/", public_status.public_status_page, name="public-status"),
    path("status/series/<int:series_id>/", history.history_page, name="series-history"),
    path("status/series/<int:series_id>/history.json", history.history_json, name="series-history-json"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]
