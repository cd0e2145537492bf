"""``runportal`` as a real subprocess: serves, supervises, stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class Portal:
    def __init__(self, tmp_path: Path, env_extra: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DATABASE_URL", "REDIS_URL"))}
        env.update({"OPSPORTAL_DATA_DIR": str(tmp_path / "data"), "OPSPORTAL_LOG_LEVEL": "warning"})
        env.update(env_extra or {})
        self.stdout_path = tmp_path / "stdout"
        self.stderr_path = tmp_path / "stderr"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runportal", "--port", str(self.port), "--concurrency", "2"],
            cwd=ROOT,
            env=env,
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
        )
        self.ps = psutil.Process(self.proc.pid)

    def children(self) -> dict[str, psutil.Process]:
        found = {}
        for child in self.ps.children():
            line = " ".join(child.cmdline())
            for name in ("daphne", "worker", "beat"):
                if name in line:
                    found[name] = child
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            for p in self.ps.children(recursive=True):
                p.kill()
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def portal_factory(tmp_path):  # type: ignore[no-untyped-def]
    started: list[Portal] = []

    def start(env_extra: dict[str, str] | None = None) -> Portal:
        portal = Portal(tmp_path, env_extra)
        started.append(portal)
        return portal

    yield start
    for portal in started:
        portal.stop()


def assert_serves_then_stops_cleanly(portal: Portal) -> None:
    wait_for(lambda: healthz(portal.port), 90, "/healthz to answer 200")
    wait_for(lambda: len(portal.children()) == 3, 30, "web, worker and beat to run")
    wait_for(lambda: "OpsPortal is running at" in portal.stdout_path.read_text(), 10, "the URL on stdout")
    stdout = portal.stdout_path.read_text()
    assert stdout.strip() == f"OpsPortal is running at http://127.0.0.1:{portal.port}/"
    wait_for(lambda: "createsuperuser" in portal.stderr_path.read_text(), 10, "the first-admin hint on stderr")
    children = list(portal.ps.children(recursive=True))

    portal.proc.send_signal(signal.SIGTERM)
    assert portal.proc.wait(timeout=15) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    assert not healthz(portal.port)


@pytest.mark.timeout(180)
def test_runportal_serves_healthz_and_stops_cleanly_on_sigterm(portal_factory):
    assert_serves_then_stops_cleanly(portal_factory())


@pytest.mark.timeout(180)
def test_runportal_stops_everything_and_fails_when_beat_dies(portal_factory):
    portal = portal_factory()
    wait_for(lambda: healthz(portal.port), 90, "/healthz to answer 200")
    wait_for(lambda: "beat" in portal.children(), 30, "beat to run")
    children = list(portal.ps.children(recursive=True))
    portal.children()["beat"].kill()

    assert portal.proc.wait(timeout=20) != 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    assert "beat exited" in portal.stderr_path.read_text()


def test_runportal_refuses_a_port_in_use_and_starts_nothing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(os.environ, OPSPORTAL_DATA_DIR=str(tmp_path / "data"))
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        result = subprocess.run(
            [sys.executable, "manage.py", "runportal", "--port", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"CommandError: port {port} on 127.0.0.1 is in use; stop what uses it or pass --port"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "opsportal.sqlite3").exists(), "nothing may be half-started"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none"),
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
    ],
)
def test_runportal_names_an_unreachable_service_in_one_line(tmp_path, variable, value):
    env = dict(os.environ, OPSPORTAL_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env[variable] = value
    result = subprocess.run(
        [sys.executable, "manage.py", "runportal", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"CommandError: {variable}: cannot connect to"), result.stderr
    assert result.stdout == ""


@pytest.mark.services
@pytest.mark.timeout(180)
def test_runportal_runs_on_postgresql_and_redis(portal_factory):
    portal = portal_factory({"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]})
    wait_for(lambda: healthz(portal.port), 90, "/healthz to answer 200")
    with urllib.request.urlopen(f"http://127.0.0.1:{portal.port}/readyz", timeout=5) as response:
        body = response.read().decode()
    for name in ("database", "cache", "broker", "channel_layer"):
        assert f'"{name}": {{"status": "ok"' in body, body
    assert_serves_then_stops_cleanly(portal)
