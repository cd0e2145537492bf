"""Request metrics: counted in memory, flushed as counters that add up, derived when read."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import AsyncClient, Client
from django.utils import timezone

from monitoring import derived, middleware
from monitoring.collectors import counters
from monitoring.models import ProcessHeartbeat, Series
from monitoring.storage import series_cache

ROOT = Path(__file__).resolve().parents[2]
URLS = "tests.monitoring.request_metrics_urls"


@pytest.fixture(autouse=True)
def _fresh_series_cache() -> Iterator[None]:
    """Series ids cached by an earlier test point at rows its rollback removed."""
    series_cache.clear()
    yield
    series_cache.clear()


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    """Start every test from an empty in-memory buffer (other tests' requests count too)."""
    middleware.stats.take()
    middleware._unflushed.take()


def latest(name: str, **labels: str) -> float | None:
    wanted = {"host": settings.HOSTNAME, **labels}
    for series in Series.objects.filter(name=name):
        if series.labels == wanted:
            return series.last_value
    return None


def flusher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "request-metrics-flusher"]


@pytest.mark.django_db
@pytest.mark.urls(URLS)
class TestCounting:
    def test_requests_are_counted_in_memory_then_flushed_as_cumulative_counters(self) -> None:
        client = Client(raise_request_exception=False)
        for _ in range(8):
            assert client.get("/ok").status_code == 200
        for _ in range(2):
            assert client.get("/unavailable").status_code == 503
        assert client.get("/broken").status_code == 500
        assert not Series.objects.filter(name__startswith="http_").exists(), "no database write per request"

        t0 = timezone.now()
        assert middleware.flush(now=t0) > 0
        assert latest("http_requests_total", status="200") == 8
        assert latest("http_requests_total", status="503") == 2
        assert latest("http_requests_total", status="500") == 1
        assert latest("http_request_duration_seconds_count") == 11
        assert latest("http_request_duration_seconds_bucket", le="+Inf") == 11
        assert 0 < (latest("http_request_duration_seconds_sum") or 0) < 11

        for _ in range(5):
            client.get("/ok")
        middleware.flush(now=t0 + dt.timedelta(seconds=10))
        assert latest("http_requests_total", status="200") == 13
        assert latest("http_requests_total", status="503") == 2
        assert latest("http_request_duration_seconds_count") == 16

    def test_buckets_are_cumulative_per_flush(self) -> None:
        for seconds in (0.003, 0.04, 0.04, 0.7, 3.0, 60.0):
            middleware.stats.observe(seconds, 200)
        middleware.flush()
        buckets = {le: latest("http_request_duration_seconds_bucket", le=le) for le in ("0.005", "0.05", "1.0", "5.0")}
        assert buckets == {"0.005": 1, "0.05": 3, "1.0": 4, "5.0": 5}
        assert latest("http_request_duration_seconds_bucket", le="+Inf") == 6

    async def test_async_requests_are_counted_too(self) -> None:
        response = await AsyncClient().get("/ok")
        assert response.status_code == 200
        assert middleware.stats.take()[counters.key("http_requests_total", status="200")] == 1


