"""Alert evaluation: cycle time for many rules, and latency from a pushed sample to the webhook.

Usage: python bench/evaluate.py [--rules 100,1000,10000] [--hosts 100] [--metrics 10]
                                [--cycles 5] [--trials 50] [--services] [--no-cycle] [--no-latency]

1. **Cycle time.** One process (``alerts.engine.run`` called directly) over
   ``hosts x metrics`` gauge series plus one counter per host, each with five minutes of
   raw samples every 10 s. Rules, by ``n % 10``: four single-series comparisons
   (``bench_m3{host="h17"} > 97``), three ``avg_over_time(...[5m])`` of one series, one
   ``rate(bench_requests_total{host=...}[5m])``, one vector rule over every host
   (``max_over_time(bench_m4[1m]) > 98``, one host breaching per metric) and one
   ``and`` of two vectors. A tenth of the rules have a webhook channel (deliveries are
   written, nobody sends them). The first cycle opens the alerts (transitions and
   deliveries); the figures are then ``--cycles`` steady cycles: every rule evaluated,
   firing alerts' values and ``last_true_at`` updated, nothing new to announce. Queries are
   counted with ``CaptureQueriesContext`` (savepoints left out).
2. **Latency.** ``manage.py runportal`` in a temporary data folder (embedded defaults:
   SQLite, filesystem broker), a push token from ``create_token``, a webhook channel and
   a ``for: 0s`` rule from ``loadconfig``, an HTTP sink thread. Each trial POSTs a
   breaching sample (a new series) to ``/api/v1/metrics`` and times until the sink has
   the ``firing`` message, then POSTs a recovery and times the ``resolved`` message.

With ``--services`` (needs ``DATABASE_URL`` on PostgreSQL and ``REDIS_URL``) both parts
also run on a throwaway database ``opsportal_bench_eval`` created next to the one
``DATABASE_URL`` names (dropped at the end; no other database is touched), and the
portal uses Redis database ``BENCH_REDIS_DB`` (default 13) on the ``REDIS_URL`` server,
so workers of other portals on the same server never take its tasks.

Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "opsportal_bench_eval"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- backends ---------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(url: str) -> Iterator[str]:
    """Create ``BENCH_DB`` on ``url``'s server; yield its URL; drop it afterwards."""
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
    try:
        yield urlunsplit(parts._replace(path="/" + BENCH_DB))
    finally:
        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def bench_redis_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + os.environ.get("BENCH_REDIS_DB", "13")))


def base_env(data_dir: str, services: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        OPSPORTAL_DATA_DIR=data_dir,
        OPSPORTAL_LOG_LEVEL="warning",
        OPSPORTAL_HOSTNAME=f"bench-eval-{uuid.uuid4().hex[:6]}",
        DJANGO_SETTINGS_MODULE="opsportal.settings",
        **services,
    )
    return env


# --- part 1: cycle time (runs in a child process per backend) ------------------------------


def value_of(host: int, metric: int) -> float:
    """Spread each metric's hosts over 0..99, so exactly one host per metric is at 99."""
    return float((host * 37 + metric * 11) % 100)


def rule_text(n: int, hosts: int, metrics: int) -> str:
    pick = random.Random(n)
    k, j = pick.randrange(metrics), pick.randrange(hosts)
    kind = n % 10
    if kind < 4:
        return f'bench_m{k}{{host="h{j}"}} > {95 + n % 5}'
    if kind < 7:
        return f'avg_over_time(bench_m{k}{{host="h{j}"}}[5m]) > {95 + n % 5}'
    if kind == 7:
        return f'rate(bench_requests_total{{host="h{j}"}}[5m]) > {1 + (j % 3)}'
    if kind == 8:
        return f"max_over_time(bench_m{k}[1m]) > 98"
    return f"bench_m{k} > 97 and bench_m{(k + 1) % metrics} > 50"


