"""record(): validation, series identity, cardinality cap, bulk insert, latest-value cache."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import Sample, Series
from monitoring.storage import MAX_LABELS, Reading, record, series_cache

NOW = dt.datetime(2026, 2, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    series_cache.clear()
    yield
    series_cache.clear()


def reasons(result) -> list[str]:
    return [reason for _, reason in result.rejected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reading", "field"),
    [
        (Reading("9starts_with_digit", 1.0), "name"),
        (Reading("has-dash", 1.0), "name"),
        (Reading("", 1.0), "name"),
        (Reading("x" * 201, 1.0), "name"),
        (Reading("ok_metric", 1.0, {"bad-key": "v"}), "labels.bad-key"),
        (Reading("ok_metric", 1.0, {"1st": "v"}), "labels.1st"),
        (Reading("ok_metric", 1.0, {"mount": "x" * 201}), "labels.mount"),
        (Reading("ok_metric", 1.0, {"mount": ["/"]}), "labels.mount"),
        (Reading("ok_metric", 1.0, {f"l{i}": "v" for i in range(MAX_LABELS)}), "labels"),
        (Reading("ok_metric", float("nan")), "value"),
        (Reading("ok_metric", float("inf")), "value"),
        (Reading("ok_metric", float("-inf")), "value"),
        (Reading("ok_metric", "12"), "value"),  # type: ignore[arg-type]
        (Reading("ok_metric", True), "value"),
        (Reading("ok_metric", 1.0, ts="2026-01-01T00:00:00Z"), "ts"),  # type: ignore[arg-type]
    ],
)
def test_bad_readings_are_refused_with_the_field_named_and_nothing_stored(reading, field):
    result = record([reading], host="web-1", now=NOW)

    assert result.accepted == 0
    assert [index for index, _ in result.rejected] == [0]
    assert reasons(result)[0].startswith(f"{field}: ")
    assert not Series.objects.exists() and not Sample.objects.exists()


@pytest.mark.django_db
def test_good_readings_of_a_batch_are_kept_when_others_are_refused():
    result = record(
        [Reading("system_load1", 0.5), Reading("system_load1", float("nan")), Reading("system_load5", 0.7)],
        host="web-1",
        now=NOW,
    )

    assert result.accepted == 2
    assert [index for index, _ in result.rejected] == [1]
    assert sorted(Series.objects.values_list("name", "host")) == [("system_load1", "web-1"), ("system_load5", "web-1")]


@pytest.mark.django_db
def test_nine_labels_plus_host_is_the_most_a_series_carries():
    labels = {f"l{i}": "v" for i in range(MAX_LABELS - 1)}
    assert record([Reading("wide_metric", 1.0, labels)], host="web-1", now=NOW).accepted == 1
    assert Series.objects.get().labels == {**labels, "host": "web-1"}


@pytest.mark.django_db
def test_identity_is_name_plus_labels_whatever_their_order():
    record([Reading("system_disk_usage_percent", 10.0, {"mount": "/", "device": "sda1"})], host="h", now=NOW)
    record(
        [
            Reading(
                "system_disk_usage_percent", 11.0, {"device": "sda1", "mount": "/"}, ts=NOW + dt.timedelta(seconds=10)
            )
        ],
        host="h",
        now=NOW,
    )
    series_cache.clear()  # another process resolves the same series from the database
    record([Reading("system_disk_usage_percent", 12.0, {"mount": "/", "device": "sda1"})], host="h", now=NOW)

    assert Series.objects.count() == 1
    assert Sample.objects.count() == 3


@pytest.mark.django_db
def test_a_batch_costs_a_few_bulk_statements_not_one_per_reading():
    def cost(n: int, offset: int) -> int:
        readings = [Reading("batch_metric", float(i), {"slot": str(i % 20)}) for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            assert record(readings, host="web-1", now=NOW + dt.timedelta(minutes=offset)).accepted == n
        return len(queries)

    cost(20, 0)  # create the 20 series
    ten = cost(10, 1)
    assert cost(300, 2) == ten
    assert cost(1000, 3) <= ten + 3, "a few more bulk INSERT chunks, not one statement per reading"
    assert Sample.objects.count() == 1330


@pytest.mark.django_db
def test_the_series_cap_refuses_new_series_while_existing_ones_keep_recording(settings):
    settings.MONITORING_MAX_SERIES = 3
    first = record([Reading("capped", 1.0, {"n": str(i)}) for i in range(5)], host="web-1", now=NOW)

    assert first.accepted == 3
    assert len(first.rejected) == 2 and all("series limit of 3" in r for r in reasons(first))
    assert Series.objects.count() == 3

    later = NOW + dt.timedelta(seconds=10)
    again = record([Reading("capped", 2.0, {"n": str(i)}) for i in range(5)], host="web-1", now=later)
    assert again.accepted == 3 and len(again.rejected) == 2
    assert Series.objects.count() == 3
    assert set(Series.objects.values_list("last_value", flat=True)) == {2.0}


@pytest.mark.django_db
def test_the_latest_value_moves_forward_never_back_to_an_older_reading():
    record([Reading("system_load1", 1.0)], host="web-1", now=NOW)
    record([Reading("system_load1", 2.0)], host="web-1", now=NOW + dt.timedelta(seconds=10))
    # A client resends a buffered reading from before both.
    record([Reading("system_load1", 99.0, ts=NOW - dt.timedelta(minutes=5))], host="web-1", now=NOW)

    series = Series.objects.get()
    assert (series.last_value, series.last_at) == (2.0, NOW + dt.timedelta(seconds=10))
    assert Sample.objects.count() == 3, "the old reading is history, not the latest"


@pytest.mark.django_db
def test_the_newest_reading_of_a_batch_is_the_latest_whatever_its_position():
    record(
        [
            Reading("system_load1", 5.0, ts=NOW + dt.timedelta(seconds=20)),
            Reading("system_load1", 3.0, ts=NOW),
        ],
        host="web-1",
        now=NOW,
    )
    assert Series.objects.get().last_value == 5.0


@pytest.mark.django_db
def test_host_comes_from_the_caller_unless_the_reading_names_one(settings):
    settings.HOSTNAME = "this-box"
    record([Reading("system_load1", 1.0), Reading("probe_success", 1.0, {"host": "remote"})], now=NOW)

    assert sorted(Series.objects.values_list("name", "host")) == [
        ("probe_success", "remote"),
        ("system_load1", "this-box"),
    ]


@pytest.mark.django_db
def test_a_batch_touching_hundreds_of_series_updates_every_latest_value():
    record([Reading("wide_batch", float(i), {"n": str(i)}) for i in range(700)], host="web-1", now=NOW)
    record([Reading("wide_batch", float(i) + 0.5, {"n": str(i)}) for i in range(700)], host="web-1", now=NOW)

    assert Series.objects.filter(name="wide_batch").count() == 700
    assert sorted(Series.objects.values_list("last_value", flat=True)) == [i + 0.5 for i in range(700)]
    assert set(Series.objects.values_list("last_at", flat=True)) == {NOW}


@pytest.mark.django_db
def test_a_time_without_a_zone_is_read_as_utc():
    record([Reading("system_load1", 1.0, ts=dt.datetime(2026, 2, 1, 7, 0))], host="web-1", now=NOW)

    assert Sample.objects.get().ts == dt.datetime(2026, 2, 1, 7, 0, tzinfo=dt.UTC)


@pytest.mark.django_db(transaction=True)
def test_recording_after_a_series_was_deleted_elsewhere_recreates_it():
    record([Reading("etl_rows_loaded", 1.0, {"job": "a"})])
    cached = dict(series_cache._ids)
    # Another process deletes the series: this process's cache still holds its id.
    Series.objects.all().delete()
    series_cache.put_many(cached)

    result = record([Reading("etl_rows_loaded", 2.0, {"job": "a"})])

    assert result.accepted == 1 and result.rejected == []
    series = Series.objects.get(name="etl_rows_loaded")
    assert series.last_value == 2.0 and series.samples.count() == 1
