"""The arithmetic of range functions, aggregations and operators, on plain floats."""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Sequence

Point = tuple[dt.datetime, float]


def compute_window(function: str, points: Iterable[Point], window: int, now: dt.datetime) -> float | None:
    """Return ``function`` over the points of one series in ``(now - window, now]``, or None.

    ``None`` means "no value" (no points, or fewer than two for ``rate``/``increase``):
    the series is left out of the result rather than reported as zero.
    """
    start = now - dt.timedelta(seconds=window)
    inside = sorted((ts, value) for ts, value in points if start < ts <= now and math.isfinite(value))
    if not inside:
        return None
    values = [value for _, value in inside]
    if function == "avg_over_time":
        return math.fsum(values) / len(values)
    if function == "max_over_time":
        return max(values)
    if function == "min_over_time":
        return min(values)
    if function in ("rate", "increase"):
        per_second = _rate(inside)
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
