"""Delivery through a real Celery worker on the shipped filesystem broker, against an HTTP sink.

The worker is a subprocess (``celery -A opsportal worker -P threads``) sharing the test
database and the test data folder (so ``kick()`` from this process reaches it through
the same broker folder and both read the same Fernet keys). Elapsed time is simulated
by moving rows' ``next_attempt_at`` / ``created_at`` / ``lease_until`` into the past;
the worker itself runs on the real clock.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts import outbox
from alerts.models import Delivery
from alerts.tasks import delivery_sweep
from tests.alerts.delivery_helpers import make_alert, make_channel, transition

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def database_url() -> str:
    """Return a DATABASE_URL for the test database, so the worker shares it."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.host = f"delivery-test-{uuid.uuid4().hex[:6]}"
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        env.update(
            OPSPORTAL_DATA_DIR=str(settings.DATA_DIR),
            DATABASE_URL=database_url(),
            OPSPORTAL_FERNET_KEYS=",".join(settings.FERNET_KEYS),
            OPSPORTAL_HOSTNAME=self.host,
            OPSPORTAL_LOG_LEVEL="info",
        )
        command = [sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-c", "2"]
        command += ["-n", f"{self.host}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    if settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("this test drives the embedded filesystem broker")
    # Kicks left in the shared broker folder by earlier tests are harmless but slow the start.
    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    for stale in queue.glob("*.celery.msg"):
        stale.unlink(missing_ok=True)
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(tmp_path / "worker.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}; worker log:\n{tail}")


def enqueue_and_kick(transitions: list, channels: list) -> list[int]:  # type: ignore[type-arg]
    """What the engine does: deliveries in the transition's transaction, the kick after commit."""
    ids: list[int] = []
    with transaction.atomic():
        for item in transitions:
            ids += [d.pk for d in outbox.enqueue(item, channels)]
        transaction.on_commit(lambda: outbox.kick(ids))
    return ids


def test_receiver_down_for_an_hour_gets_every_message_once_and_in_order(
    start_worker: Callable[[], Worker], httpserver: HTTPServer
) -> None:
    up = threading.Event()
    received: list[tuple[str, str, int]] = []
    tries: Counter[str] = Counter()

    def receiver(request: Request) -> Response:
        body = request.get_json()
        delivery_id = request.headers["X-OpsPortal-Delivery"]
        tries[delivery_id] += 1
        if not up.is_set():
            return Response("maintenance", status=503)
        received.append((delivery_id, body["event"], body["alert"]["id"]))
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(receiver)
    channel = make_channel(target=httpserver.url_for("/hook"))
    worker = start_worker()
    alerts = [make_alert(labels={"host": f"web-{n}"}) for n in range(3)]
    enqueue_and_kick([transition(a, "firing") for a in alerts], [channel])

    def tried_and_settled(before: int) -> bool:
        # A try reached the receiver and the worker has recorded it (nothing is mid-send).
        return sum(tries.values()) > before and not Delivery.objects.filter(state="sending").exists()

    wait_until(lambda: tried_and_settled(0), 30, "the first (failed) attempt", worker.log)
    # Two alerts resolve during the outage; their notices must wait for the firing ones.
    enqueue_and_kick([transition(a, "resolved") for a in alerts[:2]], [channel])

    for step in range(6):  # six simulated 10-minute gaps: the outage lasts an hour
        before = sum(tries.values())
        Delivery.objects.filter(state="pending").update(
            next_attempt_at=timezone.now() - dt.timedelta(seconds=1),
            created_at=F("created_at") - dt.timedelta(minutes=10),
        )
        delivery_sweep.delay()  # what beat sends every 10 s
        wait_until(lambda before=before: tried_and_settled(before), 30, f"a retry in step {step}", worker.log)

    assert received == []
    # While it is down the receiver is probed with one message per retry, not all of them.
    assert sum(tries.values()) == 7
    assert Delivery.objects.filter(event="resolved", attempts=0).count() == 2
    up.set()
    Delivery.objects.filter(state="pending").update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
    delivery_sweep.delay()
    wait_until(
        lambda: set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}, 30, "delivery", worker.log
    )

    deliveries = list(Delivery.objects.all())
    assert len(deliveries) == 5
    assert min(d.created_at for d in deliveries) < timezone.now() - dt.timedelta(hours=1)
    # Once per delivery id ...
    assert Counter(delivery_id for delivery_id, _, _ in received) == {str(d.delivery_id): 1 for d in deliveries}
    # ... and in order per alert.
    per_alert: dict[int, list[str]] = defaultdict(list)
    for _, event, alert_id in received:
        per_alert[alert_id].append(event)
    assert per_alert == {
        alerts[0].pk: ["firing", "resolved"],
        alerts[1].pk: ["firing", "resolved"],
        alerts[2].pk: ["firing"],
    }
    # Every try is on record.
    assert sum(d.attempts for d in deliveries) == sum(tries.values()) == 7 + 5
    assert sum(d.attempt_log.count() for d in deliveries) == 12


def test_a_worker_killed_mid_send_leaves_a_lease_that_expires_and_a_new_worker_sends_it(
    start_worker: Callable[[], Worker], httpserver: HTTPServer
) -> None:
    in_flight = threading.Event()
    release = threading.Event()
    received: list[str] = []

    def slow_receiver(request: Request) -> Response:
        received.append(request.headers["X-OpsPortal-Delivery"])
        if len(received) == 1:
            in_flight.set()
            release.wait(20)  # the first sender dies while this request is open
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(slow_receiver)
    channel = make_channel(target=httpserver.url_for("/hook"))
    first = start_worker()
    [delivery_pk] = enqueue_and_kick([transition(make_alert(), "firing")], [channel])
    wait_until(in_flight.is_set, 30, "the first send to reach the receiver", first.log)

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    release.set()
    delivery = Delivery.objects.get(pk=delivery_pk)
    assert delivery.state == "sending" and delivery.attempts == 1
    assert delivery.lease_until is not None and delivery.lease_until > timezone.now()

    # The lease runs out (time simulated), beat's sweep runs, a fresh worker takes over.
    Delivery.objects.filter(pk=delivery_pk).update(lease_until=timezone.now() - dt.timedelta(seconds=1))
    second = start_worker()
    delivery_sweep.delay()
    wait_until(
        lambda: Delivery.objects.filter(pk=delivery_pk, state="delivered").exists(), 30, "redelivery", second.log
    )

    delivery.refresh_from_db()
    assert received == [str(delivery.delivery_id)] * 2  # same id: the receiver can tell it is a repeat
    assert delivery.attempts == 2
    lost, ok = delivery.attempt_log.all()
    assert lost.outcome == "retry" and "worker stopped" in lost.error
    assert ok.outcome == "ok"
