"""HTTP(S) and TCP probes of the :class:`~monitoring.models.Target` rows.

Every 10 s the collector claims the targets that are due (each honours its own
interval) and probes them in parallel daemon threads. Each probe has a deadline
(its target's timeout): a probe still running at its deadline is reported as timed
out and its socket is shut down, and even a probe stuck where no socket timeout
reaches (a hanging DNS lookup) no longer holds up the others or the worker.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.utils import timezone

from monitoring.collectors.base import Collector, Scope, register
from monitoring.models import Series, Target
from monitoring.models.targets import split_host_port
from monitoring.storage import Reading, RecordResult, record

logger = logging.getLogger(__name__)

#: Probes running at once.
MAX_PARALLEL = 16
#: Body bytes read when looking for a keyword.
MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
#: A target is due this long before its interval is over (beat's ticks jitter a little).
DUE_SLACK = dt.timedelta(seconds=2)
USER_AGENT = "OpsPortal-probe/1.0"


@dataclass
class ProbeResult:
    success: bool
    duration_ms: float
    error: str = ""
    status: int | None = None
    tls_days_left: float | None = None


class _Abort:
    """What the probing thread is blocked on, so the runner can cut it off at the deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.aborted = False

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.aborted:
                _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            _shutdown(self._sock)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv(), unlike close()
    except OSError:
        pass


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _days_left(der: bytes | None, now: dt.datetime) -> float | None:
    if not der:
        return None
    from cryptography import x509

    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    return (not_after - now).total_seconds() / 86400


def _unverified_cert(host: str, port: int, deadline: float) -> bytes | None:
    """Return the peer certificate without verifying it (for the days left of a bad certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=_remaining(deadline)) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, TimeoutError):
        return None


def _describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: {error.verify_message or 'certificate verify failed'}"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, socket.gaierror):
        return f"name resolution failed: {error.strerror}"
    if isinstance(error, http.client.HTTPException):
        return f"bad HTTP response: {type(error).__name__}"
    return f"{type(error).__name__}: {error}"[:200]


def probe_http(target: Target, deadline: float, abort: _Abort, now: dt.datetime) -> ProbeResult:
    """GET the target's URL (following up to 5 redirects) and check status and keyword."""
    started = time.perf_counter()
    url = target.address
    days_left: float | None = None
    follow = target.expected_status is None or not 300 <= target.expected_status < 400
    for hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if https:
            context = ssl.create_default_context()
            if not target.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, port, timeout=_remaining(deadline), context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=_remaining(deadline))
        try:
            try:
                conn.connect()
            except ssl.SSLCertVerificationError as error:
                if hop == 0:
                    days = _days_left(_unverified_cert(host, port, deadline), now)
                    return ProbeResult(False, _ms(started), _describe(error), tls_days_left=days)
                raise
            # http.client lets go of the socket once a "Connection: close" response arrives.
            sock = conn.sock
            assert sock is not None
            abort.watch(sock)
            if https and hop == 0 and isinstance(sock, ssl.SSLSocket):
                days_left = _days_left(sock.getpeercert(binary_form=True), now)
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"})
            response = conn.getresponse()
            location = response.getheader("Location")
            if follow and response.status in {301, 302, 303, 307, 308} and location:
                next_url = urljoin(url, location)
                if urlsplit(next_url).scheme in {"http", "https"}:
                    url = next_url
                    continue
            body = b""
            if target.keyword:
                while len(body) < MAX_BODY_BYTES and not response.isclosed():
                    sock.settimeout(_remaining(deadline))
                    chunk = response.read(65536)
                    if not chunk:
                        break
                    body += chunk
        finally:
            conn.close()
        status = response.status
        duration = _ms(started)
        if target.expected_status is not None and status != target.expected_status:
            reason = f"status {status}, expected {target.expected_status}"
            return ProbeResult(False, duration, reason, status=status, tls_days_left=days_left)
        if target.expected_status is None and status >= 400:
            return ProbeResult(False, duration, f"status {status}", status=status, tls_days_left=days_left)
        if target.keyword and target.keyword not in body.decode("utf-8", errors="replace"):
            reason = f"keyword {target.keyword!r} not found"
            return ProbeResult(False, duration, reason, status=status, tls_days_left=days_left)
        return ProbeResult(True, duration, status=status, tls_days_left=days_left)
    return ProbeResult(False, _ms(started), f"more than {MAX_REDIRECTS} redirects", tls_days_left=days_left)


