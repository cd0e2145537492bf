"""Prometheus exposition of the portal's series for ``/metrics``.

The registry is our own :class:`CollectorRegistry`, never prometheus_client's default
one, whose process and platform collectors would add ``process_*`` series that clash
with the portal's own ``process_*{service}`` metrics. Its collector reads the
latest-value cache of every series in one query (no sample scans), groups the rows
into metric families by name, and adds the portal's own counters.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.core.cache import cache
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from monitoring.models import Series
from monitoring.storage import max_series

log = logging.getLogger(__name__)

#: A series with no sample for this many expected intervals is stale and left out.
STALE_INTERVALS = 3
_COUNTER_SUFFIX = "_total"
_PUSH_COUNTER_KEY = "monitoring:push:{what}:{outcome}"
#: Outcomes counted by :func:`count_push` (``requests`` and ``samples`` counters).
PUSH_REQUEST_OUTCOMES = ("accepted", "invalid", "too_large", "unauthorized", "forbidden", "rate_limited")
PUSH_SAMPLE_OUTCOMES = ("accepted", "rejected")
#: Families the portal exposes about itself; a pushed series of the same name is left out.
OWN_FAMILIES = frozenset(
    {"opsportal_series", "opsportal_series_limit", "opsportal_push_requests", "opsportal_push_samples"}
)


@dataclass(frozen=True)
class Row:
    name: str
    labels: dict[str, str]
    value: float | None
    at: dt.datetime | None
    interval_seconds: int


def fresh(row: Row, now: dt.datetime) -> bool:
    """Return whether ``row`` has a value recent enough to expose."""
    if row.value is None or row.at is None:
        return False
    return now - row.at <= dt.timedelta(seconds=STALE_INTERVALS * max(1, row.interval_seconds))


def series_families(rows: Iterable[Row], now: dt.datetime) -> list[Metric]:
    """Group fresh rows into metric families: ``*_total`` as counters, the rest as gauges.

    A name ending in ``_total`` becomes counter family ``name[:-6]`` unless a gauge of
    that base name exists too (two families cannot share a name), then it stays a gauge.
    """
    by_name: dict[str, list[Row]] = {}
    for row in rows:
        if row.name in OWN_FAMILIES or row.name.removesuffix(_COUNTER_SUFFIX) in OWN_FAMILIES:
            continue
        if fresh(row, now):
            by_name.setdefault(row.name, []).append(row)
    families = []
    for name in sorted(by_name):
        base = name.removesuffix(_COUNTER_SUFFIX)
        counter = name.endswith(_COUNTER_SUFFIX) and base and base not in by_name
        family = Metric(base if counter else name, f"{name} (latest value recorded by OpsPortal)",
                        "counter" if counter else "gauge")
        for row in by_name[name]:
            family.add_sample(name, {str(k): str(v) for k, v in row.labels.items()}, float(row.value or 0.0))
        families.append(family)
    return families


def count_push(outcome: str, samples: int = 0) -> None:
    """Count one push request with ``outcome`` and its samples (accepted or rejected).

    The counts live in the shared cache so every web process adds to the same
    numbers; a cache eviction or restart resets them, which Prometheus treats as an
    ordinary counter reset. Failures are ignored: counting never fails a push.
    """
    try:
        _incr(_PUSH_COUNTER_KEY.format(what="requests", outcome=outcome), 1)
        if samples:
            sample_outcome = "accepted" if outcome == "accepted" else "rejected"
            _incr(_PUSH_COUNTER_KEY.format(what="samples", outcome=sample_outcome), samples)
    except Exception as error:  # noqa: BLE001 - any cache failure: skip the count
        log.debug("push counter not updated: %s", type(error).__name__)


def _incr(key: str, delta: int) -> None:
    try:
        cache.incr(key, delta)
    except ValueError:  # not there yet (or evicted)
        if not cache.add(key, delta, timeout=None):
            cache.incr(key, delta)


def push_counts() -> dict[tuple[str, str], float]:
    """Return the push counters as ``{(what, outcome): value}``."""
    keys = {
        _PUSH_COUNTER_KEY.format(what=what, outcome=outcome): (what, outcome)
        for what, outcomes in (("requests", PUSH_REQUEST_OUTCOMES), ("samples", PUSH_SAMPLE_OUTCOMES))
        for outcome in outcomes
    }
    try:
        found = cache.get_many(list(keys))
    except Exception as error:  # noqa: BLE001 - /metrics still answers without them
        log.warning("push counters unavailable: %s", type(error).__name__)
        found = {}
    return {pair: float(found.get(key, 0)) for key, pair in keys.items()}


def portal_families(series_count: int) -> list[Metric]:
    """Return the portal's own metrics: series count and limit, push counters."""
    series = Metric("opsportal_series", "Series stored by the portal.", "gauge")
    series.add_sample("opsportal_series", {}, float(series_count))
    limit = Metric("opsportal_series_limit", "New series beyond this many are refused (cardinality cap).", "gauge")
    limit.add_sample("opsportal_series_limit", {}, float(max_series()))
    counts = push_counts()
    requests = Metric("opsportal_push_requests", "Push API requests by outcome.", "counter")
    for outcome in PUSH_REQUEST_OUTCOMES:
        requests.add_sample("opsportal_push_requests_total", {"outcome": outcome}, counts[("requests", outcome)])
    samples = Metric("opsportal_push_samples", "Samples received by the push API, by outcome.", "counter")
    for outcome in PUSH_SAMPLE_OUTCOMES:
        samples.add_sample("opsportal_push_samples_total", {"outcome": outcome}, counts[("samples", outcome)])
    return [series, limit, requests, samples]


class PortalCollector:
    """Collect every fresh series plus the portal's own metrics, in one query."""

    def __init__(self, now: Callable[[], dt.datetime] = timezone.now) -> None:
        self._now = now

    def collect(self) -> Iterator[Metric]:
        fields = ("name", "labels", "last_value", "last_at", "interval_seconds")
        rows = [Row(*values) for values in Series.objects.order_by().values_list(*fields)]
        yield from series_families(rows, self._now())
        yield from portal_families(len(rows))


def build_registry(now: Callable[[], dt.datetime] = timezone.now) -> CollectorRegistry:
    """Return a fresh registry holding only the portal's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector(now))
    return registry


#: The one registry behind ``/metrics``.
registry = build_registry()


def render(accept: str = "") -> tuple[bytes, str]:
    """Return the exposition body and its content type, negotiated from ``Accept``."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
