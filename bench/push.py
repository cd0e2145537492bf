"""Ingest rate of the push API in batches vs raw ``bulk_create`` into the same table.

Usage: python bench/push.py [--batches 40] [--batch-size 500] [--series 50] [--rounds 4]

With ``DATABASE_URL`` set to PostgreSQL the run uses a throwaway database
``opsportal_bench_push`` on the same server (created, migrated and dropped here; no
other database is touched); without it, SQLite in a temporary data folder. The push
side goes through the whole Django stack in-process (test ``Client``: middleware,
token check, rate limit, JSON parsing and validation, ``storage.record``), so it
measures the portal's own cost without network or server overhead. The raw side
bulk-creates the same number of ``Sample`` rows for the same series into the same
table. Both alternate in rounds so table growth weighs on them equally; on
PostgreSQL a ``COPY`` figure is added for reference.

Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "opsportal_bench_push"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def throwaway_database(url: str) -> tuple[str, Callable[[], None]]:
    """Create ``BENCH_DB`` next to ``url``'s database; return its URL and a dropper."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    if parts.path.strip("/") == BENCH_DB:
        raise SystemExit(f"DATABASE_URL already names {BENCH_DB}; point it at another database on the server")
    admin_url = url

    def run(statement: sql.Composed) -> None:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    name = sql.Identifier(BENCH_DB)
    run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    run(sql.SQL("CREATE DATABASE {}").format(name))
    bench_url = urlunsplit(parts._replace(path="/" + BENCH_DB))

    def drop() -> None:
        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))

    return bench_url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per side (default 40)")
    parser.add_argument("--batch-size", type=int, default=500, help="samples per batch (default 500)")
    parser.add_argument("--series", type=int, default=50, help="distinct series in the data (default 50)")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of push and raw (default 4)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-push-")
    os.environ["OPSPORTAL_DATA_DIR"] = data_dir
    os.environ.setdefault("OPSPORTAL_LOG_LEVEL", "warning")
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
    url = os.environ.get("DATABASE_URL", "")
    drop = None
    if url and not url.startswith("sqlite"):
        progress(f"PostgreSQL: creating throwaway database {BENCH_DB}")
        os.environ["DATABASE_URL"], drop = throwaway_database(url)
        backend = "postgresql"
    else:
        os.environ.pop("DATABASE_URL", None)
        backend = "sqlite"

    def clean_up() -> None:
        if drop is not None:
            from django.db import connections

            connections.close_all()
            progress(f"dropping {BENCH_DB}")
            drop()
        shutil.rmtree(data_dir, ignore_errors=True)

    # Registered before Django starts, so it runs after the exit hooks Django code adds
    # (the request-metrics buffer flushes to the database on exit).
    atexit.register(clean_up)
    sys.path.insert(0, str(ROOT))
    run(args, backend)


def run(args: argparse.Namespace, backend: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from monitoring import tokens
    from monitoring.models import Sample, Series

    progress("migrating")
    call_command("migrate", verbosity=0)
    _, plaintext = tokens.create("bench", ["push"], rate_limit_per_minute=0)
    client = Client(HTTP_HOST="localhost")  # an ALLOWED_HOSTS name of the default settings
    headers = {"Authorization": f"Bearer {plaintext}"}

    def body(offset: float) -> bytes:
        now = time.time() - offset
        samples = [
            {
                "name": "bench_value",
                "value": float(i),
                "labels": {"series": f"s{i % args.series}", "host": "bench"},
                "ts": now - i * 1e-4,
            }
            for i in range(args.batch_size)
        ]
        return json.dumps({"samples": samples}).encode()

    # Warm up: create the series and warm the process's caches, outside the timings.
    warm = client.post("/api/v1/metrics", data=body(0), content_type="application/json", headers=headers)
    if warm.status_code != 202:
        raise SystemExit(f"push refused during warm-up: {warm.status_code} {warm.content[:200]!r}")
    series_ids = list(Series.objects.filter(name="bench_value").values_list("id", flat=True))

    per_round = max(1, args.batches // args.rounds)
    push_seconds = raw_seconds = copy_seconds = 0.0
    pushed = raw = copied = 0
    for round_no in range(args.rounds):
        bodies = [body(0) for _ in range(per_round)]  # encoding is the client's cost, not the portal's
        t0 = time.perf_counter()
        for payload in bodies:
            response = client.post("/api/v1/metrics", data=payload, content_type="application/json", headers=headers)
            if response.status_code != 202:
                raise SystemExit(f"push refused: {response.status_code} {response.content[:200]!r}")
            pushed += response.json()["accepted"]
        push_seconds += time.perf_counter() - t0

        # The raw side starts from plain tuples, as a loader holding the data would.
        now = timezone.now()
        rows = [[(series_ids[i % len(series_ids)], now, float(i)) for i in range(args.batch_size)]
                for _ in range(per_round)]  # fmt: skip
        t0 = time.perf_counter()
        for batch in rows:
            with transaction.atomic():
                Sample.objects.bulk_create([Sample(series_id=s, ts=t, value=v) for s, t, v in batch], batch_size=1000)
            raw += len(batch)
        raw_seconds += time.perf_counter() - t0

        if backend == "postgresql":
            table = Sample._meta.db_table
            t0 = time.perf_counter()
            for batch in rows:
                with transaction.atomic(), connection.cursor() as cursor:
                    with cursor.copy(f'COPY "{table}" (series_id, ts, value) FROM STDIN') as copy:
                        for row in batch:
                            copy.write_row(row)
                copied += len(batch)
            copy_seconds += time.perf_counter() - t0
        progress(f"round {round_no + 1}/{args.rounds}: {pushed} pushed, {raw} bulk-created")

    push_rate = pushed / push_seconds
    raw_rate = raw / raw_seconds
    print(f"backend: {backend}; {args.batch_size} samples per batch over {len(series_ids)} series")
    print(f"push API: {pushed} samples in {push_seconds:.2f} s = {push_rate:,.0f} samples/s")
    print(f"raw bulk_create: {raw} samples in {raw_seconds:.2f} s = {raw_rate:,.0f} samples/s")
    print(f"push / raw bulk_create: {push_rate / raw_rate:.0%} (goal >= 50%)")
    if copied:
        copy_rate = copied / copy_seconds
        print(f"raw COPY: {copied} samples in {copy_seconds:.2f} s = {copy_rate:,.0f} samples/s")
        print(f"push / raw COPY: {push_rate / copy_rate:.0%}")


if __name__ == "__main__":
    main()
