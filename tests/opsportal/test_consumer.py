"""The status page and its WebSocket, tried as anonymous, plain user and staff."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone

from opsportal import live
from opsportal.asgi import application

WS_PATH = "/ws/status/"
GOOD_ORIGIN = b"http://localhost"


def session_cookie(user) -> bytes:  # type: ignore[no-untyped-def]
    """Log ``user`` in as a browser would and return its Cookie header."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def open_socket(user=None, origin: bytes | None = GOOD_ORIGIN) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    return WebsocketCommunicator(application, WS_PATH, headers=headers)


async def assert_accepted_then_closed_with(communicator: WebsocketCommunicator, code: int) -> None:
    connected, _ = await communicator.connect()
    assert connected, "refusals must accept first, or browsers only see 1006"
    message = await communicator.receive_output(timeout=2)
    assert message == {"type": "websocket.close", "code": code}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_socket_is_closed_with_4401():
    communicator = await open_socket()
    await assert_accepted_then_closed_with(communicator, 4401)


@pytest.mark.django_db(transaction=True)
async def test_plain_user_socket_is_closed_with_4403(plain_user):
    communicator = await open_socket(plain_user)
    await assert_accepted_then_closed_with(communicator, 4403)


@pytest.mark.django_db(transaction=True)
async def test_staff_get_a_snapshot_on_connect(superuser):
    communicator = await open_socket(superuser)
    connected, _ = await communicator.connect()
    try:
        assert connected
        message = await communicator.receive_json_from(timeout=2)
        assert message["type"] == "snapshot"
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_staff_without_permissions_still_get_the_snapshot(staff_user):
    communicator = await open_socket(staff_user)
    connected, _ = await communicator.connect()
    try:
        assert connected
        assert (await communicator.receive_json_from(timeout=2))["type"] == "snapshot"
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [b"http://evil.example", b"https://localhost.evil.example", None])
async def test_foreign_or_missing_origin_is_refused_even_for_staff(superuser, origin):
    communicator = await open_socket(superuser, origin=origin)
    connected, _ = await communicator.connect()
    if connected:  # pragma: no cover - only on failure
        await communicator.disconnect()
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_garbage_frames_from_staff_do_not_close_the_socket(superuser):
    communicator = await open_socket(superuser)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=2))["type"] == "snapshot"

    await communicator.send_to(text_data="{not json")
    await communicator.send_to(text_data="   ")
    await communicator.send_to(text_data='{"type": "unknown", "x": [1, 2]}')
    await communicator.send_to(text_data="null")
    await communicator.send_to(bytes_data=b"\x00\xff binary")

    # No close frame came back and the consumer is still running.
    assert await communicator.receive_nothing()
    assert not communicator.future.done()
    # disconnect() re-raises anything the consumer raised.
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_logged_out_session_is_treated_as_anonymous(superuser):
    cookie = await sync_to_async(session_cookie)(superuser)
    from django.contrib.sessions.models import Session

    await sync_to_async(Session.objects.all().delete)()
    communicator = WebsocketCommunicator(
        application, WS_PATH, headers=[(b"host", b"localhost"), (b"origin", GOOD_ORIGIN), (b"cookie", cookie)]
    )
    await assert_accepted_then_closed_with(communicator, 4401)


