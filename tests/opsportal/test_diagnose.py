"""``python manage.py diagnose``: findings per component, a recommended action each, exit 1 when critical."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from monitoring.models import ProcessHeartbeat
from opsportal import diagnosis
from opsportal.diagnosis import CRITICAL, OK, WARNING, Component, Context, Finding, PingResult

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {
    *("database", "broker", "workers", "scheduler", "collection", "cache", "dashboard", "storage"),
    *("alerting", "delivery"),  # registered by the alerts app (alerts.diagnosis, alerts.delivery_checks)
}
CLOSED_REDIS = "redis://127.0.0.1:1/0"
UNREACHABLE_REDIS = {
    "REDIS_URL": CLOSED_REDIS,
    "CACHES": {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CLOSED_REDIS,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    },
    "CHANNEL_LAYERS": {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [CLOSED_REDIS]}}
    },
}


class FakePing:
    """The network edge of diagnose: which worker nodes answer the control-plane ping."""

    def __init__(self, *answering: str) -> None:
        self.answering = frozenset(answering)
        self.calls = 0

    def __call__(self, timeout: float, expected: int | None) -> PingResult:
        self.calls += 1
        return PingResult(self.answering)


def heartbeat(role: str, *, node: str = "", pid: int = 100, age: float = 0) -> ProcessHeartbeat:
    seen = timezone.now() - dt.timedelta(seconds=age)
    return ProcessHeartbeat.objects.create(
        role=role, host="web-1", pid=pid, node=node or f"{role}@web-1", started_at=seen, last_seen=seen
    )


def assert_report_shape(report: dict[str, object]) -> dict[str, dict[str, object]]:
    assert set(report) == {"status", "components"}
    assert report["status"] in {OK, WARNING, CRITICAL}
    components = report["components"]
    assert isinstance(components, dict)
    assert set(components) >= COMPONENTS
    for name, component in components.items():
        assert set(component) == {"status", "issues", "recommendations"}, name
        assert component["status"] in {OK, WARNING, CRITICAL}, name
        assert len(component["issues"]) == len(component["recommendations"]), name
        assert (component["status"] == OK) == (component["issues"] == []), name
    return components


# --- findings ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_worker_and_no_beat_are_critical_with_an_action_each() -> None:
    report = diagnosis.diagnose(context=Context(ping=FakePing()))

    components = assert_report_shape(report.as_dict())
    assert report.status == CRITICAL
    assert components["workers"]["status"] == CRITICAL
    assert "celery -A opsportal worker" in components["workers"]["recommendations"][0]
    assert components["scheduler"]["status"] == CRITICAL
    assert "celery -A opsportal beat" in components["scheduler"]["recommendations"][0]
    assert components["database"]["status"] == OK
    assert components["broker"]["status"] == OK


@pytest.mark.django_db(transaction=True)
def test_fresh_liveness_rows_and_an_answered_ping_are_ok() -> None:
    heartbeat("worker", node="opsportal@web-1")
    heartbeat("beat")
    ping = FakePing("opsportal@web-1")

    report = diagnosis.diagnose(context=Context(ping=ping))

    assert report.components["workers"].status == OK
    assert report.components["scheduler"].status == OK
    assert ping.calls == 1


@pytest.mark.django_db(transaction=True)
def test_stale_rows_do_not_count_as_alive() -> None:
    heartbeat("worker", node="opsportal@web-1", age=settings.LIVENESS_STALE_SECONDS + 60)
    heartbeat("beat", age=settings.LIVENESS_STALE_SECONDS + 60)

    report = diagnosis.diagnose(context=Context(ping=FakePing()))

    assert report.components["workers"].status == CRITICAL
    assert report.components["scheduler"].status == CRITICAL


@pytest.mark.django_db(transaction=True)
def test_workers_alive_but_not_answering_the_ping_are_not_consuming() -> None:
    heartbeat("worker", node="opsportal@web-1")
    heartbeat("beat")

    report = diagnosis.diagnose(context=Context(ping=FakePing(), ping_timeout=0.5))

    workers = report.components["workers"]
    assert workers.status == CRITICAL
    assert "none answered the ping" in workers.issues[0]
    assert "Restart" in workers.recommendations[0]


@pytest.mark.django_db(transaction=True)
def test_one_silent_worker_among_answering_ones_is_a_warning_naming_it() -> None:
    heartbeat("worker", node="opsportal@web-1", pid=1)
    heartbeat("worker", node="opsportal@web-2", pid=2)
    heartbeat("beat")

    report = diagnosis.diagnose(context=Context(ping=FakePing("opsportal@web-1")))

    workers = report.components["workers"]
    assert workers.status == WARNING
    assert "opsportal@web-2" in workers.issues[0] and "opsportal@web-1" not in workers.issues[0]


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_are_a_warning() -> None:
    heartbeat("worker", node="opsportal@web-1")
    heartbeat("beat", pid=1)
    heartbeat("beat", pid=2)

    report = diagnosis.diagnose(context=Context(ping=FakePing("opsportal@web-1")))

    assert report.components["scheduler"].status == WARNING
    assert "Stop all but one" in report.components["scheduler"].recommendations[0]


@pytest.mark.django_db(transaction=True)
def test_unreachable_redis_makes_the_broker_critical_and_cache_and_dashboard_warnings() -> None:
    heartbeat("worker", node="opsportal@web-1")
    heartbeat("beat")
    ping = FakePing("opsportal@web-1")

    with override_settings(**UNREACHABLE_REDIS):
        report = diagnosis.diagnose(context=Context(ping=ping))

    statuses = {name: finding.status for name, finding in report.components.items()}
    assert statuses["broker"] == CRITICAL
    assert statuses["workers"] == CRITICAL  # alive, but nothing reaches them
    assert statuses["cache"] == WARNING and statuses["dashboard"] == WARNING
    assert statuses["database"] == OK and statuses["scheduler"] == OK
    assert ping.calls == 0
    assert "REDIS_URL" in report.components["broker"].recommendations[0]


@pytest.fixture
def unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point new connections (the checks open their own) at a database that is not there."""
    broken = dict(connections.settings["default"])
    if broken["ENGINE"].endswith("sqlite3"):
        broken["NAME"] = "/nonexistent/opsportal/db.sqlite3"
    else:
        broken["HOST"], broken["PORT"] = "127.0.0.1", "1"
    monkeypatch.setitem(connections.settings, "default", broken)