def probe_tcp(target: Target, deadline: float, abort: _Abort, now: dt.datetime) -> ProbeResult:
    """Open a TCP connection to host:port and close it."""
    started = time.perf_counter()
    host, port = split_host_port(target.address)
    with socket.create_connection((host, port), timeout=_remaining(deadline)):
        pass
    return ProbeResult(True, _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _probe_one(target: Target, deadline: float, abort: _Abort, now: dt.datetime) -> ProbeResult:
    started = time.perf_counter()
    try:
        if target.kind == Target.Kind.TCP:
            return probe_tcp(target, deadline, abort, now)
        return probe_http(target, deadline, abort, now)
    except Exception as error:  # noqa: BLE001 - every failure of the peer is a failed probe
        if abort.aborted or isinstance(error, TimeoutError):
            return _timed_out(target)
        return ProbeResult(False, _ms(started), _describe(error))


def _timed_out(target: Target) -> ProbeResult:
    seconds = target.timeout.total_seconds()
    return ProbeResult(False, seconds * 1000, f"timed out after {seconds:g} s")


def probe_targets(targets: Iterable[Target], *, now: dt.datetime | None = None) -> dict[int, ProbeResult]:
    """Probe ``targets`` in parallel; return {target id: result}, every probe within its timeout."""
    now = now or timezone.now()
    pending = deque(targets)
    results: dict[int, ProbeResult] = {}
    running: dict[int, tuple[Target, float, _Abort]] = {}
    done: dict[int, ProbeResult] = {}
    changed = threading.Condition()

    def work(target: Target, deadline: float, abort: _Abort) -> None:
        result = _probe_one(target, deadline, abort, now)
        with changed:
            done[target.pk] = result
            changed.notify()

    while pending or running:
        while pending and len(running) < MAX_PARALLEL:
            target = pending.popleft()
            deadline = time.monotonic() + target.timeout.total_seconds()
            abort = _Abort()
            running[target.pk] = (target, deadline, abort)
            threading.Thread(target=work, args=(target, deadline, abort), daemon=True, name="probe").start()
        with changed:
            if not done:
                nearest = min(deadline for _, deadline, _ in running.values())
                changed.wait(timeout=max(0.0, nearest - time.monotonic()) + 0.05)
            finished = dict(done)
            done.clear()
        for pk, result in finished.items():
            if pk in running:
                running.pop(pk)
                results[pk] = result
        for pk, (target, deadline, abort) in list(running.items()):
            if time.monotonic() >= deadline:
                # Still running past its deadline: report it, cut its socket, stop waiting.
                abort.abort()
                running.pop(pk)
                results[pk] = _timed_out(target)
    return results


def due_targets(now: dt.datetime) -> list[Target]:
    """Return the enabled targets whose interval has passed since their last probe."""
    return [
        t
        for t in Target.objects.filter(enabled=True)
        if t.last_checked_at is None or t.last_checked_at + t.interval <= now + DUE_SLACK
    ]


def claim(targets: Iterable[Target], now: dt.datetime) -> list[Target]:
    """Return the targets this run got to probe.

    Race: two probe runs (a slow cycle overlapping the next, or a second beat) may pick
    the same due target; the conditional UPDATE on ``last_checked_at`` lets one win.
    """
    claimed = []
    for target in targets:
        won = Target.objects.filter(pk=target.pk, last_checked_at=target.last_checked_at).update(last_checked_at=now)
        if won:
            target.last_checked_at = now
            claimed.append(target)
    return claimed


def save_results(targets: Iterable[Target], results: dict[int, ProbeResult], now: dt.datetime) -> None:
    """Store each target's last result (an UPDATE of those columns only, so admin edits survive)."""
    for target in targets:
        result = results[target.pk]
        Target.objects.filter(pk=target.pk).update(
            last_checked_at=now,
            last_success=result.success,
            last_error=result.error[:300],
            last_duration_ms=result.duration_ms,
        )


def readings_for(targets: Iterable[Target], results: dict[int, ProbeResult]) -> list[Reading]:
    readings = []
    for target in targets:
        result = results[target.pk]
        readings += [
            Collector.gauge("probe_success", 1 if result.success else 0, target=target.name),
            Collector.gauge("probe_duration_ms", result.duration_ms, target=target.name),
        ]
        if result.tls_days_left is not None:
            readings.append(Collector.gauge("probe_tls_days_left", result.tls_days_left, target=target.name))
        if result.status is not None:
            readings.append(Collector.gauge("probe_http_status", result.status, target=target.name))
    return readings


def store_by_interval(readings: list[Reading], *, now: dt.datetime) -> RecordResult:
    """Record probe readings as series expected at their target's interval (not the 10 s cycle).

    Otherwise a target probed every minute would turn stale between two probes.
    """
    names = {r.labels["target"] for r in readings}
    intervals = {
        name: max(1, round(interval.total_seconds()))
        for name, interval in Target.objects.filter(name__in=names).values_list("name", "interval")
    }
    groups: dict[int, list[Reading]] = {}
    for reading in readings:
        groups.setdefault(intervals.get(reading.labels["target"], 60), []).append(reading)
    total = RecordResult()
    for interval, group in groups.items():
        result = record(group, now=now, interval_seconds=interval)
        total.accepted += result.accepted
        total.rejected += [(readings.index(group[i]), reason) for i, reason in result.rejected]
        # An edited interval: the series already stored follow it.
        Series.objects.filter(
            name__in={r.name for r in group}, labels__target__in=[r.labels["target"] for r in group]
        ).exclude(interval_seconds=interval).update(interval_seconds=interval)
    return total


def probe_now(targets: Iterable[Target], *, now: dt.datetime | None = None) -> dict[int, ProbeResult]:
    """Probe ``targets`` at once, whether due or not, and store results and samples (the admin action)."""
    now = now or timezone.now()
    targets = list(targets)
    results = probe_targets(targets, now=now)
    save_results(targets, results, now)
    store_by_interval(readings_for(targets, results), now=now)
    return results


@register
class ProbesCollector(Collector):
    name = "probes"
    scope = Scope.CLUSTER
    description = "HTTP(S) and TCP targets that are due: success, duration, TLS days left"

    def collect(self, now: dt.datetime, *, only_due: bool = True, **options: Any) -> list[Reading]:
        candidates = due_targets(now) if only_due else list(Target.objects.filter(enabled=True))
        targets = claim(candidates, now)
        if not targets:
            return []
        results = probe_targets(targets, now=now)
        save_results(targets, results, now)
        for target in targets:
            if not results[target.pk].success:
                logger.info("probe %s failed: %s", target.name, results[target.pk].error)
        return readings_for(targets, results)

    def store(self, readings: list[Reading], *, now: dt.datetime, interval_seconds: int) -> RecordResult:
        return store_by_interval(readings, now=now)
