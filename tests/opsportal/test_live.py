"""The live bus: events written with the change they announce, read once per process, pruned."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertRule
from monitoring.models import Series, Threshold
from monitoring.status import evaluate
from monitoring.storage import Reading, record, series_cache
from opsportal import live
from opsportal.models import LiveEvent
from opsportal.seeding import collect_periodic_specs


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    """Series ids cached by an earlier test's (rolled back) database would be stale."""
    series_cache.clear()
    yield
    series_cache.clear()


def events(kind: str | None = None) -> list[dict]:
    rows = LiveEvent.objects.order_by("id")
    if kind:
        rows = rows.filter(kind=kind)
    return [row.payload for row in rows]


# --- what gets published --------------------------------------------------------------


@pytest.mark.django_db
def test_one_metrics_event_per_record_call_with_the_latest_values():
    record(
        [
            Reading("system_cpu_usage_percent", 10.0, ts=timezone.now() - dt.timedelta(seconds=5)),
            Reading("system_cpu_usage_percent", 42.0),
            Reading("system_disk_usage_percent", 55.0, {"mount": "/data"}),
        ],
        host="web1",
    )
    [payload] = events("metrics")
    by_name = {s["name"]: s for s in payload["series"]}
    assert by_name["system_cpu_usage_percent"]["value"] == 42.0
    assert by_name["system_cpu_usage_percent"]["display"] == "42.0 %"
    assert by_name["system_disk_usage_percent"]["labels"] == {"mount": "/data", "host": "web1"}
    assert by_name["system_disk_usage_percent"]["host"] == "web1"


@pytest.mark.django_db
def test_series_the_page_has_no_tile_for_publish_nothing():
    record([Reading("my_custom_jobs_total", 3.0)], host="web1")
    assert events() == []


@pytest.mark.django_db(transaction=True)
def test_rolled_back_samples_leave_no_event():
    with pytest.raises(RuntimeError), transaction.atomic():
        record([Reading("system_cpu_usage_percent", 99.0)], host="web1")
        raise RuntimeError("the collection failed after recording")
    assert not Series.objects.exists()
    assert events() == []


@pytest.mark.django_db
def test_status_change_publishes_the_new_status_and_the_overall_one():
    Threshold.objects.create(metric="system_cpu_usage_percent", labels={"host": "web1"}, warning=70, critical=90)
    record([Reading("system_cpu_usage_percent", 95.0)], host="web1")
    LiveEvent.objects.all().delete()

    evaluate()

    [payload] = events("metrics")
    assert payload["overall"] == "critical"
    [series] = payload["series"]
    assert (series["name"], series["status"]) == ("system_cpu_usage_percent", "critical")

    evaluate()  # nothing changed: nothing to say
    assert len(events("metrics")) == 1


def make_alert(**fields) -> Alert:
    rule = AlertRule.objects.create(name="High CPU", expr="system_cpu_usage_percent > 90", runbook="https://wiki/cpu")
    defaults = dict(
        rule=rule,
        name="High CPU",
        fingerprint="f1",
        labels={"host": "web1"},
        severity="critical",
        state="firing",
        value=97.5,
        active_since=timezone.now(),
    )
    defaults.update(fields)
    return Alert.objects.create(**defaults)


@pytest.mark.django_db
def test_alert_changes_are_published_with_their_runbook():
    alert = make_alert()
    alert.state = Alert.State.RESOLVED
    alert.save()

    first, second = events("alert")
    assert first["alerts"][0]["state"] == "firing"
    assert first["alerts"][0]["runbook_url"] == "https://wiki/cpu"
    assert first["alerts"][0]["value"] == 97.5
    assert second["alerts"][0]["state"] == "resolved"


@pytest.mark.django_db
def test_deleted_alert_is_announced_as_deleted():
    alert = make_alert()
    alert_id = alert.pk
    alert.delete()
    last = events("alert")[-1]["alerts"][0]
    assert (last["id"], last["state"]) == (alert_id, "deleted")


