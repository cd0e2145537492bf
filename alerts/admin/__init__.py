"""Admin pages of the alerts app, one module per model family."""

from alerts.admin import channels, deliveries  # noqa: F401
