"""Readiness checks shared by ``/readyz`` and ``diagnose``.

Each check runs in its own thread with a deadline, so one hung dependency cannot
hang the probe: a check that misses the deadline is reported as failing. Results
carry a name, a status and a response time — and, for ``diagnose`` only, a detail
and a recommended action (never put into the public ``/readyz`` body).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections

OK = "ok"
FAIL = "fail"

#: Seconds one readiness probe may take in total.
DEADLINE_SECONDS = 3.0
#: Free-space floor of the data folder.
DISK_MIN_FREE_BYTES = 512 * 1024 * 1024
DISK_MIN_FREE_RATIO = 0.02


class CheckFailed(Exception):
    """A check found a problem; ``action`` tells the operator what to do."""

    def __init__(self, detail: str, action: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.action = action


@dataclass
class CheckResult:
    name: str
    status: str
    response_time_ms: float
    critical: bool
    detail: str = ""
    action: str = ""
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    func: Callable[[], str]
    #: A failing critical check makes the portal unhealthy (503); others degrade it.
    critical: bool = False


def check_database() -> str:
    conn = connections.create_connection("default")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure of the dependency is a failing check
        raise CheckFailed(
            f"database unreachable: {type(exc).__name__}",
            "Check that the database server runs and DATABASE_URL points at it.",
        ) from None
    finally:
        conn.close()
    return "database answers"


def check_cache() -> str:
    key = f"opsportal:health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=10)
        value = cache.get(key)
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001 - any failure of the dependency is a failing check
        raise CheckFailed(
            f"cache unreachable: {type(exc).__name__}", "Check that Redis runs and REDIS_URL points at it."
        ) from None
    if value != "1":
        raise CheckFailed("cache did not return what was stored", "Check the cache backend (REDIS_URL).")
    return "cache round trip ok"


def _redis_ping(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_broker() -> str:
    if settings.REDIS_URL:
        try:
            _redis_ping(settings.REDIS_URL)
        except Exception as exc:  # noqa: BLE001 - any failure of the dependency is a failing check
            raise CheckFailed(
                f"broker unreachable: {type(exc).__name__}",
                "Start Redis or fix REDIS_URL; until then no task (collection, alert, delivery) runs.",
            ) from None
        return "redis broker answers"
    probe = settings.BROKER_DIR / "tmp" / f"health-{uuid.uuid4().hex}"
    try:
        (settings.BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CheckFailed(
            f"broker folder not writable: {exc.strerror}", "Make OPSPORTAL_DATA_DIR writable by the portal's user."
        ) from None
    return "filesystem broker folder writable"


def _channel_layer_redis_url() -> str | None:
    """Return the Redis URL of the configured channel layer, or None for an in-process layer."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    if "redis" not in layer.get("BACKEND", "").lower():
        return None
    host = layer.get("CONFIG", {}).get("hosts", [settings.REDIS_URL])[0]
    if isinstance(host, dict):
        host = host.get("address", "")
    if isinstance(host, (tuple, list)):  # channels-redis also accepts (host, port)
        host = f"redis://{host[0]}:{host[1]}/0"
    return str(host)


def check_channel_layer() -> str:
    url = _channel_layer_redis_url()
    if not url:
        return "in-memory channel layer (per process)"
    try:
        _redis_ping(url)
    except Exception as exc:  # noqa: BLE001 - any failure of the dependency is a failing check
        raise CheckFailed(
            f"channel layer unreachable: {type(exc).__name__}",
            "Start Redis or fix REDIS_URL; live pages will not update until then.",
        ) from None
    return "redis channel layer answers"


def _check_liveness(role: str, what: str, action: str) -> str:
    from monitoring import liveness

    rows = liveness.safely(liveness.fresh, role)
    if not rows:
        raise CheckFailed(f"no {what} reported in the last {settings.LIVENESS_STALE_SECONDS} s", action)
    return f"{len(rows)} {what} alive on {', '.join(sorted({r.host for r in rows}))}"


START_WORKER_ACTION = "Start a worker: `celery -A opsportal worker -n opsportal@%h` (runportal starts one)."
START_BEAT_ACTION = "Start beat: `celery -A opsportal beat` (exactly one per installation; runportal starts one)."


def check_workers() -> str:
    return _check_liveness("worker", "worker", START_WORKER_ACTION)


def check_beat() -> str:
    return _check_liveness("beat", "beat", START_BEAT_ACTION)


def check_disk() -> str:
    usage = shutil.disk_usage(settings.DATA_DIR)
    if usage.free < DISK_MIN_FREE_BYTES or usage.free / usage.total < DISK_MIN_FREE_RATIO:
        raise CheckFailed(
            f"only {usage.free // (1024 * 1024)} MiB free in the data folder",
            "Free disk space or move OPSPORTAL_DATA_DIR; backups and the database need room.",
        )
    return f"{usage.free // (1024 * 1024)} MiB free"


CHECKS: tuple[Check, ...] = (
    Check("database", check_database, critical=True),
    Check("cache", check_cache),
    Check("broker", check_broker),
    Check("channel_layer", check_channel_layer),
    Check("workers", check_workers),
    Check("beat", check_beat),
    Check("disk", check_disk),
)


def _timed(check: Check) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check.func()
        status, action = OK, ""
    except CheckFailed as failed:
        status, detail, action = FAIL, failed.detail, failed.action
    except Exception as exc:  # noqa: BLE001 - a check's own bug is a failing check, not a 500
        status, detail, action = FAIL, f"check raised {type(exc).__name__}", "See the portal's log."
    elapsed = (time.perf_counter() - started) * 1000
    return CheckResult(check.name, status, round(elapsed, 1), check.critical, detail, action)


def run_checks(checks: tuple[Check, ...] = CHECKS, deadline: float = DEADLINE_SECONDS) -> list[CheckResult]:
    """Run ``checks`` concurrently; a check still running at ``deadline`` fails."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="readyz")
    started = time.perf_counter()
    futures = [(check, pool.submit(_timed, check)) for check in checks]
    results = []
    for check, future in futures:
        remaining = max(0.0, deadline - (time.perf_counter() - started))
        try:
            results.append(future.result(timeout=remaining))
        except FutureTimeout:
            results.append(
                CheckResult(
                    check.name,
                    FAIL,
                    round(deadline * 1000, 1),
                    check.critical,
                    f"no answer within {deadline:g} s",
                    "The dependency hangs: check its server and the network path to it.",
                )
            )
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def overall(results: list[CheckResult]) -> str:
    """Return healthy, degraded (a non-critical check fails) or unhealthy (a critical one fails)."""
    if any(r.status == FAIL and r.critical for r in results):
        return "unhealthy"
    if any(r.status == FAIL for r in results):
        return "degraded"
    return "healthy"
