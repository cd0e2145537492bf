from __future__ import annotations

from django.urls import path

from monitoring import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("api/v1/metrics", views.push_metrics, name="push_metrics"),
]
