"""Live fan-out: one Daphne process, many status-page WebSocket clients.

Usage: python bench/fanout.py [--clients 100,1000] [--publishes 20] [--samples 10] [--browser]

For each client count, a fresh Daphne process (``opsportal.asgi:application``) serves a
temporary SQLite data folder; that many staff WebSocket clients connect to
``/ws/status/`` (each waits for its snapshot). Then:

* **publish → last client**: ``live.publish()`` commits an event here; the time until
  the last of the clients has it (and the median client), over ``--publishes`` events
  1.2 s apart (so the one-frame-a-second coalescing never holds one back);
* **sample commit → client**: ``monitoring.storage.record()`` of a CPU sample (the
  ``samples_recorded`` receiver publishes inside the same transaction) until every
  client has the new value;
* **server memory**: RSS (and PSS) of the Daphne process before the clients connect and
  with them connected, per 100 clients;
* with ``--browser``, at the largest client count: sample commit → the value on a real
  ``/status/`` page in Debian's chromium (MutationObserver time; same machine clock).

The clients live in this process (a small asyncio client, tests/e2e/wsclient.py) on
the same machine as the server, so figures include the clients' own receive cost.
Figures on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def memory_kb(pid: int) -> tuple[int, int]:
    """Return (RSS, PSS) of ``pid`` in kB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    rollup = Path(f"/proc/{pid}/smaps_rollup")
    if rollup.exists():
        for line in rollup.read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def setup_django(data_dir: str) -> str:
    """Migrate a fresh data folder, create a staff session; return its Cookie header."""
    os.environ["OPSPORTAL_DATA_DIR"] = data_dir
    os.environ.setdefault("OPSPORTAL_LOG_LEVEL", "warning")
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    progress("migrating a fresh SQLite data folder")
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def publish_marker(marker: int) -> float:
    """Commit one alert event; return the time right after the commit."""
    from django.db import connections, transaction
    from django.utils import timezone

    from opsportal import live

    now = timezone.now().isoformat()
    item: Any = {"id": marker, "name": "bench", "labels": {}, "severity": "info", "state": "firing"}
    item.update(value=None, summary="", active_since=now, runbook="", runbook_url="", url="")
    stamps: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: stamps.append(time.perf_counter()))
        live.publish("alert", {"at": now, "alerts": [item]})
    connections.close_all()
    return stamps[0]


def record_sample(value: float) -> tuple[float, float]:
    """Record a CPU sample; return (perf_counter, wall clock) right after its commit."""
    from django.db import connections, transaction

    from monitoring.storage import Reading, record

    stamps: list[tuple[float, float]] = []
    with transaction.atomic():
        # Registered first, so it runs first after the commit (before other hooks' work).
        transaction.on_commit(lambda: stamps.append((time.perf_counter(), time.time())))
        record([Reading("system_cpu_usage_percent", value)], host="bench")
    connections.close_all()
    return stamps[0]


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    from tests.e2e.servers import wait_for_http

    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "opsportal.asgi:application"],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, process=process)
    return process


async def run_count(count: int, port: int, pid: int, cookie: str, args: argparse.Namespace) -> dict[str, Any]:
    from tests.e2e.wsclient import LiveClient

    base = memory_kb(pid)
    progress(f"{count} clients: connecting to Daphne pid {pid} (RSS {base[0] / 1024:.0f} MB before)")
    gate = asyncio.Semaphore(50)

    async def connect() -> LiveClient:
        async with gate:
            client = await LiveClient.open(port, cookie=cookie, decode=False)
            first = await client.next(timeout=120)
            assert first.startswith(b'{"type":"snapshot"'), first[:80]
            client.drain = asyncio.create_task(drain_forever(client))
            return client

    started = time.perf_counter()
    clients = await asyncio.gather(*(connect() for _ in range(count)))
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(2)
    loaded = memory_kb(pid)
    result: dict[str, Any] = {
        "clients": count,
        "connect_s": connect_seconds,
        "rss_base_mb": base[0] / 1024,
        "rss_mb": loaded[0] / 1024,
        "rss_per_100_mb": (loaded[0] - base[0]) / 1024 / (count / 100),
        "pss_per_100_mb": (loaded[1] - base[1]) / 1024 / (count / 100),
    }
    try:
        last: list[float] = []
        median: list[float] = []
        for index in range(args.publishes):
            marker = 1_000_000 + index
            watches = [c.watch(b'"id":%d,' % marker) for c in clients]
            committed = await asyncio.to_thread(publish_marker, marker)
            times = await asyncio.wait_for(asyncio.gather(*watches), 60)
            last.append(max(times) - committed)
            median.append(statistics.median(times) - committed)
            progress(f"  publish {index + 1}/{args.publishes}: last client after {last[-1] * 1000:.0f} ms")
            await asyncio.sleep(args.gap)
        result.update(
            last_p50_ms=percentile(last, 50) * 1000,
            last_p99_ms=percentile(last, 99) * 1000,
            last_max_ms=max(last) * 1000,
            median_client_p50_ms=percentile(median, 50) * 1000,
        )

        sample_last: list[float] = []
        for index in range(args.samples):
            value = 10.0 + index + count / 10_000
            watches = [c.watch(b'"value":%s,' % repr(value).encode()) for c in clients]
            committed, _ = await asyncio.to_thread(record_sample, value)
            times = await asyncio.wait_for(asyncio.gather(*watches), 60)
            sample_last.append(max(times) - committed)
            progress(f"  sample {index + 1}/{args.samples}: last client after {sample_last[-1] * 1000:.0f} ms")
            await asyncio.sleep(args.gap)
        result.update(
            sample_p50_ms=percentile(sample_last, 50) * 1000,
            sample_p99_ms=percentile(sample_last, 99) * 1000,
        )
        if args.browser and count == max(args.counts):
            result["browser_ms"] = await asyncio.to_thread(browser_latency, port, cookie, args.samples)
    finally:
        for client in clients:
            client.drain.cancel()
            client.close()
    return result


