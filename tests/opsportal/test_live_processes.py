"""Several real web processes share one database: every client gets every event once.

Two Daphne processes run against this test run's database, and clients connect over
real sockets to each; an event published here reaches each of them exactly once.
Combinations: SQLite without Redis (default tier), SQLite with Redis (``REDIS_URL``
only), PostgreSQL with and without Redis (services tier).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from opsportal import live
from tests.e2e.servers import Server, server_env, start_daphne
from tests.e2e.wsclient import HandshakeRefused, LiveClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def session_cookie(user) -> str:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def start_servers(count: int, log_dir: Path, *, with_redis: bool) -> list[Server]:
    """Start ``count`` Daphne processes on this run's database, side by side."""
    env = server_env()
    if not with_redis:
        env.pop("REDIS_URL", None)
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start_daphne, env, log_dir) for _ in range(count)]
    servers = [f.result() for f in futures if f.exception() is None]
    if len(servers) < count:
        stop_servers(servers)
        raise next(f.exception() for f in futures if f.exception() is not None)  # type: ignore[misc]
    return servers


def stop_servers(servers: list[Server]) -> None:
    with ThreadPoolExecutor(max(1, len(servers))) as pool:
        list(pool.map(Server.stop, servers))


@pytest.fixture(scope="module")
def shared_servers(django_db_setup, tmp_path_factory) -> Iterator[list[Server]]:  # type: ignore[no-untyped-def]
    """Two web processes for the module's tests (starting Django takes seconds).

    They use Redis when this run has ``REDIS_URL``: run the module with only
    ``REDIS_URL`` set for SQLite + Redis.
    """
    with_redis = bool(os.environ.get("REDIS_URL"))
    servers = start_servers(2, tmp_path_factory.mktemp("daphne"), with_redis=with_redis)
    yield servers
    stop_servers(servers)


@pytest.fixture
def services_servers(request, tmp_path) -> Iterator[list[Server]]:  # type: ignore[no-untyped-def]
    servers = start_servers(2, tmp_path, with_redis=request.param)
    yield servers
    stop_servers(servers)


def alert_event(alert_id: int) -> live.AlertPayload:
    return {
        "at": timezone.now().isoformat(),
        "alerts": [
            {
                "id": alert_id,
                "name": "High CPU",
                "labels": {"host": "web1"},
                "severity": "critical",
                "state": "firing",
                "value": 97.0,
                "summary": "",
                "active_since": timezone.now().isoformat(),
                "runbook": "",
                "runbook_url": "",
                "url": "",
            }
        ],
    }


def alert_ids(message: dict) -> list[int]:
    """Return the alert ids a message carries (a ``batch`` included)."""
    messages = message["messages"] if message["type"] == "batch" else [message]
    return [a["id"] for m in messages if m["type"] == "alert" for a in m["alerts"]]


async def assert_each_event_reaches_each_client_once(servers: list[Server], superuser) -> None:  # type: ignore[no-untyped-def]
    cookie = await sync_to_async(session_cookie)(superuser)
    clients = [await LiveClient.open(server.port, cookie=cookie) for server in servers for _ in range(2)]
    try:
        for client in clients:
            assert (await client.next(timeout=10))["type"] == "snapshot"
        publish = database_sync_to_async(live.publish)
        received: list[list[int]] = [[] for _ in clients]
        for alert_id in (101, 102, 103):
            await publish("alert", alert_event(alert_id))
            for index, client in enumerate(clients):
                while alert_id not in received[index]:
                    received[index].extend(alert_ids(await client.next(timeout=5)))
        # Anything sent twice would have arrived by now (one frame per second at most).
        await asyncio.sleep(1.5)
        for index, client in enumerate(clients):
            while not client.messages.empty():
                received[index].extend(alert_ids(client.messages.get_nowait()[1]))
        assert received == [[101, 102, 103]] * len(clients)
    finally:
        for client in clients:
            client.close()


async def test_publish_reaches_a_client_on_each_of_two_processes_exactly_once(shared_servers, superuser):
    await assert_each_event_reaches_each_client_once(shared_servers, superuser)


@pytest.mark.services
@pytest.mark.parametrize("services_servers", [False, True], ids=["without-redis", "with-redis"], indirect=True)
async def test_on_postgresql_publish_reaches_each_process_once(services_servers, superuser):
    """PostgreSQL (ids not in commit order: the poller's window re-read must not duplicate)."""
    assert connection.vendor == "postgresql", "the services tier runs on PostgreSQL (DATABASE_URL)"
    assert os.environ.get("REDIS_URL")
    await assert_each_event_reaches_each_client_once(services_servers, superuser)


async def test_real_sockets_see_the_refusal_codes(shared_servers, plain_user):
    server = shared_servers[0]
    anonymous = await LiveClient.open(server.port)
    assert await asyncio.wait_for(anonymous.close_code, 5) == 4401
    cookie = await sync_to_async(session_cookie)(plain_user)
    plain = await LiveClient.open(server.port, cookie=cookie)
    assert await asyncio.wait_for(plain.close_code, 5) == 4403
    with pytest.raises(HandshakeRefused, match="403"):
        await LiveClient.open(server.port, origin="http://evil.example")
