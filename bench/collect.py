"""CPU cost of collection: one full cycle in-process, and the idle portal at a 10 s interval.

    python bench/collect.py [--cycles 20] [--tcp-targets 5] [--seconds 60] [--warmup 20] [--no-portal]

1. One full collection cycle: every collector once (collect + record into SQLite), in
   this process, after a warm-up cycle. CPU is this process's CPU time (all threads:
   probes and the channel-layer round trip use threads), in milliseconds.
2. The idle portal: ``manage.py runportal`` in a temporary data folder, no requests but
   ours to ``/healthz`` at start-up; CPU time of the whole process tree (supervisor,
   daphne, worker, beat) over ``--seconds`` after ``--warmup``, as % of one core. Then
   the same with the ``Collection: ...`` periodic tasks disabled, which attributes the
   collection's share.

Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def setup_django(data_dir: Path) -> None:
    os.environ["OPSPORTAL_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("OPSPORTAL_LOG_LEVEL", "warning")
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    log("migrating a fresh SQLite database ...")
    call_command("migrate", verbosity=0)


def collection_cycle(cycles: int, tcp_targets: int) -> dict[str, list[float]]:
    import datetime as dt

    import psutil
    from django.conf import settings
    from django.utils import timezone

    from monitoring import collectors
    from monitoring.models import ProcessHeartbeat, Target

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)  # the kernel completes the handshakes; nothing in this process accepts
    port = listener.getsockname()[1]
    for i in range(tcp_targets):
        Target.objects.create(
            name=f"tcp-{i}",
            kind=Target.Kind.TCP,
            address=f"127.0.0.1:{port}",
            interval=dt.timedelta(seconds=10),
            timeout=dt.timedelta(seconds=2),
        )
    # This process stands in for the portal's processes, so the process collector has work.
    now = timezone.now()
    started = dt.datetime.fromtimestamp(psutil.Process().create_time(), tz=dt.UTC)
    for role in ("web", "worker", "beat"):
        ProcessHeartbeat.objects.create(
            role=role, host=settings.HOSTNAME, pid=os.getpid(), started_at=started, last_seen=now
        )

    names = collectors.names()
    log(f"warm-up cycle ({', '.join(names)}) ...")
    for name in names:
        collectors.run(name, only_due=False)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for cycle in range(cycles):
        ProcessHeartbeat.objects.update(last_seen=timezone.now())
        for name in names:
            before = time.process_time()
            collectors.run(name, only_due=False)
            cpu[name].append((time.process_time() - before) * 1000)
        if (cycle + 1) % 5 == 0:
            log(f"  {cycle + 1}/{cycles} cycles")
    listener.close()
    return cpu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu(root: int) -> dict[tuple[int, float], tuple[str, float]]:
    """Return {(pid, start): (role, cpu seconds)} of ``root`` and its descendants."""
    import psutil

    found: dict[tuple[int, float], tuple[str, float]] = {}
    try:
        top = psutil.Process(root)
        family = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for proc in family:
        try:
            line = " ".join(proc.cmdline())
            role = next((r for r in ("daphne", "worker", "beat") if r in line), "supervisor")
            times = proc.cpu_times()
            found[(proc.pid, proc.create_time())] = (role, times.user + times.system)
        except psutil.Error:
            continue
    return found


def measure_portal(data_dir: Path, seconds: float, warmup: float, *, collection: bool) -> dict[str, float]:
    """Start runportal, let it settle, return CPU % of one core per role and in total."""
    from django.db import connection
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    PeriodicTask.objects.filter(name__startswith="Collection:").update(enabled=collection)
    PeriodicTasks.update_changed()
    connection.close()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"OPSPORTAL_DATA_DIR": str(data_dir), "OPSPORTAL_LOG_LEVEL": "warning"})
    log(f"starting runportal on port {port} (collection {'on' if collection else 'off'}) ...")
    with (data_dir / "runportal.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runportal", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"runportal did not come up; see {data_dir / 'runportal.log'}")
            time.sleep(0.3)
        log(f"serving; warming up for {warmup:g} s ...")
        time.sleep(warmup)
        log(f"measuring for {seconds:g} s ...")
        before, t0 = tree_cpu(proc.pid), time.monotonic()
        time.sleep(seconds)
        after, elapsed = tree_cpu(proc.pid), time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    per_role: dict[str, float] = {}
    for key, (role, cpu) in after.items():
        spent = cpu - before[key][1] if key in before else cpu
        per_role[role] = per_role.get(role, 0.0) + spent
    result = {role: 100 * cpu / elapsed for role, cpu in per_role.items()}
    result["total"] = sum(result.values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="measured collection cycles (default 20)")
    parser.add_argument("--tcp-targets", type=int, default=5, help="TCP targets probed each cycle (default 5)")
    parser.add_argument("--seconds", type=float, default=60, help="idle portal measurement window (default 60)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds after /healthz before measuring")
    parser.add_argument("--no-portal", action="store_true", help="skip the idle-portal measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="opsportal-bench-collect-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        cpu = collection_cycle(args.cycles, args.tcp_targets)
        print(f"one collection cycle, in-process, SQLite, {args.tcp_targets} TCP targets, {args.cycles} cycles:")
        print(f"  {'collector':<10} {'CPU ms (median)':>16} {'CPU ms (mean)':>14}")
        totals = [sum(values) for values in zip(*cpu.values(), strict=True)]
        for name, values in cpu.items():
            print(f"  {name:<10} {statistics.median(values):>16.1f} {statistics.mean(values):>14.1f}")
        print(f"  {'cycle':<10} {statistics.median(totals):>16.1f} {statistics.mean(totals):>14.1f}")
        if args.no_portal:
            return
        for collection in (True, False):
            figures = measure_portal(data_dir, args.seconds, args.warmup, collection=collection)
            parts = ", ".join(f"{role} {value:.2f} %" for role, value in sorted(figures.items()) if role != "total")
            label = "with collection" if collection else "without the collection tasks"
            print(f"idle portal {label}: {figures['total']:.2f} % of one core ({parts})")


if __name__ == "__main__":
    main()