# --- the page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_page_sends_anonymous_to_login(client):
    response = client.get("/status/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/status/"


@pytest.mark.django_db
def test_status_page_refuses_plain_user(plain_client):
    response = plain_client.get("/status/")
    assert response.status_code == 403
    assert b"Forbidden" in response.content
    assert b"<h1>Status</h1>" not in response.content


@pytest.mark.django_db
def test_status_page_is_served_to_staff(staff_client):
    response = staff_client.get("/status/")
    assert response.status_code == 200
    assert b"Status" in response.content


@pytest.mark.django_db
def test_root_leads_staff_to_the_status_page(staff_client):
    response = staff_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/status/"


# --- what staff receive -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    from monitoring.storage import series_cache

    series_cache.clear()
    yield
    series_cache.clear()


async def staff_socket(user) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    """Connect as ``user`` and return the communicator after its snapshot."""
    communicator = await open_socket(user)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    return communicator


def metrics_payload(series_id: int, value: float) -> live.MetricsPayload:
    now = timezone.now().isoformat()
    return {
        "at": now,
        "series": [
            {
                "id": series_id,
                "name": "system_cpu_usage_percent",
                "host": "web1",
                "labels": {"host": "web1"},
                "value": value,
                "display": f"{value:.1f} %",
                "at": now,
                "status": "healthy",
                "status_since": now,
            }
        ],
    }


publish = database_sync_to_async(live.publish)


@pytest.mark.django_db(transaction=True)
async def test_snapshot_has_overall_tiles_and_alerts_sections(superuser):
    from monitoring.storage import Reading, record

    await database_sync_to_async(record)([Reading("system_cpu_usage_percent", 12.5)], host="web1")
    communicator = await open_socket(superuser)
    await communicator.connect()
    try:
        snapshot = await communicator.receive_json_from(timeout=5)
        sections = snapshot["sections"]
        assert set(sections) >= {"overall", "tiles", "alerts"}
        assert sections["overall"]["status"] in {"healthy", "unknown", "stale", "warning", "critical"}
        [host] = sections["tiles"]["hosts"]
        [tile] = host["tiles"]
        assert host["host"] == "web1"
        assert (tile["title"], tile["display"], tile["limits"]) == ("CPU", "12.5 %", "warn ≥ 70.0 % · crit ≥ 85.0 %")
        assert tile["history_url"] == f"/status/series/{tile['id']}/"
        assert sections["alerts"] == {"alerts": []}
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_recorded_sample_reaches_staff_as_a_metrics_message(superuser):
    from monitoring.storage import Reading, record

    communicator = await staff_socket(superuser)
    try:
        await database_sync_to_async(record)([Reading("system_memory_usage_percent", 61.0)], host="web2")
        message = await communicator.receive_json_from(timeout=3)
        assert message["type"] == "metrics"
        [series] = message["series"]
        assert (series["name"], series["host"], series["value"], series["display"]) == (
            "system_memory_usage_percent",
            "web2",
            61.0,
            "61.0 %",
        )
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_publishes_within_a_second_reach_the_client_as_one_message(superuser):
    communicator = await staff_socket(superuser)
    try:
        await publish("metrics", metrics_payload(1, 10.0))
        first = await communicator.receive_json_from(timeout=3)
        first_at = time.monotonic()
        assert first["series"][0]["value"] == 10.0  # leading edge: the first goes at once

        for value in (20.0, 30.0, 40.0):
            await publish("metrics", metrics_payload(1, value))
        merged = await communicator.receive_json_from(timeout=3)
        assert time.monotonic() - first_at >= 0.9
        assert merged["type"] == "metrics"
        assert [s["value"] for s in merged["series"]] == [40.0]
        assert await communicator.receive_nothing(timeout=1.2)
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_alert_and_metrics_in_the_same_second_arrive_as_one_batch(superuser):
    communicator = await staff_socket(superuser)
    try:
        await publish("metrics", metrics_payload(1, 10.0))
        await communicator.receive_json_from(timeout=3)
        await publish("metrics", metrics_payload(1, 11.0))
        await publish("alert", {"at": timezone.now().isoformat(), "alerts": [{"id": 9, "state": "firing"}]})  # type: ignore[typeddict-item]
        batch = await communicator.receive_json_from(timeout=3)
        assert batch["type"] == "batch"
        assert {m["type"] for m in batch["messages"]} == {"metrics", "alert"}
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_slow_client_gets_a_fresh_snapshot_and_never_stalls_the_others(superuser, staff_user, monkeypatch):
    monkeypatch.setattr(live.Feed, "max_queue", 3)
    monkeypatch.setattr(live, "BATCH", 2)  # the fast client drains between polls
    slow = await staff_socket(staff_user)
    fast = await staff_socket(superuser)
    try:
        poller = live.current_poller()
        assert poller is not None and len(poller.clients) == 2
        slow_fingerprint = live.session_fingerprint(await database_sync_to_async(_session_key_of)(staff_user.pk))
        [slow_feed] = [f for f in poller.clients if f.session == slow_fingerprint]
        gate = asyncio.Event()
        send = slow_feed.send

        async def stuck(text: str) -> None:
            await gate.wait()
            await send(text)

        slow_feed.send = stuck  # type: ignore[method-assign]

        await publish("metrics", metrics_payload(1, 1.0))
        assert (await fast.receive_json_from(timeout=3))["series"][0]["value"] == 1.0
        await database_sync_to_async(_publish_many)(10)
        # The fast client is served while the slow one is stuck.
        assert (await fast.receive_json_from(timeout=3))["type"] == "metrics"
        assert slow_feed.behind

        gate.set()
        assert (await slow.receive_json_from(timeout=3))["series"][0]["value"] == 1.0  # what it was stuck on
        assert (await slow.receive_json_from(timeout=3))["type"] == "snapshot"  # instead of the backlog
    finally:
        await slow.disconnect()
        await fast.disconnect()


def _session_key_of(user_id: int) -> str:
    from django.contrib.sessions.models import Session

    for session in Session.objects.all():
        if session.get_decoded().get("_auth_user_id") == str(user_id):
            return session.session_key
    raise LookupError(user_id)


def _publish_many(count: int) -> None:
    for value in range(count):
        live.publish("metrics", metrics_payload(100 + value, float(value)))


@pytest.mark.django_db(transaction=True)
async def test_session_that_expires_mid_stream_is_closed_with_4401(superuser, monkeypatch):
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.3)
    communicator = await staff_socket(superuser)
    from django.contrib.sessions.models import Session

    await database_sync_to_async(Session.objects.update)(expire_date=timezone.now() - timezone.timedelta(seconds=1))
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_user_who_loses_staff_status_mid_stream_is_closed_with_4403(staff_user, monkeypatch):
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.3)
    communicator = await staff_socket(staff_user)
    staff_user.is_staff = False
    await database_sync_to_async(staff_user.save)()
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4403}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_logout_elsewhere_closes_the_socket_with_4401_at_once(superuser):
    communicator = await staff_socket(superuser)
    key = await database_sync_to_async(_session_key_of)(superuser.pk)
    await publish("session_ended", {"session": live.session_fingerprint(key)})
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_client_may_ask_for_a_fresh_snapshot_but_not_flood(superuser):
    communicator = await staff_socket(superuser)
    try:
        for _ in range(5):
            await communicator.send_to(text_data=json.dumps({"type": "resync"}))
        assert (await communicator.receive_json_from(timeout=3))["type"] == "snapshot"
        assert await communicator.receive_nothing(timeout=1.2)
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_many_quick_connects_leave_the_socket_of_others_working(superuser):
    watcher = await staff_socket(superuser)
    try:
        for _ in range(30):
            communicator = await open_socket(superuser)
            await communicator.connect()
            await communicator.disconnect()
        await publish("metrics", metrics_payload(1, 5.0))
        assert (await watcher.receive_json_from(timeout=3))["series"][0]["value"] == 5.0
    finally:
        await watcher.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_client_that_connects_too_often_is_closed_with_4429_and_others_are_unaffected(monkeypatch):
    from opsportal import consumers

    limiter = consumers.ConnectLimiter()
    limiter.limit = 3
    monkeypatch.setattr(consumers, "connect_limiter", limiter)
    codes = []
    for _ in range(5):
        communicator = await open_socket()
        communicator.scope["client"] = ("10.0.0.9", 5555)
        connected, _ = await communicator.connect()
        assert connected
        codes.append((await communicator.receive_output(timeout=3))["code"])
        await communicator.wait()
    assert codes == [4401, 4401, 4401, 4429, 4429]

    other = await open_socket()
    other.scope["client"] = ("10.0.0.10", 5555)
    await other.connect()
    assert (await other.receive_output(timeout=3))["code"] == 4401
    await other.wait()


def test_connect_limiter_forgets_after_the_window():
    from opsportal.consumers import ConnectLimiter

    limiter = ConnectLimiter()
    limiter.limit = 2
    assert limiter.allow("a", now=0.0) and limiter.allow("a", now=1.0)
    assert not limiter.allow("a", now=2.0)
    assert limiter.allow("a", now=61.5)
