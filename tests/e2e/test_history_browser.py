"""A real browser on a series' history page: the chart draws and the range picker switches.

Debian's chromium through Playwright (never ``playwright install``), against a Daphne
process serving this test run's database, as in ``test_status_browser.py``. Skips when
chromium is absent; fails instead when ``OPSPORTAL_REQUIRE_SERVICES=1``. The screenshot
lands in ``test-artifacts/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.e2e.servers import ROOT, Server, server_env, start_daphne

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "pw-e2e-history-1234"
HOST = "e2e-history-host"
CPU = "system_cpu_usage_percent"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    running = start_daphne(server_env(), tmp_path)
    yield running
    running.stop()


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


def set_up(user_model) -> int:  # type: ignore[no-untyped-def]
    """Create a staff user, a week of CPU history with a threshold and an alert; return the series id."""
    from django.utils import timezone

    from alerts.lifecycle import fingerprint
    from alerts.models import Alert
    from monitoring import rollups
    from monitoring.models import Series, Threshold
    from monitoring.storage import Reading, record, series_cache

    # The server checks passwords with the real hashers, not the tests' fast one.
    hasher = PBKDF2PasswordHasher()
    user_model.objects.create_user("historian", is_staff=True, password=None)
    user_model.objects.filter(username="historian").update(password=hasher.encode(PASSWORD, hasher.salt()))

    series_cache.clear()
    now = timezone.now()
    every = dt.timedelta(minutes=10)
    span = dt.timedelta(days=7)
    readings = [Reading(CPU, 40.0 + (i % 36) * 1.5, ts=now - span + (i + 1) * every) for i in range(int(span / every))]
    record(readings, host=HOST, now=now)
    while rollups.run(now=now).behind:
        pass
    Threshold.objects.update_or_create(
        metric=CPU, labels={"host": HOST}, defaults={"warning": 70, "critical": 85, "direction": "above"}
    )
    labels = {"host": HOST}
    Alert.objects.create(
        source=Alert.Source.THRESHOLD,
        name=f'{CPU}{{host="{HOST}"}}',
        fingerprint=fingerprint(f"threshold:{CPU}", labels),
        labels=labels,
        severity="critical",
        state=Alert.State.RESOLVED,
        active_since=now - dt.timedelta(hours=3),
        fired_at=now - dt.timedelta(hours=3),
        resolved_at=now - dt.timedelta(hours=2),
    )
    return Series.objects.get(name=CPU, host=HOST).pk


def test_staff_sees_the_chart_and_switches_the_range_to_seven_days(browser, server, django_user_model):
    series_id = in_thread(set_up, django_user_model)
    path = f"/status/series/{series_id}/"

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(f"{server.base}/admin/login/?next={path}")
    page.fill("#id_username", "historian")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.base}{path}", timeout=15_000)

    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-state", "ready", timeout=10_000)
    expect(chart).to_have_attribute("data-range", "24h")
    canvas = chart.locator("canvas")
    expect(canvas).to_be_visible()
    drawn = canvas.evaluate(
        """(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert drawn > 1000  # lines, band, threshold lines and the alert period, not a blank canvas
    expect(page.locator("#alert-periods tr.alert-period")).to_have_count(1)

    page.evaluate("window.__notReloaded = true")
    page.click(".ranges a[data-range='7d']")
    expect(chart).to_have_attribute("data-range", "7d", timeout=10_000)
    expect(chart).to_have_attribute("data-state", "ready")
    expect(page.locator(".ranges a.current")).to_have_text("7 days")
    expect(page.locator("#chart-caption")).to_contain_text("1-minute rollups")
    assert page.url.endswith("?range=7d")
    assert page.evaluate("window.__notReloaded") is True
    assert int(chart.get_attribute("data-points") or 0) > 100

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "history-7d.png"), full_page=True)
    context.close()