@pytest.mark.django_db
class TestDerived:
    def test_error_ratio_is_the_5xx_share_per_flush_interval(self) -> None:
        t0 = timezone.now()
        for status in [200] * 7 + [404, 500, 503]:
            middleware.stats.observe(0.01, status)
        middleware.flush(now=t0)
        for _ in range(4):
            middleware.stats.observe(0.01, 200)
        middleware.flush(now=t0 + dt.timedelta(seconds=10))

        assert derived.request_error_ratio(now=t0 + dt.timedelta(seconds=1)) == pytest.approx(0.2)
        assert derived.request_error_ratio(now=t0 + dt.timedelta(seconds=11)) == 0
        assert derived.request_error_ratio(now=t0 + dt.timedelta(seconds=11), window=dt.timedelta(minutes=1)) == (
            pytest.approx(2 / 14)
        )
        assert derived.request_error_ratio(now=t0 + dt.timedelta(seconds=30)) is None, "no request in the window"

    def test_p95_from_known_durations(self) -> None:
        t0 = timezone.now()
        for _ in range(90):
            middleware.stats.observe(0.03, 200)
        for _ in range(10):
            middleware.stats.observe(3.0, 200)
        middleware.flush(now=t0)
        now = t0 + dt.timedelta(seconds=1)
        # rank 95 of 100 lies in the (2, 5] bucket, which holds the slowest 10: 2 + 3 * 5/10.
        assert derived.request_duration_p95(now=now) == pytest.approx(3.5)
        assert derived.derive(derived.P95, now=now) == pytest.approx(3.5)
        # rank 50 of 100 lies in (0.025, 0.05], which holds 90.
        assert derived.request_duration_quantile(0.5, now=now) == pytest.approx(0.025 + 0.025 * 50 / 90)
        assert derived.request_duration_p95(now=t0 + dt.timedelta(seconds=30)) is None

    def test_figures_combine_hosts_and_can_be_read_per_host(self) -> None:
        t0 = timezone.now()
        fast = {counters.key("http_request_duration_seconds_bucket", le=le): 10 for le in ("0.05", "5.0", "+Inf")}
        slow = {
            counters.key("http_request_duration_seconds_bucket", le="0.05"): 0,
            counters.key("http_request_duration_seconds_bucket", le="5.0"): 10,
            counters.key("http_request_duration_seconds_bucket", le="+Inf"): 10,
        }
        counters.add_to_totals({**fast, counters.key("http_requests_total", status="200"): 10}, host="web1", now=t0)
        counters.add_to_totals({**slow, counters.key("http_requests_total", status="502"): 10}, host="web2", now=t0)
        now = t0 + dt.timedelta(seconds=1)
        assert derived.request_error_ratio(now=now) == pytest.approx(0.5)
        assert derived.request_error_ratio(now=now, host="web1") == 0
        assert derived.request_error_ratio(now=now, host="web2") == 1
        # 20 requests: 10 under 50 ms, 10 between 50 ms and 5 s; rank 19 → 0.05 + 4.95 * 9/10.
        assert derived.request_duration_p95(now=now) == pytest.approx(0.05 + 4.95 * 0.9)
        assert derived.request_duration_p95(now=now, host="web1") == pytest.approx(0.05 * 0.95)

    def test_unknown_figure_is_refused(self) -> None:
        with pytest.raises(KeyError):
            derived.derive("http_requests_per_fortnight")


FLUSHING_PROCESS = """
import sys, time
from pathlib import Path
import django
django.setup()
from monitoring import middleware
flushes, barrier, me, parties = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(barrier / me).touch()
deadline = time.monotonic() + 60
while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
    time.sleep(0.01)  # start flushing together, so the flushes really overlap
for _ in range(flushes):
    for status in [200] * 9 + [500]:
        middleware.stats.observe(0.02, status)
    middleware.flush()
"""


def database_url_of_this_run() -> str:
    """Return a DATABASE_URL that points a subprocess at this run's test database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    from urllib.parse import quote

    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_counters_from_several_processes_add_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "opsportal.settings",
            "OPSPORTAL_DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": database_url_of_this_run(),
        }
    )
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FLUSHING_PROCESS, "20", str(barrier), str(n), "2"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for n in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    # 2 processes x 20 flushes x 10 requests, one in ten a 500.
    assert latest("http_requests_total", status="200") == 360
    assert latest("http_requests_total", status="500") == 40
    assert latest("http_request_duration_seconds_count") == 400
    assert derived.request_error_ratio(window=dt.timedelta(minutes=5)) == pytest.approx(0.1)
    web_rows = ProcessHeartbeat.objects.filter(role="web", pid__in=[p.pid for p in procs])
    assert web_rows.count() == 2, "each flushing process reports itself for the process collector"


@pytest.mark.django_db
@pytest.mark.urls(URLS)
def test_no_flusher_thread_under_tests() -> None:
    Client().get("/ok")
    assert flusher_threads() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls(URLS)
def test_flusher_starts_on_the_first_request_and_flushes_every_cycle(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MONITORING_REQUEST_FLUSH_SECONDS = 0.2
    monkeypatch.setattr(middleware, "auto_flush_enabled", lambda: True)
    monkeypatch.setattr(middleware.flusher, "_pid", None)
    assert flusher_threads() == []
    client = Client()
    try:
        client.get("/ok")
        client.get("/ok")
        assert len(flusher_threads()) == 1
        deadline = time.monotonic() + 10
        while latest("http_requests_total", status="200") != 2:
            assert time.monotonic() < deadline, "the flusher did not store the counts"
            time.sleep(0.05)
        assert ProcessHeartbeat.objects.filter(role="web", pid=os.getpid()).exists()
    finally:
        middleware.flusher.stop()
        atexit.unregister(middleware.flusher.stop)
    assert not ProcessHeartbeat.objects.filter(role="web", pid=os.getpid()).exists(), "a clean stop forgets the row"
    deadline = time.monotonic() + 5
    while flusher_threads():
        assert time.monotonic() < deadline, "the flusher did not stop"
        time.sleep(0.05)
