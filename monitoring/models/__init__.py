from monitoring.models.defaults import InstalledDefault
from monitoring.models.liveness import ProcessHeartbeat
from monitoring.models.series import Retention, Rollup, RollupProgress, Sample, Series
from monitoring.models.targets import Target
from monitoring.models.thresholds import Threshold
from monitoring.models.tokens import ApiToken

__all__ = [
    "ApiToken",
    "InstalledDefault",
    "ProcessHeartbeat",
    "Retention",
    "Rollup",
    "RollupProgress",
    "Sample",
    "Series",
    "Target",
    "Threshold",
]
