"""The portal's own processes on this host: web, worker and beat.

They are found through the liveness rows (DESIGN "Mechanisms: Liveness"): workers and
beat write theirs every few seconds, and each web process writes one from its
request-metrics flusher (role ``web``), so no process list is scanned. Readings are
summed per service; a worker's pool children count as the worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings

from monitoring import liveness
from monitoring.collectors.base import Collector, Scope, register
from monitoring.storage import Reading

logger = logging.getLogger(__name__)

#: Role of the liveness row a web process writes (beside ``beat`` and ``worker``).
WEB_ROLE = liveness.Role.WEB.value
SERVICES = (WEB_ROLE, liveness.Role.WORKER.value, liveness.Role.BEAT.value)
#: When a process has no previous CPU sample in this collector's process, measure over this long.
CPU_FIRST_SAMPLE_SECONDS = 0.25
#: Seconds a process may predate its liveness row's start time (pid reuse guard).
START_SLACK_SECONDS = 5.0


@dataclass
class _Usage:
    rss: int = 0
    fds: int = 0
    threads: int = 0
    cpu_seconds: float = 0.0
    processes: int = 0


class _CpuHistory:
    """CPU seconds of each process at the previous collection, keyed by (pid, start time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, float], tuple[float, float]] = {}

    def get(self, key: tuple[int, float]) -> tuple[float, float] | None:
        with self._lock:
            return self._seen.get(key)

    def replace(self, current: dict[tuple[int, float], tuple[float, float]]) -> None:
        with self._lock:
            self._seen = current


cpu_history = _CpuHistory()


def portal_pids(host: str | None = None) -> dict[str, list[tuple[int, dt.datetime]]]:
    """Return {service: [(pid, started_at), ...]} of the live portal processes on ``host``."""
    host = host or settings.HOSTNAME
    found: dict[str, list[tuple[int, dt.datetime]]] = defaultdict(list)
    for role in SERVICES:
        for row in liveness.fresh(role):
            if row.host == host:
                found[role].append((row.pid, row.started_at))
    return dict(found)


def _child_pids(pid: int) -> list[int] | None:
    """Return the descendants of ``pid`` from ``/proc/<pid>/task/*/children`` (None: not available).

    psutil's ``children()`` reads the parent of every process on the machine; the
    kernel's children lists cost a read per thread of the portal's own processes.
    """
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        tasks = Path(f"/proc/{current}/task")
        try:
            threads = list(tasks.iterdir())
        except OSError:
            if current == pid:
                return None
            continue
        for thread in threads:
            try:
                text = (thread / "children").read_text()
            except OSError:
                if current == pid:
                    return None
                continue
            kids = [int(p) for p in text.split()]
            found += kids
            pending += kids
    return found


def _processes(pid: int, started_at: dt.datetime) -> list[psutil.Process]:
    """Return the process ``pid`` and its children, or [] if the pid now names another process."""
    try:
        proc = psutil.Process(pid)
        if proc.create_time() > started_at.timestamp() + START_SLACK_SECONDS:
            return []  # the row's process is gone and its pid was reused
        child_pids = _child_pids(pid)
        if child_pids is None:
            return [proc, *proc.children(recursive=True)]
        children = []
        for child in child_pids:
            try:
                children.append(psutil.Process(child))
            except psutil.NoSuchProcess:
                continue
        return [proc, *children]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@register
class ProcessCollector(Collector):
    name = "process"
    scope = Scope.HOST
    description = "memory, CPU, open files and threads of the portal's web, worker and beat processes on this host"

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        usage: dict[str, _Usage] = {}
        procs: dict[tuple[int, float], tuple[str, psutil.Process]] = {}
        for service, rows in portal_pids().items():
            usage[service] = _Usage()
            for pid, started_at in rows:
                for proc in _processes(pid, started_at):
                    try:
                        procs[(proc.pid, proc.create_time())] = (service, proc)
                    except psutil.Error:
                        continue

        measured = self._measure(procs, usage)
        readings: list[Reading] = []
        for service, u in sorted(usage.items()):
            if not u.processes:
                continue
            readings += [
                self.gauge("process_resident_memory_bytes", u.rss, service=service),
                self.gauge("process_cpu_usage_percent", measured.get(service, 0.0), service=service),
                self.gauge("process_open_fds", u.fds, service=service),
                self.gauge("process_threads", u.threads, service=service),
                self.gauge("process_count", u.processes, service=service),
            ]
        return readings

    def _measure(
        self, procs: dict[tuple[int, float], tuple[str, psutil.Process]], usage: dict[str, _Usage]
    ) -> dict[str, float]:
        """Fill ``usage`` and return CPU % (of one core) per service since the previous collection."""
        first: dict[tuple[int, float], float] = {}
        base_time = 0.0
        if any(cpu_history.get(key) is None for key in procs):
            # Processes seen for the first time: take a short baseline instead of
            # reporting their lifetime average (which says nothing about "now").
            for key, (_, proc) in procs.items():
                try:
                    first[key] = _cpu_seconds(proc)
                except psutil.Error:
                    continue
            base_time = time.monotonic()
            time.sleep(CPU_FIRST_SAMPLE_SECONDS)
        current: dict[tuple[int, float], tuple[float, float]] = {}
        percent: dict[str, float] = defaultdict(float)
        for key, (service, proc) in procs.items():
            try:
                with proc.oneshot():
                    cpu = _cpu_seconds(proc)
                    rss = proc.memory_info().rss
                    fds = proc.num_fds() if hasattr(proc, "num_fds") else 0  # Unix only
                    threads = proc.num_threads()
            except psutil.Error:
                continue
            at = time.monotonic()
            current[key] = (cpu, at)
            previous = cpu_history.get(key) or ((first[key], base_time) if key in first else None)
            u = usage[service]
            u.rss += rss
            u.fds += fds
            u.threads += threads
            u.processes += 1
            if previous is not None and at > previous[1]:
                percent[service] += 100.0 * max(0.0, cpu - previous[0]) / (at - previous[1])
        cpu_history.replace(current)
        return dict(percent)
