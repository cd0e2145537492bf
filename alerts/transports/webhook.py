"""Generic webhook: POST the DESIGN payload as JSON, signed when the channel has a secret.

2xx delivers; 408, 429, 5xx, timeouts and connection errors are retried (``Retry-After``
honoured); any other answer, redirects included, is refused for good. Redirects are not
followed: a POST turned into a GET would look delivered and carry nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from alerts.transports.base import Result, Transport, register

RETRYABLE = frozenset({408, 425, 429})
USER_AGENT = "OpsPortal-Webhook/1"


def body_of(payload: dict[str, Any]) -> bytes:
    """Return the exact bytes posted (and signed) for ``payload``."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """Return the ``X-OpsPortal-Signature`` header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@register
class WebhookTransport(Transport):
    kind = "webhook"

    def send(self, delivery: Any, payload: dict[str, Any]) -> Result:
        body = body_of(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-OpsPortal-Delivery": str(delivery.delivery_id),
            "X-OpsPortal-Event": str(payload.get("event", "")),
        }
        if self.channel.secret:
            headers["X-OpsPortal-Signature"] = signature(self.channel.secret, body)
        return post(self.channel.target, body, headers, self.timeout)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Result:
    """POST ``body`` to ``url`` within ``timeout`` seconds in total; classify the answer.

    Socket timeouts bound each wait; a timer closes the connection when the whole
    exchange passes ``timeout``, so a receiver trickling bytes cannot hold a worker
    thread either. Errors never repeat the URL: it may carry a token.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Result.permanent("the target is not an http(s) URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    if parts.username or parts.password:
        credentials = f"{parts.username or ''}:{parts.password or ''}".encode()
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}

    timed_out = threading.Event()

    def abort() -> None:
        timed_out.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout, abort)
    timer.daemon = True
    timer.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(4096).decode("utf-8", errors="replace")
        status = response.status
        retry_after = parse_retry_after(response.getheader("Retry-After"))
    except TimeoutError:
        return Result.retry(f"no answer within {timeout:g} s")
    except ssl.SSLCertVerificationError as exc:
        return Result.retry(f"TLS certificate not accepted: {exc.verify_message}")
    except (OSError, http.client.HTTPException) as exc:
        if timed_out.is_set():
            return Result.retry(f"no complete answer within {timeout:g} s")
        return Result.retry(f"connection failed: {type(exc).__name__}: {exc}".rstrip(": "))
    finally:
        timer.cancel()
        connection.close()

    if 200 <= status < 300:
        return Result.ok(status)
    reason = f"receiver answered {status} {http.client.responses.get(status, '')}".strip()
    if text.strip():
        reason += f": {' '.join(text.split())[:200]}"
    if status in RETRYABLE or status >= 500:
        return Result.retry(reason, status, retry_after)
    if 300 <= status < 400:
        return Result.permanent(f"{reason} (redirects are not followed: set the final URL)", status)
    return Result.permanent(reason, status)
