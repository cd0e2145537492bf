"""Default thresholds from requirements doc 003, installed once after ``migrate``.

Each default is installed at most once per database: an ``InstalledDefault`` row
remembers it, so a default the operator edited is never overwritten and one the
operator deleted is never re-created. A threshold that already exists for the same
metric and labels (say, loaded by ``loadconfig`` first) is left alone and counts as
installed. A default added in a later release is installed by the next ``migrate``.

Doc 003 compares each reading directly, so the defaults have no ``for`` duration and
no hysteresis; operators add them where a metric is spiky.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, transaction

logger = logging.getLogger(__name__)

#: (metric, warning, critical); all "above". Response time is in seconds, the error
#: rate a ratio (1 % = 0.01), as the derived series are.
DEFAULT_THRESHOLDS: tuple[tuple[str, float, float], ...] = (
    ("system_cpu_usage_percent", 70.0, 85.0),
    ("system_memory_usage_percent", 75.0, 90.0),
    ("system_disk_usage_percent", 80.0, 95.0),
    ("http_request_duration_p95_seconds", 2.0, 5.0),
    ("http_requests_error_ratio", 0.01, 0.05),
)


def marker_key(metric: str, labels_key: str = "{}") -> str:
    return f"threshold:{metric}{labels_key}"


def install_default_thresholds(apps: Any = global_apps, using: str = DEFAULT_DB_ALIAS) -> int:
    """Create the default thresholds not installed before; return how many were created."""
    from monitoring.storage import labels_key

    try:
        Threshold = apps.get_model("monitoring", "Threshold")
        InstalledDefault = apps.get_model("monitoring", "InstalledDefault")
    except LookupError:  # migrated back to before these tables existed
        return 0
    created = 0
    lkey = labels_key({})
    with transaction.atomic(using=using):
        done = set(InstalledDefault.objects.using(using).values_list("key", flat=True))
        for metric, warning, critical in DEFAULT_THRESHOLDS:
            key = marker_key(metric, lkey)
            if key in done:
                continue
            # get_or_create, never update: a row loaded before the first migrate stays as it is.
            _, was_created = Threshold.objects.using(using).get_or_create(
                metric=metric,
                labels_key=lkey,
                defaults={"labels": {}, "warning": warning, "critical": critical, "direction": "above"},
            )
            created += was_created
            InstalledDefault.objects.using(using).get_or_create(key=key)
    if created:
        logger.info("installed %d default thresholds", created)
    return created


def on_post_migrate(sender: Any = None, apps: Any = global_apps, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate handler of the monitoring app."""
    install_default_thresholds(apps, using)
