"""Rolling raw samples up to 1-minute buckets and 1-minute rollups up to 1-hour buckets.

Each bucket stores min, max, avg, count and last (the value of its latest reading); an
hour's avg is the minutes' avg weighted by their counts. Only complete buckets are
rolled: a minute bucket once it ended ``MONITORING_ROLLUP_LAG_SECONDS`` ago (default
120 s, room for collectors and pushes in flight), an hour bucket once all its minutes
are rolled.

Every resolution keeps a watermark (:class:`~monitoring.models.RollupProgress`): a run
starts there, so it reads only data that arrived since the last run, whatever the
history. A late run catches up in bounded batches (at most ``max_batches``, each in
its own short transaction that also moves the watermark); a batch's window adapts so
it writes about ``TARGET_ROWS`` buckets, and stretches without data are skipped with
one index lookup. Each window is
one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL alike, so
re-running a window upserts the same rows.

A reading that arrives after its bucket was rolled (a client resending a buffer) is
folded in by :func:`reroll`, which :func:`monitoring.storage.record` calls for such
readings only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring.models import Rollup, RollupProgress, Sample

MINUTE = Rollup.Resolution.MINUTE.value
HOUR = Rollup.Resolution.HOUR.value
RESOLUTIONS = (MINUTE, HOUR)
#: Time covered by the first batch (one statement, one transaction) of a run.
WINDOW = {MINUTE: dt.timedelta(minutes=10), HOUR: dt.timedelta(hours=3)}
#: Sparse data widens the window up to this, so catching up never crawls.
MAX_WINDOW = {MINUTE: dt.timedelta(days=1), HOUR: dt.timedelta(days=7)}
#: Buckets one batch aims to write: the window doubles below half, halves above twice this.
TARGET_ROWS = 5000
#: Batches one run may do per resolution.
MAX_BATCHES = 36
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def lag_seconds() -> int:
    """Return how long after its end a minute bucket is considered complete."""
    return int(getattr(settings, "MONITORING_ROLLUP_LAG_SECONDS", 120))


def floor_time(moment: dt.datetime, resolution: int) -> dt.datetime:
    """Return the start of the ``resolution``-second bucket holding ``moment`` (UTC)."""
    seconds = (moment - _EPOCH) // dt.timedelta(seconds=1)
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % resolution)


def ceil_time(moment: dt.datetime, resolution: int) -> dt.datetime:
    """Return the end of the ``resolution``-second bucket holding ``moment`` (UTC)."""
    return floor_time(moment, resolution) + dt.timedelta(seconds=resolution)


@dataclass
class RollupReport:
    """What one :func:`run` did: rows upserted and the watermarks it left."""

    minute_rows: int = 0
    hour_rows: int = 0
    minute_until: dt.datetime | None = None
    hour_until: dt.datetime | None = None
    #: True when a resolution stopped at ``max_batches`` with work left for the next run.
    behind: bool = False

    def __str__(self) -> str:
        tail = "; more to do" if self.behind else ""
        return (
            f"rolled {self.minute_rows} minute and {self.hour_rows} hour buckets "
            f"(minutes until {self.minute_until}, hours until {self.hour_until}){tail}"
        )


def run(now: dt.datetime | None = None, *, max_batches: int = MAX_BATCHES) -> RollupReport:
    """Roll up every complete bucket since the watermarks; return what was done."""
    now = now or timezone.now()
    report = RollupReport()
    minute_limit = floor_time(now - dt.timedelta(seconds=lag_seconds()), MINUTE)
    report.minute_rows, report.minute_until, minute_left = _advance(MINUTE, minute_limit, max_batches)
    hour_limit = floor_time(report.minute_until, HOUR) if report.minute_until else None
    if hour_limit is not None:
        report.hour_rows, report.hour_until, hour_left = _advance(HOUR, hour_limit, max_batches)
    else:
        report.hour_until, hour_left = watermarks().get(HOUR), False
    report.behind = minute_left or hour_left
    return report


def watermarks() -> dict[int, dt.datetime | None]:
    """Return each resolution's watermark (None: never rolled)."""
    found = dict(RollupProgress.objects.values_list("resolution", "rolled_until"))
    return {resolution: found.get(resolution) for resolution in RESOLUTIONS}


def behind(now: dt.datetime | None = None) -> dict[int, dt.timedelta | None]:
    """Return how far each resolution's watermark trails ``now`` (None: never rolled).

    A healthy minute watermark trails by the lag plus up to two minutes; a healthy hour
    watermark by up to an hour more.
    """
    now = now or timezone.now()
    return {res: (now - until if until else None) for res, until in watermarks().items()}


