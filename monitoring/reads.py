"""Reading series: latest values, ranges for charts, windows for the alert evaluator.

Every function costs a constant number of queries, whatever the number of series:
:func:`latest` reads the latest-value cache on :class:`~monitoring.models.Series`;
:func:`range_read` and :func:`window` read the coarsest data that answers the question
(raw samples for short spans, 1-minute rollups, 1-hour rollups) through the
``(series, ts)`` and ``(series, resolution, bucket)`` indexes. Buckets the rollup task
has not reached yet (the last minute or two) are filled from the finer data, so a chart
ends at "now", not at the rollup watermark.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from monitoring import retention, rollups
from monitoring.models import Rollup, Sample, Series

RAW = 0
#: Windows up to this long are read from raw samples by :func:`window`.
RAW_WINDOW_LIMIT = dt.timedelta(hours=1)
#: Windows up to this long are read from minute rollups; longer ones from hour rollups.
MINUTE_WINDOW_LIMIT = dt.timedelta(days=1)
DEFAULT_MAX_POINTS = 300


class Point(NamedTuple):
    """One chart point: the bucket's start and the readings' min, avg, max and last value."""

    t: dt.datetime
    min: float
    avg: float
    max: float
    last: float


class WindowPoint(NamedTuple):
    """One reading (``count`` 1) or rollup bucket of a window; ``last`` is the bucket's latest value."""

    t: dt.datetime
    min: float
    avg: float
    max: float
    last: float
    count: int


@dataclass(frozen=True)
class Latest:
    """The latest reading of one series, from the series' cache."""

    series_id: int
    name: str
    labels: dict[str, str]
    value: float | None
    at: dt.datetime | None
    status: str


def latest(name: str, match: Mapping[str, str] | None = None) -> list[Latest]:
    """Return the latest value of every series of metric ``name`` whose labels equal ``match``.

    One query on the series table; no sample is read.
    """
    wanted = {key: str(value) for key, value in (match or {}).items()}
    series = Series.objects.filter(name=name).order_by("labels_key")
    for key, value in wanted.items():
        if key == "host":
            series = series.filter(host=value)
        elif "__" not in key:  # a double underscore would read as a nested lookup
            series = series.filter(**{f"labels__{key}": value})
    rows = series.values_list("id", "name", "labels", "last_value", "last_at", "status")
    return [Latest(*row) for row in rows if all(row[2].get(k) == v for k, v in wanted.items())]


def pick_resolution(
    start: dt.datetime,
    end: dt.datetime,
    max_points: int = DEFAULT_MAX_POINTS,
    *,
    now: dt.datetime | None = None,
    keep: Mapping[int, dt.timedelta] | None = None,
) -> int:
    """Return the resolution (0 raw, 60, 3600) a chart of [start, end) should read.

    The coarsest one that still gives ``max_points`` points over the span, among those
    whose retention still covers ``start``; when none gives that many, the finest that
    covers ``start``; when none covers it, hours (kept longest).
    """
    now = now or timezone.now()
    keep = keep if keep is not None else retention.keep_periods()
    span = (end - start).total_seconds()
    kept = [res for res in (rollups.HOUR, rollups.MINUTE, RAW) if start >= now - keep[res]]
    for res in kept:
        if res != RAW and span / res >= max_points:
            return res
    return kept[-1] if kept else rollups.HOUR


def range_read(
    series_ids: Iterable[int],
    start: dt.datetime,
    end: dt.datetime,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    now: dt.datetime | None = None,
) -> dict[int, list[Point]]:
    """Return up to about ``max_points`` points per series over [start, end), oldest first.

    Reads the resolution :func:`pick_resolution` chooses and merges neighbouring buckets
    when there are still too many: each point then spans ``step`` seconds and carries the
    min, count-weighted avg, max and last of what it covers. Series without data in the
    range get an empty list. At most five queries, whatever the number of series.
    """
    ids = sorted({int(i) for i in series_ids})
    result: dict[int, list[Point]] = {i: [] for i in ids}
    if not ids or end <= start:
        return result
    resolution = pick_resolution(start, end, max_points, now=now)
    span = (end - start).total_seconds()
    step = max(resolution, math.ceil(span / max(1, max_points)))
    if resolution:
        step = math.ceil(step / resolution) * resolution
    rows = _read(ids, start, end, resolution)
    if resolution == RAW and step <= min_raw_spacing(rows):
        # Few enough readings: each one is its own point.
        for sid, t, lo, av, hi, last, _count in rows:
            result[sid].append(Point(t, lo, av, hi, last))
        return result
    for sid, points in _merge(rows, step).items():
        result[sid] = [Point(p.t, p.min, p.avg, p.max, p.last) for p in points]
    return result


