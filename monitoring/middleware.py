"""Request metrics: counted in each web process's memory, flushed every cycle by a daemon thread.

A request costs a lock and a few additions; nothing is written per request. Every
``FLUSH_SECONDS`` the flusher adds this process's increments to the stored cumulative
counters (:func:`monitoring.collectors.counters.add_to_totals`), so the series add up
across processes and hosts:

* ``http_request_duration_seconds_bucket{le}``, ``_sum`` and ``_count`` (a histogram);
* ``http_requests_total{status}``.

:mod:`monitoring.derived` turns them into ``http_request_duration_p95_seconds`` and
``http_requests_error_ratio`` when read. The same flush refreshes this process's
liveness row (role ``web``), which is how the process collector finds web processes.

The flusher starts on the first request a process serves, never in
``AppConfig.ready()`` (management commands import the apps too; Daphne has no
lifespan events).
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from monitoring.collectors.counters import CounterKey, Increments, add_to_totals, key
from monitoring.collectors.process import WEB_ROLE

logger = logging.getLogger(__name__)

HISTOGRAM = "http_request_duration_seconds"
REQUESTS = "http_requests_total"
#: Upper bounds (seconds) of the duration buckets; 2 and 5 match the default thresholds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
FLUSH_SECONDS = 10.0


def le_label(bound: float) -> str:
    """Return the ``le`` label of a bucket bound, as Prometheus writes it."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class RequestStats:
    """This process's request counts since the last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total_seconds = 0.0
        self.statuses: dict[int, int] = {}

    def observe(self, seconds: float, status: int) -> None:
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        with self._lock:
            self.buckets[index] += 1
            self.total_seconds += seconds
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def take(self) -> dict[CounterKey, float]:
        """Return the increments as counters (cumulative buckets) and start again from zero."""
        with self._lock:
            buckets, total, statuses = self.buckets, self.total_seconds, self.statuses
            self._reset()
        count = sum(buckets)
        if not count:
            return {}
        increments: dict[CounterKey, float] = {}
        running = 0
        for bound, n in zip((*BUCKETS, float("inf")), buckets, strict=True):
            running += n
            increments[key(f"{HISTOGRAM}_bucket", le=le_label(bound))] = running
        increments[key(f"{HISTOGRAM}_sum")] = total
        increments[key(f"{HISTOGRAM}_count")] = count
        for status, n in statuses.items():
            increments[key(REQUESTS, status=str(status))] = n
        return increments


stats = RequestStats()
#: Increments a failed flush could not store, retried at the next one.
_unflushed = Increments()


def flush(*, now: dt.datetime | None = None) -> int:
    """Store this process's request counts since the last flush; return the series written.

    Also refreshes this web process's liveness row. On a database error the counts
    are kept for the next flush.
    """
    from monitoring import liveness

    increments = _unflushed.take()
    for counter, amount in stats.take().items():
        increments[counter] = increments.get(counter, 0.0) + amount
    try:
        liveness.record(WEB_ROLE, node=f"web@{settings.HOSTNAME}", started_at=_process_started())
        return add_to_totals(increments, now=now) if increments else 0
    except Exception:
        _unflushed.add_many(increments)
        logger.warning("could not flush request metrics", exc_info=True)
        return 0


def _process_started() -> dt.datetime:
    import psutil

    try:
        return dt.datetime.fromtimestamp(psutil.Process().create_time(), tz=dt.UTC)
    except psutil.Error:
        return dt.datetime.now(tz=dt.UTC)


class _Flusher:
    """The per-process daemon thread; started once per process (a forked child starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if not auto_flush_enabled():
                return
            self._stop = threading.Event()
            threading.Thread(target=self._loop, name="request-metrics-flusher", daemon=True).start()
            atexit.register(self.stop)

    def _loop(self) -> None:
        from monitoring.liveness import safely

        interval = flush_seconds()
        while not self._stop.wait(interval):
            safely(flush)

    def stop(self) -> None:
        """Flush what is left and remove this process's liveness row (clean shutdown)."""
        from monitoring import liveness

        self._stop.set()
        try:
            liveness.safely(flush)
            liveness.safely(liveness.forget, WEB_ROLE)
        except Exception:
            logger.debug("final request-metrics flush failed", exc_info=True)


flusher = _Flusher()


def flush_seconds() -> float:
    return float(getattr(settings, "MONITORING_REQUEST_FLUSH_SECONDS", FLUSH_SECONDS))


def auto_flush_enabled() -> bool:
    """Return False under Django's test environment, or when the flush interval is 0.

    Test requests must not start a thread that writes into the test database behind
    the tests' transactions; tests call :func:`flush` themselves.
    """
    from django.core import mail

    return flush_seconds() > 0 and not hasattr(mail, "outbox")


class RequestMetricsMiddleware:
    """Time each request and count its status, in memory (see the module docstring)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        flusher.ensure_started()
        started = time.perf_counter()
        try:
            response: HttpResponseBase = self.get_response(request)
        except Exception:
            stats.observe(time.perf_counter() - started, 500)
            raise
        stats.observe(time.perf_counter() - started, response.status_code)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        flusher.ensure_started()
        started = time.perf_counter()
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        try:
            response = await get_response(request)
        except Exception:
            stats.observe(time.perf_counter() - started, 500)
            raise
        stats.observe(time.perf_counter() - started, response.status_code)
        return response
