"""The status page and its WebSocket, tried as anonymous, plain user and staff."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

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
