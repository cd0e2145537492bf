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

from django.db import connection
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
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: the field's name is what it is


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
    range get an empty list. At most five queries, whatever the number of series; the
    database merges rollups, so the work in Python grows with the points returned.
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
    if resolution == RAW:
        samples = _raw(ids, start, end)
        if step <= min_raw_spacing(samples):
            # Few enough readings: each one is its own point.
            for sid, t, value in samples:
                result[sid].append(Point(t, value, value, value, value))
            return result
        rows = [(sid, (t - _EPOCH) / _SECOND, v, v, v, v, 1) for sid, t, v in samples]
    else:
        rows = _read(ids, start, end, resolution, step)
    at = _Clock()
    for sid, points in _merge(rows, step).items():
        result[sid] = [Point(at(b), lo, av, hi, last) for b, lo, av, hi, last, _n in points]
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
    if span <= RAW_WINDOW_LIMIT:
        for sid, t, v in _raw(ids, start, end):
            result[sid].append(WindowPoint(t, v, v, v, v, 1))
        return result
    resolution = rollups.MINUTE if span <= MINUTE_WINDOW_LIMIT else rollups.HOUR
    at = _Clock()
    for sid, e, lo, av, hi, last, count in _read(ids, start, end, resolution, resolution):
        result[sid].append(WindowPoint(at(e), lo, av, hi, last, count))
    return result


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECOND = dt.timedelta(seconds=1)
# A row as read: (series id, seconds since the epoch, min, avg, max, last, count).
_Row = tuple[int, float, float, float, float, float, int]


class _Clock:
    """Turn epoch seconds back into datetimes, once per distinct value."""

    def __init__(self) -> None:
        self._seen: dict[float, dt.datetime] = {}

    def __call__(self, seconds: float) -> dt.datetime:
        moment = self._seen.get(seconds)
        if moment is None:
            moment = self._seen[seconds] = _EPOCH + dt.timedelta(seconds=seconds)
        return moment


def _read(ids: list[int], start: dt.datetime, end: dt.datetime, resolution: int, step: int) -> list[_Row]:
    """Return rollup rows over [start, end), grouped to ``step`` seconds, and the unrolled tail.

    The coarse part comes from ``resolution`` rollups up to their watermark, then minute
    rollups up to theirs, then raw samples up to ``end``; tail rows stay finer than
    ``step`` for the caller to merge. Sorted by series, then time.
    """
    marks = rollups.watermarks()
    rows: list[_Row] = []
    cursor = rollups.floor_time(start, resolution)
    with rollups.without_jit():
        for res in (rollups.HOUR, rollups.MINUTE):
            until = marks[res]
            if res > resolution or until is None or until <= cursor:
                continue
            seg_end = min(end, until)
            rows.extend(_rollup_rows(ids, cursor, seg_end, res, step if res == resolution else res))
            cursor = seg_end
            if cursor >= end:
                break
    if cursor < end:
        rows.extend((sid, (t - _EPOCH) / _SECOND, v, v, v, v, 1) for sid, t, v in _raw(ids, max(cursor, start), end))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def _raw(ids: list[int], start: dt.datetime, end: dt.datetime) -> list[tuple[int, dt.datetime, float]]:
    samples = (
        Sample.objects.filter(series_id__in=ids, ts__gte=start, ts__lt=end)
        .order_by("series_id", "ts")
        .values_list("series_id", "ts", "value")
    )
    return list(samples)


def _epoch_bucket_sql(column: str, step: int) -> str:
    """Return SQL for the start, in epoch seconds, of the ``step``-second bucket holding ``column``."""
    if connection.vendor == "postgresql":
        # Rollup buckets are whole seconds: the float epoch converts exactly, and the rest is integer maths.
        return f"(CAST(date_part('epoch', {column}) AS bigint) / {step}) * {step}"
    return f"(CAST(strftime('%%s', {column}) AS INTEGER) / {step}) * {step}"


def _rollup_rows(ids: list[int], start: dt.datetime, end: dt.datetime, resolution: int, step: int) -> list[_Row]:
    """Return ``resolution`` rollups of [start, end), merged to ``step``-second buckets by the database.

    Times come back as epoch seconds: no datetime is parsed per row, and only one row
    per chart point crosses to Python.
    """
    q = connection.ops.quote_name
    table = q(Rollup._meta.db_table)
    mn, mx, avg, cnt, last = q("min"), q("max"), q("avg"), q("count"), q("last")
    step = int(step)
    bucket = _epoch_bucket_sql("bucket", step)
    # SQL text holds only identifiers from model metadata and integers; values are parameters.
    where = (
        f"series_id IN ({', '.join(['%s'] * len(ids))}) AND resolution = {int(resolution)} "
        "AND bucket >= %s AND bucket < %s"
    )
    params = [*ids, connection.ops.adapt_datetimefield_value(start), connection.ops.adapt_datetimefield_value(end)]
    if step == resolution:
        sql = (
            f"SELECT series_id, {bucket}, {mn}, {avg}, {mx}, {last}, {cnt} FROM {table} "  # noqa: S608
            f"WHERE {where} ORDER BY series_id, bucket"
        )
    elif connection.vendor == "postgresql":
        sql = (
            f"SELECT series_id, {bucket} AS b, MIN({mn}), SUM({avg} * {cnt}) / SUM({cnt}), MAX({mx}), "  # noqa: S608
            f"(array_agg({last} ORDER BY bucket DESC))[1], SUM({cnt}) "
            f"FROM {table} WHERE {where} GROUP BY series_id, b ORDER BY series_id, b"
        )
    else:  # no ordered aggregates: look the last bucket's value up through the unique index
        sql = (
            f"SELECT g.series_id, g.b, g.lo, g.mean, g.hi, "  # noqa: S608
            f"(SELECT r.{last} FROM {table} r WHERE r.series_id = g.series_id AND r.resolution = {int(resolution)} "
            "AND r.bucket = g.last_at), g.n "
            f"FROM (SELECT series_id, {bucket} AS b, MIN({mn}) AS lo, MAX({mx}) AS hi, "
            f"SUM({avg} * {cnt}) / SUM({cnt}) AS mean, SUM({cnt}) AS n, MAX(bucket) AS last_at "
            f"FROM {table} WHERE {where} GROUP BY series_id, {bucket}) g ORDER BY g.series_id, g.b"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def min_raw_spacing(rows: list[tuple[int, dt.datetime, float]]) -> float:
    """Return the smallest gap in seconds between consecutive readings of one series."""
    gaps = [(b[1] - a[1]).total_seconds() for a, b in itertools.pairwise(rows) if a[0] == b[0] and b[1] > a[1]]
    return min(gaps, default=math.inf)


def _merge(rows: Iterable[_Row], step: int) -> dict[int, list[list[float]]]:
    """Merge rows (sorted by series, time) into ``step``-second buckets: [start, min, avg, max, last, count]."""
    merged: dict[int, list[list[float]]] = {}
    points: list[list[float]] = []
    current = None
    for sid, seconds, lo, av, hi, last, count in rows:
        start = seconds // step * step
        if sid != current:
            points = merged.setdefault(sid, [])
            current = sid
        if points and points[-1][0] == start:
            p = points[-1]
            total = p[5] + count
            p[1], p[2], p[3], p[4], p[5] = min(p[1], lo), (p[2] * p[5] + av * count) / total, max(p[3], hi), last, total
        else:
            points.append([start, lo, av, hi, last, count])
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
