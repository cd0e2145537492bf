"""Debian's chromium through Playwright, shared by the browser tests (never `playwright install`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from opsportal.pytest_plugin import require_services

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
#: Flags that keep chromium off this machine's closed network and quiet as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip browser tests without chromium — or fail when the services tier requires everything."""
    if CHROMIUM is not None:
        return
    if require_services():
        raise pytest.UsageError("OPSPORTAL_REQUIRE_SERVICES=1 but Debian's chromium is not installed (apt: chromium)")
    skip = pytest.mark.skip(reason="chromium is not installed (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
