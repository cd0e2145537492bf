"""Writing samples: the one public way for any app to record a metric.

``record()`` validates readings (metric and label names, label count, finite values),
resolves series identities (name + labels, ``host`` always included) through a
per-process cache, refuses new series beyond the cardinality cap, bulk-inserts the
samples and moves each series' latest-value cache forward — a constant number of
queries per call plus one INSERT per thousand readings (per 333 on SQLite, whose
statements take at most 999 parameters). Readings older than the rollup lag (a
client resending its buffer) are also folded into the rollups already written.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_delete
from django.utils import timezone

from monitoring import rollups
from monitoring.events import samples_recorded
from monitoring.models import Sample, Series

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
#: Labels per series, ``host`` included.
MAX_LABELS = 10
MAX_LABEL_VALUE = 200
#: Seconds the cached series count may be old when checking the cardinality cap.
_COUNT_TTL = 30.0


class InvalidReading(ValueError):
    """A reading that cannot be stored; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Reading:
    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    ts: dt.datetime | None = None
    kind: str = Series.Kind.GAUGE


@dataclass
class RecordResult:
    accepted: int = 0
    #: (index in the input, reason) of each reading that was not stored.
    rejected: list[tuple[int, str]] = field(default_factory=list)


def labels_key(labels: Mapping[str, str]) -> str:
    """Return the canonical text of ``labels`` (sorted keys, compact JSON)."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=65536)
def _labels_key_of(items: tuple[tuple[str, str], ...]) -> str:
    return labels_key(dict(items))


def key_of(labels: Mapping[str, str]) -> str:
    """Return :func:`labels_key` of ``labels``, from a cache: the same label sets recur every cycle."""
    return _labels_key_of(tuple(sorted(labels.items())))


def validate(reading: Reading, host: str) -> tuple[str, dict[str, str], float]:
    """Return (name, labels with host, value) or raise :class:`InvalidReading`."""
    if not isinstance(reading.name, str) or not METRIC_NAME.match(reading.name):
        raise InvalidReading("name", "must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most 200 characters)")
    if not isinstance(reading.labels, Mapping):
        raise InvalidReading("labels", "must be an object of label names to string values")
    labels: dict[str, str] = {}
    for key, value in reading.labels.items():
        if not isinstance(key, str) or not LABEL_NAME.match(key):
            raise InvalidReading(f"labels.{key}", "label names must match [a-zA-Z_][a-zA-Z0-9_]*")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidReading(f"labels.{key}", "label values must be strings")
        text = str(value)
        if len(text) > MAX_LABEL_VALUE:
            raise InvalidReading(f"labels.{key}", f"label values are at most {MAX_LABEL_VALUE} characters")
        labels[key] = text
    labels.setdefault("host", host)
    if len(labels) > MAX_LABELS:
        raise InvalidReading("labels", f"at most {MAX_LABELS} labels per series, host included")
    raw: object = reading.value
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidReading("value", "must be a number")
    number = float(raw)
    if not math.isfinite(number):
        raise InvalidReading("value", "must be a finite number (no NaN or infinity)")
    return reading.name, labels, number


class _SeriesCache:
    """Per-process map of (name, labels key) to series id; bounded, thread-safe."""

    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._count: tuple[float, int] = (0.0, 0)

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with self._lock:
            return {k: self._ids[k] for k in keys if k in self._ids}

    def put_many(self, items: Mapping[tuple[str, str], int]) -> None:
        with self._lock:
            if len(self._ids) + len(items) > self.MAX_ENTRIES:
                self._ids.clear()
            self._ids.update(items)

    def series_count(self) -> int:
        now = time.monotonic()
        with self._lock:
            at, count = self._count
        if now - at > _COUNT_TTL:
            count = Series.objects.count()
            with self._lock:
                self._count = (now, count)
        return count

    def added(self, n: int) -> None:
        with self._lock:
            at, count = self._count
            self._count = (at, count + n)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._count = (0.0, 0)


series_cache = _SeriesCache()


def max_series() -> int:
    return int(getattr(settings, "MONITORING_MAX_SERIES", 20_000))


def record(
    readings: Iterable[Reading],
    *,
    host: str | None = None,
    now: dt.datetime | None = None,
    interval_seconds: int | None = None,
) -> RecordResult:
    """Store ``readings``; return how many were accepted and why others were not.

    Readings without a time get ``now``. ``host`` (default ``OPSPORTAL_HOSTNAME``)
    is added as a label where the reading has none. New series beyond the
    ``MONITORING_MAX_SERIES`` cap are refused; existing series keep recording.
    """
    host = host or settings.HOSTNAME
    now = now or timezone.now()
    result = RecordResult()
    valid: list[tuple[int, tuple[str, str], dict[str, str], float, dt.datetime, str]] = []
    for index, reading in enumerate(readings):
        try:
            name, labels, value = validate(reading, host)
        except InvalidReading as error:
            result.rejected.append((index, str(error)))
            continue
        ts = reading.ts or now
        if not isinstance(ts, dt.datetime):
            result.rejected.append((index, "ts: must be a date and time"))
            continue
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)  # the project's time zone; Django would assume it too
        valid.append((index, (name, key_of(labels)), labels, value, ts, reading.kind))
    if not valid:
        return result

    for attempt in (1, 2):
        try:
            samples, refused = _store(valid, interval_seconds)
            break
        except IntegrityError:
            # A series id in this process's cache was deleted elsewhere: forget the
            # cache and try once more (only when we own the transaction to retry).
            if attempt == 2 or transaction.get_connection().in_atomic_block:
                raise
            series_cache.clear()
    result.rejected.extend(refused)
    fold_in_late(samples, now)
    result.accepted = len(samples)
    result.rejected.sort()
    return result


def _store(
    valid: list[tuple[int, tuple[str, str], dict[str, str], float, dt.datetime, str]], interval_seconds: int | None
) -> tuple[list[tuple[int, dt.datetime, float]], list[tuple[int, str]]]:
    """Resolve series, insert samples and move the latest-value cache, in one transaction."""
    refused: list[tuple[int, str]] = []
    with transaction.atomic():
        ids = resolve_series(
            {key: (labels, kind) for _, key, labels, _, _, kind in valid},
            interval_seconds=interval_seconds,
        )
        samples: list[tuple[int, dt.datetime, float]] = []
        latest: dict[int, tuple[dt.datetime, float]] = {}
        for index, key, _, value, ts, _ in valid:
            series_id = ids.get(key)
            if series_id is None:
                refused.append((index, f"series limit of {max_series()} reached; new series refused"))
                continue
            samples.append((series_id, ts, value))
            if series_id not in latest or ts >= latest[series_id][0]:
                latest[series_id] = (ts, value)
        insert_samples(samples)
        update_latest(latest)
        samples_recorded.send(sender=Series, latest=latest)
    return samples, refused


def resolve_series(
    wanted: Mapping[tuple[str, str], tuple[dict[str, str], str]], *, interval_seconds: int | None = None
) -> dict[tuple[str, str], int]:
    """Return series ids for ``wanted`` keys, creating missing ones within the cap."""
    ids = series_cache.get_many(wanted)
    missing = [key for key in wanted if key not in ids]
    if missing:
        found = _lookup(missing)
        still = [key for key in missing if key not in found]
        room = max(0, max_series() - series_cache.series_count())
        creatable = still[:room]
        if creatable:
            Series.objects.bulk_create(
                [
                    Series(
                        name=name,
                        labels=wanted[(name, lkey)][0],
                        labels_key=lkey,
                        host=wanted[(name, lkey)][0].get("host", ""),
                        kind=wanted[(name, lkey)][1],
                        interval_seconds=interval_seconds or 10,
                    )
                    for name, lkey in creatable
                ],
                ignore_conflicts=True,  # another process may create the same series meanwhile
            )
            series_cache.added(len(creatable))
            found.update(_lookup(creatable))
        series_cache.put_many(found)
        ids.update(found)
    return ids


def _lookup(keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    names = {name for name, _ in keys}
    lkeys = {lkey for _, lkey in keys}
    wanted = set(keys)
    for chunk_start in range(0, len(lkeys), 500):
        chunk = sorted(lkeys)[chunk_start : chunk_start + 500]
        rows = Series.objects.filter(name__in=names, labels_key__in=chunk).values_list("id", "name", "labels_key")
        for series_id, name, lkey in rows:
            if (name, lkey) in wanted:
                found[(name, lkey)] = series_id
    return found


def insert_samples(samples: list[tuple[int, dt.datetime, float]]) -> None:
    """Insert (series id, time, value) rows with multi-row INSERTs.

    What ``bulk_create`` does, without a model instance and a per-field compile step
    per row, and with each distinct time converted once (a collector's batch shares one).
    """
    if not samples:
        return
    q = connection.ops.quote_name
    head = f"INSERT INTO {q(Sample._meta.db_table)} (series_id, ts, value) VALUES "  # noqa: S608 - identifiers only
    chunk_size = 1000 if connection.vendor == "postgresql" else 300  # SQLite's oldest limit: 999 parameters
    adapt = connection.ops.adapt_datetimefield_value
    converted: dict[dt.datetime, Any] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(samples), chunk_size):
            chunk = samples[start : start + chunk_size]
            params: list[Any] = []
            for series_id, ts, value in chunk:
                when = converted.get(ts)
                if when is None:
                    when = converted[ts] = adapt(ts)
                params.extend((series_id, when, value))
            cursor.execute(head + ", ".join(["(%s, %s, %s)"] * len(chunk)), params)


def fold_in_late(samples: list[tuple[int, dt.datetime, float]], now: dt.datetime) -> None:
    """Re-roll the already-rolled buckets that ``samples`` arrived too late for.

    Collectors stamp readings with the current time, so this costs nothing for them; a
    client resending a buffer of old readings gets its history's rollups corrected
    (one locked watermark read plus one statement per resolution).
    """
    # Half the rollup lag: a run may have rolled buckets that ended a lag before *its* now.
    horizon = now - dt.timedelta(seconds=rollups.lag_seconds() / 2)
    late = [(series_id, ts) for series_id, ts, _ in samples if ts < horizon]
    if late:
        rollups.reroll({sid for sid, _ in late}, min(ts for _, ts in late), max(ts for _, ts in late))


#: Series per latest-value UPDATE (three parameters each, under SQLite's oldest limit of 999).
_LATEST_CHUNK = 300


def update_latest(latest: Mapping[int, tuple[dt.datetime, float]]) -> None:
    """Move each series' latest-value cache forward (never backwards to an older push).

    One ``UPDATE ... FROM (VALUES ...)`` per 300 series, with the "newer only" test in
    its WHERE clause: no read before the write, and no lost update when two writers race.
    """
    if not latest:
        return
    if connection.vendor not in ("postgresql", "sqlite") or (
        connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 33)
    ):
        _update_latest_portably(latest)
        return
    q = connection.ops.quote_name
    table = q(Series._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    rows = sorted(latest.items())  # a fixed order: concurrent writers lock series alike
    if connection.vendor == "postgresql":
        row_sql = "(%s::bigint, %s::timestamptz, %s::double precision)"
        source = "(VALUES {}) AS v (id, ts, value)"
    else:
        row_sql = "(%s, %s, %s)"
        source = "(SELECT column1 AS id, column2 AS ts, column3 AS value FROM (VALUES {})) AS v"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _LATEST_CHUNK):
            chunk = rows[start : start + _LATEST_CHUNK]
            params: list[Any] = []
            for sid, (ts, value) in chunk:
                params.extend((sid, adapt(ts), value))
            # Only identifiers and placeholders are formatted in; values are parameters.
            sql = (
                f"UPDATE {table} SET last_at = v.ts, last_value = v.value "  # noqa: S608
                f"FROM {source.format(', '.join([row_sql] * len(chunk)))} "
                f"WHERE {table}.id = v.id AND ({table}.last_at IS NULL OR {table}.last_at <= v.ts)"
            )
            cursor.execute(sql, params)


def _update_latest_portably(latest: Mapping[int, tuple[dt.datetime, float]]) -> None:
    current = dict(Series.objects.filter(id__in=list(latest)).values_list("id", "last_at"))
    changed = [
        Series(id=sid, last_at=ts, last_value=value)
        for sid, (ts, value) in latest.items()
        if (known := current.get(sid)) is None or ts >= known
    ]
    Series.objects.bulk_update(changed, ["last_at", "last_value"], batch_size=500)


def _forget_deleted_series(sender: type[Series], instance: Series, **kwargs: object) -> None:
    """Drop a deleted series from this process's cache (others retry on the FK error)."""
    series_cache.clear()


post_delete.connect(_forget_deleted_series, sender=Series, dispatch_uid="monitoring.storage.forget_deleted_series")
