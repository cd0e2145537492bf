"""What ``diagnose`` checks about delivery: stuck deliveries, failing and flagged channels.

Plain functions returning findings as ``(level, issue, action)`` with level
``"warning"`` or ``"critical"`` (the shape of ``monitoring.diagnosis``); the project's
diagnosis registry turns them into its ``delivery`` component. A few grouped queries
over open and recent rows (indexed by state), whatever the size of the history. Issues
name channels, never their targets.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from alerts import outbox
from alerts.fields import UndecryptableSecret
from alerts.models import Delivery, NotificationChannel
from alerts.transports.base import registered_kinds

Problem = tuple[str, str, str]
WARNING = "warning"
CRITICAL = "critical"

#: A delivery due this long ago and never tried means nobody is sending.
NEVER_TRIED_AFTER = dt.timedelta(minutes=1)
#: A retry this late, or a lease expired this long ago, means the sweep is not running.
SWEEP_LATE_AFTER = dt.timedelta(minutes=2)
#: How far back failed and expired deliveries are reported.
RECENT = dt.timedelta(hours=24)

START_SENDING = (
    "Start a worker (`celery -A opsportal worker`, or `python manage.py runportal`); see the workers component."
)
START_SWEEP = (
    "Make sure beat runs and the periodic task “Alerts: delivery sweep” is enabled (Periodic tasks in the admin); "
    "see the scheduler component."
)
SEE_DELIVERIES = "Read the attempts in Alerts > Deliveries (filter “failing”, by channel)."


def _age(now: dt.datetime, then: dt.datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def stuck_deliveries(now: dt.datetime | None = None) -> list[Problem]:
    """Report deliveries nobody sends: never tried, retries overdue, leases of dead workers."""
    now = now or timezone.now()
    found: list[Problem] = []
    never = Delivery.objects.filter(
        state=Delivery.State.PENDING, attempts=0, next_attempt_at__lt=now - NEVER_TRIED_AFTER
    ).aggregate(n=Count("id"), oldest=Min("next_attempt_at"))
    if never["n"]:
        found.append(
            (
                CRITICAL,
                f"{never['n']} notification(s) due for {_age(now, never['oldest'])} were never attempted: "
                "no worker is sending",
                START_SENDING,
            )
        )
    late = Delivery.objects.filter(
        state=Delivery.State.PENDING, attempts__gt=0, next_attempt_at__lt=now - SWEEP_LATE_AFTER
    ).aggregate(n=Count("id"), oldest=Min("next_attempt_at"))
    if late["n"]:
        found.append(
            (
                WARNING,
                f"{late['n']} retries are overdue by up to {_age(now, late['oldest'])}: "
                "the delivery sweep is not re-kicking them",
                START_SWEEP,
            )
        )
    orphaned = Delivery.objects.filter(state=Delivery.State.SENDING, lease_until__lt=now - SWEEP_LATE_AFTER).aggregate(
        n=Count("id"), oldest=Min("lease_until")
    )
    if orphaned["n"]:
        found.append(
            (
                WARNING,
                f"{orphaned['n']} notification(s) are held by a worker that stopped mid-send "
                f"(lease expired {_age(now, orphaned['oldest'])} ago) and were not released",
                START_SWEEP,
            )
        )
    return found


def channel_problems(now: dt.datetime | None = None) -> list[Problem]:
    """Report, per channel: unreadable secrets, a flag, deliveries retrying, deliveries given up."""
    now = now or timezone.now()
    found: list[Problem] = []
    kinds = set(registered_kinds())
    channels = {c.pk: c for c in NotificationChannel.objects.order_by("name")}
    retrying = {
        row["channel_id"]: row
        for row in Delivery.objects.filter(state__in=Delivery.OPEN_STATES)
        .exclude(last_error="")
        .values("channel_id")
        .annotate(n=Count("id"), oldest=Min("created_at"), latest=Max("id"))
    }
    last_errors = dict(
        Delivery.objects.filter(id__in=[row["latest"] for row in retrying.values()]).values_list(
            "channel_id", "last_error"
        )
    )
    given_up = {
        row["channel_id"]: row
        for row in Delivery.objects.filter(
            state__in=[Delivery.State.FAILED, Delivery.State.EXPIRED], created_at__gte=now - RECENT
        )
        .values("channel_id")
        .annotate(
            failed=Count("id", filter=Q(state=Delivery.State.FAILED)),
            expired=Count("id", filter=Q(state=Delivery.State.EXPIRED)),
        )
    }
    for pk, channel in channels.items():
        name = channel.name
        try:
            channel.target  # noqa: B018 - decrypts
            channel.secret  # noqa: B018
        except UndecryptableSecret:
            found.append(
                (
                    CRITICAL,
                    f"channel {name}: its target or secret cannot be decrypted with OPSPORTAL_FERNET_KEYS, "
                    "so nothing can be sent to it",
                    "Put back the Fernet key that encrypted it (it is kept with the backups), "
                    "or enter the target and secret again in the admin.",
                )
            )
        if channel.kind not in kinds and (pk in retrying or channel.enabled):
            found.append(
                (
                    WARNING,
                    f"channel {name}: kind {channel.kind} cannot send yet (no transport in this version); "
                    "its notifications wait and then expire",
                    "Use a webhook or email channel for now.",
                )
            )
        if channel.flagged_at:
            found.append(
                (
                    WARNING,
                    f"channel {name}: the receiver refused a notification for good {_age(now, channel.flagged_at)} "
                    f"ago ({channel.flag_reason or 'no reason given'})",
                    "Fix the channel's target in the admin, then use “Send test notification”: "
                    "a good test clears the flag.",
                )
            )
        if pk in retrying:
            row = retrying[pk]
            oldest = row["oldest"]
            expiring = oldest + outbox.MAX_AGE - now < dt.timedelta(hours=1)
            level = CRITICAL if expiring else WARNING
            expiry = "; the oldest expires within the hour" if expiring else f"; they are retried for {outbox.MAX_AGE}"
            found.append(
                (
                    level,
                    f"channel {name}: {row['n']} notification(s) failing for {_age(now, oldest)} "
                    f"(last error: {last_errors.get(pk, '')[:200]}){expiry}",
                    f"Check that the receiver is up and accepts the messages. {SEE_DELIVERIES}",
                )
            )
        if pk in given_up:
            row = given_up[pk]
            parts = [f"{row['failed']} refused for good"] if row["failed"] else []
            parts += [f"{row['expired']} expired after {outbox.MAX_AGE} of retries"] if row["expired"] else []
            found.append(
                (
                    WARNING,
                    f"channel {name}: in the last 24 h, {' and '.join(parts)}: those were never delivered",
                    SEE_DELIVERIES,
                )
            )
    return found


def mail_problems() -> list[Problem]:
    """Report email channels while no mail server is configured (mail then only lands in files)."""
    if getattr(settings, "EMAIL_URL", "") or "smtp" in str(getattr(settings, "EMAIL_BACKEND", "")):
        return []
    names = list(
        NotificationChannel.objects.filter(kind=NotificationChannel.Kind.EMAIL, enabled=True).values_list(
            "name", flat=True
        )[:6]
    )
    if not names:
        return []
    where = getattr(settings, "EMAIL_FILE_PATH", "") or "the mail backend"
    listed = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
    return [
        (
            WARNING,
            f"email channel(s) {listed} are enabled but EMAIL_URL is not set: "
            f"their notifications are written to {where}, not sent",
            "Set EMAIL_URL (smtp://user:password@host:587, smtp+tls://…) for every process and restart.",
        )
    ]


def delivery_problems(now: dt.datetime | None = None) -> list[Problem]:
    """Return every delivery finding, for ``diagnose``'s ``delivery`` component."""
    now = now or timezone.now()
    return stuck_deliveries(now) + channel_problems(now) + mail_problems()
