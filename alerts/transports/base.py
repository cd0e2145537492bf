"""The transport interface: one class per channel kind, found through a registry.

A transport turns a frozen payload (DESIGN "Notification payload") into one message
on its channel and says how it went: :meth:`Result.ok`, :meth:`Result.retry` (maybe
with the receiver's ``Retry-After``) or :meth:`Result.permanent`. It never raises for
a receiver's failure, and every send is bounded by ``timeout`` seconds of its own: the
worker's threads pool ignores Celery's task time limits.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

if TYPE_CHECKING:
    from alerts.models import Delivery, NotificationChannel

#: Seconds one send may take, connecting and waiting for the answer included.
DEFAULT_TIMEOUT = 10.0
#: Longest error text kept from a receiver's answer.
MAX_ERROR = 500


class Outcome(enum.StrEnum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    #: Seconds the receiver asked us to wait before the next try (``Retry-After``).
    retry_after: float | None = None

    @classmethod
    def ok(cls, status_code: int | None = None) -> Result:
        return cls(Outcome.OK, status_code)

    @classmethod
    def retry(cls, error: str, status_code: int | None = None, after: float | None = None) -> Result:
        return cls(Outcome.RETRY, status_code, error[:MAX_ERROR], after)

    @classmethod
    def permanent(cls, error: str, status_code: int | None = None) -> Result:
        return cls(Outcome.PERMANENT, status_code, error[:MAX_ERROR])

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.OK

    def describe(self) -> str:
        """Return one line for an operator: what happened, and whether it will be retried."""
        code = f"status {self.status_code}" if self.status_code else ""
        if self.delivered:
            return f"delivered ({code})" if code else "delivered"
        what = "failed, will retry" if self.outcome is Outcome.RETRY else "failed permanently"
        detail = self.error or code
        return f"{what}: {detail}" if detail else what


class Transport:
    """Send messages to one channel. Subclasses set ``kind`` and implement :meth:`send`."""

    kind: ClassVar[str]
    #: Whether a burst of deliveries is sent as one message (:meth:`send_group`).
    groups: ClassVar[bool] = False

    def __init__(self, channel: NotificationChannel, timeout: float | None = None) -> None:
        self.channel = channel
        self.timeout = float(timeout or getattr(settings, "ALERTS_TRANSPORT_TIMEOUT", None) or DEFAULT_TIMEOUT)

    def send(self, delivery: Delivery, payload: dict[str, Any]) -> Result:
        """Send one message announcing ``payload``; return how it went."""
        raise NotImplementedError

    def send_group(self, deliveries: Sequence[Delivery], payloads: Sequence[dict[str, Any]]) -> Result:
        """Send several deliveries as one message; transports that do not group send only one."""
        if len(deliveries) != 1:
            raise ValueError(f"{type(self).__name__} sends one delivery per message")
        return self.send(deliveries[0], payloads[0])


_registry: dict[str, type[Transport]] = {}


def register(cls: type[Transport]) -> type[Transport]:
    """Class decorator: make ``cls`` the transport of its ``kind``."""
    _registry[cls.kind] = cls
    return cls


class NoTransport(LookupError):
    pass


def transport_for(channel: NotificationChannel, timeout: float | None = None) -> Transport:
    """Return the transport for ``channel``'s kind; raise :class:`NoTransport` if there is none yet."""
    try:
        cls = _registry[channel.kind]
    except KeyError:
        raise NoTransport(f"no transport for channel kind {channel.kind!r} yet") from None
    return cls(channel, timeout=timeout)


def registered_kinds() -> list[str]:
    return sorted(_registry)
