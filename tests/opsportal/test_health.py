"""/healthz and /readyz, and the readiness checks behind them (opsportal.health)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone

from monitoring.models import ProcessHeartbeat
from opsportal import health

CHECK_NAMES = {"database", "cache", "broker", "channel_layer", "workers", "beat", "disk"}
#: A local port nothing listens on: connections are refused at once.
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


@pytest.fixture(params=["anonymous", "plain", "staff"])
def any_client(request: pytest.FixtureRequest) -> Client:
    if request.param == "anonymous":
        return Client()
    return request.getfixturevalue(f"{request.param}_client")


def fresh_heartbeat(role: str, *, age: dt.timedelta = dt.timedelta(0), pid: int = 4242) -> ProcessHeartbeat:
    seen = timezone.now() - age
    return ProcessHeartbeat.objects.create(
        role=role, host="web-1", pid=pid, node=f"{role}@web-1", started_at=seen, last_seen=seen
    )


def assert_contract(body: dict[str, object]) -> dict[str, dict[str, object]]:
    """Check the /readyz body shape of DESIGN and return its checks."""
    assert set(body) == {"status", "checks"}
    assert body["status"] in {"healthy", "degraded", "unhealthy"}
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert set(checks) == CHECK_NAMES
    for name, check in checks.items():
        assert set(check) == {"status", "response_time_ms"}, name
        assert check["status"] in {"ok", "fail"}, name
        assert isinstance(check["response_time_ms"], (int, float)) and check["response_time_ms"] >= 0, name
    return checks


# --- /healthz ------------------------------------------------------------------------


def test_healthz_answers_ok_to_every_visitor(any_client: Client) -> None:
    response = any_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- /readyz -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_every_visitor_with_the_documented_contract(any_client: Client) -> None:
    response = any_client.get("/readyz")

    assert response["Content-Type"] == "application/json"
    checks = assert_contract(response.json())
    # No worker or beat runs in this test: the portal serves but is degraded, not down.
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert checks["database"]["status"] == "ok"
    assert checks["workers"]["status"] == "fail" and checks["beat"]["status"] == "fail"


@pytest.mark.django_db(transaction=True)
def test_readyz_body_holds_no_secrets_or_internals() -> None:
    with override_settings(**UNREACHABLE_REDIS):
        text = Client().get("/readyz").content.decode()

    for internal in (
        "127.0.0.1",
        "redis://",
        "sqlite",
        "postgres",
        str(settings.DATA_DIR),
        settings.SECRET_KEY,
        "Error",
        "refused",
        "Traceback",
    ):
        assert internal not in text


@pytest.mark.django_db(transaction=True)
def test_readyz_is_degraded_not_down_when_redis_is_unreachable() -> None:
    started = time.monotonic()
    with override_settings(**UNREACHABLE_REDIS):
        response = Client().get("/readyz")
    elapsed = time.monotonic() - started

    checks = assert_contract(response.json())
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert {name for name, check in checks.items() if check["status"] == "fail"} >= {
        "cache",
        "broker",
        "channel_layer",
    }
    assert checks["database"]["status"] == "ok"
    assert elapsed < health.DEADLINE_SECONDS + 1


@pytest.fixture
def unreachable_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point new connections (the readiness check opens its own) at a database that is not there."""
    broken = dict(connections.settings["default"])
    if broken["ENGINE"].endswith("sqlite3"):
        broken["NAME"] = "/nonexistent/opsportal/db.sqlite3"
    else:
        broken["HOST"], broken["PORT"] = "127.0.0.1", "1"
    monkeypatch.setitem(connections.settings, "default", broken)
    yield


@pytest.mark.django_db(transaction=True)
def test_readyz_is_unhealthy_with_503_when_the_database_is_unreachable(unreachable_database: None) -> None:
    response = Client().get("/readyz")

    checks = assert_contract(response.json())
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert checks["database"]["status"] == "fail"
    assert checks["disk"]["status"] == "ok"
    assert "nonexistent" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_readyz_is_healthy_when_fresh_worker_and_beat_rows_exist() -> None:
    fresh_heartbeat("worker")
    fresh_heartbeat("beat")

    response = Client().get("/readyz")

    checks = assert_contract(response.json())
    assert checks["workers"]["status"] == "ok" and checks["beat"]["status"] == "ok"
    # Every embedded dependency answers here; only a nearly full disk could degrade it.
    failing = {name for name, check in checks.items() if check["status"] == "fail"}
    assert failing <= {"disk"}
    assert response.json()["status"] == ("degraded" if failing else "healthy")
    assert response.status_code == 200


# --- the checks ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_and_beat_checks_fail_on_stale_rows_and_pass_on_fresh_ones() -> None:
    stale = dt.timedelta(seconds=settings.LIVENESS_STALE_SECONDS + 30)
    fresh_heartbeat("worker", age=stale, pid=1)
    fresh_heartbeat("beat", age=stale, pid=2)
    checks = (health.Check("workers", health.check_workers), health.Check("beat", health.check_beat))

    before = {r.name: r for r in health.run_checks(checks)}
    fresh_heartbeat("worker", pid=3)
    fresh_heartbeat("beat", pid=4)
    after = {r.name: r for r in health.run_checks(checks)}

    assert before["workers"].status == before["beat"].status == health.FAIL
    assert "celery -A opsportal worker" in before["workers"].action
    assert after["workers"].status == after["beat"].status == health.OK


def test_a_hung_check_is_reported_failing_at_the_deadline() -> None:
    release = threading.Event()

    def hangs() -> str:
        release.wait(10)
        return "too late"

    checks = (
        health.Check("hangs", hangs, critical=True),
        health.Check("answers", lambda: "fine"),
    )
    started = time.monotonic()
    try:
        results = {r.name: r for r in health.run_checks(checks, deadline=0.3)}
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert elapsed < 1.0
    assert results["hangs"].status == health.FAIL
    assert results["hangs"].response_time_ms == pytest.approx(300)
    assert "0.3 s" in results["hangs"].detail
    assert results["answers"].status == health.OK
    assert health.overall(list(results.values())) == "unhealthy"


def test_a_check_that_raises_is_a_failing_check_not_an_error() -> None:
    def broken() -> str:
        raise RuntimeError("secret detail")

    [result] = health.run_checks((health.Check("broken", broken),))

    assert result.status == health.FAIL
    assert "secret detail" not in result.detail
    assert health.overall([result]) == "degraded"


# --- services tier -------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
class TestReadyzOnRealServices:
    def test_database_cache_broker_and_channel_layer_answer(self) -> None:
        assert settings.REDIS_URL, "the services tier runs with REDIS_URL"
        assert connections["default"].vendor == "postgresql"

        response = Client().get("/readyz")

        checks = assert_contract(response.json())
        for name in ("database", "cache", "broker", "channel_layer"):
            assert checks[name]["status"] == "ok", name
        assert response.status_code == 200