@pytest.mark.django_db
def test_logout_announces_the_ended_session_without_its_key():
    user = get_user_model().objects.create_user("s", password="pw-s-12345678", is_staff=True)
    client = Client()
    client.force_login(user)
    key = client.session.session_key
    client.post("/admin/logout/")
    [payload] = events("session_ended")
    assert payload == {"session": live.session_fingerprint(key)}
    assert key not in json.dumps(payload)


@pytest.mark.django_db
def test_publish_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="unknown live event kind"):
        live.publish("snapshot", {"at": "", "sections": {}})  # type: ignore[call-overload]


@pytest.mark.django_db
def test_prune_keeps_recent_events():
    now = timezone.now()
    old = LiveEvent.objects.create(kind="metrics", payload={}, created_at=now - dt.timedelta(minutes=10))
    recent = LiveEvent.objects.create(kind="metrics", payload={}, created_at=now - dt.timedelta(minutes=1))
    assert live.prune(now=now) == 1
    assert list(LiveEvent.objects.values_list("id", flat=True)) == [recent.pk]
    assert old.pk != recent.pk


def test_pruning_is_a_seeded_periodic_task_that_expires_before_its_next_run():
    [spec] = [s for s in collect_periodic_specs() if s["task"] == "opsportal.prune_live_events"]
    assert spec["every_seconds"] <= 60


# --- reading: once, in order, late commits included ----------------------------------------


@pytest.mark.django_db
def test_reader_without_window_returns_ids_above_the_cursor():
    ids = [live.publish("heartbeat", {"at": "", "heartbeats": []}) for _ in range(3)]
    rows = live.read_new(ids[0], {}, 0.0)
    assert [r[0] for r in rows] == ids[1:]


@pytest.mark.django_db
def test_reader_with_window_finds_a_late_commit_below_the_cursor_once():
    """PostgreSQL: an id allocated earlier may commit after later ids were read."""
    ids = [live.publish("heartbeat", {"at": "", "heartbeats": []}) for _ in range(4)]
    LiveEvent.objects.filter(id=ids[1]).delete()  # ids[1] "not committed yet"
    cursor, seen = ids[3], {}
    first = live.read_new(0, seen, 10.0)
    assert [r[0] for r in first] == [ids[0], ids[2], ids[3]]
    seen = {r[0]: r[3] for r in first}

    LiveEvent.objects.create(id=ids[1], kind="heartbeat", payload={"late": True})  # commits now
    second = live.read_new(cursor, seen, 10.0)
    assert [r[0] for r in second] == [ids[1]]
    seen.update({r[0]: r[3] for r in second})
    assert live.read_new(cursor, seen, 10.0) == []


class Recorder:
    """Stands in for a client's feed: what the poller offered, in order."""

    session = "x"

    def __init__(self) -> None:
        self.ids: list[int] = []

    def offer(self, event: live.Event) -> None:
        self.ids.append(event.id)

    def end_session(self) -> None:
        pass


@pytest.mark.django_db(transaction=True)
async def test_poller_with_window_delivers_each_event_once_in_id_order():
    poller = live.Poller(asyncio.get_running_loop(), window=10.0)
    feed = Recorder()
    poller.clients.add(feed)  # type: ignore[arg-type]
    before = await database_sync_to_async(live.publish)("heartbeat", {"at": "", "heartbeats": []})
    await poller.ready()
    try:
        publish = database_sync_to_async(live.publish)
        a = await publish("heartbeat", {"at": "", "heartbeats": []})
        b = await publish("heartbeat", {"at": "", "heartbeats": []})
        deadline = asyncio.get_running_loop().time() + 5
        while len(feed.ids) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        # Several more polls re-read the same window: nothing comes twice.
        await asyncio.sleep(live.POLL_SECONDS * 3)
        assert feed.ids == [a, b]
        assert before not in feed.ids  # what happened before the poller started is in the snapshot
    finally:
        poller.clients.clear()
        await asyncio.wait_for(poller._task, 2)  # type: ignore[arg-type]


# --- merging what one client has not been sent -------------------------------------------


def metrics_event(event_id: int, series_id: int, value: float, overall: str | None = None) -> live.Event:
    payload: dict = {"at": f"2026-01-01T00:00:0{event_id}+00:00", "series": [{"id": series_id, "value": value}]}
    if overall:
        payload["overall"] = overall
    return live.Event(event_id, "metrics", payload)


