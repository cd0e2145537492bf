"""Storage figures: ingest through record(), range reads from rollups, rows and table size.

Usage: python bench/storage.py [--series 100] [--days 7] [--interval 10]
                               [--batch-size 500] [--batches 200] [--repeat 20]

With ``DATABASE_URL`` set to PostgreSQL the run uses a throwaway database
``opsportal_bench_storage`` on the same server (created, migrated and dropped here; no
other database is touched); without it, SQLite in a temporary data folder.

1. Simulated operation: ``--series`` series each read every ``--interval`` seconds for
   ``--days`` days, day by day: insert the day's raw samples, run the rollups up to the
   end of the day, run retention (default keep periods). Prints rows per series per
   day, rows kept and table sizes afterwards, and what one steady-state rollup run
   costs with a week of history behind it.
2. Range reads: 20 more series with 30 days of rollups (minutes and hours, as the
   default retention keeps them) and the raw tail the rollups have not reached;
   ``monitoring.reads.range_read`` over 30 d, 24 h and 1 h for all 20 at once.
3. Ingest: ``storage.record()`` in batches vs ``Sample.objects.bulk_create`` of the
   same number of rows into the same table (now at its steady-state size), alternating
   so both meet the same table.

Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "opsportal_bench_storage"
RANGE_SERIES = 20


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def throwaway_database(url: str) -> tuple[str, Callable[[], None]]:
    """Create ``BENCH_DB`` on ``url``'s server; return its URL and a function that drops it."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    if parts.path.strip("/") == BENCH_DB:
        raise SystemExit(f"DATABASE_URL already names {BENCH_DB}; point it at another database on the server")

    def run(statement: sql.Composable) -> None:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    name = sql.Identifier(BENCH_DB)
    run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    run(sql.SQL("CREATE DATABASE {}").format(name))
    return urlunsplit(parts._replace(path="/" + BENCH_DB)), lambda: run(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100, help="series of the simulated week (default 100)")
    parser.add_argument("--days", type=int, default=7, help="days simulated (default 7)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between readings (default 10)")
    parser.add_argument("--batch-size", type=int, default=500, help="readings per record() call (default 500)")
    parser.add_argument("--batches", type=int, default=200, help="batches per ingest side (default 200)")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions of each range read (default 20)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-storage-")
    os.environ["OPSPORTAL_DATA_DIR"] = data_dir
    os.environ.setdefault("OPSPORTAL_LOG_LEVEL", "warning")
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
    url = os.environ.get("DATABASE_URL", "")
    drop: Callable[[], None] | None = None
    if url and not url.startswith("sqlite"):
        progress(f"PostgreSQL: creating throwaway database {BENCH_DB}")
        os.environ["DATABASE_URL"], drop = throwaway_database(url)
    else:
        os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    try:
        run(args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if drop is not None:
            from django.db import connections

            connections.close_all()
            progress(f"dropping {BENCH_DB}")
            drop()


def run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    progress("migrating")
    call_command("migrate", verbosity=0)
    vendor = connection.vendor
    version = connection.cursor().connection.info.server_version if vendor == "postgresql" else None
    print(f"backend: {vendor}{f' (server {version})' if version else ''}")

    now = floor_minute(dt.datetime.now(dt.UTC))
    simulate_week(args, now)
    range_reads(args, now)
    ingest(args)


# --- helpers -----------------------------------------------------------------------


def floor_minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def make_series(prefix: str, n: int) -> list[int]:
    from monitoring.storage import Reading, record

    readings = [Reading("bench_value", 0.0, {"slot": f"{prefix}{i}"}) for i in range(n)]
    record(readings, host="bench", now=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    from monitoring.models import Sample, Series

    ids = list(Series.objects.filter(labels__slot__startswith=prefix).order_by("id").values_list("id", flat=True))
    Sample.objects.filter(series_id__in=ids).delete()
    return ids


def bulk_rows(table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """Insert ``rows`` fast (COPY on PostgreSQL, executemany on SQLite); return how many."""
    from django.db import connection, transaction

    count = 0
    q = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(q(c) for c in columns)
            with cursor.copy(f"COPY {q(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            sql = (
                f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
            )
            raw = cursor.connection.cursor()
            chunk: list[tuple] = []
            for row in rows:
                chunk.append(tuple(adapt(v) if isinstance(v, dt.datetime) else v for v in row))
                if len(chunk) >= 50_000:
                    raw.executemany(sql, chunk)
                    count += len(chunk)
                    chunk = []
            raw.executemany(sql, chunk)
            count += len(chunk)
    return count


def table_bytes(table: str) -> int:
    """Return the table's size on disk with its indexes."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        else:
            cursor.execute(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = %s "
                "OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s)",
                [table, table],
            )
        return int(cursor.fetchone()[0])


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM" if connection.vendor == "sqlite" else "VACUUM ANALYZE")


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


# --- 1. a simulated week -------------------------------------------------------------


def simulate_week(args: argparse.Namespace, now: dt.datetime) -> None:
    from django.db import connection

    from monitoring import retention, rollups
    from monitoring.models import Rollup, Sample

    ids = make_series("w", args.series)
    step = dt.timedelta(seconds=args.interval)
    per_day = 86400 // args.interval
    start = now - dt.timedelta(days=args.days)
    rollup_seconds = retention_seconds = insert_seconds = 0.0
    written = {"raw": 0, "1m": 0, "1h": 0}

    def day_rows(day_start: dt.datetime) -> Iterator[tuple]:
        for k in range(per_day):
            ts = day_start + k * step
            for n, sid in enumerate(ids):
                yield (sid, ts, float((k + n) % 100))

    for day in range(args.days):
        day_start = start + dt.timedelta(days=day)
        seconds, count = timed(
            lambda day_start=day_start: bulk_rows(
                Sample._meta.db_table, ("series_id", "ts", "value"), day_rows(day_start)
            )
        )
        insert_seconds += seconds
        written["raw"] += int(count)  # type: ignore[call-overload]
        day_end = day_start + dt.timedelta(days=1)
        t0 = time.perf_counter()
        while True:
            report = rollups.run(now=day_end)
            written["1m"] += report.minute_rows
            written["1h"] += report.hour_rows
            if not report.behind:
                break
        rollup_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        while retention.enforce(now=day_end).behind:
            pass
        retention_seconds += time.perf_counter() - t0
        if connection.vendor == "postgresql":
            vacuum()  # what autovacuum does between days in real time, so freed space is reused
        progress(f"simulated day {day + 1}/{args.days}")

    # A steady-state run: one more minute of readings, then the periodic rollup and retention.
    minute_rows = [(sid, now + dt.timedelta(seconds=s), 1.0) for s in range(0, 60, args.interval) for sid in ids]
    bulk_rows(Sample._meta.db_table, ("series_id", "ts", "value"), minute_rows)
    rollups.run(now=now)  # catch up to the minute before
    steady_rollup, _ = timed(lambda: rollups.run(now=now + dt.timedelta(minutes=1) + dt.timedelta(seconds=150)))
    steady_retention, _ = timed(lambda: retention.enforce(now=now + dt.timedelta(minutes=3)))
    vacuum()

    n, days = args.series, args.days
    kept = {
        "raw": Sample.objects.filter(series_id__in=ids).count(),
        "1m": Rollup.objects.filter(series_id__in=ids, resolution=60).count(),
        "1h": Rollup.objects.filter(series_id__in=ids, resolution=3600).count(),
    }
    print()
    print(f"## Simulated operation: {n} series, one reading every {args.interval} s, {days} days")
    print(
        f"rows written per series per day: raw {written['raw'] / n / days:,.0f}, "
        f"1m {written['1m'] / n / days:,.0f}, 1h {written['1h'] / n / days:,.1f} "
        f"(total {sum(written.values()) / n / days:,.0f})"
    )
    print(
        f"rows kept after {days} days (raw 48 h, 1m 30 d, 1h 365 d): raw {kept['raw']:,}, "
        f"1m {kept['1m']:,}, 1h {kept['1h']:,} = {sum(kept.values()) / n:,.0f} per series"
    )

    def sizes(label: str) -> None:
        sample_bytes, rollup_bytes = table_bytes(Sample._meta.db_table), table_bytes(Rollup._meta.db_table)
        print(
            f"table sizes with indexes, {label}: samples {mib(sample_bytes)} "
            f"({sample_bytes / max(1, kept['raw']):.0f} B/row), rollups {mib(rollup_bytes)} "
            f"({rollup_bytes / max(1, kept['1m'] + kept['1h']):.0f} B/row)"
        )

    if connection.vendor == "postgresql":
        sizes("as the week left them (retention's free space is reused, not returned)")
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM FULL {connection.ops.quote_name(Sample._meta.db_table)}")
            cursor.execute(f"VACUUM FULL {connection.ops.quote_name(Rollup._meta.db_table)}")
        sizes("compacted (VACUUM FULL)")
    else:
        sizes("after VACUUM")
    full = {"raw": 48 * 3600 // args.interval, "1m": 30 * 1440, "1h": 365 * 24}
    print(
        f"rows kept per series once every retention is full: raw {full['raw']:,} + 1m {full['1m']:,} "
        f"+ 1h {full['1h']:,} = {sum(full.values()):,}"
    )
    print(
        f"time per simulated day: insert {insert_seconds / days:.1f} s, rollups {rollup_seconds / days:.2f} s, "
        f"retention {retention_seconds / days:.2f} s"
    )
    print(
        f"steady state with {days} days behind: one rollup run {steady_rollup * 1000:.0f} ms, "
        f"one retention run {steady_retention * 1000:.0f} ms"
    )


# --- 2. range reads --------------------------------------------------------------------


def range_reads(args: argparse.Namespace, now: dt.datetime) -> None:
    from monitoring import reads, rollups
    from monitoring.models import Rollup, Sample

    ids = make_series("r", RANGE_SERIES)
    marks = rollups.watermarks()
    minute_until, hour_until = marks[60], marks[3600]
    assert minute_until and hour_until, "the simulated week leaves watermarks"
    start = rollups.floor_time(now - dt.timedelta(days=30), 3600)
    cols = ("series_id", "resolution", "bucket", "min", "max", "avg", "count", "last")

    def buckets(resolution: int, until: dt.datetime) -> Iterator[tuple]:
        t = start
        k = 0
        while t < until:
            for n, sid in enumerate(ids):
                v = float((k + n) % 100)
                yield (sid, resolution, t, v - 1, v + 1, v, resolution // args.interval, v)
            t += dt.timedelta(seconds=resolution)
            k += 1

    progress("writing 30 days of rollups for the range reads")
    bulk_rows(Rollup._meta.db_table, cols, buckets(3600, hour_until))
    bulk_rows(Rollup._meta.db_table, cols, buckets(60, minute_until))
    raw_start = now - dt.timedelta(hours=48)
    raw = ((sid, raw_start + dt.timedelta(seconds=s), 1.0) for s in range(0, 48 * 3600, args.interval) for sid in ids)
    bulk_rows(Sample._meta.db_table, ("series_id", "ts", "value"), raw)
    vacuum()

    print()
    print(f"## Range reads: {RANGE_SERIES} series in one call, {args.repeat} runs each (first run separately)")
    for label, span, max_points in (("30 d", dt.timedelta(days=30), 300), ("24 h", dt.timedelta(days=1), 300)):
        lo, hi = now - span, now
        resolution = reads.pick_resolution(lo, hi, max_points, now=now)
        first, result = timed(lambda lo=lo, hi=hi, m=max_points: reads.range_read(ids, lo, hi, max_points=m, now=now))
        runs = [timed(lambda lo=lo, hi=hi, m=max_points: reads.range_read(ids, lo, hi, max_points=m, now=now))[0]
                for _ in range(args.repeat)]  # fmt: skip
        points = sum(len(p) for p in result.values())  # type: ignore[attr-defined]
        print(
            f"{label} x {RANGE_SERIES} series from {resolution or 'raw'}"
            f"{'s' if resolution else ''} rollups: median {statistics.median(runs) * 1000:.1f} ms, "
            f"max {max(runs) * 1000:.1f} ms, first {first * 1000:.1f} ms; {points} points returned "
            f"(goal <= 150 ms for 30 d)"
        )
    lo = now - dt.timedelta(hours=1)
    runs = [timed(lambda: reads.range_read(ids, lo, now, max_points=60, now=now))[0] for _ in range(args.repeat)]
    print(f"1 h x {RANGE_SERIES} series sparklines (60 points): median {statistics.median(runs) * 1000:.1f} ms")


# --- 3. ingest ---------------------------------------------------------------------------


def ingest(args: argparse.Namespace) -> None:
    from django.db import transaction
    from django.utils import timezone

    from monitoring.models import Sample, Series
    from monitoring.storage import Reading, record

    ids = list(
        Series.objects.filter(labels__slot__startswith="w").order_by("id").values_list("id", flat=True)[: args.series]
    )
    slots = [f"w{i}" for i in range(len(ids))]
    rounds = 4
    per_round = max(1, args.batches // rounds)
    rec_seconds = raw_seconds = 0.0
    recorded = raw = 0
    progress(f"ingest: {args.batches} batches of {args.batch_size} per side")
    for round_no in range(rounds):
        batches = [
            [Reading("bench_value", float(i), {"slot": slots[i % len(slots)]}) for i in range(args.batch_size)]
            for _ in range(per_round)
        ]
        t0 = time.perf_counter()
        for batch in batches:
            recorded += record(batch, host="bench", now=timezone.now()).accepted
        rec_seconds += time.perf_counter() - t0

        rows = [
            [Sample(series_id=ids[i % len(ids)], ts=timezone.now(), value=float(i)) for i in range(args.batch_size)]
            for _ in range(per_round)
        ]
        t0 = time.perf_counter()
        for sample_batch in rows:
            with transaction.atomic():
                Sample.objects.bulk_create(sample_batch, batch_size=1000)
            raw += len(sample_batch)
        raw_seconds += time.perf_counter() - t0
        progress(f"ingest round {round_no + 1}/{rounds}")

    rec_rate, raw_rate = recorded / rec_seconds, raw / raw_seconds
    print()
    print(f"## Ingest: batches of {args.batch_size} readings over {len(ids)} series, into the week's sample table")
    print(f"storage.record(): {recorded:,} samples in {rec_seconds:.2f} s = {rec_rate:,.0f} samples/s")
    print(f"raw bulk_create: {raw:,} samples in {raw_seconds:.2f} s = {raw_rate:,.0f} samples/s")
    print(f"record / raw: {rec_rate / raw_rate:.0%} (goal >= 50%)")


if __name__ == "__main__":
    main()
