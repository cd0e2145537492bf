"""The Threshold admin as anonymous, plain user and staff."""

from __future__ import annotations

import pytest
from django.test import Client

from monitoring.models import Series, Threshold

pytestmark = pytest.mark.django_db

LIST = "/admin/monitoring/threshold/"
ADD = "/admin/monitoring/threshold/add/"


def form(**overrides: str) -> dict[str, str]:
    data = {
        "metric": "system_load1",
        "labels": "{}",
        "enabled": "on",
        "description": "",
        "direction": "above",
        "warning": "4",
        "critical": "8",
        "clear": "",
        "for_duration": "5m",
        "channels": "[]",
    }
    data.update(overrides)
    return data


def test_anonymous_is_sent_to_the_login_page():
    response = Client().get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_plain_user_is_refused(plain_client):
    assert plain_client.get(LIST).status_code == 403
    assert plain_client.post(ADD, form()).status_code == 403
    assert not Threshold.objects.filter(metric="system_load1").exists()


def test_staff_see_the_levels_and_direction_in_the_list(staff_client):
    response = staff_client.get(LIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert "system_cpu_usage_percent" in page
    assert "70.0" in page and "85.0" in page
    assert "above (higher is worse)" in page


def test_the_list_shows_what_the_series_a_threshold_decides_look_like(staff_client):
    Series.objects.create(
        name="system_cpu_usage_percent", labels={"host": "a"}, labels_key='{"host":"a"}', status="critical"
    )
    page = staff_client.get(LIST).content.decode()
    assert "1 series" in page and "critical" in page


def test_staff_can_add_a_threshold_with_a_yaml_style_duration(staff_client):
    response = staff_client.post(ADD, form(labels='{"host": "db1"}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    threshold = Threshold.objects.get(metric="system_load1")
    assert (threshold.warning, threshold.critical, threshold.labels) == (4, 8, {"host": "db1"})
    assert threshold.for_duration.total_seconds() == 300
    assert threshold.labels_key == '{"host":"db1"}'


def test_saving_a_threshold_for_an_unheard_of_metric_warns_of_a_typo(staff_client):
    response = staff_client.post(ADD, form(metric="system_load_1"), follow=True)
    assert Threshold.objects.filter(metric="system_load_1").exists()
    page = response.content.decode()
    assert "Check the spelling of “system_load_1”: it is not a metric the portal collects" in page


def test_a_built_in_or_reported_metric_saves_without_a_warning(staff_client):
    Series.objects.create(name="shop_orders_pending", labels={"host": "a"}, labels_key='{"host":"a"}')
    for metric in ("system_load1", "shop_orders_pending"):
        response = staff_client.post(ADD, form(metric=metric), follow=True)
        assert "not a metric the portal collects" not in response.content.decode()


def test_an_invalid_threshold_shows_the_field_error_and_creates_nothing(staff_client):
    response = staff_client.post(ADD, form(warning="8", critical="4"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"critical": ["must be above warning (8)"]}
    assert "must be above warning (8)" in response.content.decode()
    assert not Threshold.objects.filter(metric="system_load1").exists()


def test_a_duplicate_threshold_is_refused_on_labels(staff_client):
    response = staff_client.post(ADD, form(metric="system_cpu_usage_percent", warning="50", critical="60"))
    assert response.status_code == 200
    assert "labels" in response.context["adminform"].form.errors
    assert Threshold.objects.get(metric="system_cpu_usage_percent").warning == 70


def test_a_malformed_duration_is_refused_on_its_field(staff_client):
    response = staff_client.post(ADD, form(for_duration="five minutes"))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["for_duration"]


def test_the_disable_action_reports_what_it_did(staff_client):
    ids = list(Threshold.objects.values_list("pk", flat=True)[:2])
    response = staff_client.post(LIST, {"action": "disable", "_selected_action": [str(i) for i in ids]}, follow=True)
    assert "2 thresholds disabled." in response.content.decode()
    assert not Threshold.objects.filter(pk__in=ids, enabled=True).exists()


def test_the_change_page_shows_the_duration_as_written_in_yaml(staff_client):
    import datetime as dt

    threshold = Threshold.objects.get(metric="system_cpu_usage_percent")
    threshold.for_duration = dt.timedelta(seconds=90)
    threshold.save()
    page = staff_client.get(f"{LIST}{threshold.pk}/change/").content.decode()
    assert 'value="1m30s"' in page
