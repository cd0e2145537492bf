"""Rollups: exact arithmetic with fixed timestamps, complete buckets only, idempotence, watermark."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from monitoring import rollups
from monitoring.models import Rollup, RollupProgress, Sample, Series
from monitoring.storage import Reading, record, series_cache

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def put(values: list[tuple[float, float]], name: str = "system_load1", host: str = "web-1") -> Series:
    """Record (seconds after T0, value) readings of one series, as a collector would have."""
    record([Reading(name, v, ts=at(s)) for s, v in values], host=host, now=LATER)
    return Series.objects.get(name=name, host=host)


def bucket(series: Series, resolution: int, start: dt.datetime) -> tuple:
    row = Rollup.objects.get(series=series, resolution=resolution, bucket=start)
    return (row.min, row.max, row.avg, row.count, row.last)


def snapshot() -> list[tuple]:
    return list(
        Rollup.objects.order_by("series_id", "resolution", "bucket").values_list(
            "series_id", "resolution", "bucket", "min", "max", "avg", "count", "last"
        )
    )


@pytest.mark.django_db
def test_minute_and_hour_buckets_hold_exact_min_max_avg_count_last():
    series = put([(5, 1.0), (15, 9.0), (50, 2.0), (65, 10.0), (70, 20.0)])

    rollups.run(now=T0 + dt.timedelta(hours=2))

    assert bucket(series, 60, T0) == (1.0, 9.0, 4.0, 3, 2.0)
    assert bucket(series, 60, at(60)) == (10.0, 20.0, 15.0, 2, 20.0)
    # The hour's avg weights each minute by its count: (4*3 + 15*2) / 5.
    assert bucket(series, 3600, T0) == (1.0, 20.0, 42 / 5, 5, 20.0)


@pytest.mark.django_db
def test_last_is_the_latest_reading_even_when_inserted_first():
    series = Series.objects.get(pk=put([(40, 7.0)]).pk)
    record([Reading("system_load1", 3.0, ts=at(10))], host="web-1", now=at(11))

    rollups.run(now=T0 + dt.timedelta(hours=1))

    assert bucket(series, 60, T0)[4] == 7.0


@pytest.mark.django_db
def test_only_complete_buckets_are_rolled():
    series = put([(5, 1.0), (65, 10.0)])

    # Two minutes after T0 the first minute ended, but not the lag after it.
    rollups.run(now=at(120))
    assert not Rollup.objects.exists()

    # With the 120 s lag passed for the first minute only, the second one waits.
    rollups.run(now=at(180))
    assert list(Rollup.objects.values_list("resolution", "bucket")) == [(60, T0)]

    rollups.run(now=T0 + dt.timedelta(minutes=30))
    assert Rollup.objects.filter(resolution=60).count() == 2
    assert not Rollup.objects.filter(resolution=3600).exists(), "the hour is not over yet"

    rollups.run(now=T0 + dt.timedelta(hours=1, minutes=3))
    assert bucket(series, 3600, T0) == (1.0, 10.0, 5.5, 2, 10.0)


@pytest.mark.django_db
def test_rerunning_a_window_upserts_the_same_rows():
    put([(5, 1.0), (15, 9.0), (65, 10.0)])
    put([(30, 4.0)], host="web-2")
    rollups.run(now=LATER)
    first = snapshot()

    rollups.rollup_window(60, T0, T0 + dt.timedelta(hours=1))
    rollups.rollup_window(3600, T0, T0 + dt.timedelta(hours=1))
    assert snapshot() == first

    RollupProgress.objects.all().delete()  # forget the watermarks: everything is redone
    rollups.run(now=LATER)
    assert snapshot() == first


@pytest.mark.django_db
def test_a_run_resumes_from_the_watermark_and_reads_only_new_data():
    series = put([(5, 1.0), (15, 9.0)])
    rollups.run(now=T0 + dt.timedelta(minutes=10))
    assert RollupProgress.objects.get(resolution=60).rolled_until == T0 + dt.timedelta(minutes=8)

    # A row slipped under the watermark behind record()'s back is not re-read...
    Sample.objects.create(series=series, ts=at(30), value=100.0)
    # ...while new readings are.
    record([Reading("system_load1", 6.0, ts=at(600))], host="web-1", now=at(600))
    rollups.run(now=T0 + dt.timedelta(minutes=20))

    assert bucket(series, 60, T0) == (1.0, 9.0, 5.0, 2, 9.0)
    assert bucket(series, 60, at(600)) == (6.0, 6.0, 6.0, 1, 6.0)


@pytest.mark.django_db
def test_readings_arriving_after_their_bucket_was_rolled_are_folded_in():
    series = put([(5, 1.0), (15, 9.0)])
    rollups.run(now=T0 + dt.timedelta(hours=2))
    assert bucket(series, 3600, T0) == (1.0, 9.0, 5.0, 2, 9.0)

    # A client resends its buffer an hour late.
    record([Reading("system_load1", 20.0, ts=at(20))], host="web-1", now=T0 + dt.timedelta(hours=2))

    assert bucket(series, 60, T0) == (1.0, 20.0, 10.0, 3, 20.0)
    assert bucket(series, 3600, T0) == (1.0, 20.0, 10.0, 3, 20.0)


@pytest.mark.django_db
def test_a_late_run_catches_up_in_bounded_batches():
    # One reading every 5 minutes for 12 hours.
    series = put([(i * 300, float(i)) for i in range(144)])
    now = T0 + dt.timedelta(hours=13)

    report = rollups.run(now=now, max_batches=3)
    assert report.behind
    assert T0 < report.minute_until < T0 + dt.timedelta(hours=12)
    assert Rollup.objects.filter(series=series, resolution=60, bucket__gte=report.minute_until).count() == 0

    runs = 1
    while report.behind:
        report = rollups.run(now=now, max_batches=3)
        runs += 1
    assert runs < 144 // 3, "light batches widen their window: fewer runs than batches of single readings"
    assert Rollup.objects.filter(series=series, resolution=60).count() == 144
    assert Rollup.objects.filter(series=series, resolution=3600).count() == 12
    assert bucket(series, 3600, T0 + dt.timedelta(hours=11)) == (132.0, 143.0, 137.5, 12, 143.0)


@pytest.mark.django_db
def test_a_run_jumps_over_stretches_without_data():
    series = put([(0, 1.0), (30 * 86400, 2.0)])

    report = rollups.run(now=T0 + dt.timedelta(days=31), max_batches=4)

    assert not report.behind
    assert Rollup.objects.filter(series=series, resolution=60).count() == 2
    assert Rollup.objects.filter(series=series, resolution=3600).count() == 2


@pytest.mark.django_db
def test_rollup_and_retention_are_default_periodic_tasks_that_expire_before_the_next_run():
    for task_name, every in (("monitoring.rollup", 60), ("monitoring.retention", 600)):
        task = PeriodicTask.objects.get(task=task_name)
        assert task.interval.every == every
        assert 0 < task.expire_seconds < every


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_on_postgresql_write_each_bucket_once():
    assert connection.vendor == "postgresql", "the services tier runs on PostgreSQL"
    series = put([(i * 10, float(i % 7)) for i in range(6 * 60 * 3)])  # 3 hours at 10 s
    now = T0 + dt.timedelta(hours=4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            rollups.run(now=now)
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Rollup.objects.filter(series=series, resolution=60).count() == 180
    assert Rollup.objects.filter(series=series, resolution=3600).count() == 3
    assert bucket(series, 3600, T0) == (0.0, 6.0, pytest.approx(sum(i % 7 for i in range(360)) / 360), 360, 359 % 7)