def _advance(resolution: int, limit: dt.datetime, max_batches: int) -> tuple[int, dt.datetime | None, bool]:
    """Roll ``resolution`` from its watermark up to ``limit``; return (rows, watermark, work left)."""
    RollupProgress.objects.get_or_create(resolution=resolution)
    rows = 0
    until: dt.datetime | None = None
    span = WINDOW[resolution]
    for _ in range(max_batches):
        with transaction.atomic():
            # The row lock makes concurrent runs (two beats, a manual run) take turns:
            # the second one sees the moved watermark and does the next window or nothing.
            progress = RollupProgress.objects.select_for_update().get(resolution=resolution)
            until = progress.rolled_until
            if until is not None and until >= limit:
                return rows, until, False
            first = _first_source_time(resolution, until)
            if first is None or floor_time(first, resolution) >= limit:
                # Nothing to roll before the limit: every bucket up to it is complete and empty.
                progress.rolled_until = limit
                progress.save(update_fields=["rolled_until", "updated_at"])
                return rows, limit, False
            start = floor_time(first, resolution)
            end = min(start + span, limit)
            written = rollup_window(resolution, start, end)
            progress.rolled_until = until = end
            progress.save(update_fields=["rolled_until", "updated_at"])
        rows += written
        if end >= limit:
            return rows, until, False
        span = _next_span(resolution, span, written)
    return rows, until, True


def _next_span(resolution: int, span: dt.timedelta, written: int) -> dt.timedelta:
    """Return the next batch's window: wider after a light batch, narrower after a heavy one."""
    if written < TARGET_ROWS // 2:
        return min(span * 2, MAX_WINDOW[resolution])
    if written > TARGET_ROWS * 2:
        return max(span / 2, dt.timedelta(seconds=resolution))
    return span


def _first_source_time(resolution: int, since: dt.datetime | None) -> dt.datetime | None:
    """Return the time of the first source row at or after ``since`` (one index lookup)."""
    if resolution == MINUTE:
        samples = Sample.objects.order_by("ts")
        if since is not None:
            samples = samples.filter(ts__gte=since)
        return samples.values_list("ts", flat=True).first()
    minutes = Rollup.objects.filter(resolution=MINUTE).order_by("bucket")
    if since is not None:
        minutes = minutes.filter(bucket__gte=since)
    return minutes.values_list("bucket", flat=True).first()


def _bucket_sql(column: str, resolution: int) -> str:
    """Return SQL for the start of the bucket holding ``column`` (same text as Django stores)."""
    if connection.vendor == "postgresql":
        # date_trunc on the UTC wall clock: native timestamp arithmetic (epoch maths is numeric,
        # several times slower) and independent of the session's time zone.
        unit = {MINUTE: "minute", HOUR: "hour"}[resolution]
        return f"(date_trunc('{unit}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC text; datetime() writes
    # the same shape, so rows written here and by the ORM compare and collide as they should.
    return f"datetime((CAST(strftime('%%s', {column}) AS INTEGER) / {resolution}) * {resolution}, 'unixepoch')"


