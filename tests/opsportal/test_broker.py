"""The embedded broker (opsportal.broker): kombu's filesystem transport made safe.

The unit tests drive the transport through kombu itself; the last test runs a real
Celery worker subprocess on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import kombu
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from monitoring.models import ProcessHeartbeat
from opsportal import broker

TRANSPORT = "opsportal.broker:Transport"


def transport_options(root: Path) -> dict[str, object]:
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "control_folder": str(root / "control"),
        "polling_interval": 0.05,
    }


@pytest.fixture
def broker_root(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def conn(broker_root: Path) -> Iterator[kombu.Connection]:
    with kombu.Connection(transport=TRANSPORT, transport_options=transport_options(broker_root)) as connection:
        yield connection


def test_messages_round_trip_through_kombu_in_the_order_they_were_put(conn: kombu.Connection) -> None:
    jobs = conn.SimpleQueue("jobs")
    for n in range(50):  # many within one millisecond: order must still hold
        jobs.put({"delivery_id": n})

    received = []
    for _ in range(50):
        message = jobs.get(timeout=2)
        message.ack()
        received.append(message.payload["delivery_id"])

    assert received == list(range(50))
    with pytest.raises(jobs.Empty):
        jobs.get(timeout=0.2)
    jobs.close()


def test_torn_message_file_is_set_aside_and_the_next_message_is_delivered(
    conn: kombu.Connection, broker_root: Path
) -> None:
    jobs = conn.SimpleQueue("jobs")
    # A file cut off mid-write, named so that it sorts before any real message.
    torn = broker_root / "queue" / f"{0:020d}_{uuid.uuid4()}.jobs.msg"
    torn.write_bytes(b'{"body": "eyJkZWxpdmVyeV9pZCI6')
    jobs.put({"delivery_id": 7})

    message = jobs.get(timeout=2)
    message.ack()

    assert message.payload == {"delivery_id": 7}
    assert not torn.exists()
    assert (broker_root / "bad" / torn.name).read_bytes().startswith(b'{"body"')
    jobs.close()


def test_a_message_appears_in_the_queue_folder_only_when_completely_written(
    conn: kombu.Connection, broker_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_folder = broker_root / "queue"
    seen_at_replace: list[tuple[list[str], dict[str, object]]] = []
    real_replace = os.replace

    def observing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # The moment the message becomes visible: the queue folder must not hold
        # any part of it yet, and the file being moved in must be whole.
        seen_at_replace.append((sorted(os.listdir(queue_folder)), json.loads(Path(src).read_bytes())))
        real_replace(src, dst)

    monkeypatch.setattr(broker.os, "replace", observing_replace)
    jobs = conn.SimpleQueue("jobs")
    jobs.put({"text": "x" * 200_000})

    assert len(seen_at_replace) == 1
    listing_before, whole_file = seen_at_replace[0]
    assert [name for name in listing_before if ".jobs." in name] == []
    assert json.loads(json.dumps(whole_file))["body"]  # the complete kombu envelope
    queued = os.listdir(queue_folder)
    assert len(queued) == 1 and queued[0].endswith(".jobs.msg")
    assert os.listdir(broker_root / "tmp") == []
    message = jobs.get(timeout=2)
    assert message.payload == {"text": "x" * 200_000}
    message.ack()
    jobs.close()


def test_a_failed_write_raises_and_leaves_no_file_behind(
    conn: kombu.Connection, broker_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    jobs = conn.SimpleQueue("jobs")
    monkeypatch.setattr(broker.os, "replace", disk_full)

    with pytest.raises(conn.channel_errors):
        jobs.put({"delivery_id": 1})

    assert os.listdir(broker_root / "queue") == []
    assert os.listdir(broker_root / "tmp") == []
    jobs.close()


def test_a_wait_for_a_message_lasts_its_whole_timeout(conn: kombu.Connection) -> None:
    """A ping's replies arrive up to its timeout later; a wait must not give up after one slice."""
    def answer() -> None:
        with conn.clone() as other:
            other.SimpleQueue("replies").put("pong")

    replies = conn.SimpleQueue("replies")
    late = threading.Timer(broker.MAX_DRAIN_SECONDS + 0.4, answer)
    late.start()
    try:
        message = replies.get(timeout=broker.MAX_DRAIN_SECONDS + 2)
    finally:
        late.cancel()
    message.ack()

    assert message.payload == "pong"
    replies.close()