@pytest.mark.django_db(transaction=True)
def test_unreachable_database_is_critical_and_everything_else_still_reported(unreachable_database: None) -> None:
    report = diagnosis.diagnose(context=Context(ping=FakePing()))

    components = assert_report_shape(report.as_dict())
    assert components["database"]["status"] == CRITICAL
    assert "DATABASE_URL" in components["database"]["recommendations"][0]
    assert components["scheduler"]["status"] == CRITICAL
    assert "database is unreachable" in components["scheduler"]["issues"][0]
    assert components["storage"]["status"] == OK


@pytest.mark.django_db(transaction=True)
def test_set_aside_broker_files_are_a_warning(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1_x.celery.msg").write_bytes(b"{")

    with override_settings(BROKER_DIR=tmp_path, REDIS_URL=""):
        finding = diagnosis.broker(Context(ping=FakePing()))

    assert finding.status == WARNING
    assert "1 undecodable" in finding.issues[0]


def test_a_component_check_that_raises_is_reported_and_the_others_still_run() -> None:
    def explodes(ctx: Context) -> Finding:
        raise RuntimeError("bug")

    def fine(ctx: Context) -> Finding:
        return Finding()

    report = diagnosis.diagnose([Component("collection", explodes), Component("alerting", fine)], Context())

    assert report.components["collection"].status == WARNING
    assert "RuntimeError" in report.components["collection"].issues[0]
    assert report.components["alerting"].status == OK


# --- the command in-process ----------------------------------------------------------


@pytest.fixture
def quick_ping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real ping, with a short wait: no worker runs in these tests."""
    monkeypatch.setattr(diagnosis, "PING_TIMEOUT_SECONDS", 0.3)


@pytest.mark.django_db(transaction=True)
def test_command_json_prints_one_object_and_exits_1_when_critical(quick_ping: None) -> None:
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("diagnose", "--json", stdout=out, stderr=err)

    assert raised.value.returncode == 1
    components = assert_report_shape(json.loads(out.getvalue()))
    assert out.getvalue().count("\n") == 1
    assert components["workers"]["status"] == CRITICAL


@pytest.mark.django_db(transaction=True)
def test_command_prints_a_line_per_component_with_each_issue_and_its_action(quick_ping: None) -> None:
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("diagnose", stdout=out, stderr=io.StringIO())

    lines = out.getvalue().splitlines()
    assert lines[0] == "OpsPortal diagnosis: CRITICAL"
    status_lines = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith(" ")}
    assert set(status_lines) == COMPONENTS
    assert status_lines["workers"] == status_lines["scheduler"] == "CRITICAL"
    assert status_lines["database"] == "OK"
    text = out.getvalue()
    assert "action: Start a worker" in text and "action: Start beat" in text


# --- the command as an operator runs it ----------------------------------------------


def portal_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a portal on embedded defaults in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSPORTAL_")}
    for name in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
        env.pop(name, None)
    env.update(OPSPORTAL_DATA_DIR=str(data_dir), OPSPORTAL_LOG_LEVEL="warning", **overrides)
    return env


def run_diagnose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "diagnose", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated portal on embedded defaults in its own data folder."""
    data_dir = tmp_path_factory.mktemp("diagnose")
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO,
        env=portal_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return data_dir


def parse_only_json(stdout: str) -> dict[str, object]:
    """Parse stdout, which must hold exactly one JSON object and nothing else."""
    report = json.loads(stdout)
    assert stdout.strip().count("\n") == 0
    return report


def test_subprocess_json_is_alone_on_stdout_and_exit_is_1_without_worker_or_beat(installation: Path) -> None:
    result = run_diagnose(portal_env(installation), "--json")

    components = assert_report_shape(parse_only_json(result.stdout))
    assert result.returncode == 1
    assert components["workers"]["status"] == CRITICAL
    assert components["scheduler"]["status"] == CRITICAL
    assert components["database"]["status"] == OK
    assert components["broker"]["status"] == OK
    assert "Traceback" not in result.stderr
    assert "critical: workers, scheduler" in result.stderr


def test_subprocess_reports_an_unreachable_redis_cleanly(installation: Path) -> None:
    result = run_diagnose(portal_env(installation, REDIS_URL=CLOSED_REDIS), "--json")

    components = assert_report_shape(parse_only_json(result.stdout))
    assert result.returncode == 1
    assert components["broker"]["status"] == CRITICAL
    assert components["cache"]["status"] == WARNING
    assert components["dashboard"]["status"] == WARNING
    assert "Traceback" not in result.stderr


def test_subprocess_reports_an_unreachable_database_cleanly(tmp_path: Path) -> None:
    env = portal_env(tmp_path, DATABASE_URL="postgresql://opsportal:s3cret@127.0.0.1:1/opsportal")

    result = run_diagnose(env)

    assert result.returncode == 1
    first, *rest = result.stdout.splitlines()
    assert first == "OpsPortal diagnosis: CRITICAL"
    assert any(line.split()[:2] == ["database", "CRITICAL"] for line in rest)
    assert "DATABASE_URL" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_on_a_database_never_migrated_says_to_migrate(tmp_path: Path) -> None:
    result = run_diagnose(portal_env(tmp_path), "--json")

    components = assert_report_shape(parse_only_json(result.stdout))
    assert result.returncode == 1
    assert components["database"]["status"] == CRITICAL
    assert "migration" in components["database"]["issues"][0]
    assert "manage.py migrate" in components["database"]["recommendations"][0]
    assert "Traceback" not in result.stderr


def test_subprocess_exits_0_with_a_real_worker_and_beat_running(installation: Path) -> None:
    env = portal_env(installation)
    logs = [installation / "worker.log", installation / "beat.log"]
    node = f"diagnose-{uuid.uuid4().hex[:6]}@%h"
    worker_cmd = [sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-c", "2", "-n", node]
    worker_cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    beat_cmd = [sys.executable, "-m", "celery", "-A", "opsportal", "beat"]
    processes = []
    try:
        processes.append(start(worker_cmd, env, logs[0]))
        processes.append(start(beat_cmd, env, logs[1]))

        def both_alive() -> bool:
            with sqlite3.connect(installation / "opsportal.sqlite3", timeout=5) as db:
                roles = {row[0] for row in db.execute("SELECT role FROM monitoring_processheartbeat")}
            return roles >= {"worker", "beat"}

        wait_until(both_alive, 30, "the worker's and beat's liveness rows", logs)
        result = run_diagnose(env, "--json")
    finally:
        for proc in processes:
            stop(proc)

    components = assert_report_shape(parse_only_json(result.stdout))
    assert result.returncode == 0, result.stdout + result.stderr
    assert components["workers"]["status"] == OK
    assert components["scheduler"]["status"] == OK
    assert all(proc.returncode == 0 for proc in processes)


# --- services tier -------------------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
class TestDiagnoseOnRealServices:
    @pytest.fixture
    def worker_and_beat(self, tmp_path: Path) -> Iterator[list[Path]]:
        """A worker and beat on the same PostgreSQL test database and Redis as this process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSPORTAL_")}
        env.update(
            OPSPORTAL_DATA_DIR=str(tmp_path),
            OPSPORTAL_LOG_LEVEL="info",
            DATABASE_URL=_database_url(),
            REDIS_URL=settings.REDIS_URL,
        )
        logs = [tmp_path / "worker.log", tmp_path / "beat.log"]
        node = f"services-{uuid.uuid4().hex[:6]}@%h"
        worker_cmd = [sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-n", node]
        worker_cmd += ["-c", "2", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        processes = []
        try:
            processes.append(start(worker_cmd, env, logs[0]))
            processes.append(start([sys.executable, "-m", "celery", "-A", "opsportal", "beat"], env, logs[1]))
            yield logs
        finally:
            for proc in processes:
                stop(proc)

    def test_diagnose_is_ok_on_postgresql_and_redis_with_a_worker_and_beat(self, worker_and_beat: list[Path]) -> None:
        assert settings.REDIS_URL and connection.vendor == "postgresql"

        def both_alive() -> bool:
            return {"worker", "beat"} <= set(
                ProcessHeartbeat.objects.filter(last_seen__gte=timezone.now() - dt.timedelta(seconds=30)).values_list(
                    "role", flat=True
                )
            )

        wait_until(both_alive, 30, "the worker's and beat's liveness rows", worker_and_beat)
        out = io.StringIO()
        call_command("diagnose", "--json", stdout=out, stderr=io.StringIO())

        components = assert_report_shape(json.loads(out.getvalue()))
        for name in ("database", "broker", "workers", "scheduler", "cache", "dashboard"):
            assert components[name]["status"] == OK, (name, components[name])