def cycle_child(args: argparse.Namespace) -> None:
    """Set up the data, then print one JSON line per rule count (stdout)."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import datetime as dt

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from alerts import engine
    from alerts.models import Alert, AlertRule, AlertTransition, Delivery, NotificationChannel
    from monitoring.models import Series
    from monitoring.storage import Reading, record

    call_command("migrate", verbosity=0)
    hosts, metrics = args.hosts, args.metrics
    end = timezone.now().replace(microsecond=0)
    progress(f"  recording 5 min of samples for {hosts * (metrics + 1)} series ...")
    for step in range(30):
        ts = end - dt.timedelta(seconds=10 * (29 - step))
        readings = [
            Reading(f"bench_m{k}", value_of(j, k) + (step % 3) * 0.1, {"host": f"h{j}"}, ts=ts)
            for j in range(hosts)
            for k in range(metrics)
        ]
        readings += [
            Reading("bench_requests_total", (j % 5) * 10.0 * step, {"host": f"h{j}"}, ts=ts, kind="counter")
            for j in range(hosts)
        ]
        record(readings, host="bench", now=ts)
    series = Series.objects.filter(name__startswith="bench_").count()
    channel = NotificationChannel.objects.create(name="bench-hook", target="http://127.0.0.1:9/hook")
    made = 0
    for count in args.rules:
        progress(f"  {count} rules ...")
        rules = [
            AlertRule(name=f"bench rule {n:05d}", expr=rule_text(n, hosts, metrics), severity="warning")
            for n in range(made, count)
        ]
        AlertRule.objects.bulk_create(rules, batch_size=500)
        through = AlertRule.channels.through
        ids = AlertRule.objects.filter(name__in=[r.name for r in rules[::10]]).values_list("id", flat=True)
        through.objects.bulk_create([through(alertrule_id=i, notificationchannel_id=channel.pk) for i in ids])
        made = count
        transitions_before = AlertTransition.objects.count()
        tick = time.perf_counter()
        first = engine.run(now=end, publish=False)
        first_ms = (time.perf_counter() - tick) * 1000
        new_transitions = AlertTransition.objects.count() - transitions_before
        times, queries = [], []
        for i in range(args.cycles):
            now = end + dt.timedelta(seconds=1 + i)
            with CaptureQueriesContext(connection) as captured:
                tick = time.perf_counter()
                if os.environ.get("BENCH_PROFILE") and i == args.cycles - 1:
                    import cProfile
                    import pstats

                    profiler = cProfile.Profile()
                    summary = profiler.runcall(engine.run, now=now, publish=False)
                    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
                else:
                    summary = engine.run(now=now, publish=False)
                times.append((time.perf_counter() - tick) * 1000)
            queries.append(sum(1 for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]))
        result = {
            "rules": count,
            "series": series,
            "inputs": summary.requirements,
            "true": summary.series_results,
            "failed": summary.failed_rules,
            "firing": Alert.objects.filter(state="firing").count(),
            "first_ms": first_ms,
            "first_transitions": new_transitions,
            "first_deliveries": first.deliveries,
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "queries": sorted(set(queries)),
            "steady_transitions": summary.transitions,
        }
        print(json.dumps(result), flush=True)
    progress(f"  deliveries written: {Delivery.objects.count()}")


def run_cycles(args: argparse.Namespace, label: str, services: dict[str, str]) -> list[dict[str, Any]]:
    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-eval-")
    try:
        env = base_env(data_dir, services)
        command = [sys.executable, __file__, "--cycle-child", "--rules", ",".join(map(str, args.rules))]
        command += ["--hosts", str(args.hosts), "--metrics", str(args.metrics), "--cycles", str(args.cycles)]
        progress(f"cycle time on {label}:")
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- part 2: latency through the running portal -----------------------------------------------


class Sink:
    """An HTTP server that notes when each (event, trial) arrives."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.condition = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.perf_counter()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")
                try:
                    payload = json.loads(body)
                    key = (payload["event"], payload["alert"]["labels"].get("trial", ""))
                except (ValueError, KeyError, TypeError):
                    return
                with sink.condition:
                    sink.arrivals.setdefault(key, at)
                    sink.condition.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, event: str, trial: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.condition:
            while (event, trial) not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.condition.wait(left)
            return self.arrivals[(event, trial)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def push(port: int, token: str, value: float, trial: str) -> None:
    body = json.dumps({"name": "bench_latency", "value": value, "labels": {"trial": trial}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/metrics",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 202:
            raise SystemExit(f"push answered {response.status}")


def run_latency(trials: int, label: str, services: dict[str, str]) -> dict[str, list[float]]:
    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-eval-")
    env = base_env(data_dir, services)
    sink = Sink()
    port = free_port()
    progress(f"latency on {label}: migrate, token, loadconfig ...")
    manage(env, "migrate", "--noinput", "-v", "0")
    token = manage(env, "create_token", "bench", "--scope", "push").strip().splitlines()[-1]
    config = Path(data_dir) / "bench.yaml"
    config.write_text(
        "channels:\n"
        f"  - {{name: bench-sink, kind: webhook, target: 'http://127.0.0.1:{sink.port}/hook'}}\n"
        "rules:\n"
        "  - {name: Bench latency, expr: 'bench_latency > 100', severity: critical, repeat_interval: 0s,"
        " channels: [bench-sink]}\n"
    )
    manage(env, "loadconfig", str(config))
    log = open(Path(data_dir) / "runportal.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    result: dict[str, list[float]] = {"firing": [], "resolved": []}
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"runportal did not come up; see {data_dir}/runportal.log")
            time.sleep(0.2)
        progress("  portal up; a warm-up trial (the worker may still be starting) ...")
        push(port, token, 150, "warmup")
        if sink.wait("firing", "warmup", 90) is None:
            raise SystemExit(f"the warm-up alert never arrived; see {data_dir}/runportal.log")
        push(port, token, 0, "warmup")
        sink.wait("resolved", "warmup", 60)
        for trial in range(trials):
            name = str(trial)
            for event, value in (("firing", 150.0), ("resolved", 0.0)):
                started = time.perf_counter()
                push(port, token, value, name)
                arrived = sink.wait(event, name, 60)
                if arrived is None:
                    progress(f"  trial {trial}: no {event} message within 60 s")
                    continue
                result[event].append(arrived - started)
            if trial % 10 == 9:
                progress(f"  {trial + 1} trials, last firing {result['firing'][-1] * 1000:.0f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        sink.server.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default="100,1000,10000", help="rule counts (default 100,1000,10000)")
    parser.add_argument("--hosts", type=int, default=100, help="hosts (default 100)")
    parser.add_argument("--metrics", type=int, default=10, help="gauge metrics per host (default 10)")
    parser.add_argument("--cycles", type=int, default=5, help="steady cycles measured per rule count (default 5)")
    parser.add_argument("--trials", type=int, default=50, help="latency trials (default 50)")
    parser.add_argument("--services", action="store_true", help="also run on PostgreSQL + Redis")
    parser.add_argument("--no-cycle", action="store_true", help="skip the cycle-time part")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency part")
    parser.add_argument("--cycle-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rules = [int(n) for n in str(args.rules).split(",") if n]
    if args.cycle_child:
        cycle_child(args)
        return

    backends: list[tuple[str, dict[str, str] | None]] = [("embedded (SQLite, filesystem broker)", {})]
    if args.services:
        if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
            raise SystemExit("--services needs DATABASE_URL (PostgreSQL) and REDIS_URL")
        backends.append(("PostgreSQL + Redis", None))

    cycles: dict[str, list[dict[str, Any]]] = {}
    latency: dict[str, dict[str, list[float]]] = {}
    for label, services in backends:
        # Each part gets a fresh database: the latency run must not evaluate the cycle run's 10,000 rules.
        for part in ("cycle", "latency"):
            if (part == "cycle" and args.no_cycle) or (part == "latency" and args.no_latency):
                continue
            with contextlib.ExitStack() as stack:
                env = services
                if env is None:
                    url = stack.enter_context(throwaway_database(os.environ["DATABASE_URL"]))
                    env = {"DATABASE_URL": url, "REDIS_URL": bench_redis_url(os.environ["REDIS_URL"])}
                    progress(f"PostgreSQL: throwaway database {BENCH_DB}; Redis {env['REDIS_URL']}")
                if part == "cycle":
                    cycles[label] = run_cycles(args, label, env)
                else:
                    latency[label] = run_latency(args.trials, label, env)

    series = args.hosts * (args.metrics + 1)
    for label, rows in cycles.items():
        print(f"\nEvaluation cycle, {label}: {series} series ({args.hosts} hosts x {args.metrics} gauges + 1 counter)")
        print(
            f"  {'rules':>6} {'inputs':>6} {'true':>6} {'firing':>6} {'first cycle':>12} {'(transitions)':>13} "
            f"{'steady median':>13} {'min':>7} {'max':>7} {'queries':>8}"
        )
        for r in rows:
            print(
                f"  {r['rules']:>6} {r['inputs']:>6} {r['true']:>6} {r['firing']:>6} {r['first_ms']:>10.0f} ms "
                f"{r['first_transitions']:>13} {r['median_ms']:>10.0f} ms {r['min_ms']:>4.0f} ms "
                f"{r['max_ms']:>4.0f} ms {'/'.join(map(str, r['queries'])):>8}"
            )
    for label, result in latency.items():
        print(f"\nPush to webhook, {label}: {len(result['firing'])} trials")
        for event, values in result.items():
            if not values:
                print(f"  {event:<9} no messages arrived")
                continue
            p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
            print(f"  {event:<9} p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   max {max(values) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
