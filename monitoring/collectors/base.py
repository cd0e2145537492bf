"""The shared shape of a collector and the registry every collector joins."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils import timezone

from monitoring.models import Series
from monitoring.storage import Reading, RecordResult, record

logger = logging.getLogger(__name__)

GAUGE = Series.Kind.GAUGE
COUNTER = Series.Kind.COUNTER


class Scope(StrEnum):
    """Where a collector runs (DESIGN "Mechanisms: Per-host collection")."""

    #: On every host that has a live worker: the readings describe that host.
    HOST = "host"
    #: Once for the whole portal, on one host: the readings describe shared services.
    CLUSTER = "cluster"


class Collector:
    """Read one source and return :class:`~monitoring.storage.Reading` objects.

    Subclasses set ``name`` and ``scope`` and implement :meth:`collect`. ``collect``
    writes no samples: :func:`run` records what it returns in one bulk call, which
    keeps every collector testable without storing and cheap to run.
    """

    name: str = ""
    scope: Scope = Scope.HOST
    #: Default seconds between two runs (the periodic task seeded for it).
    interval_seconds: int = 10
    description: str = ""

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        raise NotImplementedError

    def store(self, readings: list[Reading], *, now: dt.datetime, interval_seconds: int) -> RecordResult:
        """Record what :meth:`collect` returned (a collector may group its readings by interval)."""
        return store_readings(readings, now=now, interval_seconds=interval_seconds)

    @staticmethod
    def gauge(name: str, value: float, **labels: str) -> Reading:
        return Reading(name=name, value=float(value), labels=labels, kind=GAUGE)

    @staticmethod
    def counter(name: str, value: float, **labels: str) -> Reading:
        return Reading(name=name, value=float(value), labels=labels, kind=COUNTER)


registry: dict[str, Collector] = {}


def register(cls: type[Collector]) -> type[Collector]:
    """Class decorator: make ``cls`` runnable by name (``collect_metrics``, tasks, dispatcher)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    registry[cls.name] = cls()
    return cls


@dataclass
class RunResult:
    collector: str
    readings: list[Reading]
    recorded: RecordResult | None
    cpu_ms: float
    wall_ms: float

    def summary(self) -> str:
        stored = self.recorded.accepted if self.recorded else 0
        rejected = len(self.recorded.rejected) if self.recorded else 0
        text = f"{self.collector}: {len(self.readings)} readings, {stored} stored in {self.wall_ms:.0f} ms"
        return f"{text}, {rejected} rejected" if rejected else text


#: (metric names, interval) this process last made sure the stored series expect.
_synced_intervals: dict[frozenset[str], int] = {}


def store_readings(readings: list[Reading], *, now: dt.datetime, interval_seconds: int) -> RecordResult:
    """Record ``readings`` as series expected every ``interval_seconds``.

    A series' expected interval decides when it turns stale, so when an operator
    changes a schedule the series already stored follow (one UPDATE, the first time
    this process sees the new interval).
    """
    result = record(readings, now=now, interval_seconds=interval_seconds)
    names = frozenset(r.name for r in readings)
    if _synced_intervals.get(names) != interval_seconds:
        Series.objects.filter(name__in=names, host=settings.HOSTNAME).exclude(interval_seconds=interval_seconds).update(
            interval_seconds=interval_seconds
        )
        _synced_intervals[names] = interval_seconds
    return result


def run(
    name: str,
    *,
    now: dt.datetime | None = None,
    store: bool = True,
    interval_seconds: int | None = None,
    **options: Any,
) -> RunResult:
    """Run the collector ``name`` once and record its readings (unless ``store`` is false).

    ``interval_seconds`` is the schedule the run belongs to (default: the collector's
    own). ``options`` go to the collector's ``collect`` (``only_due=False`` makes the
    probes collector probe every enabled target). ``cpu_ms`` is the CPU time of the
    calling thread (a worker's other threads are not charged to the collector).
    """
    collector = registry[name]
    now = now or timezone.now()
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    readings = collector.collect(now, **options)
    recorded = None
    if store and readings:
        recorded = collector.store(readings, now=now, interval_seconds=interval_seconds or collector.interval_seconds)
        for index, reason in recorded.rejected:
            logger.warning("collector %s: reading %s refused: %s", name, readings[index].name, reason)
    return RunResult(
        collector=name,
        readings=readings,
        recorded=recorded,
        cpu_ms=(time.thread_time() - cpu0) * 1000,
        wall_ms=(time.perf_counter() - wall0) * 1000,
    )
