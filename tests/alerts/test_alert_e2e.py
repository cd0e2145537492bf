"""A sample to a webhook through a real Celery worker: record → kick → evaluate → outbox → deliver.

The worker is a subprocess (``celery -A opsportal worker -P threads``) on the shipped
filesystem broker in the test data folder, sharing the test database. Nothing here
calls the engine or the outbox: recording the sample is the only push, exactly as a
collector or the push API does it; the rest is the kick the sample sends after commit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts import engine
from alerts.models import Alert, AlertRule, Delivery, EvaluationLease
from monitoring.storage import Reading, record, series_cache
from tests.alerts.delivery_helpers import make_channel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

SECRET = "e2e-signing-secret"


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Path]:
    """Start a worker on the test database and broker folder; yield its log file."""
    if settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("this test drives the embedded filesystem broker")
    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    for stale in queue.glob("*.celery.msg"):
        stale.unlink(missing_ok=True)  # kicks left by earlier tests only slow the start
    host = f"e2e-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        OPSPORTAL_DATA_DIR=str(settings.DATA_DIR),
        DATABASE_URL=database_url(),
        OPSPORTAL_FERNET_KEYS=",".join(settings.FERNET_KEYS),
        OPSPORTAL_HOSTNAME=host,
        OPSPORTAL_LOG_LEVEL="info",
    )
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-c", "4"]
    command += ["-n", f"{host}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}; worker log:\n{tail}")


def test_a_breaching_sample_reaches_the_webhook_and_so_does_its_recovery(worker: Path, httpserver: HTTPServer):
    received: list[tuple[dict, dict[str, str], bytes]] = []  # type: ignore[type-arg]
    lock = threading.Lock()

    def receiver(request: Request) -> Response:
        with lock:
            received.append((request.get_json(), dict(request.headers), request.get_data()))
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    channel = make_channel("ops-hook", target=httpserver.url_for("/hook"), secret=SECRET)
    make_channel("unrelated", target=httpserver.url_for("/elsewhere"))
    rule = AlertRule.objects.create(
        name="Queue backed up",
        expr="e2e_queue_depth > 100",
        severity="critical",
        summary="queue at {{ $value }} on {{ $labels.host }}",
    )
    rule.channels.set([channel])
    series_cache.clear()
    engine.series_names.clear()
    engine.forget_watched_selectors()

    pushed = timezone.now()
    record([Reading("e2e_queue_depth", 150, {"queue": "mail"})], now=pushed)
    wait_until(lambda: len(received) >= 1, 60, "the firing message", worker)

    body, headers, raw = received[0]
    alert = Alert.objects.get()
    assert body == {
        "event": "firing",
        "alert": {
            "id": alert.pk,
            "rule": "Queue backed up",
            "severity": "critical",
            "fingerprint": alert.fingerprint,
            "summary": f"queue at 150 on {settings.HOSTNAME}",
            "value": 150.0,
            "labels": {"host": settings.HOSTNAME, "queue": "mail"},
            "started_at": body["alert"]["started_at"],
            "resolved_at": None,
            "url": body["alert"]["url"],
        },
    }
    assert body["alert"]["url"].endswith(f"/admin/alerts/alert/{alert.pk}/change/")
    assert body["alert"]["started_at"] >= pushed.isoformat().replace("+00:00", "Z")[:19]
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Opsportal-Signature"] == f"sha256={expected}"
    firing_delivery = headers["X-Opsportal-Delivery"]

    record([Reading("e2e_queue_depth", 20, {"queue": "mail"})])
    wait_until(lambda: len(received) >= 2, 60, "the resolved message", worker)
    body, headers, _ = received[1]
    assert body["event"] == "resolved"
    assert body["alert"]["id"] == alert.pk and body["alert"]["resolved_at"] is not None
    assert headers["X-Opsportal-Delivery"] != firing_delivery

    # Nothing doubled: one more cycle (what beat starts every 10 s) writes nothing new.
    before = EvaluationLease.objects.get(name="evaluate").last_finished_at
    engine.kick()
    wait_until(
        lambda: EvaluationLease.objects.get(name="evaluate").last_finished_at != before, 60, "another cycle", worker
    )
    assert [b["event"] for b, _, _ in received] == ["firing", "resolved"]
    states = sorted(Delivery.objects.values_list("event", "state"))
    assert states == [("firing", "delivered"), ("resolved", "delivered")]
    assert Alert.objects.get().state == Alert.State.RESOLVED
