"""Cumulative counters fed by many processes: in-memory increments, added in the database.

Request metrics (every web process) and Celery task counts (every worker) are
counted in memory and flushed every cycle. A flush adds its increments to the
series' latest value inside one transaction that locks those series rows, and
records the new totals through :func:`monitoring.storage.record`, so the stored
``_total`` series are cumulative across processes and restarts and every reader
(``rate``, ``increase``, ``/metrics``) treats them like any Prometheus counter.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitoring.models import Series
from monitoring.storage import Reading, labels_key, record, resolve_series, validate

#: (metric name, sorted label items) — the identity of a counter within one host.
CounterKey = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> CounterKey:
    return name, tuple(sorted(labels.items()))


class Increments:
    """Thread-safe in-memory increments, swapped out whole at each flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: defaultdict[CounterKey, float] = defaultdict(float)

    def add(self, counter: CounterKey, amount: float = 1.0) -> None:
        with self._lock:
            self._values[counter] += amount

    def add_many(self, amounts: Mapping[CounterKey, float]) -> None:
        with self._lock:
            for counter, amount in amounts.items():
                self._values[counter] += amount

    def take(self) -> dict[CounterKey, float]:
        """Return the increments so far and start again from zero."""
        with self._lock:
            values, self._values = dict(self._values), defaultdict(float)
        return values

    def peek(self) -> dict[CounterKey, float]:
        with self._lock:
            return dict(self._values)


def add_to_totals(
    increments: Mapping[CounterKey, float], *, now: dt.datetime | None = None, host: str | None = None
) -> int:
    """Add ``increments`` to the stored cumulative counters; return how many series moved.

    Race: two processes flushing the same counters at once would both read the old
    total and one increment would be lost. The series rows are locked first
    (``select_for_update`` on PostgreSQL; on SQLite the IMMEDIATE transaction already
    holds the write lock), so the second flusher reads the first one's total.
    """
    if not increments:
        return 0
    host = host or settings.HOSTNAME
    now = now or timezone.now()
    wanted: dict[tuple[str, str], tuple[dict[str, str], str]] = {}
    readings_by_key: dict[tuple[str, str], tuple[str, dict[str, str], float]] = {}
    for (name, label_items), amount in increments.items():
        _, labels, _ = validate(Reading(name=name, value=amount, labels=dict(label_items)), host)
        series_key = (name, labels_key(labels))
        wanted[series_key] = (labels, Series.Kind.COUNTER)
        readings_by_key[series_key] = (name, labels, amount)
    with transaction.atomic():
        ids = resolve_series(wanted)
        rows = (
            Series.objects.select_for_update()
            .filter(id__in=list(ids.values()))
            .values_list("id", "last_value", "last_at")
        )
        current = {sid: (value or 0.0, at) for sid, value, at in rows}
        # A total must never be stamped before the total it extends (clock skew between hosts).
        ts = max([now, *(at for _, at in current.values() if at is not None)])
        readings = []
        for series_key, (name, labels, amount) in readings_by_key.items():
            if series_key not in ids:
                continue  # refused by the cardinality cap
            total = current.get(ids[series_key], (0.0, None))[0] + amount
            readings.append(Reading(name=name, value=total, labels=labels, ts=ts, kind=Series.Kind.COUNTER))
        result = record(readings, host=host, now=ts)
    return result.accepted
