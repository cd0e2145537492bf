"""The delivery outbox: nothing lost, nothing sent twice on purpose, in order per alert.

* :func:`enqueue` writes one :class:`Delivery` per channel *inside* the transaction
  that writes the alert transition, with the message frozen into the row, so a
  transition is never stored without its deliveries and a retry sends the same bytes.
* :func:`kick` (after commit) asks a worker to send them now. A kick is only a hint:
  the periodic :func:`sweep` re-kicks every due row, so a lost broker message costs
  at most one sweep interval.
* :func:`deliver_due` claims due rows by lease in a short transaction, sends outside
  it, and records the outcome with a conditional UPDATE that only lands while the
  lease is still ours. A worker killed mid-send leaves a lease that expires; the row
  is then claimed and sent again (receivers deduplicate on ``X-OpsPortal-Delivery``).
* Failures are retried with exponential backoff and jitter (first retry within ~10 s,
  at most 5 min apart, at least what ``Retry-After`` asks) until the delivery is
  :data:`MAX_AGE` old, then it expires. A permanent refusal fails the delivery at once
  and flags the channel.
* A delivery is not sent while an earlier delivery of the same alert to the same
  channel is still open, so a receiver never sees "resolved" before "firing".
* Human channels (email, chat, SMS) wait :data:`GROUP_WAIT` so a burst becomes one
  message; the group is frozen in ``Delivery.batch`` so a retry resends the same one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from alerts.fields import UndecryptableSecret
from alerts.models import (
    AlertTransition,
    Delivery,
    DeliveryAttempt,
    EvaluationLease,
    NotificationChannel,
)
from alerts.transports import NoTransport, Outcome, Result, transport_for

logger = logging.getLogger(__name__)


def _seconds(name: str, default: float) -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, name, default)))


#: How long a human channel waits for more alerts before sending (DESIGN: ≤ 5 s).
GROUP_WAIT = _seconds("ALERTS_GROUP_WAIT_SECONDS", 5)
#: How long a delivery is retried before it expires.
MAX_AGE = _seconds("ALERTS_DELIVERY_MAX_AGE_SECONDS", 24 * 3600)
#: How long a claim holds a delivery; a worker that dies mid-send loses it after this.
LEASE = _seconds("ALERTS_DELIVERY_LEASE_SECONDS", 60)
#: First retry delay (jittered down to half) and the cap of later ones.
BACKOFF_FIRST = 10.0
BACKOFF_CAP = 300.0
#: The longest ``Retry-After`` honoured; a receiver asking for more is retried after this.
MAX_RETRY_AFTER = 3600.0
#: Deliveries claimed per round, and the most one grouped message carries.
CLAIM_LIMIT = 20
GROUP_LIMIT = 50
#: Wall-clock budget of one ``deliver`` task; the sweep picks up what is left.
RUN_BUDGET = 60.0
#: The most due deliveries one sweep re-kicks.
SWEEP_LIMIT = 2000
SWEEP_LEASE = dt.timedelta(seconds=8)
#: Seconds after which an unconsumed kick is dropped: the sweep has sent a fresher one.
KICK_EXPIRES = 60
#: How long finished deliveries (and their attempts) are kept, and how many one sweep deletes.
KEEP_FINISHED = _seconds("ALERTS_DELIVERY_KEEP_SECONDS", 30 * 86400)
PRUNE_BATCH = 500

#: Transition events that are announced; ``pending`` is not.
NOTIFIED_EVENTS = frozenset(
    {
        AlertTransition.Event.FIRING,
        AlertTransition.Event.REPEAT,
        AlertTransition.Event.RESOLVED,
        AlertTransition.Event.ACKNOWLEDGED,
        AlertTransition.Event.ESCALATED,
    }
)

State = Delivery.State


# --- writing -------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def alert_url(alert_id: int) -> str:
    """Return the link to an alert's page (absolute when ``OPSPORTAL_BASE_URL`` is set)."""
    base = str(getattr(settings, "OPSPORTAL_BASE_URL", "") or "").rstrip("/")
    return f"{base}/admin/alerts/alert/{alert_id}/change/"


