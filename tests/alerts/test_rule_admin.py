"""The alert rule and alert admin, tried as anonymous, plain user, staff without rights and admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from alerts import engine
from alerts.models import Alert, AlertRule
from monitoring.storage import Reading, record, series_cache
from tests.alerts.delivery_helpers import make_channel

pytestmark = pytest.mark.django_db

RULES = "/admin/alerts/alertrule/"
ALERTS = "/admin/alerts/alert/"


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


def rule_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "High CPU",
        "enabled": "on",
        "severity": "critical",
        "expr": "avg_over_time(system_cpu_usage_percent[5m]) > 85",
        "for_duration": "2m",
        "keep_firing_for": "",
        "repeat_interval": "1h",
        "summary": "CPU at {{ $value }} on {{ $labels.host }}",
        "runbook": "Find the top processes.",
        "labels": '{"team": "ops"}',
    }
    data.update(overrides)
    return data


def test_rule_and_alert_pages_are_for_staff_with_rights_only(client: Client, plain_client: Client, staff_user) -> None:  # type: ignore[no-untyped-def]
    rule = AlertRule.objects.create(name="r", expr="x > 1")
    alert = Alert.objects.create(
        name="r", rule=rule, fingerprint="f", labels={}, severity="warning", state="firing", active_since=timezone.now()
    )
    staff = Client()
    staff.force_login(staff_user)
    for url in (RULES, f"{RULES}add/", f"{RULES}{rule.pk}/change/", ALERTS, f"{ALERTS}{alert.pk}/change/"):
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/"), url
        assert plain_client.get(url).status_code == 403, url
        assert staff.get(url).status_code == 403, url


def test_an_invalid_expression_is_a_field_error_with_its_column_and_nothing_is_saved(staff_client: Client) -> None:
    response = staff_client.post(f"{RULES}add/", rule_data(expr="avg_over_time(system_cpu_usage_percent[5m] > 85"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["expr"]
    assert "column" in errors["expr"][0] and "expected" in errors["expr"][0]
    assert "column" in response.content.decode()
    assert AlertRule.objects.count() == 0


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('id')", "(" * 10_000 + "1" + ")" * 10_000, "x" * 1_000_000, "cpu.__class__ > 1"],
)
def test_hostile_expressions_are_refused_with_a_message(staff_client: Client, text: str) -> None:
    response = staff_client.post(f"{RULES}add/", rule_data(expr=text))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["expr"]
    assert AlertRule.objects.count() == 0


def test_bad_labels_and_durations_name_their_field(staff_client: Client) -> None:
    response = staff_client.post(f"{RULES}add/", rule_data(labels='{"bad-key": "x"}', for_duration="5 minutes"))
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"labels", "for_duration"}
    assert AlertRule.objects.count() == 0


def test_saving_a_rule_stores_it_and_kicks_an_evaluation(
    staff_client: Client, monkeypatch, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    kicks: list[int] = []
    monkeypatch.setattr(engine, "kick", lambda: kicks.append(1))
    hook = make_channel("ops-hook")
    make_channel("other")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"{RULES}add/", rule_data(channels=[str(hook.pk)]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = AlertRule.objects.get()
    assert rule.for_duration == dt.timedelta(minutes=2)
    assert rule.keep_firing_for == dt.timedelta(0)
    assert rule.repeat_interval == dt.timedelta(hours=1)
    assert rule.labels == {"team": "ops"}
    assert list(rule.channels.values_list("name", flat=True)) == ["ops-hook"]
    assert kicks == [1]


def test_the_preview_says_no_data_for_a_metric_nobody_records(staff_client: Client) -> None:
    rule = AlertRule.objects.create(name="Ghost", expr="no_such_metric > 1")
    page = staff_client.get(f"{RULES}{rule.pk}/change/").content.decode()
    assert "no data" in page


def test_the_preview_lists_what_the_expression_returns_now(staff_client: Client) -> None:
    now = timezone.now()
    record([Reading("system_disk_usage_percent", 97.5, {"mount": "/data"}, ts=now)], host="web-1", now=now)
    record([Reading("system_disk_usage_percent", 20, {"mount": "/"}, ts=now)], host="web-1", now=now)
    rule = AlertRule.objects.create(name="Disk", expr="system_disk_usage_percent > 90")
    page = staff_client.get(f"{RULES}{rule.pk}/change/").content.decode()
    assert "1 series would fire" in page
    assert "97.5" in page and "/data" in page
    assert "mount=&quot;/&quot;" not in page


def test_the_list_shows_failing_rules_and_open_alerts(staff_client: Client) -> None:
    AlertRule.objects.create(name="Broken", expr="x > 1", last_error="several series on the right of '>'")
    ok = AlertRule.objects.create(name="Fine", expr="y > 1")
    now = timezone.now()
    Alert.objects.create(
        name="Fine", rule=ok, fingerprint="f", labels={}, severity="warning", state="firing", active_since=now
    )
    page = staff_client.get(RULES).content.decode()
    assert "failing" in page
    failing = staff_client.get(f"{RULES}?evaluation=failing").content.decode()
    assert "Broken" in failing and "Fine" not in failing
    assert f"?rule__id__exact={ok.pk}&amp;open=yes" in page


def test_alerts_are_read_only_with_their_transitions(staff_client: Client) -> None:
    hook = make_channel("ops-hook")
    rule = AlertRule.objects.create(name="High CPU", expr="system_cpu_usage_percent > 85", severity="critical")
    rule.channels.set([hook])
    now = timezone.now()
    record([Reading("system_cpu_usage_percent", 99, ts=now)], host="web-1", now=now)
    engine.run(now=now, publish=False)
    alert = Alert.objects.get()

    listing = staff_client.get(ALERTS)
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "High CPU" in text and "host=web-1" in text and "99" in text
    assert f"{ALERTS}add/" not in text
    assert staff_client.get(f"{ALERTS}?open=yes&severity=critical").context["cl"].result_count == 1
    assert staff_client.get(f"{ALERTS}?open=no").context["cl"].result_count == 0

    page = staff_client.get(f"{ALERTS}{alert.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "expression true (value 99)" in body  # the firing transition's cause
    assert 'name="_save"' not in body
    assert staff_client.post(f"{ALERTS}{alert.pk}/change/", {}).status_code == 403
    assert staff_client.post(f"{ALERTS}{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Alert.objects.filter(pk=alert.pk).exists()
