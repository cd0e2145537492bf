"""Reads: latest from the cache, ranges at the coarsest sufficient resolution, windows, sparklines."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring import reads, rollups
from monitoring.models import Series
from monitoring.storage import Reading, record, series_cache

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


def history(host: str, span: dt.timedelta, every: dt.timedelta, value=lambda i: float(i % 10)) -> Series:
    """Record a reading every ``every`` over the ``span`` before NOW, then roll everything up."""
    n = int(span / every)
    record(
        [Reading("system_cpu_usage_percent", value(i), ts=NOW - span + i * every) for i in range(n)],
        host=host,
        now=NOW,
    )
    while rollups.run(now=NOW).behind:
        pass
    return Series.objects.get(name="system_cpu_usage_percent", host=host)


def spacing(points: list[reads.Point]) -> set[dt.timedelta]:
    return {b.t - a.t for a, b in itertools.pairwise(points)}


@pytest.mark.django_db
def test_latest_comes_from_the_series_cache_without_reading_samples():
    record([Reading("system_disk_usage_percent", 40.0, {"mount": "/"})], host="web-1", now=NOW - H)
    record([Reading("system_disk_usage_percent", 41.5, {"mount": "/"})], host="web-1", now=NOW)
    record([Reading("system_disk_usage_percent", 70.0, {"mount": "/data"})], host="web-1", now=NOW)
    record([Reading("system_disk_usage_percent", 12.0, {"mount": "/"})], host="db-1", now=NOW)

    with CaptureQueriesContext(connection) as queries:
        found = reads.latest("system_disk_usage_percent", {"mount": "/", "host": "web-1"})

    assert [(r.labels, r.value, r.at) for r in found] == [({"host": "web-1", "mount": "/"}, 41.5, NOW)]
    assert len(queries) == 1 and "monitoring_sample" not in queries[0]["sql"]
    assert {r.value for r in reads.latest("system_disk_usage_percent")} == {41.5, 70.0, 12.0}
    assert reads.latest("system_disk_usage_percent", {"mount": "/nope"}) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (NOW - H, NOW, 0),  # an hour: raw readings
        (NOW - 4 * H, NOW, 0),  # 240 minutes are fewer than 300 points
        (NOW - D, NOW, 60),
        (NOW - 7 * D, NOW, 60),  # 168 hours are too few; minutes
        (NOW - 30 * D, NOW, 3600),
        (NOW - 3 * D - H, NOW - 3 * D, 60),  # raw readings of three days ago are gone
        (NOW - 60 * D - H, NOW - 60 * D, 3600),  # so are minutes of two months ago
    ],
)
def test_range_reads_pick_the_coarsest_resolution_with_enough_points(start, end, expected):
    assert reads.pick_resolution(start, end, 300, now=NOW) == expected


@pytest.mark.django_db
def test_a_month_of_history_reads_hour_rollups_merged_to_the_point_budget():
    series = history("web-1", 30 * D, dt.timedelta(minutes=5), value=lambda i: float(i % 12))

    points = reads.range_read([series.pk], NOW - 30 * D, NOW, max_points=300, now=NOW)[series.pk]

    assert 240 <= len(points) <= 301
    assert spacing(points[:-1]) == {3 * H}, "720 hours merged three by three"
    # Each 5-minute reading cycles 0..11 every hour: every point shows the full range.
    full = points[1:-1]
    assert {(p.min, p.max, p.avg) for p in full} == {(0.0, 11.0, 5.5)}
    assert points[-1].t <= NOW and points[-1].t >= NOW - 3 * H


@pytest.mark.django_db
def test_an_hour_reads_raw_readings_and_reaches_now():
    series = history("web-1", 2 * H, dt.timedelta(seconds=10), value=lambda i: float(i))

    points = reads.range_read([series.pk], NOW - H, NOW, max_points=400, now=NOW)[series.pk]

    assert len(points) == 360
    assert spacing(points) == {dt.timedelta(seconds=10)}
    assert points[-1].t == NOW - dt.timedelta(seconds=10)
    assert points[-1].last == 719.0


@pytest.mark.django_db
def test_a_day_reads_minute_rollups_and_fills_the_unrolled_tail_from_raw():
    series = history("web-1", D, dt.timedelta(seconds=30), value=lambda i: 5.0)
    # The rollup task has not run for the last ten minutes.
    record([Reading("system_cpu_usage_percent", 50.0, ts=NOW - dt.timedelta(seconds=5))], host="web-1", now=NOW)

    points = reads.range_read([series.pk], NOW - D, NOW, max_points=1440, now=NOW)[series.pk]

    assert spacing(points) == {dt.timedelta(minutes=1)}
    assert len(points) == 1440
    assert points[-1].t == NOW - dt.timedelta(minutes=1)
    assert (points[-1].max, points[-1].last) == (50.0, 50.0), "the reading of a few seconds ago is on the chart"
    assert {p.avg for p in points[:-1]} == {5.0}


@pytest.mark.django_db
def test_range_reads_cost_the_same_queries_for_one_series_or_many():
    ids = [history(f"web-{i}", 2 * D, dt.timedelta(minutes=10)).pk for i in range(6)]

    def count(series_ids):
        with CaptureQueriesContext(connection) as queries:
            result = reads.range_read(series_ids, NOW - 2 * D, NOW, max_points=100, now=NOW)
        assert all(result[i] for i in series_ids)
        # Statements that read (PostgreSQL adds a transaction to switch its JIT off).
        return len([q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")])

    assert count(ids[:1]) == count(ids) <= 5


@pytest.mark.django_db
def test_windows_up_to_an_hour_are_raw_readings_longer_ones_rollups():
    series = history("web-1", 3 * H, dt.timedelta(seconds=10), value=lambda i: float(i % 6))

    short = reads.window([series.pk], NOW - 5 * dt.timedelta(minutes=1), NOW, now=NOW)[series.pk]
    assert len(short) == 30 and {p.count for p in short} == {1}
    assert [p.last for p in short[:6]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]

    long = reads.window([series.pk], NOW - 2 * H, NOW, now=NOW)[series.pk]
    assert sum(p.count for p in long) == 720, "every reading of the two hours, once"
    assert sum(p.avg * p.count for p in long) / 720 == pytest.approx(2.5)
    assert max(p.max for p in long) == 5.0
    assert len(long) < 200


def test_sparkline_is_inline_svg_of_numbers_only():
    points = [reads.Point(NOW + i * dt.timedelta(minutes=1), i - 1.0, float(i), i + 1.0, float(i)) for i in range(5)]

    svg = reads.sparkline_svg(points, width=100, height=20)

    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<polyline" in svg and "<script" not in svg
    assert 'points="1.0,' in svg  # the first point at the left edge
    assert reads.sparkline_svg([]).startswith("<svg")
