"""The dead-man ping reaches an outside receiver and never raises."""

from __future__ import annotations

import time

from django.test import override_settings
from werkzeug import Response

from opsportal import deadman
from opsportal.seeding import collect_periodic_specs


def test_ping_reaches_the_receiver_with_a_user_agent_naming_the_host(httpserver, settings):
    httpserver.expect_request("/ping/abc").respond_with_data("OK")
    assert deadman.ping(httpserver.url_for("/ping/abc")) == "HTTP 200"
    (request, _), = httpserver.log
    assert settings.HOSTNAME in request.headers["User-Agent"]


def test_unset_url_is_a_quiet_no_op():
    with override_settings(DEADMAN_URL=""):
        assert deadman.ping() == "no OPSPORTAL_DEADMAN_URL set"


def test_failing_receiver_is_reported_without_the_url(httpserver, caplog):
    httpserver.expect_request("/ping/secret-uuid").respond_with_data("no", status=500)
    assert deadman.ping(httpserver.url_for("/ping/secret-uuid")) == "HTTP 500"
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("opsportal")]
    assert ours == ["dead-man ping to localhost answered HTTP 500"]


def test_hanging_receiver_gives_up_at_the_timeout(httpserver):
    httpserver.expect_request("/slow").respond_with_handler(lambda r: (time.sleep(2), Response("late"))[1])
    started = time.monotonic()
    assert deadman.ping(httpserver.url_for("/slow"), timeout=0.5) == "failed: TimeoutError"
    assert time.monotonic() - started < 1.9


def test_ping_is_a_default_periodic_task_every_cycle():
    spec = next(s for s in collect_periodic_specs() if s["task"] == "opsportal.deadman_ping")
    assert spec["every_seconds"] <= 10