def build_payload(transition: AlertTransition) -> dict[str, Any]:
    """Return DESIGN's notification payload for ``transition`` (a repeat is announced as ``firing``)."""
    alert = transition.alert
    event = AlertTransition.Event.FIRING if transition.event == AlertTransition.Event.REPEAT else transition.event
    value = transition.value if transition.value is not None else alert.value
    if value is not None and not math.isfinite(value):
        value = None
    resolved_at = (alert.resolved_at or transition.at) if event == AlertTransition.Event.RESOLVED else None
    return {
        "event": str(event),
        "alert": {
            "id": alert.pk,
            "rule": alert.name,
            "severity": alert.severity,
            "fingerprint": alert.fingerprint,
            "summary": alert.summary,
            "value": value,
            "labels": dict(alert.labels or {}),
            "started_at": _iso(alert.fired_at or alert.active_since),
            "resolved_at": _iso(resolved_at),
            "url": alert_url(alert.pk),
        },
    }


def enqueue(
    transition: AlertTransition, channels: Iterable[NotificationChannel], now: dt.datetime | None = None
) -> list[Delivery]:
    """Write one delivery of ``transition`` per channel; call it inside the transition's transaction.

    Disabled channels are skipped, and so are resolved notices to channels that do not
    want them. Webhooks are due at once; human channels after the group wait. Return
    the deliveries written; pass their ids to :func:`kick` once the transaction commits.
    """
    if transition.event not in NOTIFIED_EVENTS:
        return []
    now = now or timezone.now()
    payload = build_payload(transition)
    rows: list[Delivery] = []
    seen: set[int] = set()
    for channel in channels:
        if channel.pk in seen or not channel.enabled:
            continue
        if transition.event == AlertTransition.Event.RESOLVED and not channel.send_resolved:
            continue
        seen.add(channel.pk)
        due = now + GROUP_WAIT if channel.groups_messages else now
        rows.append(
            Delivery(
                transition=transition,
                alert_id=transition.alert_id,
                channel=channel,
                event=transition.event,
                payload=payload,
                next_attempt_at=due,
                send_after=due if channel.groups_messages else None,
                created_at=now,
            )
        )
    return Delivery.objects.bulk_create(rows)


def kick(delivery_ids: Iterable[int] | None = None) -> None:
    """Ask a worker to send these deliveries (all due ones when None); never raises.

    Meant for ``transaction.on_commit(lambda: kick(ids))``. One task per channel, so a
    slow receiver does not hold up the others; rows still in their group wait get a
    second kick for when it ends. A kick that cannot be sent is only logged: the
    sweep finds the rows within its interval.
    """
    from alerts.tasks import deliver

    try:
        if delivery_ids is None:
            deliver.apply_async(args=(None,), expires=KICK_EXPIRES)
            return
        ids = list(delivery_ids)
        if not ids:
            return
        now = timezone.now()
        by_channel: dict[int, list[int]] = defaultdict(list)
        later: dict[int, list[int]] = defaultdict(list)
        latest: dict[int, dt.datetime] = {}
        rows = Delivery.objects.filter(id__in=ids, state=State.PENDING).values_list(
            "id", "channel_id", "next_attempt_at"
        )
        for pk, channel_id, due in rows:
            if due <= now:
                by_channel[channel_id].append(pk)
            else:
                later[channel_id].append(pk)
                latest[channel_id] = max(due, latest.get(channel_id, due))
        for _channel_id, chunk in _chunks(by_channel):
            deliver.apply_async(args=(chunk,), expires=KICK_EXPIRES)
        for channel_id, chunk in _chunks(later):
            countdown = (latest[channel_id] - now).total_seconds() + 0.2
            deliver.apply_async(args=(chunk,), countdown=countdown, expires=countdown + KICK_EXPIRES)
    except Exception:
        logger.warning("could not kick deliveries; the sweep will send them", exc_info=True)


def _chunks(groups: dict[int, list[int]], size: int = CLAIM_LIMIT) -> Iterable[tuple[int, list[int]]]:
    for key, ids in groups.items():
        for start in range(0, len(ids), size):
            yield key, ids[start : start + size]


# --- claiming --------------------------------------------------------------------


def new_owner() -> str:
    """Return a name for one claim: host, process, thread and a random part."""
    return f"{settings.HOSTNAME}/{os.getpid()}/{threading.get_ident()}/{uuid.uuid4().hex[:8]}"


