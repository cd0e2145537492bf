"""Collectors read the real machine, database, broker and liveness rows."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from monitoring import collectors
from monitoring.collectors import celery as celery_collector
from monitoring.collectors import counters, process
from monitoring.models import ProcessHeartbeat, Series
from monitoring.storage import Reading, series_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_series_cache() -> Iterator[None]:
    """Series ids cached by an earlier test point at rows its rollback removed."""
    series_cache.clear()
    yield
    series_cache.clear()


def by_name(readings: list[Reading]) -> dict[str, list[Reading]]:
    found: dict[str, list[Reading]] = {}
    for reading in readings:
        found.setdefault(reading.name, []).append(reading)
    return found


def one(readings: list[Reading], name: str, **labels: str) -> float:
    matches = [r.value for r in readings if r.name == name and all(r.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} readings"
    return matches[0]


def burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def heartbeat(role: str, *, host: str | None = None, pid: int | None = None, **fields: object) -> ProcessHeartbeat:
    now = timezone.now()
    values: dict[str, object] = {"started_at": now, "last_seen": now, **fields}
    return ProcessHeartbeat.objects.create(role=role, host=host or settings.HOSTNAME, pid=pid or os.getpid(), **values)


class TestSystem:
    def test_reads_cpu_load_memory_swap_in_plausible_ranges(self) -> None:
        readings = collectors.registry["system"].collect(timezone.now())
        cpu = one(readings, "system_cpu_usage_percent")
        assert 0 <= cpu <= 100
        for name in ("system_load1", "system_load5", "system_load15"):
            assert 0 <= one(readings, name) < 1000
        total = one(readings, "system_memory_total_bytes")
        assert total == psutil.virtual_memory().total
        assert 0 < one(readings, "system_memory_available_bytes") <= total
        assert 0 < one(readings, "system_memory_used_bytes") <= total
        assert 0 < one(readings, "system_memory_usage_percent") <= 100
        assert one(readings, "system_swap_total_bytes") == psutil.swap_memory().total
        assert 0 <= one(readings, "system_swap_usage_percent") <= 100
        assert one(readings, "system_processes") >= 1
        assert one(readings, "system_threads") >= one(readings, "system_processes") > 0

    def test_cpu_reading_covers_the_time_since_the_previous_collection(self) -> None:
        collector = collectors.registry["system"]
        collector.collect(timezone.now())
        burn_cpu(0.6)
        busy = one(collector.collect(timezone.now()), "system_cpu_usage_percent")
        # One core fully busy for the whole interval, out of cpu_count cores.
        assert busy >= 100 / (psutil.cpu_count() or 1) * 0.5

    def test_disk_usage_per_real_mount_only(self) -> None:
        readings = collectors.registry["system"].collect(timezone.now())
        mounts = {r.labels["mount"]: r.value for r in readings if r.name == "system_disk_usage_percent"}
        assert mounts, "no real mount found"
        for mount, percent in mounts.items():
            assert mount.startswith("/") and not mount.startswith(("/proc", "/sys", "/dev"))
            assert 0 <= percent <= 100
        fstypes = {p.mountpoint: p.fstype for p in psutil.disk_partitions(all=True)}
        assert not {m for m in mounts if fstypes.get(m) in {"tmpfs", "proc", "sysfs", "cgroup", "cgroup2"}}
        if "/" in fstypes and fstypes["/"] not in {"tmpfs", "rootfs"}:
            assert mounts["/"] == pytest.approx(psutil.disk_usage("/").percent, abs=1)

    def test_io_and_network_are_cumulative_counters_per_interface(self) -> None:
        readings = collectors.registry["system"].collect(timezone.now())
        names = by_name(readings)
        if psutil.disk_io_counters() is not None:
            for name in ("system_disk_read_bytes_total", "system_disk_written_bytes_total"):
                (reading,) = names[name]
                assert reading.kind == Series.Kind.COUNTER and reading.value >= 0
        nics = set(psutil.net_io_counters(pernic=True))
        received = {r.labels["interface"] for r in names["system_network_receive_bytes_total"]}
        sent = {r.labels["interface"] for r in names["system_network_transmit_bytes_total"]}
        assert received == sent and received <= nics and received
        for name in ("system_network_receive_packets_total", "system_network_transmit_errors_total"):
            assert all(r.kind == Series.Kind.COUNTER and r.value >= 0 for r in names[name])
        later = collectors.registry["system"].collect(timezone.now())
        for nic in received:
            assert one(later, "system_network_receive_bytes_total", interface=nic) >= one(
                readings, "system_network_receive_bytes_total", interface=nic
            )

    def test_stored_series_carry_this_host(self) -> None:
        result = collectors.run("system")
        assert result.recorded is not None and result.recorded.accepted == len(result.readings)
        series = Series.objects.filter(name__startswith="system_")
        assert series.count() == len(result.readings)
        assert {s.host for s in series} == {settings.HOSTNAME}
        assert all(s.labels["host"] == settings.HOSTNAME for s in series)
        cpu = series.get(name="system_cpu_usage_percent")
        assert cpu.labels == {"host": settings.HOSTNAME} and cpu.last_value is not None

    def test_stored_series_follow_the_schedule_they_are_collected_at(self) -> None:
        collectors.run("system", interval_seconds=60)
        assert set(Series.objects.filter(name__startswith="system_").values_list("interval_seconds", flat=True)) == {60}
        collectors.run("system")  # back to the default 10 s schedule
        assert set(Series.objects.filter(name__startswith="system_").values_list("interval_seconds", flat=True)) == {10}


class TestProcess:
    def test_reports_the_portal_processes_of_this_host_per_service(self) -> None:
        heartbeat("worker")
        collector = collectors.registry["process"]
        collector.collect(timezone.now())
        burn_cpu(0.5)
        readings = collector.collect(timezone.now())
        rss = one(readings, "process_resident_memory_bytes", service="worker")
        assert rss == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
        assert one(readings, "process_open_fds", service="worker") >= 3
        assert one(readings, "process_threads", service="worker") >= 1
        assert one(readings, "process_cpu_usage_percent", service="worker") > 20
        assert {r.labels["service"] for r in readings} == {"worker"}

    def test_a_workers_pool_children_count_as_the_worker(self) -> None:
        heartbeat("worker")
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            readings = collectors.registry["process"].collect(timezone.now())
            assert one(readings, "process_count", service="worker") == 2
            both = psutil.Process().memory_info().rss + psutil.Process(child.pid).memory_info().rss
            assert one(readings, "process_resident_memory_bytes", service="worker") == pytest.approx(both, rel=0.2)
        finally:
            child.communicate(timeout=10)

    def test_web_processes_are_found_through_their_flusher_row(self) -> None:
        from monitoring import middleware

        middleware.flush()  # what each web process's flusher does every cycle
        readings = collectors.registry["process"].collect(timezone.now())
        assert one(readings, "process_resident_memory_bytes", service="web") > 0

    def test_ignores_other_hosts_stale_rows_and_reused_pids(self) -> None:
        heartbeat("worker", host="elsewhere")
        heartbeat("beat", last_seen=timezone.now() - dt.timedelta(minutes=5))
        # A row for our pid that claims to predate this process: the pid was reused.
        started = dt.datetime.fromtimestamp(psutil.Process().create_time(), tz=dt.UTC)
        heartbeat("web", started_at=started - dt.timedelta(hours=1))
        assert collectors.registry["process"].collect(timezone.now()) == []
        assert process.portal_pids() == {"web": [(os.getpid(), started - dt.timedelta(hours=1))]}


class TestDatabase:
    def test_sqlite_up_latency_connections_and_size(self) -> None:
        if connection.vendor != "sqlite":
            pytest.skip("SQLite figures")
        readings = collectors.registry["database"].collect(timezone.now())
        assert one(readings, "db_up") == 1
        assert 0 < one(readings, "db_query_latency_ms") < 1000
        assert one(readings, "db_connections_active") >= 1
        path = connection.settings_dict["NAME"]
        assert one(readings, "db_size_bytes") >= os.path.getsize(path) > 0

    @pytest.mark.services
    def test_postgresql_up_latency_connections_and_size(self) -> None:
        if connection.vendor != "postgresql":
            pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
        readings = collectors.registry["database"].collect(timezone.now())
        assert one(readings, "db_up") == 1
        assert 0 < one(readings, "db_query_latency_ms") < 1000
        assert one(readings, "db_connections_active") >= 1
        assert one(readings, "db_size_bytes") > 1_000_000


class TestBroker:
    def test_broker_and_channel_layer_answer_a_round_trip(self) -> None:
        readings = collectors.registry["broker"].collect(timezone.now())
        assert one(readings, "broker_up") == 1
        assert 0 < one(readings, "broker_latency_ms") < 5000
        assert one(readings, "channel_layer_up") == 1
        assert 0 <= one(readings, "channel_layer_latency_ms") < 5000

    def test_leaves_no_message_behind(self) -> None:
        collectors.registry["broker"].collect(timezone.now())
        probe_queue = f"opsportal.broker-probe.{settings.HOSTNAME}"
        assert celery_collector.queue_lengths([probe_queue]) == {probe_queue: 0}

    def test_unreachable_broker_is_down_not_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: object, **kwargs: object) -> float:
            raise ConnectionRefusedError("connection refused")

        monkeypatch.setattr("monitoring.collectors.broker.broker_round_trip", refuse)
        readings = collectors.registry["broker"].collect(timezone.now())
        assert one(readings, "broker_up") == 0
        assert not [r for r in readings if r.name == "broker_latency_ms"]


class TestCelery:
    def test_counts_fresh_workers_and_beat(self) -> None:
        heartbeat("worker", host="alpha", pid=101)
        heartbeat("worker", host="beta", pid=102)
        heartbeat("worker", host="gamma", pid=103, last_seen=timezone.now() - dt.timedelta(minutes=2))
        heartbeat("beat", host="alpha", pid=104)
        readings = collectors.registry["celery"].collect(timezone.now())
        assert one(readings, "celery_workers_alive") == 2
        assert one(readings, "celery_beat_alive") == 1

    def test_queue_length_per_queue_a_worker_consumes(self) -> None:
        queue = f"host.test-{uuid.uuid4().hex[:8]}"
        heartbeat("worker", host="alpha", pid=105, queues=f"celery,{queue}")
        for _ in range(3):
            current_app.send_task("monitoring.collect", kwargs={"collector": "system"}, queue=queue)
        try:
            readings = collectors.registry["celery"].collect(timezone.now())
            assert one(readings, "celery_queue_length", queue=queue) == 3
            assert one(readings, "celery_queue_length", queue="celery") >= 0
        finally:
            with current_app.connection_for_write() as conn:
                conn.default_channel.queue_purge(queue)

    def test_task_failures_and_durations_are_counted_and_flushed(self) -> None:
        from monitoring import signals

        @current_app.task(name=f"tests.ok-{uuid.uuid4().hex[:6]}")
        def ok() -> int:
            return 1

        @current_app.task(name=f"tests.broken-{uuid.uuid4().hex[:6]}")
        def broken() -> None:
            raise RuntimeError("boom")

        signals.task_counts.take()
        ok.apply()
        ok.apply()
        broken.apply()
        assert signals.flush() > 0
        latest = {(s.name, tuple(sorted(s.labels.items()))): s.last_value for s in Series.objects.all()}

        def value(name: str, **labels: str) -> float | None:
            return latest.get((name, tuple(sorted({"host": settings.HOSTNAME, **labels}.items()))))

        assert value("celery_tasks_total", task=ok.name, state="success") == 2
        assert value("celery_tasks_total", task=broken.name, state="failure") == 1
        assert value("celery_task_failures_total", task=broken.name) == 1
        assert value("celery_task_failures_total", task=ok.name) is None
        assert value("celery_task_duration_seconds_count", task=ok.name) == 2
        assert 0 < (value("celery_task_duration_seconds_sum", task=ok.name) or 0) < 5


class TestCounters:
    def test_flushes_add_up_to_a_cumulative_total(self) -> None:
        counter = counters.key("demo_events_total", kind="a")
        counters.add_to_totals({counter: 3})
        counters.add_to_totals({counter: 4})
        series = Series.objects.get(name="demo_events_total")
        assert series.kind == Series.Kind.COUNTER
        assert series.last_value == 7
        assert sorted(series.samples.values_list("value", flat=True)) == [3, 7]
