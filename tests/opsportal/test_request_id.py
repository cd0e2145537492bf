"""A request id on every request, in the response header and in every log line; task ids in task logs."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.module_loading import import_string

from opsportal.access import public
from opsportal.celery import app as celery_app
from opsportal.logging import ContextFilter

log = logging.getLogger("opsportal.tests.request_id")


@public
def logging_view(request: HttpRequest) -> HttpResponse:
    log.warning("handling the request")
    return HttpResponse("ok")


@public
def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


#: Used by ``pytest.mark.urls`` below: a view that logs while it serves.
urlpatterns = [path("log/", logging_view), path("fail/", failing_view)]


@celery_app.task(name="tests.opsportal.log_from_task")
def log_from_task() -> str:
    log.warning("inside the task")
    return "done"


def formatter(name: str) -> logging.Formatter:
    """Build the formatter ``name`` exactly as settings.LOGGING describes it."""
    config = dict(settings.LOGGING["formatters"][name])
    factory = import_string(config.pop("()")) if "()" in config else logging.Formatter
    if factory is logging.Formatter:
        return logging.Formatter(config["format"])
    return factory(**config)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line]

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]


def _capture(format_name: str):  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(format_name))
    handler.addFilter(ContextFilter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    return handler, Captured(stream)


@pytest.fixture
def json_logs():  # type: ignore[no-untyped-def]
    """Capture log lines as the portal writes them with OPSPORTAL_LOG_FORMAT=json."""
    handler, captured = _capture("json")
    yield captured
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def console_logs():  # type: ignore[no-untyped-def]
    handler, captured = _capture("console")
    yield captured
    logging.getLogger().removeHandler(handler)


# --- the header ---------------------------------------------------------------------


def test_every_response_carries_a_request_id(client):
    first = client.get("/healthz")
    second = client.get("/healthz")

    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,128}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.django_db
def test_refusals_carry_a_request_id_too(client, plain_client):
    assert client.get("/status/")["X-Request-ID"]
    assert plain_client.get("/status/")["X-Request-ID"]


def test_static_files_carry_a_request_id_too(client):
    response = client.get("/static/opsportal/portal.css")
    assert response.status_code == 200
    assert response["X-Request-ID"]


@pytest.mark.parametrize("incoming", ["abc123", "0f3c5a8e-2d4b-4e1a-9b7c-6d5e4f3a2b1c", "lb:trace.42_x-1"])
def test_well_formed_incoming_request_id_is_echoed(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["has spaces in it", "x" * 500, "<script>", "a\tb", "ünïcode"])
def test_malformed_incoming_request_id_is_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    rid = response["X-Request-ID"]
    assert rid != incoming
    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,128}", rid)


# --- log lines ---------------------------------------------------------------------


@pytest.mark.urls(__name__)
def test_log_lines_written_while_serving_carry_the_request_id(client, json_logs):
    response = client.get("/log/", headers={"X-Request-ID": "req-from-proxy-1"})

    line = next(r for r in json_logs.records() if r["message"] == "handling the request")
    assert response["X-Request-ID"] == "req-from-proxy-1"
    assert line["request_id"] == "req-from-proxy-1"
    assert line["level"] == "WARNING"
    assert line["logger"] == "opsportal.tests.request_id"


@pytest.mark.urls(__name__)
def test_generated_request_id_is_the_one_in_the_logs(client, json_logs):
    response = client.get("/log/")

    line = next(r for r in json_logs.records() if r["message"] == "handling the request")
    assert line["request_id"] == response["X-Request-ID"]


@pytest.mark.urls(__name__)
def test_console_format_shows_the_request_id(client, console_logs):
    client.get("/log/", headers={"X-Request-ID": "console-req-7"})

    line = next(line for line in console_logs.lines() if "handling the request" in line)
    assert "req=console-req-7" in line


@pytest.mark.django_db
def test_refusal_log_line_carries_the_request_id(plain_client, json_logs):
    """Django logs 4xx answers after the middleware chain has returned."""
    plain_client.get("/status/", headers={"X-Request-ID": "refused-req-9"})

    forbidden = [r for r in json_logs.records() if r["logger"] == "django.request"]
    assert forbidden, json_logs.lines()
    assert {r["request_id"] for r in forbidden} == {"refused-req-9"}


@pytest.mark.urls(__name__)
def test_server_error_log_line_carries_the_request_id(json_logs):
    from django.test import Client

    response = Client(raise_request_exception=False).get("/fail/", headers={"X-Request-ID": "failing-req-3"})

    assert response.status_code == 500
    errors = [r for r in json_logs.records() if r["logger"] == "django.request"]
    assert errors
    assert {r["request_id"] for r in errors} == {"failing-req-3"}


@pytest.mark.urls(__name__)
def test_request_id_does_not_leak_into_later_log_lines(client, json_logs):
    client.get("/log/", headers={"X-Request-ID": "over-and-done"})
    log.warning("after the request")

    line = next(r for r in json_logs.records() if r["message"] == "after the request")
    assert line["request_id"] == ""


# --- Celery tasks --------------------------------------------------------------------


def test_task_log_lines_carry_the_task_id(json_logs):
    result = log_from_task.apply(task_id="5d4c3b2a-task-id-for-logs")

    assert result.get() == "done"
    line = next(r for r in json_logs.records() if r["message"] == "inside the task")
    assert line["task_id"] == "5d4c3b2a-task-id-for-logs"
    assert line["request_id"] == ""


def test_task_id_in_console_format(console_logs):
    log_from_task.apply(task_id="console-task-5")

    line = next(line for line in console_logs.lines() if "inside the task" in line)
    assert "task=console-task-5" in line


def test_log_lines_outside_requests_and_tasks_have_empty_ids(json_logs, console_logs):
    log.warning("from a management command")

    line = next(r for r in json_logs.records() if r["message"] == "from a management command")
    assert line["request_id"] == ""
    assert line["task_id"] == ""
    text = next(line for line in console_logs.lines() if "from a management command" in line)
    assert "[-]" in text
