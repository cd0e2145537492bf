"""Per-host collection: every host reports itself; a host whose workers stop is no longer sent work."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from monitoring import dispatch
from monitoring.models import ProcessHeartbeat
from opsportal.seeding import collect_periodic_specs, seed_periodic_tasks

ROOT = Path(__file__).resolve().parents[2]


def heartbeat(host: str, *, pid: int, age: float = 0, started: float = 0) -> None:
    now = timezone.now()
    ProcessHeartbeat.objects.create(
        role="worker",
        host=host,
        pid=pid,
        started_at=now - dt.timedelta(seconds=started),
        last_seen=now - dt.timedelta(seconds=age),
    )


def take_all(queue: str) -> list[dict[str, object]]:
    """Remove and return the headers (plus ``kwargs``) of every message waiting on ``queue``."""
    taken = []
    with current_app.connection_for_write() as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            while True:
                try:
                    message = simple.get_nowait()
                except simple.Empty:
                    return taken
                taken.append({**message.headers, "kwargs": message.payload[1]})
        finally:
            simple.close()


@pytest.mark.django_db
class TestWhereCollectionsGo:
    def test_host_collectors_go_to_every_host_with_a_fresh_worker(self) -> None:
        tag = uuid.uuid4().hex[:6]
        heartbeat(f"a-{tag}", pid=1)
        heartbeat(f"a-{tag}", pid=2)
        heartbeat(f"b-{tag}", pid=3)
        heartbeat(f"gone-{tag}", pid=4, age=settings.LIVENESS_STALE_SECONDS + 5)
        now = timezone.now()
        hosts = dispatch.dispatch("system", now=now)
        assert hosts == [f"a-{tag}", f"b-{tag}"]
        for host in hosts:
            (headers,) = take_all(f"host.{host}")
            assert headers["task"] == "monitoring.collect"
            expires = dt.datetime.fromisoformat(str(headers["expires"]))
            assert now < expires <= now + dt.timedelta(seconds=10), "expires below the 10 s interval"
        assert take_all(f"host.gone-{tag}") == []

    def test_cluster_collectors_go_once_to_the_longest_running_worker(self) -> None:
        tag = uuid.uuid4().hex[:6]
        heartbeat(f"young-{tag}", pid=1, started=10)
        heartbeat(f"old-{tag}", pid=2, started=3600)
        assert dispatch.leader_host() == f"old-{tag}"
        assert dispatch.dispatch("database") == [f"old-{tag}"]
        assert len(take_all(f"host.old-{tag}")) == 1
        assert take_all(f"host.young-{tag}") == []

    def test_the_dispatchers_own_expiry_is_passed_on(self) -> None:
        host = f"h-{uuid.uuid4().hex[:6]}"
        heartbeat(host, pid=1)
        expires = timezone.now() + dt.timedelta(seconds=3)
        dispatch.dispatch("process", expires=expires.isoformat())
        (headers,) = take_all(f"host.{host}")
        assert dt.datetime.fromisoformat(str(headers["expires"])) == expires

    def test_the_interval_edited_in_the_admin_travels_with_the_collection(self) -> None:
        from django_celery_beat.models import IntervalSchedule

        seed_periodic_tasks(collect_periodic_specs())
        host = f"h-{uuid.uuid4().hex[:6]}"
        heartbeat(host, pid=1)
        assert dispatch.schedule_seconds("system") == 10
        minute, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.MINUTES)
        PeriodicTask.objects.filter(name="Collection: system (every host)").update(interval=minute)
        dispatch.dispatch("system")
        (message,) = take_all(f"host.{host}")
        assert message["kwargs"] == {"collector": "system", "interval_seconds": 60}

    def test_no_live_worker_no_dispatch(self) -> None:
        assert dispatch.dispatch("system") == []
        assert dispatch.dispatch("probes") == []

    def test_unknown_collector_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown collector 'sytem'"):
            dispatch.dispatch("sytem")

    def test_each_collector_is_an_editable_periodic_task_with_an_expiry_below_its_interval(self) -> None:
        seed_periodic_tasks(collect_periodic_specs())
        tasks = {
            json.loads(t.kwargs)["collector"]: t
            for t in PeriodicTask.objects.filter(task="monitoring.dispatch_collection")
        }
        assert set(tasks) == {"system", "process", "database", "broker", "celery", "probes"}
        for task in tasks.values():
            assert task.enabled and task.interval is not None
            assert task.interval.every == 10 and task.interval.period == "seconds"
            assert task.expire_seconds is not None and 0 < task.expire_seconds < 10


# --- two real workers ---------------------------------------------------------------

DISPATCH = """
import json, sys
import django
django.setup()
from monitoring.dispatch import dispatch
print(json.dumps(dispatch(sys.argv[1])))
"""


class Fleet:
    """Celery workers of several hosts sharing one data folder (database and broker)."""

    def __init__(self, data: Path, logs: Path) -> None:
        self.data = data
        self.logs = logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DATABASE_URL", "REDIS_URL"))}
        self.env.update({"OPSPORTAL_DATA_DIR": str(data), "OPSPORTAL_LOG_LEVEL": "warning"})
        self.env["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def migrate(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True, timeout=180)

    def start_worker(self, host: str) -> None:
        self.workers[host] = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-c", "2",
                "-n", f"opsportal@{host}", "-Q", f"celery,host.{host}",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=ROOT,
            env={**self.env, "OPSPORTAL_HOSTNAME": host},
            stdout=(self.logs / f"{host}.out").open("wb"),
            stderr=(self.logs / f"{host}.err").open("wb"),
        )  # fmt: skip

    def stop_worker(self, host: str) -> None:
        proc = self.workers[host]
        proc.send_signal(signal.SIGTERM)  # warm shutdown: the worker removes its liveness row
        proc.wait(timeout=30)

    def dispatch(self, collector: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", DISPATCH, collector],
            cwd=ROOT,
            env={**self.env, "OPSPORTAL_HOSTNAME": "dispatcher"},
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        return list(json.loads(out.stdout.decode().strip().splitlines()[-1]))

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.data / "opsportal.sqlite3", timeout=20) as db:
            return db.execute(sql, params).fetchall()

    def live_worker_hosts(self) -> set[str]:
        return {str(h) for (h,) in self.query("SELECT host FROM monitoring_processheartbeat WHERE role = 'worker'")}

    def samples_per_host(self, metric: str) -> dict[str, int]:
        rows = self.query(
            "SELECT s.host, count(*) FROM monitoring_sample x JOIN monitoring_series s ON s.id = x.series_id "
            "WHERE s.name = ? GROUP BY s.host",
            metric,
        )
        return {str(host): int(str(n)) for host, n in rows}

    def waiting_on(self, queue: str) -> int:
        return sum(1 for f in (self.data / "broker" / "queue").iterdir() if f.name.endswith(f".{queue}.msg"))

    def log(self, host: str) -> str:
        return (self.logs / f"{host}.err").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is not None:
                continue
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in family:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            proc.wait(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(tmp_path / "data", logs)
    try:
        yield fleet
    finally:
        fleet.stop_all()


@pytest.mark.timeout(300)
def test_every_host_reports_itself_and_a_stopped_host_is_no_longer_dispatched(fleet: Fleet) -> None:
    fleet.migrate()
    fleet.start_worker("alpha")
    fleet.start_worker("beta")
    wait_for(lambda: fleet.live_worker_hosts() == {"alpha", "beta"}, 60, "both workers' liveness rows")

    metric = "system_cpu_usage_percent"
    cycles = 3
    for cycle in range(1, cycles + 1):
        assert fleet.dispatch("system") == ["alpha", "beta"]
        wait_for(
            lambda cycle=cycle: fleet.samples_per_host(metric) == {"alpha": cycle, "beta": cycle},  # type: ignore[misc]
            30,
            f"one {metric} sample per host in cycle {cycle}: {fleet.samples_per_host(metric)} "
            f"(alpha: {fleet.log('alpha')!r}, beta: {fleet.log('beta')!r})",
        )
    # Each host's series carries its own name, and there is one per host.
    series = fleet.query("SELECT host, labels FROM monitoring_series WHERE name = ? ORDER BY host", metric)
    assert [(host, json.loads(str(labels))) for host, labels in series] == [
        ("alpha", {"host": "alpha"}),
        ("beta", {"host": "beta"}),
    ]

    fleet.stop_worker("beta")
    assert fleet.live_worker_hosts() == {"alpha"}
    assert fleet.dispatch("system") == ["alpha"]
    wait_for(lambda: fleet.samples_per_host(metric).get("alpha") == cycles + 1, 30, "alpha's next sample")
    assert fleet.samples_per_host(metric)["beta"] == cycles
    assert fleet.waiting_on("host.beta") == 0, "nothing was queued for the stopped host"
