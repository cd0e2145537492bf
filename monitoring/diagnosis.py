"""What ``diagnose`` checks about collection: fresh collectors, retention on time, cardinality.

Plain functions returning findings as ``(level, issue, action)`` with level
``"warning"`` or ``"critical"`` (the shape of :func:`monitoring.retention.problems`);
the project's diagnosis registry turns them into its ``collection`` component. Each is
a few indexed queries, whatever the number of samples.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Max, Q
from django.utils import timezone

from monitoring import retention, status
from monitoring.models import Series
from monitoring.storage import max_series

Problem = tuple[str, str, str]
WARNING = "warning"
CRITICAL = "critical"

#: Metric families written by the collectors that run on every host (system, portal processes).
HOST_COLLECTOR_PREFIXES = ("system_", "process_")
#: Metric families written once for the whole portal (database, broker, Celery).
CLUSTER_COLLECTOR_PREFIXES = ("db_", "broker_", "celery_")
#: Share of ``MONITORING_MAX_SERIES`` from which the series count is reported.
CARDINALITY_WARNING_SHARE = 0.8
#: Hosts named in one finding; the rest are counted.
MAX_HOSTS_LISTED = 5


def _prefixed(prefixes: tuple[str, ...]) -> Q:
    query = Q()
    for prefix in prefixes:
        query |= Q(name__startswith=prefix)
    return query


def _age(now: dt.datetime, then: dt.datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def stale_collectors(now: dt.datetime | None = None) -> list[Problem]:
    """Report hosts whose collectors stopped writing, and stopped portal-wide collectors.

    A host is stale when its newest system/process sample is older than three of its
    collectors' intervals; all hosts stale is critical (nothing collects). A host whose
    collector series never had a sample is not judged (the collector may be new).
    """
    now = now or timezone.now()
    found: list[Problem] = []
    hosts = (
        Series.objects.filter(_prefixed(HOST_COLLECTOR_PREFIXES), last_at__isnull=False)
        .values("host")
        .annotate(newest=Max("last_at"), interval=Max("interval_seconds"))
        .order_by("host")
    )
    stale = []
    total = 0
    for row in hosts:
        total += 1
        limit = dt.timedelta(seconds=status.STALE_INTERVALS * max(1, row["interval"]))
        if now - row["newest"] > limit:
            stale.append((row["host"] or "(no host)", row["newest"]))
    if stale:
        named = ", ".join(f"{host} (last sample {_age(now, newest)} ago)" for host, newest in stale[:MAX_HOSTS_LISTED])
        more = f" and {len(stale) - MAX_HOSTS_LISTED} more" if len(stale) > MAX_HOSTS_LISTED else ""
        if len(stale) == total:
            found.append(
                (
                    CRITICAL,
                    f"no host collects metrics any more: {named}{more}",
                    "Check that beat and a worker run (see the scheduler and workers components) and that the "
                    "collection periodic tasks are enabled.",
                )
            )
        else:
            found.append(
                (
                    WARNING,
                    f"{len(stale)} of {total} hosts stopped reporting: {named}{more}",
                    "Start a worker on each of these hosts (with its OPSPORTAL_HOSTNAME); if a host was retired, "
                    "delete its series in the admin.",
                )
            )

    cluster = Series.objects.filter(_prefixed(CLUSTER_COLLECTOR_PREFIXES), last_at__isnull=False).aggregate(
        newest=Max("last_at"), interval=Max("interval_seconds")
    )
    if cluster["newest"] is not None:
        limit = dt.timedelta(seconds=status.STALE_INTERVALS * max(1, cluster["interval"] or 1))
        if now - cluster["newest"] > limit:
            found.append(
                (
                    WARNING,
                    f"the database, broker and Celery collectors last wrote {_age(now, cluster['newest'])} ago",
                    "Check that the dispatcher and collection periodic tasks are enabled and a worker runs them.",
                )
            )
    return found


def retention_behind(now: dt.datetime | None = None) -> list[Problem]:
    """Report data kept past its retention (or rollups trailing), from the retention module."""
    return [(level, issue, action) for level, issue, action in retention.problems(now)]


def cardinality(top: int = 3) -> list[Problem]:
    """Report a series count near (80 %) or at ``MONITORING_MAX_SERIES``, naming the largest metrics."""
    cap = max_series()
    count = Series.objects.count()
    if count < cap * CARDINALITY_WARNING_SHARE:
        return []
    largest = (
        Series.objects.values("name").annotate(n=Count("id")).order_by("-n", "name").values_list("name", "n")[:top]
    )
    biggest = ", ".join(f"{name} ({n})" for name, n in largest)
    setting = "OPSPORTAL_MAX_SERIES"
    if count >= cap:
        return [
            (
                CRITICAL,
                f"{count} series reached the cap of {cap}: new series are refused and their samples lost "
                f"(largest: {biggest})",
                f"Find the label with unbounded values (ids, URLs, user names) in those metrics and drop it; "
                f"delete unwanted series in the admin, or raise {setting} if the growth is real.",
            )
        ]
    return [
        (
            WARNING,
            f"{count} series, {count * 100 // cap} % of the cap of {cap} (largest: {biggest})",
            f"Check those metrics for a label with unbounded values before new series are refused; "
            f"raise {setting} if the growth is expected.",
        )
    ]


def collection_problems(now: dt.datetime | None = None) -> list[Problem]:
    """Return every collection finding: stale collectors, retention behind, cardinality."""
    now = now or timezone.now()
    return [*stale_collectors(now), *retention_behind(now), *cardinality()]
