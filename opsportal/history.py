"""History of one series: a page with a range picker and chart, and the JSON behind it.

The chart reads rollups through :func:`monitoring.reads.range_read` (the coarsest
resolution that still gives enough points), draws the min/avg/max band, the warning and
critical lines of the threshold that decides the series, and marks the periods of the
alerts about the series. A fixed number of queries whatever the range:
the series, its metric's thresholds, the retention and watermarks, the rollups, the alerts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from alerts.models import Alert
from alerts.rules import RuleError, parse, plan
from monitoring import reads
from monitoring.models import Series, Threshold
from monitoring.status import ThresholdIndex
from opsportal.access import api

#: The range picker's choices: parameter value → (label, span).
RANGES: dict[str, tuple[str, dt.timedelta]] = {
    "1h": ("1 hour", dt.timedelta(hours=1)),
    "24h": ("24 hours", dt.timedelta(hours=24)),
    "7d": ("7 days", dt.timedelta(days=7)),
    "30d": ("30 days", dt.timedelta(days=30)),
}
DEFAULT_RANGE = "24h"
#: Points per chart: enough for a wide screen, few enough to send every time.
MAX_POINTS = 300
#: Alert periods drawn on one chart at most (the most recent ones past that).
MAX_ALERTS = 200


class BadRange(ValueError):
    """The ``range`` parameter is not one of :data:`RANGES`."""


def parse_range(value: str | None) -> str:
    """Return the range key ``value`` names (the default when absent); raise :class:`BadRange` otherwise."""
    if value is None or value == "":
        return DEFAULT_RANGE
    if value not in RANGES:
        raise BadRange(f"range must be one of {', '.join(RANGES)}")
    return value


@dataclass(frozen=True)
class AlertPeriod:
    """When one alert about the series was active; ``end`` is None while it still is."""

    name: str
    severity: str
    state: str
    start: dt.datetime
    end: dt.datetime | None


def deciding_threshold(series: Series) -> Threshold | None:
    """Return the enabled threshold that decides ``series``' status (one query), if any."""
    thresholds = {t.pk: t for t in Threshold.objects.filter(enabled=True, metric=series.name)}
    found = ThresholdIndex(thresholds.values()).threshold_id_for(series.name, series.labels or {})
    return thresholds.get(found) if found is not None else None


def _is_about(alert: Alert, series: Series) -> bool:
    """Return whether ``alert`` concerns ``series``.

    A threshold alert carries the series' labels and the threshold's name (the metric,
    optionally with its label match). A rule alert concerns the series when the rule reads
    it and the alert's own labels (the rule's extra labels aside) all agree with the
    series' — ``avg by (host) (...)`` yields labels that are a subset of each input's.
    """
    labels = series.labels or {}
    if alert.source == Alert.Source.THRESHOLD:
        named = alert.name == series.name or alert.name.startswith(series.name + "{")
        return named and alert.labels == labels
    if alert.source != Alert.Source.RULE or alert.rule is None:
        return False
    extra = alert.rule.labels or {}
    own = {k: v for k, v in (alert.labels or {}).items() if extra.get(k) != v}
    if any(labels.get(k) != v for k, v in own.items()):
        return False
    try:
        return plan(parse(alert.rule.expr)).reads(series.name, labels)
    except RuleError:
        return False


def alert_periods(series: Series, start: dt.datetime, end: dt.datetime) -> list[AlertPeriod]:
    """Return the periods of alerts about ``series`` that overlap [start, end), oldest first (one query)."""
    overlapping = Alert.objects.filter(active_since__lt=end).filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gte=start)
    )
    overlapping = overlapping.filter(source__in=(Alert.Source.THRESHOLD, Alert.Source.RULE))
    if series.host:
        overlapping = overlapping.filter(labels__host=series.host)
    rows = (
        overlapping.select_related("rule")
        .only(
            "source",
            "name",
            "labels",
            "severity",
            "state",
            "active_since",
            "fired_at",
            "resolved_at",
            "rule__labels",
            "rule__expr",
        )
        .order_by("-active_since")[:MAX_ALERTS]
    )
    periods = [
        AlertPeriod(a.name, a.severity, a.state, a.fired_at or a.active_since, a.resolved_at)
        for a in rows
        if _is_about(a, series)
    ]
    periods.reverse()
    return periods


