"""Start-up time, idle memory (PSS) and idle CPU of `python manage.py runportal`.

Usage: python bench/startup.py [--runs 5] [--idle 60]

Prints figures on stdout, progress on stderr. Each run uses a fresh temporary data
folder for the first start (cold: creates the database) and the same folder for the
following starts (warm), like an operator restarting the portal.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start(data_dir: str, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(OPSPORTAL_DATA_DIR=data_dir, OPSPORTAL_LOG_LEVEL="warning")
    if os.environ.get("BENCH_SERVICES"):
        env.update(DATABASE_URL=os.environ["DATABASE_URL"], REDIS_URL=os.environ["REDIS_URL"])
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not healthz(port):
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            raise SystemExit("runportal did not come up")
        time.sleep(0.05)
    return proc, time.perf_counter() - t0


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def pss(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
        return 0


def role(p: psutil.Process) -> str:
    line = " ".join(p.cmdline())
    # "worker" before "beat": the worker's command line holds --without-heartbeat.
    for name in ("daphne", "worker", "beat", "runportal"):
        if name in line:
            return {"daphne": "web"}.get(name, name)
    return p.name()


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-")
    times = []
    for i in range(args.runs):
        port = free_port()
        proc, elapsed = start(data_dir, port)
        times.append(elapsed)
        print(f"run {i + 1}: /healthz 200 after {elapsed:.2f} s", file=sys.stderr)
        if i < args.runs - 1:
            stop(proc)
    cold, warm = times[0], times[1:]
    print(f"startup to /healthz 200: cold {cold:.2f} s; median of {len(times)} = {statistics.median(times):.2f} s"
          f" (warm median {statistics.median(warm) if warm else cold:.2f} s)")

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    print(f"idling {args.idle:.0f} s...", file=sys.stderr)
    time.sleep(args.idle)
    before = cpu_seconds(tree)
    t0 = time.perf_counter()
    time.sleep(args.idle)
    cpu = (cpu_seconds(tree) - before) / (time.perf_counter() - t0) * 100
    total = 0
    for p in tree:
        value = pss(p)
        total += value
        print(f"PSS {role(p):9s} pid {p.pid}: {value / 2**20:6.1f} MiB")
    print(f"PSS total after {args.idle:.0f} s idle: {total / 2**20:.1f} MiB (goal <= 350 MB)")
    print(f"idle CPU over {args.idle:.0f} s: {cpu:.2f} % of one core (goal <= 3 %)")
    stop(proc)


if __name__ == "__main__":
    main()
