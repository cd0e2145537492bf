"""Email through Django's mail (``EMAIL_URL``): plain text plus an HTML alternative.

A burst of deliveries to one channel becomes one message. SMTP answers in the 5xx
range are refused for good; 4xx answers, timeouts and connection errors are retried.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from alerts.transports.base import Result, Transport, register

SEVERITY_ORDER = ("info", "warning", "critical", "emergency")
COLOURS = {"firing": "#b00020", "escalated": "#b00020", "resolved": "#1b7f3b", "acknowledged": "#8a6d00"}
MAX_SUBJECT = 160


def subject_for(payloads: Sequence[dict[str, Any]]) -> str:
    """Return ``[SEVERITY] rule: event`` for one alert, or a summary line for a group."""
    alerts = [p.get("alert", {}) for p in payloads]
    ranks = [SEVERITY_ORDER.index(a["severity"]) for a in alerts if a.get("severity") in SEVERITY_ORDER]
    severity = SEVERITY_ORDER[max(ranks)].upper() if ranks else "ALERT"
    if len(payloads) == 1:
        text = f"[{severity}] {alerts[0].get('rule', 'alert')}: {payloads[0].get('event', '')}"
    else:
        parts = ", ".join(
            f"{a.get('rule', 'alert')} {p.get('event', '')}" for a, p in zip(alerts, payloads, strict=True)
        )
        text = f"[{severity}] {len(payloads)} alerts: {parts}"
    text = " ".join(text.split())  # no newlines in a header
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1] + "…"


def _runbook(delivery: Any) -> str:
    if not getattr(delivery, "alert_id", None):
        return ""
    rule = delivery.alert.rule
    return rule.runbook if rule is not None else ""


@register
class EmailTransport(Transport):
    kind = "email"
    groups = True

    def send(self, delivery: Any, payload: dict[str, Any]) -> Result:
        return self.send_group([delivery], [payload])

    def send_group(self, deliveries: Sequence[Any], payloads: Sequence[dict[str, Any]]) -> Result:
        items = []
        for delivery, payload in zip(deliveries, payloads, strict=True):
            event = str(payload.get("event", ""))
            alert = payload.get("alert", {})
            labels = ", ".join(f"{k}={v}" for k, v in sorted((alert.get("labels") or {}).items()))
            items.append(
                {
                    "event_word": event.upper(),
                    "alert": alert,
                    "labels": labels,
                    "colour": COLOURS.get(event, "#444"),
                    "runbook": _runbook(delivery),
                }
            )
        context = {"items": items}
        message = EmailMultiAlternatives(
            subject=subject_for(payloads),
            body=render_to_string("alerts/email/notification.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=self.channel.recipients(),
            headers={"X-OpsPortal-Delivery": ", ".join(str(d.delivery_id) for d in deliveries)},
        )
        message.attach_alternative(render_to_string("alerts/email/notification.html", context), "text/html")
        if not message.to:
            return Result.permanent("the channel has no recipient address")
        try:
            message.connection = get_connection(timeout=self.timeout)
            message.send()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            reason = "mail server refused the recipients: " + "; ".join(
                f"{code} {_text(msg)}" for code, msg in exc.recipients.values()
            )
            if codes and all(500 <= code < 600 for code in codes):
                return Result.permanent(reason, max(codes))
            return Result.retry(reason, min(codes) if codes else None)
        except smtplib.SMTPResponseException as exc:
            reason = f"mail server answered {exc.smtp_code} {_text(exc.smtp_error)}"
            if 500 <= exc.smtp_code < 600:
                return Result.permanent(reason, exc.smtp_code)
            return Result.retry(reason, exc.smtp_code if exc.smtp_code > 0 else None)
        except smtplib.SMTPNotSupportedError as exc:
            return Result.permanent(f"mail server does not support what was asked: {exc}")
        except TimeoutError:
            return Result.retry(f"mail server did not answer within {self.timeout:g} s")
        except (smtplib.SMTPException, OSError) as exc:
            return Result.retry(f"could not reach the mail server: {type(exc).__name__}: {exc}".rstrip(": "))
        return Result.ok(250)


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]