def _epoch(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def history(series: Series, range_key: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the chart data of ``series`` over the range ``range_key`` ending at ``now``.

    Points are columns (uPlot's shape): times in epoch seconds and the min, avg and max
    of each point. ``resolution`` says which data answered (0 raw, 60, 3600 seconds).
    """
    now = now or timezone.now()
    span = RANGES[range_key][1]
    start = now - span
    points = reads.range_read([series.pk], start, now, max_points=MAX_POINTS, now=now)[series.pk]
    resolution = reads.pick_resolution(start, now, MAX_POINTS, now=now)
    threshold = deciding_threshold(series)
    alerts = alert_periods(series, start, now)
    return {
        "series": {
            "id": series.pk,
            "name": series.name,
            "labels": series.labels or {},
            "status": series.status,
            "last_value": series.last_value,
            "last_at": _epoch(series.last_at),
        },
        "range": range_key,
        "start": start.timestamp(),
        "end": now.timestamp(),
        "resolution": resolution,
        "points": {
            "t": [p.t.timestamp() for p in points],
            "min": [p.min for p in points],
            "avg": [p.avg for p in points],
            "max": [p.max for p in points],
        },
        "threshold": None
        if threshold is None
        else {
            "name": str(threshold),
            "direction": threshold.direction,
            "warning": threshold.warning,
            "critical": threshold.critical,
        },
        "alerts": [
            {"name": a.name, "severity": a.severity, "state": a.state, "start": _epoch(a.start), "end": _epoch(a.end)}
            for a in alerts
        ],
    }


def summary(values: Iterable[float], kind: str) -> float | None:
    """Return the ``min``, ``max`` or mean of ``values`` (None when there are none)."""
    values = list(values)
    if not values:
        return None
    if kind == "min":
        return min(values)
    if kind == "max":
        return max(values)
    return sum(values) / len(values)


def _series_or_404(series_id: int) -> Series:
    series = Series.objects.filter(pk=series_id).first()
    if series is None:
        raise Http404("no such series")
    return series


@require_safe
@never_cache
def history_page(request: HttpRequest, series_id: int) -> HttpResponse:
    """The history of one series: complete as HTML (summary, alert periods), charted by ``history.js``."""
    series = _series_or_404(series_id)
    try:
        range_key = parse_range(request.GET.get("range"))
    except BadRange as error:
        return render(
            request, "opsportal/history.html", {"title": str(series), "series": series, "error": str(error)}, status=400
        )
    data = history(series, range_key)
    points = data["points"]
    context = {
        "title": str(series),
        "series": series,
        "data": data,
        "range_key": range_key,
        "ranges": [(key, label) for key, (label, _span) in RANGES.items()],
        "stats": {
            "min": summary(points["min"], "min"),
            "avg": summary(points["avg"], "avg"),
            "max": summary(points["max"], "max"),
        },
        "point_count": len(points["t"]),
        "alerts": [
            {
                **a,
                "start_at": dt.datetime.fromtimestamp(a["start"], dt.UTC),
                "end_at": dt.datetime.fromtimestamp(a["end"], dt.UTC) if a["end"] is not None else None,
            }
            for a in data["alerts"]
        ],
        "json_url": reverse("series-history-json", args=[series.pk]),
    }
    return render(request, "opsportal/history.html", context)


@api
@require_safe
@never_cache
def history_json(request: HttpRequest, series_id: int) -> JsonResponse:
    """The chart data of one series as JSON; ``?range=`` one of 1h, 24h, 7d, 30d (default 24h)."""
    try:
        range_key = parse_range(request.GET.get("range"))
    except BadRange as error:
        return JsonResponse({"error": str(error), "parameter": "range"}, status=400)
    series = Series.objects.filter(pk=series_id).first()
    if series is None:
        return JsonResponse({"error": "no such series", "parameter": "id"}, status=404)
    return JsonResponse(history(series, range_key))
