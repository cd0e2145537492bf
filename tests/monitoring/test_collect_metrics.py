"""``python manage.py collect_metrics``: every collector once, a table on stdout, progress on stderr."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management import call_command
from pytest_httpserver import HTTPServer

from monitoring.models import Series, Target
from monitoring.storage import series_cache

pytestmark = pytest.mark.django_db

ROW = re.compile(r"^(?P<metric>[a-z_0-9]+)\s+(?P<labels>\{.*\})\s+(?P<value>-?[0-9.]+)$")


@pytest.fixture(autouse=True)
def _fresh_series_cache() -> Iterator[None]:
    series_cache.clear()
    yield
    series_cache.clear()


def run(*args: str) -> tuple[list[dict[str, str]], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("collect_metrics", *args, stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["metric", "labels", "value"]
    rows = []
    for line in lines[1:]:
        match = ROW.match(line)
        assert match, f"not a table row: {line!r}"
        rows.append(match.groupdict())
    return rows, err.getvalue()


def test_prints_every_collectors_readings_as_a_table_and_records_them(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    Target.objects.create(
        name="local",
        address=httpserver.url_for("/"),
        interval=dt.timedelta(minutes=5),
        timeout=dt.timedelta(seconds=2),
        last_checked_at=dt.datetime.now(dt.UTC),  # not due: collect_metrics probes it anyway
    )
    rows, err = run()
    metrics = {row["metric"] for row in rows}
    assert {
        "system_cpu_usage_percent",
        "system_memory_usage_percent",
        "system_disk_usage_percent",
        "system_network_receive_bytes_total",
        "db_up",
        "db_query_latency_ms",
        "broker_up",
        "broker_latency_ms",
        "celery_workers_alive",
        "celery_queue_length",
        "probe_success",
    } <= metrics
    assert all(f'host="{settings.HOSTNAME}"' in row["labels"] for row in rows)
    (probe,) = [row for row in rows if row["metric"] == "probe_success"]
    assert probe["labels"] == f'{{host="{settings.HOSTNAME}", target="local"}}' and probe["value"] == "1"
    for row in rows:
        float(row["value"])
    for name in ("system", "process", "database", "broker", "celery", "probes"):
        assert re.search(rf"^{name}: \d+ readings, \d+ stored in \d+ ms$", err, re.M), err
    stored = set(Series.objects.values_list("name", flat=True))
    assert metrics <= stored


def test_one_collector_only_and_without_storing() -> None:
    rows, err = run("--collector", "system", "--no-store")
    assert rows and all(row["metric"].startswith("system_") for row in rows)
    assert err.startswith("system: ")
    assert not Series.objects.exists()


def test_unknown_collector_is_refused() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="invalid choice"):
        call_command("collect_metrics", "--collector", "weather", stdout=io.StringIO(), stderr=io.StringIO())
