"""Admin pages of the alerts app, one module per model family."""

from alerts.admin import alerts, channels, deliveries, rules  # noqa: F401