def _param(moment: dt.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def rollup_window(
    resolution: int, start: dt.datetime, end: dt.datetime, series_ids: Collection[int] | None = None
) -> int:
    """Upsert the ``resolution`` buckets in [start, end) from their source; return rows written.

    The source is raw samples for minutes and minute rollups for hours. Idempotent: the
    same window gives the same rows. ``series_ids`` restricts it to those series.
    Does not move the watermark; :func:`run` does.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}")
    # SQL text holds only identifiers from model metadata and numbers from RESOLUTIONS;
    # every value is a query parameter.
    q = connection.ops.quote_name
    rollup, sample = q(Rollup._meta.db_table), q(Sample._meta.db_table)
    mn, mx, avg, cnt, last = q("min"), q("max"), q("avg"), q("count"), q("last")
    params: list[Any] = [_param(start), _param(end)]
    only = ""
    if series_ids is not None:
        ids = sorted({int(i) for i in series_ids})
        if not ids:
            return 0
        only = f" AND series_id IN ({', '.join(['%s'] * len(ids))})"
        params.extend(ids)
    # "last" is the value of the bucket's latest row: an ordered array_agg on PostgreSQL,
    # an index lookup of the row at MAX(time) on SQLite (which has no ordered aggregates).
    pg = connection.vendor == "postgresql"
    if resolution == MINUTE:
        bucket = _bucket_sql("ts", MINUTE)
        last_of = "(array_agg(value ORDER BY ts DESC, id DESC))[1]" if pg else "MAX(ts)"
        source = (
            f"SELECT series_id, {bucket} AS bucket, MIN(value) AS lo, MAX(value) AS hi, AVG(value) AS mean, "  # noqa: S608
            f"COUNT(*) AS n, {last_of} AS last_of FROM {sample} WHERE ts >= %s AND ts < %s{only} "
            f"GROUP BY series_id, {bucket}"
        )
        last_value = (
            "g.last_of"
            if pg
            else f"(SELECT s.value FROM {sample} s WHERE s.series_id = g.series_id AND s.ts = g.last_of "  # noqa: S608
            "ORDER BY s.id DESC LIMIT 1)"
        )
    else:
        bucket = _bucket_sql("bucket", HOUR)
        last_of = f"(array_agg({last} ORDER BY bucket DESC))[1]" if pg else "MAX(bucket)"
        source = (
            f"SELECT series_id, {bucket} AS bucket, MIN({mn}) AS lo, MAX({mx}) AS hi, "  # noqa: S608
            f"SUM({avg} * {cnt}) / SUM({cnt}) AS mean, SUM({cnt}) AS n, {last_of} AS last_of "
            f"FROM {rollup} WHERE resolution = {MINUTE} AND bucket >= %s AND bucket < %s{only} "
            f"GROUP BY series_id, {bucket}"
        )
        last_value = (
            "g.last_of"
            if pg
            else f"(SELECT r.{last} FROM {rollup} r WHERE r.series_id = g.series_id "  # noqa: S608
            f"AND r.resolution = {MINUTE} AND r.bucket = g.last_of)"
        )
    sql = (
        f"INSERT INTO {rollup} (series_id, resolution, bucket, {mn}, {mx}, {avg}, {cnt}, {last}) "  # noqa: S608
        f"SELECT g.series_id, {resolution}, g.bucket, g.lo, g.hi, g.mean, g.n, {last_value} "
        f"FROM ({source}) g WHERE true "
        f"ON CONFLICT (series_id, resolution, bucket) DO UPDATE SET {mn} = excluded.{mn}, {mx} = excluded.{mx}, "
        f"{avg} = excluded.{avg}, {cnt} = excluded.{cnt}, {last} = excluded.{last}"
    )
    with without_jit(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


@contextlib.contextmanager
def without_jit() -> Iterator[None]:
    """Run the enclosed statements with PostgreSQL's JIT compiler off (no-op elsewhere).

    The planner's cost estimates for these aggregates easily pass ``jit_above_cost``;
    JIT then spends far longer compiling (up to a second was measured) than the
    index-driven statements take to run (tens of milliseconds).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        yield


def reroll(series_ids: Collection[int], earliest: dt.datetime, latest: dt.datetime) -> int:
    """Fold readings of ``series_ids`` between ``earliest`` and ``latest`` into buckets already rolled.

    Called by ``record()`` for readings old enough that a run may have rolled their
    bucket. Only the part below each watermark is redone (the rest is the next run's);
    returns the rows rewritten.
    """
    if not series_ids:
        return 0
    rows = 0
    with transaction.atomic():
        # Same locks as run(), taken in the same order: a run rolling these buckets right
        # now finishes first, so its new watermark is the one compared below.
        marks = dict(
            RollupProgress.objects.select_for_update()
            .filter(resolution__in=RESOLUTIONS)
            .order_by("resolution")
            .values_list("resolution", "rolled_until")
        )
        for resolution in RESOLUTIONS:
            until = marks.get(resolution)
            if until is None or earliest >= until:
                break
            end = min(ceil_time(latest, resolution), until)
            rows += rollup_window(resolution, floor_time(earliest, resolution), end, series_ids)
    return rows


def rebuild(start: dt.datetime, end: dt.datetime) -> int:
    """Recompute every rolled bucket between ``start`` and ``end`` from its source (after a backfill)."""
    marks = watermarks()
    rows = 0
    with transaction.atomic():
        for resolution in RESOLUTIONS:
            until = marks[resolution]
            if until is None or start >= until:
                break
            rows += rollup_window(resolution, floor_time(start, resolution), min(ceil_time(end, resolution), until))
    return rows