def test_a_lone_event_is_sent_as_it_was_encoded_once():
    pending = live.Pending()
    event = metrics_event(1, 7, 1.0)
    pending.add(event)
    assert pending.frame() is event.text
    assert json.loads(pending.frame())["type"] == "metrics"


def test_merged_metrics_keep_the_latest_value_per_series_and_the_latest_overall():
    pending = live.Pending()
    for event in (metrics_event(1, 7, 1.0, "warning"), metrics_event(2, 7, 2.0), metrics_event(3, 8, 3.0, "critical")):
        pending.add(event)
    frame = json.loads(pending.frame())
    assert frame["type"] == "metrics"
    assert {s["id"]: s["value"] for s in frame["series"]} == {7: 2.0, 8: 3.0}
    assert frame["overall"] == "critical"


def test_several_kinds_in_one_second_make_one_batch_frame():
    pending = live.Pending()
    pending.add(metrics_event(1, 7, 1.0))
    pending.add(live.Event(2, "alert", {"at": "t", "alerts": [{"id": 1, "state": "firing"}]}))
    frame = json.loads(pending.frame())
    assert frame["type"] == "batch"
    assert [m["type"] for m in frame["messages"]] == ["metrics", "alert"]


# --- the page as plain HTML ----------------------------------------------------------------


@pytest.mark.django_db
def test_status_page_without_javascript_shows_tiles_thresholds_and_alerts(staff_client):
    Threshold.objects.create(metric="system_cpu_usage_percent", labels={"host": "web1"}, warning=70, critical=90)
    record(
        [Reading("system_cpu_usage_percent", 95.0), Reading("system_disk_usage_percent", 40.0, {"mount": "/data"})],
        host="web1",
    )
    evaluate()
    make_alert(summary="CPU above 90 % on web1")

    page = staff_client.get("/status/").content.decode()

    assert 'class="banner status-critical"' in page
    assert 'class="tile status-critical" data-series-id=' in page
    assert "warn ≥ 70.0 % · crit ≥ 90.0 %" in page
    assert "Disk /data" in page
    assert "High CPU" in page and "CPU above 90 % on web1" in page
    assert 'href="https://wiki/cpu"' in page
    assert "/static/opsportal/status.js" in page  # and live once it runs


def test_sparkline_draws_an_hour_of_points_as_numbers_only():
    from opsportal.templatetags.status_tags import sparkline

    svg = sparkline([[1_700_000_000 + 60 * i, 10.0 + i % 7] for i in range(60)])
    assert svg.startswith('<svg class="spark"') and "<polyline points=" in svg
    assert 'aria-label="last hour: 10 to 16"' in svg
    assert "<polyline" not in sparkline([[1_700_000_000, 5.0]])  # one point is no line


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_on_postgresql_an_event_committed_after_a_later_id_arrives_once():
    """A transaction holds a lower id while a higher one commits; both arrive, once each."""
    import threading

    from django.db import connection, connections

    assert connection.vendor == "postgresql", "the services tier runs on PostgreSQL (DATABASE_URL)"
    poller = live.Poller(asyncio.get_running_loop())
    feed = Recorder()
    poller.clients.add(feed)  # type: ignore[arg-type]
    await poller.ready()
    assert poller.window == live.REREAD_SECONDS
    inserted, release = threading.Event(), threading.Event()
    held: list[int] = []

    def slow_transaction() -> None:
        try:
            with transaction.atomic():
                held.append(live.publish("heartbeat", {"at": "", "heartbeats": []}))
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    try:
        await asyncio.to_thread(inserted.wait, 10)
        later = await database_sync_to_async(live.publish)("heartbeat", {"at": "", "heartbeats": []})
        assert later > held[0]
        await wait_until(lambda: later in feed.ids)
        release.set()
        await asyncio.to_thread(thread.join, 10)
        await wait_until(lambda: held[0] in feed.ids)
        await asyncio.sleep(live.POLL_SECONDS * 5)  # more polls over the same window
        assert feed.ids == [later, held[0]]
    finally:
        release.set()
        thread.join(10)
        poller.clients.clear()
        await asyncio.wait_for(poller._task, 2)  # type: ignore[arg-type]


async def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
