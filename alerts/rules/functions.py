"""The arithmetic of range functions, aggregations and operators, on plain floats."""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Sequence

#: A raw reading: (time, value).
Point = tuple[dt.datetime, float]
#: A rollup bucket, shaped like ``monitoring.reads.WindowPoint``: (start, min, avg, max, last, count).
Bucket = tuple[dt.datetime, float, float, float, float, int]


def compute_window(function: str, points: Iterable[Point | Bucket], window: int, now: dt.datetime) -> float | None:
    """Return ``function`` over one series' points in the window ending at ``now``, or None.

    Raw points count when ``now - window < ts <= now`` (left-open, like Prometheus).
    Buckets count when they start inside the window, and so does the one bucket that
    straddles its start (the next point starts inside the window); none may start after
    ``now``. So a source may hand over a wider read than the window. ``avg_over_time``
    weights bucket ``avg`` by ``count``, ``min``/``max_over_time`` use their ``min``/``max``,
    ``rate``/``increase`` their ``last``. ``None`` means "no value" (no points, or fewer
    than two for ``rate``/``increase``): the series is left out rather than reported as zero.
    """
    start = now - dt.timedelta(seconds=window)
    candidates: list[tuple[Bucket, bool]] = []
    for point in points:
        if len(point) == 2:
            ts, value = point  # type: ignore[misc]
            if start < ts <= now and math.isfinite(value):
                candidates.append(((ts, value, value, value, value, 1), False))
        elif point[0] <= now and all(math.isfinite(v) for v in point[1:5]) and point[5] > 0:  # type: ignore[misc]
            candidates.append((point, True))  # type: ignore[arg-type]
    candidates.sort(key=lambda candidate: candidate[0][0])
    rows = [
        row
        for i, (row, bucket) in enumerate(candidates)
        if row[0] > start or (bucket and i + 1 < len(candidates) and candidates[i + 1][0][0] > start)
    ]
    if not rows:
        return None
    if function == "avg_over_time":
        return math.fsum(row[2] * row[5] for row in rows) / sum(row[5] for row in rows)
    if function == "max_over_time":
        return max(row[3] for row in rows)
    if function == "min_over_time":
        return min(row[1] for row in rows)
    if function in ("rate", "increase"):
        per_second = _rate([(row[0], row[4]) for row in rows])
        if per_second is None:
            return None
        return per_second if function == "rate" else per_second * window
    raise ValueError(f"unknown range function {function!r}")


def _rate(points: Sequence[Point]) -> float | None:
    """Return the per-second increase of a counter over its sampled span.

    A drop means the counter restarted from zero, so the new value is all increase
    (Prometheus does the same).
    """
    if len(points) < 2:
        return None
    span = (points[-1][0] - points[0][0]).total_seconds()
    if span <= 0:
        return None
    increase = 0.0
    previous = points[0][1]
    for _, value in points[1:]:
        increase += value - previous if value >= previous else value
        previous = value
    return increase / span


def aggregate(op: str, values: Sequence[float]) -> float:
    """Return ``op`` (sum, avg, min, max, count) of a non-empty group."""
    if op == "sum":
        return math.fsum(values)
    if op == "avg":
        return math.fsum(values) / len(values)
    if op == "min":
        return min(values)
    if op == "max":
        return max(values)
    if op == "count":
        return float(len(values))
    raise ValueError(f"unknown aggregation {op!r}")


def _divide(a: float, b: float) -> float:
    # No value rather than inf/NaN: a zero denominator must not fire "ratio > x" rules.
    return a / b if b != 0 else math.nan


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
