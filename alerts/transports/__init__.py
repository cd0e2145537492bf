"""Channel transports, one module per kind; importing this package registers them all."""

from alerts.transports import email, webhook  # noqa: F401 - registers the transports
from alerts.transports.base import NoTransport, Outcome, Result, Transport, register, transport_for

__all__ = ["NoTransport", "Outcome", "Result", "Transport", "register", "transport_for"]
