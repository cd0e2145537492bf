from monitoring.models.liveness import ProcessHeartbeat
from monitoring.models.series import Retention, Rollup, Sample, Series

__all__ = ["ProcessHeartbeat", "Retention", "Rollup", "Sample", "Series"]
