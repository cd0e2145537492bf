"""What ``diagnose`` checks about alert evaluation: a late evaluator, a stuck lease, failing rules.

Plain functions returning findings as ``(level, issue, action)`` with level
``"warning"`` or ``"critical"`` (the shape of ``monitoring.diagnosis``); the project's
diagnosis registry turns them into its ``alerting`` component. A handful of small
queries, whatever the number of rules or alerts.
"""

from __future__ import annotations

import datetime as dt
import os

from django.conf import settings
from django.utils import timezone

from alerts import engine
from alerts.models import AlertRule, EvaluationLease, NotificationChannel

Problem = tuple[str, str, str]
WARNING = "warning"
CRITICAL = "critical"

#: The evaluator is late when its last cycle finished this many intervals ago.
LATE_INTERVALS = 3
#: Failing rules named in one finding (the count says how many there are).
NAMED = 5

START_EVALUATING = (
    "Make sure a worker and beat run (see the workers and scheduler components) and that the periodic task "
    "“Alerts: evaluate rules and thresholds” is enabled (Periodic tasks in the admin)."
)


def _age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


def evaluation_interval() -> tuple[dt.timedelta | None, str]:
    """Return the interval of the evaluation periodic task, or None and why it does not run."""
    from django_celery_beat.models import PeriodicTask

    tasks = list(PeriodicTask.objects.filter(task="alerts.evaluate").select_related("interval"))
    if not tasks:
        return None, "there is no periodic task for alerts.evaluate"
    enabled = [t for t in tasks if t.enabled]
    if not enabled:
        return None, "the periodic task “" + tasks[0].name + "” is disabled"
    seconds = [t.interval.every * _UNIT[t.interval.period] for t in enabled if t.interval is not None]
    if not seconds:
        return engine.INTERVAL, ""
    return dt.timedelta(seconds=min(seconds)), ""


_UNIT = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def evaluator_problems(now: dt.datetime | None = None) -> list[Problem]:
    """Report an evaluator that is late, never ran, or whose lease is held by a process that is gone."""
    now = now or timezone.now()
    found: list[Problem] = []
    interval, why_not = evaluation_interval()
    if interval is None:
        found.append((CRITICAL, f"alert rules and thresholds are not evaluated: {why_not}", START_EVALUATING))
        interval = engine.INTERVAL
    lease = EvaluationLease.objects.filter(name=engine.LEASE_NAME).first()
    late_after = LATE_INTERVALS * interval
    finished = lease.last_finished_at if lease else None
    if finished is None or now - finished > late_after:
        # Beat and a worker that started moments ago have not had their chance yet.
        since = scheduling_since(now)
        if since is None or now - since > late_after:
            if finished is None:
                issue = "no alert evaluation cycle has ever finished: nobody would be alerted"
            else:
                issue = (
                    f"the alert evaluator is late: its last cycle finished {_age(now - finished)} ago "
                    f"(it runs every {_age(interval)}); new problems are not being alerted"
                )
            found.append((CRITICAL, issue, START_EVALUATING))
    if lease is None:
        return found
    found.extend(_lease_problems(lease, now))
    if lease.last_duration_ms is not None and lease.last_duration_ms > interval.total_seconds() * 1000:
        found.append(
            (
                WARNING,
                f"the last evaluation cycle took {lease.last_duration_ms / 1000:.1f} s, longer than its "
                f"interval of {_age(interval)}",
                "Disable rules you do not need, or lengthen the interval of “Alerts: evaluate rules and thresholds”; "
                "check the database's load (see the database component).",
            )
        )
    return found


def scheduling_since(now: dt.datetime) -> dt.datetime | None:
    """Return since when both beat and a worker run (the later start), or None when either is missing."""
    from monitoring import liveness
    from monitoring.models.liveness import ProcessHeartbeat

    starts = []
    for role in (ProcessHeartbeat.Role.BEAT, ProcessHeartbeat.Role.WORKER):
        rows = liveness.fresh(role, now=now)
        if not rows:
            return None
        starts.append(min(row.started_at for row in rows))
    return max(starts)


def _lease_problems(lease: EvaluationLease, now: dt.datetime) -> list[Problem]:
    if not lease.owner or lease.lease_until is None:
        return []
    host, _, rest = lease.owner.partition("/")
    pid_text = rest.split("/", 1)[0]
    if lease.lease_until < now - engine.LEASE:
        return [
            (
                CRITICAL,
                f"the evaluation lease of {lease.owner} expired {_age(now - lease.lease_until)} ago and no evaluator "
                "took it over",
                START_EVALUATING,
            )
        ]
    if lease.lease_until > now + 2 * engine.LEASE:
        return [
            (
                WARNING,
                f"the evaluation lease runs until {lease.lease_until:%Y-%m-%d %H:%M:%S} UTC, further ahead than a "
                "lease is ever taken: a clock on some host is ahead",
                "Synchronise the clocks of the portal's hosts (NTP); the lease is taken over once it expires.",
            )
        ]
    if host == settings.HOSTNAME and pid_text.isdigit() and not _alive(int(pid_text)):
        return [
            (
                WARNING,
                f"the evaluation lease is held by process {pid_text} on this host, which is gone; evaluation "
                f"waits until the lease expires in {_age(lease.lease_until - now)}",
                "Nothing to do if it recovers by itself; if it recurs, read the worker's log for crashes.",
            )
        ]
    return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rule_problems() -> list[Problem]:
    """Report enabled rules that fail to evaluate, and thresholds naming channels that do not exist."""
    found: list[Problem] = []
    failing = list(
        AlertRule.objects.filter(enabled=True).exclude(last_error="").order_by("name").values_list("name", "last_error")
    )
    if failing:
        named = "; ".join(f"“{name}”: {error}" for name, error in failing[:NAMED])
        more = f" (and {len(failing) - NAMED} more)" if len(failing) > NAMED else ""
        found.append(
            (
                WARNING,
                f"{len(failing)} alert rule(s) fail to evaluate and cannot alert: {named}{more}",
                "Open Alerts > Alert rules, filter “evaluation: failing”, and fix each expression "
                "(the preview shows what it returns).",
            )
        )
    from monitoring.models import Threshold

    known = set(NotificationChannel.objects.values_list("name", flat=True))
    for threshold in Threshold.objects.filter(enabled=True):
        missing = [name for name in threshold.channels or [] if name not in known]
        if missing:
            found.append(
                (
                    WARNING,
                    f"threshold {threshold} sends to channel(s) that do not exist: {', '.join(missing)}",
                    "Create the channel under Alerts > Notification channels, or fix the name on the threshold.",
                )
            )
    return found


def alerting_problems(now: dt.datetime | None = None) -> list[Problem]:
    """Return every alerting finding."""
    return evaluator_problems(now) + rule_problems()