async def drain_forever(client: Any) -> None:
    while True:
        await client.messages.get()


def browser_latency(port: int, cookie: str, samples: int) -> list[float]:
    """Return sample-commit → value-on-the-page times (ms) in a real chromium."""
    from playwright.sync_api import sync_playwright

    name, value = cookie.split("=", 1)
    base = f"http://127.0.0.1:{port}"
    found: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context()
            context.add_cookies([{"name": name, "value": value, "url": base}])
            page = context.new_page()
            response = page.goto(f"{base}/status/")
            if response is None or response.status != 200:
                body = response.text()[:2000] if response else ""
                raise RuntimeError(f"/status/ answered {response.status if response else 'nothing'}: {body}")
            try:
                page.wait_for_selector('#conn[data-state="live"]', timeout=30_000)
            except Exception:
                progress(f"page never went live; connection state: {page.text_content('#conn')!r}")
                raise
            page.evaluate(
                """() => {
                    window.__seen = {};
                    new MutationObserver(() => {
                        document.querySelectorAll('.host[data-host="bench"] .tile-value').forEach((n) => {
                            if (!(n.textContent in window.__seen)) window.__seen[n.textContent] = Date.now();
                        });
                    }).observe(document.getElementById('hosts'), {subtree: true, childList: true, characterData: true});
                }"""
            )
            for index in range(samples):
                number = 50.0 + index + 0.5
                # Playwright's loop runs in this thread, and Django refuses that: record from another.
                with ThreadPoolExecutor(1) as pool:
                    _, wall = pool.submit(record_sample, number).result()
                text = f"{number:.1f} %"
                page.wait_for_function("(t) => t in window.__seen", arg=text, timeout=10_000)
                seen_ms = page.evaluate("(t) => window.__seen[t]", text)
                found.append(seen_ms - wall * 1000)
                progress(f"  browser sample {index + 1}/{samples}: on the page after {found[-1]:.0f} ms")
                time.sleep(1.2)
        finally:
            browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,1000", help="comma-separated client counts (default 100,1000)")
    parser.add_argument("--publishes", type=int, default=20, help="events timed per count (default 20)")
    parser.add_argument("--samples", type=int, default=10, help="samples timed per count (default 10)")
    parser.add_argument("--gap", type=float, default=1.2, help="seconds between timed events (default 1.2)")
    parser.add_argument("--browser", action="store_true", help="also time sample → real chromium page")
    args = parser.parse_args()
    args.counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.browser and CHROMIUM is None:
        raise SystemExit("--browser needs Debian's chromium (apt-get install chromium)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * max(args.counts) + 512))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    data_dir = tempfile.mkdtemp(prefix="opsportal-bench-fanout-")
    try:
        cookie = setup_django(data_dir)
        from tests.e2e.servers import free_port

        results = []
        for count in args.counts:
            port = free_port()
            log = Path(data_dir) / "daphne.log"
            server = start_server(port, log)
            try:
                results.append(asyncio.run(run_count(count, port, server.pid, cookie, args)))
            except BaseException:
                lines = [line for line in log.read_text().splitlines() if "/ws/status/" not in line]
                progress("server log (last lines):\n" + "\n".join(lines[-60:]))
                raise
            finally:
                server.terminate()
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        report(results, args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"fan-out on one Daphne process, SQLite, {args.publishes} publishes / {args.samples} samples per count")
    print(
        "| clients | connect all | publish → last client p50 / p99 / max | median client p50"
        " | sample commit → last client p50 / p99 | RSS before → with clients | RSS per 100 clients"
        " | PSS per 100 clients |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['clients']:,} | {r['connect_s']:.1f} s"
            f" | {r['last_p50_ms']:.0f} / {r['last_p99_ms']:.0f} / {r['last_max_ms']:.0f} ms"
            f" | {r['median_client_p50_ms']:.0f} ms"
            f" | {r['sample_p50_ms']:.0f} / {r['sample_p99_ms']:.0f} ms"
            f" | {r['rss_base_mb']:.0f} → {r['rss_mb']:.0f} MB | {r['rss_per_100_mb']:.1f} MB"
            f" | {r['pss_per_100_mb']:.1f} MB |"
        )
    for r in results:
        if "browser_ms" in r:
            values = r["browser_ms"]
            print(
                f"sample commit → value on a chromium /status/ page (with {r['clients']:,} other clients):"
                f" p50 {percentile(values, 50):.0f} ms, max {max(values):.0f} ms over {len(values)} samples"
            )


if __name__ == "__main__":
    main()
