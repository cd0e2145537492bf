"""Test-tier set-up loaded with ``-p opsportal.pytest_plugin`` (see pyproject.toml).

It runs before pytest-django imports the settings, so it can point
``OPSPORTAL_DATA_DIR`` at a fresh temp folder (the test database, broker folders and
generated keys land there, never in ``./var``).

Tiers (DESIGN "Testing"): tests marked ``services`` need PostgreSQL and Redis. They
run when ``DATABASE_URL`` and ``REDIS_URL`` are set, skip with a reason otherwise,
and fail instead of skipping when ``OPSPORTAL_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_TEST_DATA_DIR = tempfile.mkdtemp(prefix="opsportal-test-")
os.environ["OPSPORTAL_DATA_DIR"] = _TEST_DATA_DIR
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
# Keep test output readable: warnings and worse only, unless asked.
os.environ.setdefault("OPSPORTAL_LOG_LEVEL", "warning")


def require_services() -> bool:
    return os.environ.get("OPSPORTAL_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes", "on"}


def missing_services() -> list[str]:
    """Return the service variables that are unset."""
    return [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services: needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    config.addinivalue_line("markers", "browser: drives Debian's chromium through Playwright")
    if require_services() and missing_services():
        raise pytest.UsageError(
            f"OPSPORTAL_REQUIRE_SERVICES=1 but {', '.join(missing_services())} unset: the services tier cannot run"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = missing_services()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"services tier: set {' and '.join(missing)} to run (see README)")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TEST_DATA_DIR, ignore_errors=True)
