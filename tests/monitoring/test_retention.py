"""Retention: per-resolution keep periods, batch deletes, never ahead of the rollups, lag for diagnose."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring import retention, rollups
from monitoring.models import Retention, Rollup, RollupProgress, Sample, Series
from monitoring.storage import Reading, record, series_cache

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


@pytest.fixture
def series(db) -> Series:
    record([Reading("system_load1", 1.0)], host="web-1", now=NOW)
    Sample.objects.all().delete()
    return Series.objects.get(name="system_load1")


def rolled_until(moment: dt.datetime) -> None:
    for resolution in (60, 3600):
        RollupProgress.objects.update_or_create(resolution=resolution, defaults={"rolled_until": moment})


def samples_at(series: Series, ages: list[dt.timedelta]) -> None:
    Sample.objects.bulk_create([Sample(series=series, ts=NOW - age, value=1.0) for age in ages])


def rollups_at(series: Series, resolution: int, ages: list[dt.timedelta]) -> None:
    Rollup.objects.bulk_create(
        [
            Rollup(
                series=series,
                resolution=resolution,
                bucket=rollups.floor_time(NOW - age, resolution),
                min=1,
                max=1,
                avg=1,
                count=1,
                last=1,
            )
            for age in ages
        ]
    )


def ages(resolution: int) -> list[dt.timedelta]:
    if resolution == 0:
        return sorted(NOW - ts for ts in Sample.objects.values_list("ts", flat=True))
    return sorted(NOW - b for b in Rollup.objects.filter(resolution=resolution).values_list("bucket", flat=True))


@pytest.mark.django_db
def test_default_keep_periods_are_installed_after_migrate():
    assert dict(Retention.objects.values_list("resolution", "keep")) == {0: 48 * H, 60: 30 * D, 3600: 365 * D}


@pytest.mark.django_db
def test_installing_defaults_again_keeps_an_operators_edit():
    Retention.objects.filter(resolution=0).update(keep=6 * H)
    Retention.objects.filter(resolution=3600).delete()

    retention.seed_defaults()

    assert dict(Retention.objects.values_list("resolution", "keep")) == {0: 6 * H, 60: 30 * D, 3600: 365 * D}


def test_each_resolution_loses_exactly_the_rows_past_its_keep_period(series):
    samples_at(series, [50 * H, 49 * H, 47 * H, 1 * H])
    rollups_at(series, 60, [31 * D, 29 * D, 1 * D])
    rollups_at(series, 3600, [400 * D, 366 * D, 364 * D])
    rolled_until(NOW)

    report = retention.enforce(NOW)

    assert report.deleted == {0: 2, 60: 1, 3600: 2}
    assert ages(0) == [1 * H, 47 * H]
    assert ages(60) == [1 * D, 29 * D]
    assert ages(3600) == [364 * D]
    assert retention.behind(NOW) == {0: dt.timedelta(0), 60: dt.timedelta(0), 3600: dt.timedelta(0)}


def test_an_edited_keep_period_applies_on_the_next_run(series):
    samples_at(series, [7 * H, 5 * H])
    rolled_until(NOW)
    Retention.objects.filter(resolution=0).update(keep=6 * H)

    retention.enforce(NOW)

    assert ages(0) == [5 * H]


def test_rows_go_in_batches_and_a_capped_run_leaves_the_rest_for_the_next(series):
    samples_at(series, [49 * H + i * dt.timedelta(minutes=1) for i in range(7)] + [1 * H])
    rolled_until(NOW)

    with CaptureQueriesContext(connection) as queries:
        report = retention.enforce(NOW, batch_size=3, max_batches=2)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]

    assert report.deleted[0] == 6 and report.behind
    assert len([sql for sql in deletes if "monitoring_sample" in sql]) == 2
    # The oldest go first; what is left is one minute past the limit.
    assert len(ages(0)) == 2
    assert retention.behind(NOW)[0] == dt.timedelta(minutes=60)
    assert retention.problems(NOW) == []  # an hour behind is within the task's normal stride

    assert retention.enforce(NOW, batch_size=3).deleted[0] == 1
    assert ages(0) == [1 * H]


def test_raw_samples_wait_for_the_minute_rollups(series):
    samples_at(series, [72 * H, 52 * H, 50 * H])
    rolled_until(NOW - 55 * H)  # the rollups stopped 55 hours ago

    retention.enforce(NOW)

    assert ages(0) == [50 * H, 52 * H], "samples the rollups have not read yet are kept"
    problems = retention.problems(NOW)
    assert any("rollups behind" in issue and level == "critical" for level, issue, _ in problems)


def test_no_raw_sample_is_deleted_before_any_rollup_ran(series):
    samples_at(series, [100 * H])

    retention.enforce(NOW)

    assert ages(0) == [100 * H]
    assert retention.behind(NOW)[0] == 52 * H
    assert [level for level, issue, _ in retention.problems(NOW) if "retention behind" in issue] == ["critical"]


def test_rollups_then_retention_keep_history_at_coarser_resolutions(series):
    record(
        [Reading("system_load1", float(i), ts=NOW - 60 * H + i * dt.timedelta(minutes=10)) for i in range(360)],
        host="web-1",
        now=NOW,
    )
    while rollups.run(now=NOW).behind:
        pass

    retention.enforce(NOW)

    assert max(ages(0)) == 48 * H, "raw samples up to the keep period, no older"
    assert max(ages(60)) >= 59 * H, "minute rollups keep what raw samples no longer hold"
    assert Rollup.objects.filter(resolution=3600).count() == 59, "every complete hour (the current one is not)"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_rollups_and_retention_on_postgresql():
    assert connection.vendor == "postgresql", "the services tier runs on PostgreSQL"
    start = NOW - 50 * H
    record(
        [Reading("system_load1", float(i % 10), ts=start + i * dt.timedelta(seconds=30)) for i in range(50 * 120)],
        host="pg-1",
        now=NOW,
    )
    series = Series.objects.get(host="pg-1")
    while rollups.run(now=NOW).behind:
        pass
    minutes_before = Rollup.objects.filter(series=series, resolution=60).count()

    report = retention.enforce(NOW, batch_size=100)

    assert report.deleted[0] == 2 * 120  # the two hours beyond 48 h, 100 ids at a time
    assert ages(0)[-1] == 48 * H
    assert Rollup.objects.filter(series=series, resolution=60).count() == minutes_before
    hour = Rollup.objects.get(series=series, resolution=3600, bucket=rollups.floor_time(start, 3600))
    assert (hour.count, hour.min, hour.max, hour.avg) == (120, 0.0, 9.0, 4.5)
    assert retention.behind(NOW)[0] == dt.timedelta(0)
