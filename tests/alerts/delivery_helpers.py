"""Small builders shared by the delivery tests: an alert, its transitions, channels."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from alerts.models import Alert, AlertTransition, NotificationChannel

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def make_channel(
    name: str = "ops-hook", kind: str = "webhook", target: str = "http://127.0.0.1:9/hook", **extra: Any
) -> NotificationChannel:
    return NotificationChannel.objects.create(name=name, kind=kind, target=target, **extra)


def make_alert(
    rule: str = "High CPU", labels: dict[str, str] | None = None, at: dt.datetime = NOW, **extra: Any
) -> Alert:
    labels = labels if labels is not None else {"host": "web-1"}
    fingerprint = hashlib.sha256(f"{rule}{sorted(labels.items())}".encode()).hexdigest()[:32]
    values: dict[str, Any] = {
        "name": rule,
        "fingerprint": fingerprint,
        "labels": labels,
        "severity": "critical",
        "state": Alert.State.FIRING,
        "summary": f"{rule} on {labels.get('host', '?')}",
        "value": 93.5,
        "active_since": at,
        "fired_at": at,
    }
    values.update(extra)
    return Alert.objects.create(**values)


def transition(alert: Alert, event: str, at: dt.datetime = NOW, value: float | None = 93.5) -> AlertTransition:
    to_state = {"firing": "firing", "repeat": "firing", "resolved": "resolved", "acknowledged": "acknowledged"}
    if event == "resolved":
        Alert.objects.filter(pk=alert.pk).update(state=Alert.State.RESOLVED, resolved_at=at)
        alert.refresh_from_db()
    return AlertTransition.objects.create(
        alert=alert, event=event, from_state=alert.state, to_state=to_state.get(event, event), at=at, value=value
    )


class Sink:
    """An aiosmtpd handler that keeps messages, or refuses recipients with a given reply."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None
        #: Replies to give to the next DATA commands instead of accepting them.
        self.data_replies: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            EMAIL_USE_TLS=False,
            EMAIL_USE_SSL=False,
            DEFAULT_FROM_EMAIL="opsportal@example.com",
        ):
            yield sink
    finally:
        controller.stop()