def due(now: dt.datetime) -> Any:
    """Return the pending deliveries that may be sent at ``now``.

    A delivery waits while an earlier delivery of the same alert to the same channel
    is still open (pending or being sent), which keeps each receiver's view in order.
    """
    earlier_open = Delivery.objects.filter(
        alert_id=OuterRef("alert_id"),
        channel_id=OuterRef("channel_id"),
        transition_id__lt=OuterRef("transition_id"),
        state__in=Delivery.OPEN_STATES,
    )
    return Delivery.objects.filter(state=State.PENDING, next_attempt_at__lte=now).filter(~Exists(earlier_open))


def claim(
    now: dt.datetime,
    owner: str,
    ids: Iterable[int] | None = None,
    limit: int = CLAIM_LIMIT,
    skip_channels: Iterable[int] = (),
) -> list[list[Delivery]]:
    """Claim due deliveries for ``owner``; return them as messages to send (lists of deliveries).

    A short transaction: expired leases are released, due rows are locked
    (``skip_locked`` on PostgreSQL; SQLite's IMMEDIATE transactions serialise
    claimers) and moved to ``sending`` with a lease by a conditional UPDATE. Only the
    rows that UPDATE moved are ours, so two claimers never get the same row.
    """
    with transaction.atomic():
        release_expired_leases(now)
        candidates = due(now)
        if ids is not None:
            candidates = candidates.filter(id__in=list(ids))
        skip = list(skip_channels)
        if skip:
            candidates = candidates.exclude(channel_id__in=skip)
        picked = list(
            candidates.select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at", "id")
            .only("id", "channel_id", "batch")[:limit]
        )
        if not picked:
            return []
        wanted = {d.pk for d in picked}
        human = set(
            NotificationChannel.objects.filter(
                id__in={d.channel_id for d in picked}, kind__in=NotificationChannel.HUMAN_KINDS
            ).values_list("id", flat=True)
        )
        # A frozen group is resent whole; a new group takes every due row of its channel.
        batches = {d.batch for d in picked if d.batch is not None and d.channel_id in human}
        if batches:
            wanted |= set(Delivery.objects.filter(batch__in=batches, state=State.PENDING).values_list("id", flat=True))
        for channel_id in {d.channel_id for d in picked if d.batch is None and d.channel_id in human}:
            members = list(
                due(now)
                .filter(channel_id=channel_id, batch__isnull=True)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("transition_id", "id")
                .values_list("id", flat=True)[:GROUP_LIMIT]
            )
            Delivery.objects.filter(id__in=members, state=State.PENDING, batch__isnull=True).update(batch=uuid.uuid4())
            wanted |= set(members)
        # The UPDATE re-checks the state: whatever another claimer took meanwhile is not ours.
        moved = Delivery.objects.filter(id__in=wanted, state=State.PENDING).update(
            state=State.SENDING, owner=owner, lease_until=now + lease_for(), attempts=F("attempts") + 1
        )
        if moved != len(wanted):
            logger.debug("claimed %d of %d deliveries; the rest went to another worker", moved, len(wanted))
    mine = list(
        Delivery.objects.filter(owner=owner, state=State.SENDING)
        .select_related("channel", "alert__rule")
        .order_by("transition_id", "id")
    )
    messages: dict[Any, list[Delivery]] = {}
    for delivery in mine:
        key = ("batch", delivery.batch) if delivery.batch and delivery.channel.groups_messages else delivery.pk
        messages.setdefault(key, []).append(delivery)
    return list(messages.values())


def lease_for() -> dt.timedelta:
    """Return the lease of one claim: long enough for a send at the transport timeout."""
    timeout = float(getattr(settings, "ALERTS_TRANSPORT_TIMEOUT", 10.0))
    return max(LEASE, dt.timedelta(seconds=3 * timeout + 5))


def release_expired_leases(now: dt.datetime) -> int:
    """Put deliveries whose claimer vanished mid-send back in line; return how many.

    The lost try is recorded as an attempt (it may or may not have reached the
    receiver); the delivery is due again at once and keeps its ``delivery_id``.
    """
    with transaction.atomic():
        stale = list(
            Delivery.objects.filter(state=State.SENDING, lease_until__lt=now)
            .select_for_update(skip_locked=True)
            .values_list("id", "created_at")
        )
        if not stale:
            return 0
        error = "the worker stopped before the send finished (lease expired); sending again"
        ids = [pk for pk, _ in stale]
        expired = [pk for pk, created in stale if now >= created + MAX_AGE]
        released = Delivery.objects.filter(id__in=ids, state=State.SENDING, lease_until__lt=now).update(
            state=State.PENDING, owner="", lease_until=None, next_attempt_at=now, last_error=error
        )
        if expired:
            Delivery.objects.filter(id__in=expired, state=State.PENDING).update(state=State.EXPIRED)
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(delivery_id=pk, started_at=now, outcome=DeliveryAttempt.Outcome.RETRY, error=error)
            for pk in ids
        )
    logger.warning("released %d deliveries whose worker stopped mid-send", released)
    return released


