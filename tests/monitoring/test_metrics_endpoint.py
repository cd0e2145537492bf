"""/metrics as Prometheus and people see it: who may scrape, and what the text says."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from monitoring import tokens
from monitoring.models import Series
from monitoring.storage import Reading, record, series_cache

URL = "/metrics"
SCRAPE_TOKEN = "scrape-secret-0123456789"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    series_cache.clear()
    yield
    series_cache.clear()


@pytest.fixture
def recorded() -> None:
    now = timezone.now()
    record(
        [
            Reading("system_cpu_usage_percent", 42.5),
            Reading("system_disk_usage_percent", 71.0, {"mount": "/"}),
            Reading("system_disk_usage_percent", 12.0, {"mount": '/mnt/we"ird\\path'}),
            Reading("system_network_receive_bytes_total", 123456.0, {"interface": "eth0"}, kind=Series.Kind.COUNTER),
            Reading("process_resident_memory_bytes", 5.0e7, {"service": "web"}),
        ],
        now=now,
    )
    # A series nobody has written to for an hour is stale, and one that never had a value is empty.
    record([Reading("system_swap_usage_percent", 3.0)], now=now - dt.timedelta(hours=1))
    Series.objects.create(name="system_load1", labels={"host": "h"}, labels_key='{"host":"h"}', host="h")


def scrape(client: Client | None = None, token: str | None = SCRAPE_TOKEN, **headers: str):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    with override_settings(METRICS_TOKEN=SCRAPE_TOKEN):
        return (client or Client()).get(URL, **headers)


def families(response) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


# --- who may scrape -----------------------------------------------------------------


def test_no_credentials_is_401_not_a_redirect():
    response = scrape(token=None)

    assert response.status_code == 401
    assert "Location" not in response
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("wrong", ["scrape-secret-012345678", "x", SCRAPE_TOKEN + "0"])
def test_wrong_bearer_is_401(wrong):
    assert scrape(token=wrong).status_code == 401


def test_bearer_is_refused_when_no_metrics_token_is_configured():
    with override_settings(METRICS_TOKEN=""):
        response = Client().get(URL, HTTP_AUTHORIZATION="Bearer ")
        other = Client().get(URL, HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 401
    assert other.status_code == 401


def test_a_push_token_does_not_open_metrics():
    _, plaintext = tokens.create("pusher", ["push"])
    assert scrape(token=plaintext).status_code == 401


def test_right_bearer_gets_200(recorded):
    response = scrape()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_staff_session_gets_200(staff_client):
    assert scrape(staff_client, token=None).status_code == 200


def test_plain_user_is_refused_not_redirected(plain_client):
    response = scrape(plain_client, token=None)

    assert response.status_code in (401, 403)
    assert "Location" not in response


# --- what the text says -------------------------------------------------------------


def test_exposition_parses_and_holds_the_recorded_series_with_exact_names_and_labels(recorded):
    found = families(scrape())
    host = settings.HOSTNAME

    cpu = found["system_cpu_usage_percent"]
    assert cpu.type == "gauge"
    assert [(s.name, s.labels, s.value) for s in cpu.samples] == [("system_cpu_usage_percent", {"host": host}, 42.5)]
    disk = found["system_disk_usage_percent"]
    assert sorted((s.labels["mount"], s.value) for s in disk.samples) == [("/", 71.0), ('/mnt/we"ird\\path', 12.0)]
    assert all(s.labels["host"] == host for s in disk.samples)
    network = found["system_network_receive_bytes"]
    assert network.type == "counter"
    assert [(s.name, s.labels, s.value) for s in network.samples] == [
        ("system_network_receive_bytes_total", {"host": host, "interface": "eth0"}, 123456.0)
    ]


def test_stale_and_empty_series_are_left_out(recorded):
    found = families(scrape())

    assert "system_swap_usage_percent" not in found
    assert "system_load1" not in found


def test_only_our_series_no_default_registry_process_metrics(recorded):
    found = families(scrape())

    recorded_names = {
        "system_cpu_usage_percent", "system_disk_usage_percent", "system_network_receive_bytes",
        "process_resident_memory_bytes",
    }
    assert {name for name in found if not name.startswith("opsportal_")} == recorded_names
    process = found["process_resident_memory_bytes"]
    assert [(s.labels, s.value) for s in process.samples] == [({"host": settings.HOSTNAME, "service": "web"}, 5.0e7)]
    text = scrape().content.decode()
    assert "process_cpu_seconds_total" not in text
    assert "python_info" not in text


def push_counters() -> dict[tuple[str, str], float]:
    found = families(scrape())
    return {
        (family, sample.labels["outcome"]): sample.value
        for family in ("opsportal_push_samples", "opsportal_push_requests")
        for sample in found[family].samples
    }


def test_portal_counters_count_series_and_pushes(recorded):
    _, plaintext = tokens.create("pusher", ["push"])
    client = Client()
    body = {"samples": [{"name": "jobs_done", "value": 1}, {"name": "jobs_failed", "value": 0}]}
    before = push_counters()
    for payload in (body, {"samples": [{"name": "bad name", "value": 1}]}):
        client.post(
            "/api/v1/metrics", data=json.dumps(payload), content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {plaintext}",
        )

    found = families(scrape())
    after = push_counters()

    assert [s.value for s in found["opsportal_series"].samples] == [Series.objects.count()]
    grown = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    assert grown == {
        ("opsportal_push_samples", "accepted"): 2.0,
        ("opsportal_push_samples", "rejected"): 1.0,
        ("opsportal_push_requests", "accepted"): 1.0,
        ("opsportal_push_requests", "invalid"): 1.0,
    }
    assert found["jobs_done"].samples[0].value == 1.0


def test_openmetrics_is_served_when_asked_for(recorded):
    response = scrape(HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_one_query_whatever_the_number_of_series(recorded, django_assert_num_queries):
    record([Reading("queue_depth", float(i), {"queue": f"q{i}"}) for i in range(50)])

    with django_assert_num_queries(1):
        response = scrape()

    assert len(families(response)["queue_depth"].samples) == 50