def window(
    series_ids: Iterable[int], start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None
) -> dict[int, list[WindowPoint]]:
    """Return each series' readings in [start, end) for rule functions, oldest first.

    Windows up to an hour are raw samples (one point per reading, ``count`` 1); longer
    ones are minute rollups (hour rollups beyond a day) plus raw readings the rollups have
    not reached yet. ``avg_over_time`` weights ``avg`` by ``count``; ``rate`` and
    ``increase`` use ``last``.
    """
    ids = sorted({int(i) for i in series_ids})
    result: dict[int, list[WindowPoint]] = {i: [] for i in ids}
    if not ids or end <= start:
        return result
    span = end - start
    resolution = RAW if span <= RAW_WINDOW_LIMIT else rollups.MINUTE if span <= MINUTE_WINDOW_LIMIT else rollups.HOUR
    rows = _read(ids, start, end, resolution)
    for sid, t, lo, av, hi, last, count in rows:
        result[sid].append(WindowPoint(t, lo, av, hi, last, count))
    return result


# A row as read: (series id, time, min, avg, max, last, count).
_Row = tuple[int, dt.datetime, float, float, float, float, int]


def _read(ids: list[int], start: dt.datetime, end: dt.datetime, resolution: int) -> list[_Row]:
    """Return rows of ``resolution`` over [start, end), the unrolled tail from finer data.

    Sorted by series, then time; rows of the tail are separate (finer) rows that the
    caller merges or uses as they are.
    """
    if resolution == RAW:
        return _raw(ids, start, end)
    marks = rollups.watermarks()
    rows: list[_Row] = []
    # Each segment: (resolution, from, to); a coarser one ends where its rollups end.
    segments: list[tuple[int, dt.datetime, dt.datetime]] = []
    cursor = rollups.floor_time(start, resolution)
    for res in (rollups.HOUR, rollups.MINUTE):
        if res > resolution:
            continue
        until = marks[res]
        if until is not None and until > cursor:
            seg_end = min(end, until)
            segments.append((res, cursor, seg_end))
            cursor = seg_end
        if cursor >= end:
            break
    for res, seg_start, seg_end in segments:
        rows.extend(_rollups(ids, seg_start, seg_end, res))
    if cursor < end:
        rows.extend(_raw(ids, max(cursor, start), end))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def _raw(ids: list[int], start: dt.datetime, end: dt.datetime) -> list[_Row]:
    samples = (
        Sample.objects.filter(series_id__in=ids, ts__gte=start, ts__lt=end)
        .order_by("series_id", "ts")
        .values_list("series_id", "ts", "value")
    )
    return [(sid, ts, v, v, v, v, 1) for sid, ts, v in samples]


def _rollups(ids: list[int], start: dt.datetime, end: dt.datetime, resolution: int) -> list[_Row]:
    buckets = (
        Rollup.objects.filter(series_id__in=ids, resolution=resolution, bucket__gte=start, bucket__lt=end)
        .order_by("series_id", "bucket")
        .values_list("series_id", "bucket", "min", "avg", "max", "last", "count")
    )
    return list(buckets)


def min_raw_spacing(rows: list[_Row]) -> float:
    """Return the smallest gap in seconds between consecutive readings of one series."""
    gaps = [(b[1] - a[1]).total_seconds() for a, b in itertools.pairwise(rows) if a[0] == b[0] and b[1] > a[1]]
    return min(gaps, default=math.inf)


def _merge(rows: list[_Row], step: int) -> dict[int, list[WindowPoint]]:
    """Merge rows (sorted by series, time) into ``step``-second buckets per series."""
    merged: dict[int, list[WindowPoint]] = {}
    for sid, t, lo, av, hi, last, count in rows:
        bucket = rollups.floor_time(t, step)
        points = merged.setdefault(sid, [])
        if points and points[-1].t == bucket:
            p = points[-1]
            total = p.count + count
            points[-1] = WindowPoint(
                bucket, min(p.min, lo), (p.avg * p.count + av * count) / total, max(p.max, hi), last, total
            )
        else:
            points.append(WindowPoint(bucket, lo, av, hi, last, count))
    return merged


def sparkline_svg(points: list[Point], *, width: int = 120, height: int = 24, stroke: str = "#417690") -> SafeString:
    """Return an inline SVG line of the points' averages, with a faint min-max band.

    Only numbers go into the markup, so it is safe to embed in any page.
    """
    if not points:
        return format_html('<svg class="sparkline" width="{}" height="{}" aria-hidden="true"></svg>', width, height)
    lows = [p.min for p in points]
    highs = [p.max for p in points]
    bottom, top = min(lows), max(highs)
    spread = (top - bottom) or 1.0
    t0 = points[0].t.timestamp()
    duration = (points[-1].t.timestamp() - t0) or 1.0
    pad = 1.0

    def xy(t: dt.datetime, v: float) -> str:
        x = pad + (t.timestamp() - t0) / duration * (width - 2 * pad)
        y = pad + (top - v) / spread * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(p.t, p.avg) for p in points)
    band = " ".join([*(xy(p.t, p.max) for p in points), *(xy(p.t, p.min) for p in reversed(points))])
    return format_html(
        '<svg class="sparkline" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        '<polygon points="{band}" fill="{c}" fill-opacity="0.15" stroke="none"/>'
        '<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.2"/></svg>',
        w=width,
        h=height,
        band=band,
        line=line,
        c=stroke,
        label=f"min {bottom:g}, max {top:g}",
    )