# --- sending ---------------------------------------------------------------------


def backoff_seconds(attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Return the wait before retry number ``attempt`` (1-based): 5-10 s, 10-20 s, ... up to 150-300 s."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, attempt - 1))
    return rng(ceiling / 2, ceiling)


def retry_delay(
    attempt: int, retry_after: float | None, rng: Callable[[float, float], float] = random.uniform
) -> float:
    """Return the wait before the next try: the backoff, or longer when the receiver asked."""
    delay = backoff_seconds(attempt, rng)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
    return delay


def send_message(deliveries: Sequence[Delivery], timeout: float | None = None) -> Result:
    """Send one message (one delivery, or a frozen group) through its channel's transport."""
    channel = deliveries[0].channel
    if not channel.enabled:
        return Result.permanent("the channel was disabled before the message was sent")
    try:
        transport = transport_for(channel, timeout=timeout)
        payloads = [d.payload for d in deliveries]
        if transport.groups:
            return transport.send_group(deliveries, payloads)
        return transport.send(deliveries[0], payloads[0])
    except NoTransport as exc:
        return Result.retry(str(exc))
    except UndecryptableSecret as exc:
        return Result.retry(str(exc))


def finish(
    deliveries: Sequence[Delivery],
    owner: str,
    result: Result,
    started_at: dt.datetime,
    duration_ms: int,
    now: dt.datetime,
    rng: Callable[[float, float], float] = random.uniform,
) -> str:
    """Record the attempt and move the deliveries on; return their new state.

    The UPDATE lands only while the lease is ours: if it expired and another worker
    took the row, that worker's outcome stands (the attempt is still recorded).
    """
    ids = [d.pk for d in deliveries]
    channel = deliveries[0].channel
    fields: dict[str, Any] = {"owner": "", "lease_until": None, "last_status_code": result.status_code}
    if result.outcome is Outcome.OK:
        state = State.DELIVERED
        fields.update(delivered_at=now, last_error="")
    elif result.outcome is Outcome.PERMANENT:
        state = State.FAILED
        fields.update(last_error=result.error)
    else:
        deadline = min(d.created_at for d in deliveries) + MAX_AGE
        attempt = max(d.attempts for d in deliveries)
        next_at = min(now + dt.timedelta(seconds=retry_delay(attempt, result.retry_after, rng)), deadline)
        state = State.EXPIRED if now >= deadline else State.PENDING
        fields.update(last_error=result.error, next_attempt_at=next_at)
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                delivery_id=pk,
                started_at=started_at,
                duration_ms=duration_ms,
                outcome=result.outcome.value,
                status_code=result.status_code,
                error=result.error,
            )
            for pk in ids
        )
        moved = Delivery.objects.filter(id__in=ids, owner=owner, state=State.SENDING).update(state=state, **fields)
        if result.outcome is not Outcome.OK:
            update: dict[str, Any] = {"failures_total": F("failures_total") + 1}
            if result.outcome is Outcome.PERMANENT:
                update.update(flagged_at=now, flag_reason=result.error[:500])
            NotificationChannel.objects.filter(pk=channel.pk).update(**update)
    for delivery in deliveries:
        delivery.state = state
        for name, value in fields.items():
            setattr(delivery, name, value)
    if moved != len(ids):
        logger.warning(
            "channel %s: lease on %d of %d deliveries was lost before the outcome was recorded",
            channel.name,
            len(ids) - moved,
            len(ids),
        )
    log = logger.info if result.delivered else logger.warning
    log("channel %s: %s %s", channel.name, ",".join(str(d.delivery_id) for d in deliveries), result.describe())
    return state


