"""Series browser and retention admin, tried as anonymous, plain user and staff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitoring.models import Retention, Series
from monitoring.storage import Reading, record, series_cache

URL = "/admin/monitoring/series/"


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


def recent(name: str, values: list[float], host: str = "web-1", **labels: str) -> Series:
    """Record ``values`` over the last few minutes, the last one now."""
    now = timezone.now()
    n = len(values)
    record(
        [Reading(name, v, labels, ts=now - dt.timedelta(seconds=30 * (n - 1 - i))) for i, v in enumerate(values)],
        host=host,
        now=now,
    )
    return Series.objects.get(name=name, host=host)


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page():
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_logged_in_non_staff_get_403(plain_client):
    assert plain_client.get(URL).status_code == 403


def test_staff_see_each_series_with_its_latest_value_status_and_sparkline(staff_client):
    recent("system_cpu_usage_percent", [10.0, 30.0, 42.5])
    disk = recent("system_disk_usage_percent", [91.0], host="db-1", mount="/data")
    Series.objects.filter(pk=disk.pk).update(status=Series.Status.CRITICAL)

    response = staff_client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "system_cpu_usage_percent" in page and "42.5" in page
    assert "system_disk_usage_percent" in page and "mount=/data" in page and "91" in page
    assert "critical" in page and "#b00020" in page
    assert page.count('class="sparkline"') == 2
    assert "<polyline" in page, "three readings draw a line"
    assert reverse("admin:monitoring_series_add") not in page


def test_filters_by_host_and_status_and_search_by_metric(staff_client):
    recent("system_cpu_usage_percent", [1.0], host="web-1")
    recent("system_load1", [2.0], host="db-1")
    Series.objects.filter(host="db-1").update(status=Series.Status.WARNING)

    by_host = staff_client.get(URL, {"host": "db-1"}).content.decode()
    assert "system_load1" in by_host and "system_cpu_usage_percent" not in by_host
    assert "web-1" in by_host, "the host filter lists every host"

    by_status = staff_client.get(URL, {"status__exact": "warning"}).content.decode()
    assert "system_load1" in by_status and "system_cpu_usage_percent" not in by_status

    searched = staff_client.get(URL, {"q": "cpu"}).content.decode()
    assert "system_cpu_usage_percent" in searched and "system_load1" not in searched


def test_the_list_reads_sparklines_in_one_batch_whatever_the_page_size(staff_client):
    for i in range(3):
        recent("system_load1", [1.0, 2.0], host=f"web-{i}")
    staff_client.get(URL)  # warm caches (session, content types)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(URL)
    for i in range(3, 12):
        recent("system_load1", [1.0, 2.0], host=f"web-{i}")
    with CaptureQueriesContext(connection) as many:
        response = staff_client.get(URL)

    assert response.content.decode().count('class="sparkline"') == 12
    assert len(many) == len(few)


def test_series_are_view_only(staff_client):
    series = recent("system_load1", [3.0])

    detail = staff_client.get(reverse("admin:monitoring_series_change", args=[series.pk]))
    assert detail.status_code == 200 and "system_load1" in detail.content.decode()

    staff_client.post(reverse("admin:monitoring_series_change", args=[series.pk]), {"name": "renamed"})
    assert Series.objects.get(pk=series.pk).name == "system_load1"
    assert staff_client.get(reverse("admin:monitoring_series_add")).status_code == 403
    assert staff_client.get(reverse("admin:monitoring_series_delete", args=[series.pk])).status_code == 403


def test_staff_edit_a_keep_period_but_cannot_add_or_delete_one(staff_client):
    raw = Retention.objects.get(resolution=Retention.Resolution.RAW)
    url = reverse("admin:monitoring_retention_change", args=[raw.pk])

    response = staff_client.post(url, {"keep": "12:00:00"})

    assert response.status_code == 302
    assert Retention.objects.get(pk=raw.pk).keep == dt.timedelta(hours=12)
    assert staff_client.get(reverse("admin:monitoring_retention_add")).status_code == 403
    assert staff_client.get(reverse("admin:monitoring_retention_delete", args=[raw.pk])).status_code == 403
    listing = staff_client.get(reverse("admin:monitoring_retention_changelist")).content.decode()
    assert "raw samples" in listing and "1 hour rollups" in listing
