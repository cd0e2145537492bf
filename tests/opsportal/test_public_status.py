"""The public status page: opt-in, up/degraded/down, incidents, nothing internal, cacheable."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.lifecycle import fingerprint
from alerts.models import Alert, AlertRule
from monitoring.models import Series, Threshold
from monitoring.storage import Reading, record, series_cache
from opsportal import public_status
from opsportal.models import PublicComponent

PATH = "/status/public/"
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
#: Distinctive strings that must never reach the public page.
SECRET_HOST = "zz-secret-db-host-42"
SECRET_LABEL = "zz-mount-vault-777"
SECRET_EXPR = "zz_internal_latency_ms > 4242"
SECRET_VALUE = 98.7654


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.delete(public_status.CACHE_KEY)
    series_cache.clear()
    yield
    cache.delete(public_status.CACHE_KEY)
    series_cache.clear()


def series(metric: str, value: float, status: str, host: str = SECRET_HOST, **labels: str) -> Series:
    record([Reading(metric, value, labels)], host=host)
    found = next(
        s for s in Series.objects.filter(name=metric, host=host) if all(s.labels.get(k) == v for k, v in labels.items())
    )
    Series.objects.filter(pk=found.pk).update(status=status)
    return found


def alert(name: str, *, severity: str, start: dt.datetime, end: dt.datetime | None = None, **fields) -> Alert:
    labels = fields.pop("labels", {"host": SECRET_HOST})
    fields.setdefault("source", Alert.Source.RULE if "rule" in fields else Alert.Source.THRESHOLD)
    return Alert.objects.create(
        name=name,
        fingerprint=fingerprint(f"{name}{start.timestamp()}", labels),
        labels=labels,
        severity=severity,
        state=Alert.State.RESOLVED if end else Alert.State.FIRING,
        summary=f"{SECRET_HOST} is at {SECRET_VALUE}",
        value=SECRET_VALUE,
        active_since=start,
        fired_at=start,
        resolved_at=end,
        **fields,
    )


def component(name: str, **fields) -> PublicComponent:
    rules = fields.pop("alert_rules", [])
    thresholds = fields.pop("thresholds", [])
    made = PublicComponent.objects.create(name=name, **fields)
    made.alert_rules.set(rules)
    made.thresholds.set(thresholds)
    return made


def states(response) -> dict[str, str]:
    """Return component name → state word as the page shows it."""
    html = response.content.decode()
    found = re.findall(r'<li class="component" data-status="(\w+)">\s*<span><span class="name">([^<]+)</span>', html)
    return {name: status for status, name in found}


@pytest.mark.django_db
def test_no_enabled_component_is_a_404_for_anyone(client, staff_client):
    component("Website", enabled=False, metric="system_cpu_usage_percent")
    assert client.get(PATH).status_code == 404
    cache.delete(public_status.CACHE_KEY)
    assert staff_client.get(PATH).status_code == 404


@pytest.mark.django_db
def test_anonymous_and_plain_users_see_the_page_once_a_component_is_enabled(client, plain_client):
    series("system_cpu_usage_percent", 10, Series.Status.HEALTHY)
    component("Website", metric="system_cpu_usage_percent", description="Our public web site")

    for visitor in (client, plain_client):
        response = visitor.get(PATH)
        assert response.status_code == 200
        assert states(response) == {"Website": "up"}
        body = response.content.decode()
        assert "Our public web site" in body
        assert "All systems operational" in body
        assert "/admin/" not in body  # standalone: no staff navigation, no login link


@pytest.mark.django_db
def test_states_follow_the_worst_matching_series(client):
    series("db_up", 1, Series.Status.HEALTHY, mount=SECRET_LABEL)
    series("probe_success", 1, Series.Status.HEALTHY, host="api-1")
    series("probe_success", 1, Series.Status.STALE, host="api-2")
    series("system_disk_usage_percent", 95, Series.Status.CRITICAL, mount="/data")
    series("system_disk_usage_percent", 10, Series.Status.HEALTHY, mount="/")
    component("Database", metric="db_up", order=1)
    component("API", metric="probe_success", order=2)
    component("Storage", metric="system_disk_usage_percent", labels={"mount": "/data"}, order=3)
    component("Root disk", metric="system_disk_usage_percent", labels={"mount": "/"}, order=4)
    component("Nothing reported", metric="no_such_metric", order=5)

    response = client.get(PATH)

    assert states(response) == {
        "Database": "up",
        "API": "degraded",
        "Storage": "down",
        "Root disk": "up",
        "Nothing reported": "degraded",
    }
    assert "Partial outage" in response.content.decode()
    names = list(states(response))
    assert names == ["Database", "API", "Storage", "Root disk", "Nothing reported"]  # in the admin's order


@pytest.mark.django_db
def test_a_firing_critical_alert_of_a_rule_or_threshold_takes_the_component_down(client):
    now = timezone.now()
    rule = AlertRule.objects.create(name="checkout broken", expr=SECRET_EXPR, severity="critical")
    slow = AlertRule.objects.create(name="checkout slow", expr="zz_other > 1", severity="warning")
    threshold, _ = Threshold.objects.update_or_create(
        metric="probe_success", labels={"host": SECRET_HOST}, defaults={"critical": 0, "direction": "below"}
    )
    alert(rule.name, severity="critical", start=now - H, rule=rule, source=Alert.Source.RULE)
    alert(slow.name, severity="warning", start=now - H, rule=slow, source=Alert.Source.RULE)
    alert(str(threshold), severity="critical", start=now - 2 * H, source=Alert.Source.THRESHOLD)
    component("Checkout", alert_rules=[rule], order=1)
    component("Search", alert_rules=[slow], order=2)
    component("Probe", thresholds=[threshold], order=3)
    component("Quiet", alert_rules=[AlertRule.objects.create(name="quiet", expr="zz_q > 1")], order=4)

    response = client.get(PATH)

    assert states(response) == {"Checkout": "down", "Search": "degraded", "Probe": "down", "Quiet": "up"}
    assert "Partial outage" in response.content.decode()


@pytest.mark.django_db
def test_a_resolved_alert_leaves_the_component_up_but_is_listed_as_an_incident(client):
    now = timezone.now()
    rule = AlertRule.objects.create(name="checkout broken", expr=SECRET_EXPR, severity="critical")
    alert(rule.name, severity="critical", start=now - 3 * H, end=now - 2 * H, rule=rule, source=Alert.Source.RULE)
    alert(rule.name, severity="critical", start=now - 20 * D, end=now - 19 * D, rule=rule, source=Alert.Source.RULE)
    component("Checkout", alert_rules=[rule])

    response = client.get(PATH)
    body = response.content.decode()

    assert states(response) == {"Checkout": "up"}
    assert body.count('class="incident"') == 1  # the one of 20 days ago is too old
    assert (now - 3 * H).strftime("%Y-%m-%d %H:%M") in body
    assert (now - 2 * H).strftime("%Y-%m-%d %H:%M") in body


@pytest.mark.django_db
def test_alerts_of_many_hosts_at_once_are_one_incident_and_an_open_one_is_ongoing(client):
    now = timezone.now()
    series("probe_success", 0, Series.Status.CRITICAL, host="api-1")
    for host in ("api-1", "api-2", "api-3"):
        alert(f'probe_success{{host="{host}"}}', severity="critical", start=now - H, labels={"host": host})
    component("API", metric="probe_success")

    body = client.get(PATH).content.decode()

    assert body.count('class="incident"') == 1
    assert "ongoing" in body
    assert "Major outage" in body


@pytest.mark.django_db
def test_the_page_shows_no_hosts_labels_values_rule_names_or_expressions(client):
    now = timezone.now()
    series("system_disk_usage_percent", SECRET_VALUE, Series.Status.CRITICAL, mount=SECRET_LABEL)
    rule = AlertRule.objects.create(
        name="zz-rule-name-secret", expr=SECRET_EXPR, severity="critical", summary=f"{SECRET_HOST} down"
    )
    alert(rule.name, severity="critical", start=now - H, rule=rule, source=Alert.Source.RULE)
    alert(
        f'system_disk_usage_percent{{host="{SECRET_HOST}",mount="{SECRET_LABEL}"}}',
        severity="critical",
        start=now - 2 * H,
        end=now - H,
        labels={"host": SECRET_HOST, "mount": SECRET_LABEL},
    )
    component("Storage", metric="system_disk_usage_percent", labels={"host": SECRET_HOST}, alert_rules=[rule])

    response = client.get(PATH)
    body = response.content.decode()

    assert response.status_code == 200
    assert states(response) == {"Storage": "down"}
    assert body.count('class="incident"') == 1  # two adjacent alert periods, one incident
    for secret in (
        SECRET_HOST,
        SECRET_LABEL,
        SECRET_EXPR,
        "zz_internal_latency_ms",
        "zz-rule-name-secret",
        "system_disk_usage_percent",
        "98.76",
        "mount",
    ):
        assert secret not in body, secret


@pytest.mark.django_db
def test_the_page_is_cacheable_and_served_from_the_cache_for_a_while(client):
    series("db_up", 1, Series.Status.HEALTHY)
    component("Database", metric="db_up")

    first = client.get(PATH)
    assert "public" in first["Cache-Control"]
    assert "max-age=30" in first["Cache-Control"]
    assert "Set-Cookie" not in first
    assert "Cookie" not in first.get("Vary", "")

    Series.objects.filter(name="db_up").update(status=Series.Status.CRITICAL)
    with CaptureQueriesContext(connection) as queries:
        again = client.get(PATH)
    assert states(again) == {"Database": "up"}  # the cached rendering
    assert len(queries) == 0

    cache.delete(public_status.CACHE_KEY)  # as if the 15 s had passed
    assert states(client.get(PATH)) == {"Database": "down"}


@pytest.mark.django_db
def test_rendering_costs_the_same_queries_for_one_or_many_components():
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            public_status.render_public_status()
        return len(queries)

    rule = AlertRule.objects.create(name="r", expr="x > 1", severity="critical")
    component("One", metric="db_up", alert_rules=[rule])
    one = count()
    for i in range(10):
        series(f"metric_{i}", 1, Series.Status.HEALTHY)
        component(f"C{i}", metric=f"metric_{i}", alert_rules=[rule])
        alert(f"m{i}", severity="critical", start=timezone.now() - H, rule=rule, source=Alert.Source.RULE)

    assert count() == one


@pytest.mark.django_db
def test_head_is_answered_and_post_refused(client):
    component("Database", metric="db_up")
    assert client.head(PATH).status_code == 200
    assert client.post(PATH).status_code == 405


@pytest.mark.django_db
def test_opting_a_component_in_from_the_admin_shows_it_at_once(client, staff_client):
    assert client.get(PATH).status_code == 404  # cached: nothing enabled yet

    assert staff_client.get("/admin/opsportal/publiccomponent/add/").status_code == 200
    response = staff_client.post(
        "/admin/opsportal/publiccomponent/add/",
        {"name": "Website", "description": "", "order": "0", "enabled": "on", "metric": "db_up", "labels": "{}"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    assert states(client.get(PATH)) == {"Website": "degraded"}  # no db_up series yet: not known to be up
    assert staff_client.get("/admin/opsportal/publiccomponent/").status_code == 200


@pytest.mark.django_db
def test_the_admin_refuses_a_label_match_that_is_not_names_to_text(staff_client):
    response = staff_client.post(
        "/admin/opsportal/publiccomponent/add/",
        {"name": "Website", "order": "0", "enabled": "on", "metric": "db_up", "labels": '{"host": 5}'},
    )
    assert response.status_code == 200
    assert "label names to text" in response.content.decode()
    assert not PublicComponent.objects.exists()
