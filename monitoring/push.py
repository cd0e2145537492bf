"""The push API's body: parse, validate every sample with its path, store all or nothing.

A batch with any bad sample is rejected whole and nothing is stored, so a client can
fix the named fields and send the same batch again without creating duplicates.
Errors name the field with its path (``samples[3].labels.bad-key: ...``, indexes
0-based); a single-sample body names the bare field (``value: ...``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from django.db import transaction

from monitoring.models import Series
from monitoring.storage import InvalidReading, Reading, record, series_cache, validate

#: Largest body accepted (bytes); bigger ones get 413.
MAX_BODY_BYTES = 1_000_000
#: Most samples in one batch; more get 413.
MAX_SAMPLES = 5_000
#: How far a sample's time may be ahead of the portal's clock (clock skew).
MAX_FUTURE = dt.timedelta(minutes=5)
#: How old a sample may be (a client that buffered while offline).
MAX_AGE = dt.timedelta(hours=24)
#: Expected interval of a series created by a push; edit it on the series if a job pushes less often.
PUSH_INTERVAL_SECONDS = 60
#: Errors listed in one answer (the count says how many there were).
MAX_ERRORS = 20

SAMPLE_FIELDS = ("name", "value", "labels", "ts")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class PushError(Exception):
    """The body cannot be accepted; ``status`` is 400 or 413."""

    status: int
    errors: list[FieldError]
    #: Samples in the refused body, when it could be read that far.
    samples: int = 0
    total: int = field(default=0)

    def __post_init__(self) -> None:
        self.total = self.total or len(self.errors)
        self.errors = self.errors[:MAX_ERRORS]

    def __str__(self) -> str:
        return str(self.errors[0]) if self.errors else "invalid body"


@dataclass(frozen=True)
class Push:
    """The readings of a valid body, each with the path that names it in errors."""

    readings: list[Reading]
    paths: list[str]


def parse(body: bytes, *, host: str, now: dt.datetime) -> Push:
    """Return the readings of a push body, or raise :class:`PushError` naming every bad field."""
    if len(body) > MAX_BODY_BYTES:
        raise PushError(413, [FieldError("body", f"larger than {MAX_BODY_BYTES} bytes")])
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise PushError(400, [FieldError("body", "not valid JSON (UTF-8)")]) from None
    if not isinstance(document, dict):
        raise PushError(400, [FieldError("body", 'must be a JSON object: one sample or {"samples": [...]}')])
    if "samples" not in document:
        items: list[object] = [document]
        paths = [""]
    else:
        unknown = [FieldError(str(key), "unknown field (a batch holds only \"samples\")") for key in document
                   if key != "samples"]
        if unknown:
            raise PushError(400, unknown)
        items = document["samples"]
        if not isinstance(items, list):
            raise PushError(400, [FieldError("samples", "must be a list of samples")])
        if len(items) > MAX_SAMPLES:
            raise PushError(413, [FieldError("samples", f"at most {MAX_SAMPLES} samples per request")], len(items))
        paths = [f"samples[{index}]" for index in range(len(items))]

    readings: list[Reading] = []
    errors: list[FieldError] = []
    for item, path in zip(items, paths, strict=True):
        reading = _sample(item, path, host=host, now=now, errors=errors)
        if reading is not None:
            readings.append(reading)
    if errors:
        raise PushError(400, errors, len(items))
    return Push(readings, paths)


def store(push: Push, *, host: str, now: dt.datetime) -> int:
    """Store ``readings`` all or nothing; return how many were stored.

    ``record()`` stores what it can and reports the rest (today only new series
    beyond the cardinality cap); a push is all or nothing, so any refusal rolls the
    whole batch back and forgets the series ids cached for rows that no longer exist.
    """
    with transaction.atomic():
        result = record(push.readings, host=host, now=now, interval_seconds=PUSH_INTERVAL_SECONDS)
        if result.rejected:
            transaction.set_rollback(True)
    if result.rejected:
        series_cache.clear()
        errors = [FieldError(push.paths[index] or "name", reason) for index, reason in result.rejected]
        raise PushError(400, errors, len(push.readings))
    return result.accepted


def _sample(item: object, path: str, *, host: str, now: dt.datetime, errors: list[FieldError]) -> Reading | None:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    if not isinstance(item, dict):
        errors.append(FieldError(path or "body", "must be an object with name, value, labels and ts"))
        return None
    problems = [FieldError(at(str(key)), f"unknown field (expected {', '.join(SAMPLE_FIELDS)})")
                for key in item if key not in SAMPLE_FIELDS]
    for required in ("name", "value"):
        if required not in item:
            problems.append(FieldError(at(required), "required"))
    labels = item.get("labels", {})
    if labels is None:
        labels = {}
    if not isinstance(labels, Mapping):
        problems.append(FieldError(at("labels"), "must be an object of label names to string values"))
    value = item.get("value")
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            problems.append(FieldError(at("value"), "must be a finite number"))
    ts = None
    if item.get("ts") is not None:
        try:
            ts = parse_time(item["ts"], now)
        except ValueError as error:
            problems.append(FieldError(at("ts"), str(error)))
    if problems:
        errors.extend(problems)
        return None
    name = item["name"]
    kind = Series.Kind.COUNTER if isinstance(name, str) and name.endswith("_total") else Series.Kind.GAUGE
    # Still as sent: validate() below refuses a value that is not a finite number.
    reading = Reading(name=name, value=cast(float, value), labels=labels, ts=ts, kind=kind)
    try:
        validate(reading, host)
    except InvalidReading as error:
        errors.append(FieldError(at(error.field), error.message))
        return None
    return reading


def parse_time(raw: object, now: dt.datetime) -> dt.datetime:
    """Return the aware time of ``raw`` (ISO-8601 text or unix seconds) within the accepted window."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be an ISO-8601 time or unix seconds")
    if isinstance(raw, str):
        try:
            ts = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError("must be an ISO-8601 time (2026-01-01T12:00:00Z) or unix seconds") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
    else:
        if not math.isfinite(raw):
            raise ValueError("must be a finite number of unix seconds")
        try:
            ts = dt.datetime.fromtimestamp(raw, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("out of range: unix time in seconds (not milliseconds) expected") from None
    if ts > now + MAX_FUTURE:
        raise ValueError(f"more than {_words(MAX_FUTURE)} in the future (check the client's clock)")
    if ts < now - MAX_AGE:
        raise ValueError(f"more than {_words(MAX_AGE)} in the past")
    return ts


def _words(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"
