"""Admin pages of the monitoring app, one module per model family."""

from monitoring.admin import processes, thresholds  # noqa: F401
