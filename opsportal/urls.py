from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from opsportal import views

admin.site.site_header = "OpsPortal"
admin.site.site_title = "OpsPortal"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="status", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("status/", views.status_page, name="status"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
]
