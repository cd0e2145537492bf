"""Admin pages of the monitoring app, one module per model family."""

from monitoring.admin import processes, series, targets, thresholds, tokens  # noqa: F401
