"""Transports against real peers: an HTTP sink (pytest-httpserver) and an SMTP sink (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import format_datetime
from typing import Any

import pytest
from django.test import override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts import outbox
from alerts.models import Delivery, NotificationChannel
from alerts.transports import Outcome, transport_for
from alerts.transports.email import subject_for
from alerts.transports.webhook import parse_retry_after
from tests.alerts.delivery_helpers import NOW, Sink, make_alert, make_channel, smtp_sink, transition

__all__ = ["smtp_sink"]  # the SMTP sink fixture

SECRET = "s3cret-for-hmac-0042"


def payload(event: str = "firing", rule: str = "High CPU", severity: str = "critical") -> dict[str, Any]:
    return {
        "event": event,
        "alert": {
            "id": 7,
            "rule": rule,
            "severity": severity,
            "fingerprint": "abc",
            "summary": f"{rule} on web-1",
            "value": 93.5,
            "labels": {"host": "web-1"},
            "started_at": "2026-03-01T12:00:00Z",
            "resolved_at": None,
            "url": "/admin/alerts/alert/7/change/",
        },
    }


def webhook(url: str, secret: str = "") -> NotificationChannel:
    return NotificationChannel(name="ops-hook", kind="webhook", target=url, secret=secret)


def probe_delivery(channel: NotificationChannel) -> Delivery:
    return Delivery(channel=channel, event="firing", payload={}, delivery_id=uuid.uuid4())


# --- webhook ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_posts_exactly_the_design_payload_with_delivery_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    alert = make_alert(labels={"host": "web-1", "mount": "/"})
    firing = transition(alert, "firing")
    [delivery] = outbox.enqueue(firing, [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW)

    [(request, _)] = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-OpsPortal-Delivery"] == str(delivery.delivery_id)
    assert "X-OpsPortal-Signature" not in request.headers
    assert json.loads(request.data) == {
        "event": "firing",
        "alert": {
            "id": alert.pk,
            "rule": "High CPU",
            "severity": "critical",
            "fingerprint": alert.fingerprint,
            "summary": "High CPU on web-1",
            "value": 93.5,
            "labels": {"host": "web-1", "mount": "/"},
            "started_at": "2026-03-01T12:00:00Z",
            "resolved_at": None,
            "url": f"/admin/alerts/alert/{alert.pk}/change/",
        },
    }
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


@pytest.mark.django_db
def test_resolved_notice_carries_resolved_at(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    alert = make_alert()
    later = NOW + dt.timedelta(minutes=5)
    outbox.enqueue(transition(alert, "firing"), [channel], now=NOW)
    outbox.enqueue(transition(alert, "resolved", at=later, value=12.0), [channel], now=later)

    outbox.deliver_due(now=lambda: later)

    bodies = [json.loads(request.data) for request, _ in httpserver.log]
    assert [b["event"] for b in bodies] == ["firing", "resolved"]
    assert bodies[1]["alert"]["resolved_at"] == "2026-03-01T12:05:00Z"
    assert bodies[1]["alert"]["value"] == 12.0


def test_signature_is_an_hmac_of_the_exact_body_the_receiver_verifies(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = webhook(httpserver.url_for("/hook"), secret=SECRET)

    result = transport_for(channel).send(probe_delivery(channel), payload())

    assert result.delivered
    [(request, _)] = httpserver.log
    expected = "sha256=" + hmac.new(SECRET.encode(), request.get_data(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-OpsPortal-Signature"], expected)
    tampered = request.get_data().replace(b"93.5", b"10.0")
    assert request.headers["X-OpsPortal-Signature"] != (
        "sha256=" + hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    )


@pytest.mark.django_db
def test_a_500_is_retried_within_ten_seconds_with_the_same_delivery_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hook").respond_with_data("boom", status=500)
    httpserver.expect_oneshot_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW)

    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.last_status_code == 500
    assert "500" in delivery.last_error and "boom" in delivery.last_error
    wait = (delivery.next_attempt_at - NOW).total_seconds()
    assert 5 <= wait <= 10

    outbox.deliver_due(now=lambda: delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.attempts == 2
    ids = {request.headers["X-OpsPortal-Delivery"] for request, _ in httpserver.log}
    assert ids == {str(delivery.delivery_id)}
    assert [a.outcome for a in delivery.attempt_log.all()] == ["retry", "ok"]


@pytest.mark.django_db
def test_a_429_is_retried_no_sooner_than_its_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("slow down", status=429, headers={"Retry-After": "120"})
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW)

    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.last_status_code == 429
    assert delivery.next_attempt_at == NOW + dt.timedelta(seconds=120)
    # Not due a second early: a sweep or kick before then sends nothing.
    outbox.deliver_due(now=lambda: NOW + dt.timedelta(seconds=119))
    assert len(httpserver.log) == 1


def test_retry_after_as_an_http_date_is_understood() -> None:
    now = time.time()
    when = dt.datetime.fromtimestamp(now + 90, tz=dt.UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == pytest.approx(90, abs=1)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("soon") is None


@pytest.mark.django_db
def test_a_404_fails_for_good_and_flags_the_channel(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("no such hook", status=404)
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW)
    outbox.deliver_due(now=lambda: NOW + dt.timedelta(hours=1))

    delivery.refresh_from_db()
    channel.refresh_from_db()
    assert delivery.state == "failed" and delivery.attempts == 1
    assert len(httpserver.log) == 1  # never retried
    assert channel.flagged_at == NOW
    assert "404" in channel.flag_reason and "no such hook" in channel.flag_reason


def test_a_redirect_is_not_followed_and_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=301, headers={"Location": "/elsewhere"})
    channel = webhook(httpserver.url_for("/hook"))

    result = transport_for(channel).send(probe_delivery(channel), payload())

    assert result.outcome is Outcome.PERMANENT and result.status_code == 301
    assert [request.path for request, _ in httpserver.log] == ["/hook"]


def test_a_receiver_that_never_answers_is_given_up_on_at_the_timeout(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def hang(request: Request) -> Response:
        release.wait(10)
        return Response("late")

    httpserver.expect_request("/hook").respond_with_handler(hang)
    channel = webhook(httpserver.url_for("/hook"))
    try:
        started = time.monotonic()
        result = transport_for(channel, timeout=0.5).send(probe_delivery(channel), payload())
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert result.outcome is Outcome.RETRY
    assert "0.5 s" in result.error
    assert 0.4 <= elapsed < 1.5


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A receiver that answers one byte every 0.2 s: each read is quick, the whole is not."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(5)
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 100:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()
    thread.join(5)


def test_a_trickling_receiver_cannot_hold_the_sender_past_the_timeout(trickling_server: str) -> None:
    channel = webhook(trickling_server)

    started = time.monotonic()
    result = transport_for(channel, timeout=1.0).send(probe_delivery(channel), payload())

    assert result.outcome is Outcome.RETRY
    assert time.monotonic() - started < 2.0


def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    channel = webhook(f"http://127.0.0.1:{port}/hook")

    result = transport_for(channel, timeout=2).send(probe_delivery(channel), payload())

    assert result.outcome is Outcome.RETRY
    assert "connection failed" in result.error and str(port) not in result.error


# --- email -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_email_has_a_text_and_an_html_part_and_a_subject_with_severity_and_rule(smtp_sink: Sink) -> None:
    channel = make_channel("oncall-mail", kind="email", target="oncall@example.com, lead@example.com")
    alert = make_alert()
    [delivery] = outbox.enqueue(transition(alert, "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW + outbox.GROUP_WAIT)

    [message] = smtp_sink.messages
    assert message["Subject"] == "[CRITICAL] High CPU: firing"
    assert message["From"] == "opsportal@example.com"
    assert smtp_sink.envelopes[0].rcpt_tos == ["oncall@example.com", "lead@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "FIRING: High CPU (critical)" in text and "host=web-1" in text and "93.5" in text
    assert "<strong>High CPU</strong>" in html and "host=web-1" in html
    delivery.refresh_from_db()
    assert delivery.state == "delivered"


@pytest.mark.django_db
def test_email_escapes_alert_text_in_html(smtp_sink: Sink) -> None:
    channel = make_channel("oncall-mail", kind="email", target="oncall@example.com")
    alert = make_alert(summary="<script>alert(1)</script>")
    outbox.enqueue(transition(alert, "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW + outbox.GROUP_WAIT)

    html = smtp_sink.messages[0].get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.django_db
def test_a_burst_within_the_group_wait_becomes_one_email(smtp_sink: Sink) -> None:
    channel = make_channel("oncall-mail", kind="email", target="oncall@example.com")
    for host in ("web-1", "web-2", "web-3"):
        outbox.enqueue(transition(make_alert(labels={"host": host}), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW + outbox.GROUP_WAIT)

    [message] = smtp_sink.messages
    assert message["Subject"].startswith("[CRITICAL] 3 alerts: High CPU firing")
    text = message.get_body(("plain",)).get_content()
    assert all(f"host=web-{n}" in text for n in (1, 2, 3))
    assert set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_email_waits_for_the_group_wait(smtp_sink: Sink) -> None:
    channel = make_channel("oncall-mail", kind="email", target="oncall@example.com")
    outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW + dt.timedelta(seconds=1))

    assert smtp_sink.messages == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reply", "outcome", "state"),
    [("550 5.1.1 No such user", Outcome.PERMANENT, "failed"), ("451 4.3.0 Try again later", Outcome.RETRY, "pending")],
)
def test_smtp_5xx_is_permanent_and_4xx_is_retried(smtp_sink: Sink, reply: str, outcome: Outcome, state: str) -> None:
    smtp_sink.rcpt_reply = reply
    channel = make_channel("oncall-mail", kind="email", target="nobody@example.com")
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)

    outbox.deliver_due(now=lambda: NOW + outbox.GROUP_WAIT)

    delivery.refresh_from_db()
    channel.refresh_from_db()
    assert delivery.state == state
    assert reply.split()[0] in delivery.last_error
    assert (channel.flagged_at is not None) == (outcome is Outcome.PERMANENT)


def test_an_unreachable_mail_server_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = NotificationChannel(name="mail", kind="email", target="oncall@example.com")
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_PORT=port):
        result = transport_for(channel, timeout=2).send(probe_delivery(channel), payload())

    assert result.outcome is Outcome.RETRY and "could not reach the mail server" in result.error


def test_group_subject_names_the_worst_severity() -> None:
    subject = subject_for([payload(severity="warning"), payload("resolved", "Disk full", "emergency")])
    assert subject == "[EMERGENCY] 2 alerts: High CPU firing, Disk full resolved"
