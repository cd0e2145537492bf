"""History of one series: the page and its JSON, as anonymous, plain user and staff."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.lifecycle import fingerprint
from alerts.models import Alert, AlertRule
from monitoring import rollups
from monitoring.models import Series, Threshold
from monitoring.storage import Reading, record, series_cache

CPU = "system_cpu_usage_percent"
HOST = "web-hist-1"
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
#: Real time, so that the test client's session (made at real time) is valid at NOW.
NOW = timezone.now().replace(minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _frozen_clock_and_fresh_cache():
    series_cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield
    series_cache.clear()


def history(span: dt.timedelta, every: dt.timedelta, host: str = HOST, metric: str = CPU) -> Series:
    """Record a reading every ``every`` over the ``span`` before NOW, then roll everything up."""
    n = int(span / every)
    record([Reading(metric, float(20 + i % 50), ts=NOW - span + (i + 1) * every) for i in range(n)], host=host, now=NOW)
    while rollups.run(now=NOW).behind:
        pass
    return Series.objects.get(name=metric, host=host)


def make_alert(series_labels: dict, *, start, end=None, name=f'{CPU}{{host="{HOST}"}}', **fields) -> Alert:
    defaults = {
        "source": Alert.Source.THRESHOLD,
        "severity": "critical",
        "state": Alert.State.RESOLVED if end else Alert.State.FIRING,
    }
    defaults.update(fields)
    return Alert.objects.create(
        name=name,
        fingerprint=fingerprint(f"{defaults['source']}:{name}{start.timestamp()}", series_labels),
        labels=series_labels,
        active_since=start,
        fired_at=start,
        resolved_at=end,
        **defaults,
    )


def url(series: Series | int, range_key: str | None = None, json: bool = True) -> str:
    pk = series if isinstance(series, int) else series.pk
    path = f"/status/series/{pk}/history.json" if json else f"/status/series/{pk}/"
    return path if range_key is None else f"{path}?range={range_key}"


# --- who may see it -----------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_gets_401_json_and_the_login_page(client):
    series = history(H, dt.timedelta(minutes=1))

    answer = client.get(url(series, "24h"))
    assert answer.status_code == 401
    assert answer["Content-Type"].startswith("application/json")
    assert "error" in answer.json()

    page = client.get(url(series, json=False))
    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_plain_user_gets_403_json_and_the_refusal_page(plain_client):
    series = history(H, dt.timedelta(minutes=1))

    answer = plain_client.get(url(series, "24h"))
    assert answer.status_code == 403
    assert answer["Content-Type"].startswith("application/json")

    page = plain_client.get(url(series, json=False))
    assert page.status_code == 403
    assert b"is not a staff account" in page.content


@pytest.mark.django_db
def test_staff_page_shows_latest_value_status_picker_and_chart_without_js(staff_client):
    series = history(D, dt.timedelta(minutes=5))
    Series.objects.filter(pk=series.pk).update(status=Series.Status.WARNING, last_value=77.25)

    page = staff_client.get(url(series, "7d", json=False))

    assert page.status_code == 200
    body = page.content.decode()
    assert CPU in body and HOST in body
    assert 'id="latest-value">77.25<' in body
    assert ">warning<" in body
    for key in ("1h", "24h", "7d", "30d"):
        assert f'href="?range={key}"' in body
    assert 'aria-current="true" class="current">7 days<' in body
    assert 'id="chart"' in body and "uPlot.iife.min.js" in body and "history.js" in body
    assert 'id="history-data"' in body  # the first chart needs no second request
    assert 'class="stat-max">69<' in body  # 20 + 49: the range's max, as plain HTML


# --- the JSON ---------------------------------------------------------------------


@pytest.mark.django_db
def test_json_has_the_series_range_columns_threshold_and_alerts(staff_client):
    series = history(D, dt.timedelta(minutes=5))

    data = staff_client.get(url(series, "24h")).json()

    assert set(data) == {"series", "range", "start", "end", "resolution", "points", "threshold", "alerts"}
    assert data["series"]["id"] == series.pk
    assert data["series"]["name"] == CPU
    assert data["series"]["labels"] == {"host": HOST}
    assert data["range"] == "24h"
    assert data["end"] - data["start"] == D.total_seconds()
    points = data["points"]
    assert set(points) == {"t", "min", "avg", "max"}
    assert len({len(column) for column in points.values()}) == 1
    assert 100 <= len(points["t"]) <= 300
    assert points["t"] == sorted(points["t"])
    assert all(lo <= av <= hi for lo, av, hi in zip(points["min"], points["avg"], points["max"], strict=True))
    assert set(data["threshold"] or {}) <= {"name", "direction", "warning", "critical"}
    assert data["alerts"] == []


@pytest.mark.django_db
def test_default_range_is_24_hours(staff_client):
    series = history(H, dt.timedelta(minutes=1))
    assert staff_client.get(url(series)).json()["range"] == "24h"


@pytest.mark.django_db
@pytest.mark.parametrize(("range_key", "resolution"), [("1h", 0), ("24h", 60), ("7d", 60), ("30d", 3600)])
def test_each_range_reads_the_coarsest_resolution_with_enough_points(staff_client, range_key, resolution):
    series = history(H, dt.timedelta(minutes=1))
    assert staff_client.get(url(series, range_key)).json()["resolution"] == resolution


@pytest.mark.django_db
def test_thirty_days_are_hour_points_covering_the_month(staff_client):
    series = history(30 * D, dt.timedelta(minutes=10))

    data = staff_client.get(url(series, "30d")).json()

    t = data["points"]["t"]
    assert data["resolution"] == 3600
    gaps = {b - a for a, b in itertools.pairwise(t)}
    assert all(gap % 3600 == 0 for gap in gaps)
    assert t[0] - data["start"] < 3 * 3600  # the whole month is there, not just the raw tail
    assert len(t) <= 300


@pytest.mark.django_db
def test_threshold_lines_come_from_the_most_specific_threshold(staff_client):
    series = history(H, dt.timedelta(minutes=1))
    Threshold.objects.update_or_create(metric=CPU, labels={}, defaults={"warning": 60, "critical": 90})
    Threshold.objects.create(metric=CPU, labels={"host": HOST}, warning=70, critical=85)
    Threshold.objects.create(metric=CPU, labels={"host": "other-host"}, warning=1, critical=2)

    data = staff_client.get(url(series, "1h")).json()
    page = staff_client.get(url(series, "1h", json=False)).content.decode()

    assert data["threshold"]["warning"] == 70
    assert data["threshold"]["critical"] == 85
    assert data["threshold"]["direction"] == "above"
    assert "warning ≥ 70 · critical ≥ 85" in page


@pytest.mark.django_db
def test_alert_periods_of_the_series_overlapping_the_range_are_marked(staff_client):
    series = history(H, dt.timedelta(minutes=1))
    mine = {"host": HOST}
    make_alert(mine, start=NOW - 5 * H, end=NOW - 4 * H, severity="warning")  # inside 24 h
    make_alert(mine, start=NOW - 30 * H, end=NOW - 20 * H)  # starts before 24 h, ends inside
    make_alert(mine, start=NOW - 10 * D, end=NOW - 9 * D)  # long before 24 h
    make_alert(mine, start=NOW - 2 * H)  # still firing
    make_alert({"host": "other-host"}, start=NOW - 3 * H, name=f'{CPU}{{host="other-host"}}')
    make_alert(mine, start=NOW - 3 * H, name="system_load1")  # another metric of the same host
    reads_cpu = AlertRule.objects.create(name="cpu hot", expr=f"avg by (host) ({CPU}) > 80", labels={"team": "ops"})
    reads_load = AlertRule.objects.create(name="load hot", expr="system_load1 > 8")
    make_alert(
        {"host": HOST, "team": "ops"}, start=NOW - 6 * H, source=Alert.Source.RULE, rule=reads_cpu, name="cpu hot"
    )
    make_alert(mine, start=NOW - 6 * H, source=Alert.Source.RULE, rule=reads_load, name="load hot")

    data = staff_client.get(url(series, "24h")).json()

    periods = [(a["name"], a["start"], a["end"]) for a in data["alerts"]]
    threshold_name = f'{CPU}{{host="{HOST}"}}'
    assert periods == [
        (threshold_name, (NOW - 30 * H).timestamp(), (NOW - 20 * H).timestamp()),
        ("cpu hot", (NOW - 6 * H).timestamp(), None),
        (threshold_name, (NOW - 5 * H).timestamp(), (NOW - 4 * H).timestamp()),
        (threshold_name, (NOW - 2 * H).timestamp(), None),
    ]
    assert [a["severity"] for a in data["alerts"]] == ["critical", "critical", "warning", "critical"]
    page = staff_client.get(url(series, "24h", json=False)).content.decode()
    assert page.count('class="alert-period') == 4
    assert "ongoing" in page


# --- bad input ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["2h", "abc", "24H", "1h;drop", "%00"])
def test_a_bad_range_is_a_400_json_naming_the_parameter(staff_client, bad):
    series = history(H, dt.timedelta(minutes=1))

    answer = staff_client.get(url(series), {"range": bad})

    assert answer.status_code == 400
    assert answer.json()["parameter"] == "range"
    assert "range" in answer.json()["error"]
    assert staff_client.get(url(series, json=False), {"range": bad}).status_code == 400


@pytest.mark.django_db
def test_an_unknown_series_is_a_404_json_and_a_404_page(staff_client):
    answer = staff_client.get(url(987654, "24h"))
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("application/json")
    assert staff_client.get(url(987654, json=False)).status_code == 404


@pytest.mark.django_db
def test_posting_is_refused(staff_client):
    series = history(H, dt.timedelta(minutes=1))
    assert staff_client.post(url(series, "24h")).status_code == 405


# --- cost ---------------------------------------------------------------------------


def _queries(staff_client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(path).status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_the_same_number_of_queries_for_an_hour_or_a_month_and_one_or_many_alerts(staff_client):
    small = history(H, dt.timedelta(minutes=1), host="small-host")
    big = history(30 * D, dt.timedelta(minutes=10), host="big-host")
    Threshold.objects.update_or_create(metric=CPU, labels={}, defaults={"warning": 60, "critical": 90})
    for i in range(25):
        make_alert(
            {"host": "big-host"},
            start=NOW - (i + 2) * D,
            end=NOW - (i + 2) * D + H,
            name=f'{CPU}{{host="big-host"}}',
        )

    for range_key in ("1h", "30d"):
        assert _queries(staff_client, url(small, range_key)) == _queries(staff_client, url(big, range_key))
        assert _queries(staff_client, url(small, range_key, json=False)) == _queries(
            staff_client, url(big, range_key, json=False)
        )
    assert _queries(staff_client, url(big, "30d")) <= 15
    assert len(staff_client.get(url(big, "30d")).json()["alerts"]) == 25
