"""What ``diagnose`` learns about delivery: stuck rows, failing, flagged and unreadable channels."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from alerts import outbox
from alerts.delivery_checks import delivery_problems
from alerts.models import Delivery
from alerts.transports import Result
from tests.alerts.delivery_helpers import NOW, make_alert, make_channel, transition

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)


def levels_and_issues(now: dt.datetime) -> list[tuple[str, str]]:
    return [(level, issue) for level, issue, _ in delivery_problems(now)]


def fail(delivery: Delivery, result: Result, at: dt.datetime) -> None:
    [[claimed]] = outbox.claim(at, "t", ids=[delivery.pk])
    outbox.finish([claimed], "t", result, at, 5, at)


def test_a_quiet_healthy_outbox_has_nothing_to_report() -> None:
    channel = make_channel()
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)
    fail(delivery, Result.ok(200), NOW)

    assert delivery_problems(NOW + 10 * MIN) == []


def test_deliveries_nobody_sends_are_critical() -> None:
    outbox.enqueue(transition(make_alert(), "firing"), [make_channel()], now=NOW)

    assert levels_and_issues(NOW + 30 * dt.timedelta(seconds=1)) == []  # a kick is on its way
    [(level, issue, action)] = delivery_problems(NOW + 5 * MIN)

    assert level == "critical" and "1 notification(s) due for 5 min were never attempted" in issue
    assert "worker" in action


def test_overdue_retries_and_orphaned_leases_point_at_the_sweep() -> None:
    channel = make_channel()
    first, second = (
        outbox.enqueue(transition(make_alert(labels={"host": h}), "firing"), [channel], now=NOW)[0] for h in "ab"
    )
    fail(first, Result.retry("receiver answered 503", 503), NOW)
    outbox.claim(NOW, "dead-worker", ids=[second.pk])

    problems = delivery_problems(NOW + 30 * MIN)

    issues = " | ".join(issue for _, issue, _ in problems)
    assert "1 retries are overdue" in issue_text(problems, "overdue")
    assert "held by a worker that stopped mid-send" in issues
    assert all("delivery sweep" in action for _, issue, action in problems if "overdue" in issue or "held" in issue)


def issue_text(problems: list[tuple[str, str, str]], word: str) -> str:
    return next(issue for _, issue, _ in problems if word in issue)


def test_a_failing_channel_is_named_with_its_last_error_and_critical_before_expiry() -> None:
    hook = make_channel("ops-hook", target="http://10.0.0.9/secret-token")
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [hook], now=NOW)
    fail(delivery, Result.retry("receiver answered 503 Service Unavailable", 503), NOW)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=NOW + 20 * MIN)

    [(level, issue)] = levels_and_issues(NOW + 20 * MIN)
    assert level == "warning"
    assert issue.startswith("channel ops-hook: 1 notification(s) failing for 20 min")
    assert "503 Service Unavailable" in issue and "secret-token" not in issue

    late = NOW + outbox.MAX_AGE - 30 * MIN
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=late)
    [(level, issue)] = levels_and_issues(late)
    assert level == "critical" and "expires within the hour" in issue


def test_flagged_and_given_up_channels_are_reported() -> None:
    hook = make_channel("ops-hook")
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [hook], now=NOW)
    fail(delivery, Result.permanent("receiver answered 404 Not Found", 404), NOW)

    issues = [issue for _, issue in levels_and_issues(NOW + 10 * MIN)]

    assert any("refused a notification for good 10 min ago (receiver answered 404" in i for i in issues)
    assert any("in the last 24 h, 1 refused for good" in i for i in issues)


def test_a_channel_whose_key_is_gone_is_critical() -> None:
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        make_channel("ops-hook")

    [(level, issue)] = levels_and_issues(NOW)

    assert level == "critical" and "channel ops-hook: its target or secret cannot be decrypted" in issue


def test_email_channels_without_a_mail_server_are_reported() -> None:
    make_channel("oncall-mail", kind="email", target="oncall@example.com")
    unset = {"EMAIL_URL": "", "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}

    with override_settings(**unset, EMAIL_FILE_PATH="/var/opsportal/mail"):
        [(level, issue)] = levels_and_issues(NOW)
    with override_settings(EMAIL_URL="smtp://mail.example.com:587"):
        assert levels_and_issues(NOW) == []

    assert level == "warning"
    assert "oncall-mail" in issue and "EMAIL_URL is not set" in issue and "/var/opsportal/mail" in issue
