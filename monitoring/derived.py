"""Figures computed when read, across processes and hosts, from stored cumulative counters.

* ``http_request_duration_p95_seconds`` — the 95th percentile of request durations over
  a window, from the ``http_request_duration_seconds_bucket{le}`` counters (the way
  Prometheus' ``histogram_quantile`` reads a histogram);
* ``http_requests_error_ratio`` — the share of 5xx among all requests in the window.

The window defaults to one flush interval (10 s), so each figure describes the
requests of the last cycle. Both return None when no request was counted in it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from monitoring.middleware import FLUSH_SECONDS, HISTOGRAM, REQUESTS
from monitoring.models import Sample, Series

P95 = "http_request_duration_p95_seconds"
ERROR_RATIO = "http_requests_error_ratio"
DEFAULT_WINDOW = dt.timedelta(seconds=FLUSH_SECONDS)


def increases(
    name: str, *, start: dt.datetime, end: dt.datetime, host: str | None = None
) -> list[tuple[dict[str, str], float]]:
    """Return (labels, increase over ``(start, end]``) of every series of the counter ``name``.

    One query: each series' value at ``end`` and at ``start`` (its last sample at or
    before each) come from index lookups on (series, ts). A series born inside the
    window starts from 0.
    """

    def at_or_before(moment: dt.datetime) -> Subquery:
        latest = Sample.objects.filter(series=OuterRef("pk"), ts__lte=moment).order_by("-ts").values("value")[:1]
        return Subquery(latest)

    series = Series.objects.filter(name=name)
    if host:
        series = series.filter(host=host)
    rows = series.annotate(
        end_value=at_or_before(end),
        start_value=at_or_before(start),
    ).values_list("labels", "end_value", "start_value", "created_at")
    result = []
    for labels, end_value, start_value, created_at in rows:
        if end_value is None:
            continue
        if start_value is None:
            start_value = 0.0 if created_at > start else end_value
        # A total never goes down; if it did (a deleted and recreated series), count from 0.
        result.append((labels, end_value - start_value if end_value >= start_value else end_value))
    return result


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Return the ``q`` quantile from cumulative ``(upper bound, count)`` buckets.

    Linear interpolation inside the bucket holding the rank, like Prometheus; a rank
    in the ``+Inf`` bucket returns the largest finite bound.
    """
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        count = max(count, below)  # cumulative counts never decrease
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def request_duration_quantile(
    q: float, *, now: dt.datetime | None = None, window: dt.timedelta = DEFAULT_WINDOW, host: str | None = None
) -> float | None:
    """Return the ``q`` quantile (seconds) of the requests counted in the window, all processes."""
    now = now or timezone.now()
    per_bound: defaultdict[float, float] = defaultdict(float)
    for labels, increase in increases(f"{HISTOGRAM}_bucket", start=now - window, end=now, host=host):
        try:
            per_bound[float(labels.get("le", ""))] += increase
        except ValueError:
            continue
    return histogram_quantile(q, per_bound.items())


def request_duration_p95(
    *, now: dt.datetime | None = None, window: dt.timedelta = DEFAULT_WINDOW, host: str | None = None
) -> float | None:
    """Return ``http_request_duration_p95_seconds``: the 95th percentile over the window."""
    return request_duration_quantile(0.95, now=now, window=window, host=host)


def request_error_ratio(
    *, now: dt.datetime | None = None, window: dt.timedelta = DEFAULT_WINDOW, host: str | None = None
) -> float | None:
    """Return ``http_requests_error_ratio``: 5xx responses / all responses in the window (0..1)."""
    now = now or timezone.now()
    errors = total = 0.0
    for labels, increase in increases(REQUESTS, start=now - window, end=now, host=host):
        total += increase
        if str(labels.get("status", "")).startswith("5"):
            errors += increase
    return errors / total if total > 0 else None


DERIVED: dict[str, Callable[..., float | None]] = {
    P95: request_duration_p95,
    ERROR_RATIO: request_error_ratio,
}


def derive(
    name: str, *, now: dt.datetime | None = None, window: dt.timedelta = DEFAULT_WINDOW, host: str | None = None
) -> float | None:
    """Return the derived figure ``name`` (a key of :data:`DERIVED`); KeyError if unknown."""
    return DERIVED[name](now=now, window=window, host=host)
