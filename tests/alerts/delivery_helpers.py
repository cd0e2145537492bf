"""Small builders shared by the delivery tests: an alert, its transitions, channels."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

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