@dataclass
class Summary:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    expired: int = 0
    messages: int = 0

    def add(self, state: str, count: int) -> None:
        self.messages += 1
        attr = {State.DELIVERED: "delivered", State.PENDING: "retrying", State.FAILED: "failed"}.get(
            State(state), "expired"
        )
        setattr(self, attr, getattr(self, attr) + count)

    def __str__(self) -> str:
        return (
            f"{self.messages} messages: {self.delivered} delivered, {self.retrying} to retry, "
            f"{self.failed} failed, {self.expired} expired"
        )


def deliver_due(
    ids: Iterable[int] | None = None,
    now: Callable[[], dt.datetime] = timezone.now,
    budget: float = RUN_BUDGET,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Summary:
    """Claim and send due deliveries (only ``ids`` when given) until none is left or the budget is spent.

    When a delivery is done, the next one of the same alert to the same channel may
    go at once; it joins the work of this run. A channel that fails is not tried again
    in this run: its other claimed deliveries wait, untried, as long as the failed one
    (a receiver's ``Retry-After`` speaks for the receiver, not for one message).
    Each message renews its lease just before it is sent, so a long run never sends
    a row another worker may have taken over; what the budget leaves is put back and
    kicked again.
    """
    summary = Summary()
    wanted = set(ids) if ids is not None else None
    paused: dict[int, dt.datetime | None] = {}
    leftover: list[int] = []
    started = clock()
    while clock() - started < budget:
        owner = new_owner()
        messages = claim(now(), owner, ids=wanted, skip_channels=paused)
        if not messages:
            break
        for deliveries in messages:
            channel_id = deliveries[0].channel_id
            if channel_id in paused:
                put_back(deliveries, owner, paused[channel_id])
                continue
            if clock() - started >= budget:
                put_back(deliveries, owner)
                leftover += [d.pk for d in deliveries]
                continue
            if not renew(deliveries, owner, now()):
                put_back(deliveries, owner)
                continue
            started_at = now()
            tick = time.monotonic()
            result = send_message(deliveries, timeout=timeout)
            duration_ms = round((time.monotonic() - tick) * 1000)
            state = finish(deliveries, owner, result, started_at, duration_ms, now())
            summary.add(state, len(deliveries))
            if state == State.PENDING:
                paused[channel_id] = deliveries[0].next_attempt_at
            elif wanted is not None:
                wanted |= set(followers(deliveries))
    if leftover:
        kick(leftover)
    return summary


def renew(deliveries: Sequence[Delivery], owner: str, now: dt.datetime) -> bool:
    """Extend ``owner``'s lease on these deliveries for one more send; False when it was lost."""
    ids = [d.pk for d in deliveries]
    renewed = Delivery.objects.filter(id__in=ids, owner=owner, state=State.SENDING).update(
        lease_until=now + lease_for()
    )
    return renewed == len(ids)


def put_back(deliveries: Sequence[Delivery], owner: str, next_attempt_at: dt.datetime | None = None) -> int:
    """Return claimed deliveries that were not tried to the queue; no attempt is counted."""
    fields: dict[str, Any] = {"state": State.PENDING, "owner": "", "lease_until": None}
    fields["attempts"] = F("attempts") - 1
    if next_attempt_at is not None:
        fields["next_attempt_at"] = next_attempt_at
    ids = [d.pk for d in deliveries]
    return Delivery.objects.filter(id__in=ids, owner=owner, state=State.SENDING).update(**fields)


def followers(deliveries: Sequence[Delivery]) -> list[int]:
    """Return the open deliveries that come after these, same alert and channel."""
    pairs = {(d.alert_id, d.channel_id) for d in deliveries}
    rows = Delivery.objects.filter(
        alert_id__in={a for a, _ in pairs}, channel_id__in={c for _, c in pairs}, state=State.PENDING
    ).values_list("id", "alert_id", "channel_id")
    return [pk for pk, alert_id, channel_id in rows if (alert_id, channel_id) in pairs]


# --- sweep, metrics, test message ------------------------------------------------------


def sweep(now: dt.datetime | None = None, send_kicks: bool = True) -> dict[str, int]:
    """Release expired leases, re-kick every due delivery, publish the delivery series.

    Single-flight by lease, so two beats do not sweep at once. Return what it did.
    """
    now = now or timezone.now()
    owner = new_owner()
    if not _claim_cycle("delivery_sweep", owner, now):
        return {"skipped": 1}
    tick = time.monotonic()
    try:
        released = release_expired_leases(now)
        ids = list(due(now).order_by("next_attempt_at", "id").values_list("id", flat=True)[:SWEEP_LIMIT])
        if ids and send_kicks:
            kick(ids)
        pruned = prune(now)
        publish_metrics(now)
    finally:
        EvaluationLease.objects.filter(name="delivery_sweep", owner=owner).update(
            owner="",
            lease_until=None,
            last_finished_at=timezone.now(),
            last_duration_ms=(time.monotonic() - tick) * 1000,
        )
    return {"released": released, "kicked": len(ids), "pruned": pruned}


def prune(now: dt.datetime, keep: dt.timedelta | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch`` finished deliveries older than ``keep``; return how many.

    Bounded per call, so a sweep stays short however large the backlog; the next
    sweeps continue.
    """
    cutoff = now - (KEEP_FINISHED if keep is None else keep)
    finished = (State.DELIVERED, State.FAILED, State.EXPIRED)
    ids = list(
        Delivery.objects.filter(created_at__lt=cutoff, state__in=finished)
        .order_by("created_at")
        .values_list("id", flat=True)[:batch]
    )
    if not ids:
        return 0
    DeliveryAttempt.objects.filter(delivery_id__in=ids).delete()
    Delivery.objects.filter(id__in=ids).delete()
    return len(ids)


def _claim_cycle(name: str, owner: str, now: dt.datetime) -> bool:
    try:
        with transaction.atomic():
            EvaluationLease.objects.get_or_create(name=name)
    except IntegrityError:
        pass  # created by a concurrent sweeper
    # Whoever moves the row owns the cycle; the others see a live lease and skip.
    return bool(
        EvaluationLease.objects.filter(name=name)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(owner=owner, lease_until=now + SWEEP_LEASE, last_started_at=now)
    )


def publish_metrics(now: dt.datetime) -> None:
    """Record ``deliveries_pending`` and ``delivery_failures_total{channel}``."""
    from monitoring.models import Series
    from monitoring.storage import Reading, record

    pending = Delivery.objects.filter(state__in=Delivery.OPEN_STATES).count()
    readings = [Reading("deliveries_pending", pending, ts=now)]
    for name, failures in NotificationChannel.objects.values_list("name", "failures_total"):
        readings.append(
            Reading("delivery_failures_total", failures, {"channel": name}, ts=now, kind=Series.Kind.COUNTER)
        )
    try:
        result = record(readings, now=now)
    except Exception:
        logger.warning("could not record delivery metrics", exc_info=True)
        return
    for index, reason in result.rejected:
        logger.warning("delivery metric %s not recorded: %s", readings[index].name, reason)


def probe_payload(
    channel: NotificationChannel, requested_by: str = "", now: dt.datetime | None = None
) -> dict[str, Any]:
    """Return a payload shaped like a real one, clearly marked as a test."""
    now = now or timezone.now()
    who = f" by {requested_by}" if requested_by else ""
    return {
        "event": "firing",
        "alert": {
            "id": 0,
            "rule": "OpsPortal test notification",
            "severity": "info",
            "fingerprint": "test",
            "summary": f"Test notification to channel {channel.name}, requested{who} at {_iso(now)}.",
            "value": None,
            "labels": {"test": "true"},
            "started_at": _iso(now),
            "resolved_at": None,
            "url": "",
        },
    }


def send_test(
    channel: NotificationChannel, requested_by: str = "", timeout: float | None = None, now: dt.datetime | None = None
) -> Result:
    """Send a test message to ``channel`` now, outside the outbox; return how it went.

    A good test clears the channel's flag; a permanent refusal sets it.
    """
    now = now or timezone.now()
    probe = Delivery(channel=channel, event="test", payload=probe_payload(channel, requested_by, now))
    try:
        transport = transport_for(channel, timeout=timeout)
        result = transport.send(probe, probe.payload)
    except (NoTransport, UndecryptableSecret) as exc:
        result = Result.permanent(str(exc))
    if result.delivered:
        NotificationChannel.objects.filter(pk=channel.pk).update(flagged_at=None, flag_reason="")
    elif result.outcome is Outcome.PERMANENT:
        NotificationChannel.objects.filter(pk=channel.pk).update(flagged_at=now, flag_reason=result.error[:500])
    return result