def test_a_stopping_worker_stops_waiting_within_a_slice(
    conn: kombu.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.worker import state

    jobs = conn.SimpleQueue("jobs")
    monkeypatch.setattr(state, "should_stop", 0)  # what a worker's SIGTERM handler sets
    started = time.monotonic()

    with pytest.raises(jobs.Empty):
        jobs.get(timeout=10)

    assert time.monotonic() - started < broker.MAX_DRAIN_SECONDS + 1
    jobs.close()


def _touch(path: Path, age_seconds: float, now: float) -> Path:
    path.write_bytes(b"{}")
    os.utime(path, (now - age_seconds, now - age_seconds))
    return path


def test_prune_removes_old_pidbox_messages_and_abandoned_temp_files_only(tmp_path: Path) -> None:
    queue, tmp = tmp_path / "queue", tmp_path / "tmp"
    queue.mkdir()
    tmp.mkdir()
    now = time.time()
    old_pidbox = _touch(queue / f"1_{uuid.uuid4()}.opsportal@gone.celery.pidbox.msg", 600, now)
    old_reply = _touch(queue / f"2_{uuid.uuid4()}.{uuid.uuid4()}.reply.celery.pidbox.msg", 600, now)
    fresh_pidbox = _touch(queue / f"3_{uuid.uuid4()}.opsportal@live.celery.pidbox.msg", 5, now)
    old_task = _touch(queue / f"4_{uuid.uuid4()}.celery.msg", 86_400, now)
    abandoned_part = _touch(tmp / "5_x.celery.msg.part", 2 * 3600, now)
    fresh_part = _touch(tmp / "6_x.celery.msg.part", 5, now)

    removed = broker.prune_orphans(queue, tmp, now=now)

    assert removed == 3
    assert not old_pidbox.exists() and not old_reply.exists() and not abandoned_part.exists()
    # A task message is the only record of a kick: it is never pruned, however old.
    assert fresh_pidbox.exists() and old_task.exists() and fresh_part.exists()


def test_a_consuming_channel_prunes_orphans_by_itself(
    conn: kombu.Connection, broker_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = conn.SimpleQueue("jobs")
    orphan = _touch(broker_root / "queue" / f"1_{uuid.uuid4()}.opsportal@gone.celery.pidbox.msg", 600, time.time())
    monkeypatch.setattr(broker.Channel, "_last_prune", 0.0)

    with pytest.raises(jobs.Empty):
        jobs.get(timeout=0.1)

    assert not orphan.exists()
    jobs.close()


# --- a real worker on the filesystem broker ---------------------------------------


def _database_url() -> str:
    """Return a DATABASE_URL for the test database, so a subprocess shares it."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_until(predicate: Callable[[], object], timeout: float, what: str, log: Path) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}; worker log:\n{tail}")


@pytest.fixture
def worker(tmp_path: Path, transactional_db: None) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """Start a real worker on the filesystem broker in ``tmp_path``, sharing the test database."""
    host = f"broker-test-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        OPSPORTAL_DATA_DIR=str(tmp_path),
        DATABASE_URL=_database_url(),
        OPSPORTAL_HOSTNAME=host,
        OPSPORTAL_LOG_LEVEL="info",
    )
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "opsportal", "worker", "-P", "threads", "-c", "2"]
    command += ["-n", f"{host}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, host, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def test_real_worker_runs_tasks_from_the_filesystem_broker_and_reports_liveness(
    worker: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    from monitoring.tasks import housekeeping

    proc, host, log = worker
    row = _wait_until(
        lambda: ProcessHeartbeat.objects.filter(role="worker", host=host).first(), 20, "the worker's liveness row", log
    )
    assert isinstance(row, ProcessHeartbeat)
    assert row.pid == proc.pid
    assert {"celery", f"host.{host}"} <= set(row.queues.split(","))

    long_ago = timezone.now() - dt.timedelta(hours=2)
    with kombu.Connection(transport=TRANSPORT, transport_options=transport_options(tmp_path / "broker")) as conn:
        # What .delay() does, over the worker's broker folder rather than this
        # process's configured broker: once via the default queue, once via the host queue.
        for queue in ("celery", f"host.{host}"):
            stale = ProcessHeartbeat.objects.create(
                role="worker", host="gone", pid=1, started_at=long_ago, last_seen=long_ago
            )
            housekeeping.apply_async(queue=queue, connection=conn)
            _wait_until(
                lambda stale=stale: not ProcessHeartbeat.objects.filter(pk=stale.pk).exists(),
                15,
                f"housekeeping sent to {queue} to prune a stale row",
                log,
            )

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert not ProcessHeartbeat.objects.filter(role="worker", host=host).exists()
    assert list((tmp_path / "broker" / "bad").iterdir()) == []
