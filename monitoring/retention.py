"""Retention: delete samples and rollups older than their resolution's keep period.

Keep periods come from the :class:`~monitoring.models.Retention` rows (edited in the
admin; defaults raw 48 h, 1-minute 30 d, 1-hour 365 d, installed once after migrate).
Rows are deleted oldest first in batches of ``batch_size`` ids, each batch its own
short transaction, so writers never wait long; a run stops after ``max_batches`` and
the next one continues (:func:`behind` says how far it trails).

Data a coarser resolution still needs is never deleted: raw samples stay until the
minute rollups have passed them, minute rollups until the hour rollups have.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from monitoring import rollups
from monitoring.models import Retention, Rollup, Sample

RAW = Retention.Resolution.RAW.value
DEFAULTS: dict[int, dt.timedelta] = {
    RAW: dt.timedelta(hours=48),
    Retention.Resolution.MINUTE.value: dt.timedelta(days=30),
    Retention.Resolution.HOUR.value: dt.timedelta(days=365),
}
BATCH_SIZE = 5000
MAX_BATCHES = 200
LABELS = {RAW: "raw", rollups.MINUTE: "1m", rollups.HOUR: "1h"}


def seed_defaults(**kwargs: object) -> int:
    """post_migrate handler: install the default keep periods that are missing; never change one."""
    created = 0
    for resolution, keep in DEFAULTS.items():
        _, was_created = Retention.objects.get_or_create(resolution=resolution, defaults={"keep": keep})
        created += was_created
    return created


def keep_periods() -> dict[int, dt.timedelta]:
    """Return the keep period of every resolution (the admin's value, else the default)."""
    return DEFAULTS | dict(Retention.objects.values_list("resolution", "keep"))


def cutoffs(now: dt.datetime) -> dict[int, dt.datetime | None]:
    """Return, per resolution, the time before which rows may be deleted (None: nothing yet).

    It is ``now - keep``, held back to the watermark of the next coarser rollup while that
    has not yet consumed the rows.
    """
    keep = keep_periods()
    marks = rollups.watermarks()
    consumer = {RAW: marks[rollups.MINUTE], rollups.MINUTE: marks[rollups.HOUR], rollups.HOUR: None}
    result: dict[int, dt.datetime | None] = {}
    for resolution in DEFAULTS:
        cutoff = now - keep[resolution]
        if resolution in (RAW, rollups.MINUTE):
            until = consumer[resolution]
            cutoff = min(cutoff, until) if until is not None else None  # type: ignore[assignment]
        result[resolution] = cutoff
    return result


@dataclass
class RetentionReport:
    """Rows deleted per resolution by one :func:`enforce` run."""

    deleted: dict[int, int] = field(default_factory=dict)
    #: True when a resolution stopped at ``max_batches`` with rows left for the next run.
    behind: bool = False

    def __str__(self) -> str:
        parts = ", ".join(f"{LABELS[res]} {n}" for res, n in self.deleted.items())
        return f"deleted {parts}" + ("; more to do" if self.behind else "")


def enforce(
    now: dt.datetime | None = None, *, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES
) -> RetentionReport:
    """Delete every row past its resolution's cutoff, in batches; return the counts."""
    now = now or timezone.now()
    report = RetentionReport()
    for resolution, cutoff in cutoffs(now).items():
        deleted = 0
        for _ in range(max_batches):
            if cutoff is None:
                break
            n = _delete_batch(resolution, cutoff, batch_size)
            deleted += n
            if n < batch_size:
                break
        else:
            report.behind = True
        report.deleted[resolution] = deleted
    return report


def _delete_batch(resolution: int, cutoff: dt.datetime, batch_size: int) -> int:
    """Delete up to ``batch_size`` of the oldest rows before ``cutoff``; return how many.

    One statement with the ids chosen in a subquery through the time index: no ids
    travel to Python, and no model signals fire (nothing listens to samples).
    """
    q = connection.ops.quote_name
    when = connection.ops.adapt_datetimefield_value(cutoff)
    if resolution == RAW:
        table = q(Sample._meta.db_table)
        pick = f"SELECT id FROM {table} WHERE ts < %s ORDER BY ts LIMIT %s"  # noqa: S608 - identifiers only
        params: list[Any] = [when, batch_size]
    else:
        table = q(Rollup._meta.db_table)
        pick = f"SELECT id FROM {table} WHERE resolution = %s AND bucket < %s ORDER BY bucket LIMIT %s"  # noqa: S608
        params = [resolution, when, batch_size]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({pick})", params)  # noqa: S608 - identifiers only
        return max(cursor.rowcount, 0)


def behind(now: dt.datetime | None = None) -> dict[int, dt.timedelta]:
    """Return, per resolution, how far the oldest row is past its keep period (zero when on time).

    ``diagnose`` reports a value well above the task's interval as "retention behind".
    """
    now = now or timezone.now()
    keep = keep_periods()
    oldest = {
        RAW: Sample.objects.order_by("ts").values_list("ts", flat=True).first(),
        **{
            res: Rollup.objects.filter(resolution=res).order_by("bucket").values_list("bucket", flat=True).first()
            for res in (rollups.MINUTE, rollups.HOUR)
        },
    }
    zero = dt.timedelta(0)
    return {res: max(zero, (now - keep[res]) - first) if first else zero for res, first in oldest.items()}


def problems(now: dt.datetime | None = None) -> list[tuple[str, str, str]]:
    """Return storage findings for ``diagnose`` as (``warning``|``critical``, issue, action).

    Retention is behind when the oldest row of a resolution is more than an hour past
    its keep period (critical after a day); rollups are behind when the minute
    watermark trails by more than 10 minutes (critical after an hour).
    """
    now = now or timezone.now()
    found: list[tuple[str, str, str]] = []
    for res, late in behind(now).items():
        if late > dt.timedelta(hours=1):
            level = "critical" if late > dt.timedelta(days=1) else "warning"
            found.append(
                (
                    level,
                    f"retention behind: {LABELS[res]} data kept {_human(late)} past its limit",
                    "check that the 'monitoring.retention' periodic task is enabled and a worker runs it; "
                    "raw data also waits for the rollups",
                )
            )
    minute_lag = rollups.behind(now)[rollups.MINUTE]
    if minute_lag is not None and minute_lag > dt.timedelta(minutes=10):
        level = "critical" if minute_lag > dt.timedelta(hours=1) else "warning"
        found.append(
            (
                level,
                f"rollups behind by {_human(minute_lag)}",
                "check that the 'monitoring.rollup' periodic task is enabled and a worker runs it",
            )
        )
    return found


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 60} min"
