"""A real browser on the live status page: colour changes, alerts, restarts, logouts.

Debian's chromium through Playwright (never ``playwright install``), against a Daphne
process serving this test run's database. Screenshots land in ``test-artifacts/``.
Skips when chromium is absent; fails instead when ``OPSPORTAL_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from tests.e2e.servers import ROOT, Server, server_env, start_daphne

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "pw-e2e-browser-1234"
HOST = "e2e-host"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    running = start_daphne(server_env(), tmp_path)
    yield running
    running.stop()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"status-{name}.png"), full_page=True)


def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run database work off the Playwright loop's thread (Django refuses it in async context)."""
    from django.db import connections

    def run():  # type: ignore[no-untyped-def]
        try:
            return fn(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def record_cpu(value: float) -> None:
    """Record a CPU sample for the test host and run the periodic steps that follow one."""
    in_thread(_record_cpu, value)


def _record_cpu(value: float) -> None:
    from alerts import engine
    from monitoring.status import evaluate
    from monitoring.storage import Reading, record, series_cache

    series_cache.clear()  # ids of earlier tests' (flushed) databases
    record([Reading("system_cpu_usage_percent", value)], host=HOST)
    evaluate()
    engine.run()


def log_in(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/admin/login/?next=/status/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    try:
        page.wait_for_url(f"{base}/status/", timeout=15_000)
    except Exception:
        shot(page, "login-failed")
        raise


def socket_close_code(page, base: str) -> int:  # type: ignore[no-untyped-def]
    """Open /ws/status/ from the page and return the close code the browser reports."""
    ws_url = base.replace("http://", "ws://") + "/ws/status/"
    return int(
        page.evaluate(
            """(url) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                ws.onclose = (event) => resolve(event.code);
            })""",
            ws_url,
        )
    )


def test_status_page_turns_critical_shows_the_alert_survives_a_restart_and_stops_at_logout(
    browser, server, django_user_model, tmp_path
):
    in_thread(set_up_staff_and_threshold, django_user_model)
    record_cpu(20.0)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, server.base, "oncall")
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "live", timeout=10_000)
    tile = page.locator(f'.host[data-host="{HOST}"] .tile[data-metric="system_cpu_usage_percent"]')
    expect(tile).to_have_class(tile_class("healthy"))
    expect(tile.locator(".tile-limits")).to_have_text("warn ≥ 70.0 % · crit ≥ 85.0 %")
    healthy_colour = tile.evaluate("node => getComputedStyle(node).borderLeftColor")
    page.evaluate("window.__notReloaded = true")
    shot(page, "1-live")

    # A sample crosses the critical threshold: the tile turns red, the alert shows up.
    record_cpu(97.0)
    expect(tile).to_have_class(tile_class("critical"), timeout=5_000)
    expect(tile.locator(".tile-value")).to_have_text("97.0 %")
    assert tile.evaluate("node => getComputedStyle(node).borderLeftColor") != healthy_colour
    alert = page.locator("#alerts-body tr.alert").first
    expect(alert).to_be_visible(timeout=5_000)
    expect(alert.locator(".alert-state")).to_have_text("firing")
    expect(page.locator("#overall")).to_have_attribute("data-status", "critical")
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "2-critical")

    # The server restarts: the page says so, reconnects and re-reads the state.
    port = server.port
    server.stop()
    expect(conn).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(conn).to_contain_text("Reconnecting")
    shot(page, "3-reconnecting")
    record_cpu(30.0)  # while the page is away
    restarted = start_daphne(server_env(), tmp_path, port=port)
    try:
        expect(conn).to_have_attribute("data-state", "live", timeout=30_000)
        expect(tile.locator(".tile-value")).to_have_text("30.0 %")
        expect(tile).to_have_class(tile_class("healthy"))
        expect(page.locator("#alerts-body tr.alert")).to_have_count(0)
        assert page.evaluate("window.__notReloaded") is True
        shot(page, "4-recovered")

        # Logging out in another tab ends this tab's live updates: 4401, no reconnecting.
        other = context.new_page()
        other.goto(f"{restarted.base}/status/")
        other.click("header form button[type=submit]")
        expect(conn).to_have_attribute("data-state", "logged-out", timeout=5_000)
        expect(conn.locator("a")).to_have_attribute("href", "/admin/login/?next=/status/")
        page.wait_for_timeout(1500)
        expect(conn).to_have_attribute("data-state", "logged-out")
        shot(page, "5-logged-out")
        assert socket_close_code(page, restarted.base) == 4401
    finally:
        context.close()
        restarted.stop()


def set_up_staff_and_threshold(user_model) -> None:  # type: ignore[no-untyped-def]
    from monitoring.models import Threshold

    # The server checks passwords with the real hashers, not the tests' fast one.
    hasher = PBKDF2PasswordHasher()
    user_model.objects.create_user("oncall", is_staff=True, password=None)
    user_model.objects.filter(username="oncall").update(password=hasher.encode(PASSWORD, hasher.salt()))
    Threshold.objects.update_or_create(
        metric="system_cpu_usage_percent",
        labels={"host": HOST},
        defaults={"warning": 70, "critical": 85, "direction": "above"},
    )


def tile_class(status: str):  # type: ignore[no-untyped-def]
    import re

    return re.compile(rf"\bstatus-{status}\b")


def test_browser_of_a_plain_user_sees_4403(plain_user, browser, server):
    client = Client()
    in_thread(client.force_login, plain_user)
    context = browser.new_context()
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": server.base,
            }
        ]
    )
    page = context.new_page()
    response = page.goto(f"{server.base}/status/")
    assert response is not None and response.status == 403
    assert socket_close_code(page, server.base) == 4403
    context.close()


def test_artifacts_folder_is_ignored_by_git():
    assert "/test-artifacts/" in Path(ROOT / ".gitignore").read_text()
