"""The evaluation cycle: rules and thresholds in, alert transitions and their deliveries out.

One cycle (:func:`run`), single-flight across every worker and beat (DESIGN
"Claims are leases"):

1. **Claim** the ``evaluate`` :class:`~alerts.models.EvaluationLease` in a short
   transaction (the row locked with ``skip_locked`` on PostgreSQL, moved by a
   conditional UPDATE whose row count says who won; SQLite's IMMEDIATE transactions
   serialise claimers). A kick that finds the lease taken sets ``rerun_requested``.
2. **Read and evaluate** outside any transaction: every enabled rule is parsed (cached
   by text), planned together, and each distinct (selector, function, window) is read
   once for all of them (:mod:`alerts.reading`) — a constant number of queries per
   cycle. A rule that fails is logged, marked on the rule (``last_error``) and skipped;
   its alerts are left as they are. A metric without data is simply no result.
   Thresholds contribute the series ``monitoring.status`` holds at warning or critical
   (it already applies ``for`` and hysteresis; nothing here repeats that machine).
3. **Decide** each identity's step with :mod:`alerts.lifecycle` (pure), on a snapshot.
4. **Write** only what changed, in batches: each batch is one transaction that first
   renews the lease (so a cycle that lost it writes nothing), re-reads and locks the
   alerts it touches, decides again on the fresh rows, saves the alert (``post_save``
   feeds the live page), stores each transition and enqueues its deliveries to the
   rule's or threshold's channels in the same transaction (outbox), and kicks them
   after commit.
5. **Release** the lease; when a kick asked for it meanwhile, run again first.

A new sample whose series a rule reads kicks a cycle (:func:`on_samples_recorded`,
after commit); a threshold status change does too. Beat runs one every 10 s anyway.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from alerts import lifecycle, outbox
from alerts.lifecycle import Observation, Policy, Step
from alerts.models import Alert, AlertRule, AlertTransition, Delivery, EvaluationLease, NotificationChannel
from alerts.models.alerts import Severity
from alerts.reading import DatabaseSource
from alerts.rules import EvaluationCache, Expr, Requirement, Result, RuleError, Selector, parse, plan
from alerts.rules import evaluate as evaluate_expression
from alerts.signals import alert_changed

logger = logging.getLogger(__name__)


def _seconds(name: str, default: float) -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, name, default)))


LEASE_NAME = "evaluate"
#: How often beat starts a cycle (the seeded periodic task; operators may change it there).
INTERVAL = _seconds("ALERTS_EVALUATION_INTERVAL_SECONDS", 10)
#: How long a claim holds the cycle; renewed by every write batch. A worker that dies
#: mid-cycle blocks evaluation for at most this long.
LEASE = _seconds("ALERTS_EVALUATION_LEASE_SECONDS", 30)
#: Thresholds have no repeat interval of their own: a firing one is announced again this often.
THRESHOLD_REPEAT = _seconds("ALERTS_THRESHOLD_REPEAT_SECONDS", 4 * 3600)
#: Rounds one task runs at most when kicks keep asking for more (the next kick or tick goes on).
MAX_ROUNDS = 10
#: Alerts written per transaction: keeps the write lock short when many change at once.
WRITE_BATCH = 200
#: A kick older than this is dropped by the worker (a newer one or the next tick covers it).
KICK_EXPIRES = 30

State = Alert.State
Event = AlertTransition.Event
_FIRING_STATES = (State.FIRING, State.ACKNOWLEDGED)
#: Fields a cycle may change on an open alert without a transition.
_BOOKKEEPING = ("value", "last_true_at", "severity", "summary", "rule")
#: Fields the decision reads (the others stay deferred: fewer conversions per open alert).
_DECIDING = (
    "id",
    "source",
    "rule_id",
    "name",
    "fingerprint",
    "severity",
    "state",
    "summary",
    "value",
    "active_since",
    "fired_at",
    "last_true_at",
    "last_notified_at",
)
#: Fingerprints computed by this process, by name and labels (a JSON dump and a hash per alert add up).
_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}


class LeaseLost(Exception):
    """The lease expired and another evaluator took it: this cycle must write nothing more."""


# --- the lease --------------------------------------------------------------------------


def claim(owner: str, now: dt.datetime) -> bool:
    """Take the ``evaluate`` lease for ``owner`` when it is free or expired; return whether we got it."""
    for _ in range(2):
        with transaction.atomic():
            # Another claimer or the holder writing a batch has the row locked right now: it is busy.
            row = (
                EvaluationLease.objects.select_for_update(skip_locked=True)
                .filter(name=LEASE_NAME)
                .values_list("owner", "lease_until")
                .first()
            )
            if row is not None:
                # The UPDATE re-checks the lease: only one claimer moves the row.
                return bool(
                    EvaluationLease.objects.filter(name=LEASE_NAME)
                    .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
                    .update(owner=owner, lease_until=now + LEASE, rerun_requested=False, last_started_at=now)
                )
        if EvaluationLease.objects.filter(name=LEASE_NAME).exists():
            return False  # locked by someone else at this instant
        try:
            with transaction.atomic():
                EvaluationLease.objects.create(name=LEASE_NAME)
        except IntegrityError:
            pass  # created by a concurrent claimer
    return False


def request_rerun() -> None:
    """Ask the cycle that holds the lease (if any) to run once more before it releases it.

    Called before trying to claim, so a kick is never lost between a holder's last
    check and its release: either the holder sees the flag, or the lease is free by
    the time we try to claim it.
    """
    EvaluationLease.objects.filter(name=LEASE_NAME).update(rerun_requested=True)


def renew(owner: str, now: dt.datetime) -> None:
    """Extend ``owner``'s lease; raise :class:`LeaseLost` when it is no longer ours.

    Inside a write transaction this also locks the lease row until commit, so a
    claimer waiting on it sees the renewed lease.
    """
    if not EvaluationLease.objects.filter(name=LEASE_NAME, owner=owner).update(lease_until=now + LEASE):
        raise LeaseLost(owner)


def finish(owner: str, now: dt.datetime, duration_ms: float) -> bool:
    """Release ``owner``'s lease after a round; return True when a kick asked for another round.

    The release is conditional on no rerun being requested; when one was, the flag is
    cleared and the lease renewed instead, and the caller runs again.
    """
    with transaction.atomic():
        released = EvaluationLease.objects.filter(name=LEASE_NAME, owner=owner, rerun_requested=False).update(
            owner="", lease_until=None, last_finished_at=now, last_duration_ms=duration_ms
        )
        if released:
            return False
        return bool(
            EvaluationLease.objects.filter(name=LEASE_NAME, owner=owner).update(
                rerun_requested=False, lease_until=now + LEASE, last_finished_at=now, last_duration_ms=duration_ms
            )
        )


def abandon(owner: str) -> None:
    """Release ``owner``'s lease after a failure, so the next tick need not wait for it to expire."""
    EvaluationLease.objects.filter(name=LEASE_NAME, owner=owner).update(owner="", lease_until=None)


# --- one cycle ----------------------------------------------------------------------------


@dataclass
class Summary:
    """What a cycle did (a task returns its text)."""

    skipped: bool = False
    rounds: int = 0
    rules: int = 0
    failed_rules: int = 0
    requirements: int = 0
    series_results: int = 0
    transitions: int = 0
    deliveries: int = 0
    duration_ms: float = 0.0

    def __str__(self) -> str:
        if self.skipped:
            return "skipped: another evaluation holds the lease (a rerun was requested if this was a kick)"
        return (
            f"{self.rules} rules ({self.failed_rules} failed), {self.requirements} inputs read, "
            f"{self.series_results} true, {self.transitions} transitions, {self.deliveries} deliveries, "
            f"{self.rounds} round(s) in {self.duration_ms:.0f} ms"
        )


def run(now: dt.datetime | None = None, *, kick: bool = False, publish: bool = True) -> Summary:
    """Run one evaluation cycle if no other is running (and again while kicks ask for it).

    ``now`` fixes the clock for tests; by default each round reads the time. A
    ``kick`` that finds a cycle running asks it to run once more, and returns.
    """
    clock: Callable[[], dt.datetime] = (lambda: now) if now is not None else timezone.now
    owner = outbox.new_owner()
    if kick:
        request_rerun()
    if not claim(owner, clock()):
        return Summary(skipped=True)
    summary = Summary()
    rounds = 0
    try:
        while True:
            rounds += 1
            tick = time.monotonic()
            summary = Cycle(clock(), owner).run(publish=publish)
            summary.duration_ms = (time.monotonic() - tick) * 1000
            again = finish(owner, clock(), summary.duration_ms)
            if not again:
                break
            if rounds >= MAX_ROUNDS:
                logger.warning("evaluation: %d rounds in a row asked for; the next kick or tick goes on", rounds)
                abandon(owner)
                break
    except LeaseLost:
        logger.warning("evaluation: the lease expired mid-cycle and another evaluator took it; stopped writing")
    except BaseException:
        abandon(owner)
        raise
    summary.rounds = rounds
    return summary


class RuleRow:
    """What a cycle needs of one enabled rule: read as plain values (10,000 model instances cost too much)."""

    FIELDS = (
        "id",
        "name",
        "expr",
        "severity",
        "for_duration",
        "keep_firing_for",
        "repeat_interval",
        "labels",
        "summary",
        "last_error",
    )
    __slots__ = ("expr", "extra_labels", "last_error", "name", "pk", "policy", "severity", "summary")

    def __init__(
        self,
        pk: int,
        name: str,
        expr: str,
        severity: str,
        for_duration: dt.timedelta | None,
        keep_firing_for: dt.timedelta | None,
        repeat_interval: dt.timedelta | None,
        labels: Mapping[str, Any] | None,
        summary: str,
        last_error: str,
    ) -> None:
        self.pk = pk
        self.name = name
        self.expr = expr
        self.severity = severity
        self.policy = _policy(for_duration, keep_firing_for, repeat_interval)
        self.extra_labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.summary = summary
        self.last_error = last_error

    def target(self, result: Result) -> Target:
        """Return the identity and observation of one series the rule's expression returned."""
        labels = {**result.labels, **self.extra_labels} if self.extra_labels else result.labels
        return Target(
            source=Alert.Source.RULE,
            name=self.name,
            labels=labels,
            observation=Observation(
                value=result.value,
                severity=self.severity,
                summary=lifecycle.render_summary(self.summary, self.name, labels, result.value),
                cause=f"expression true (value {result.value:g})",
            ),
            policy=self.policy,
            rule_id=self.pk,
        )


@functools.lru_cache(maxsize=1024)
def _policy(
    for_duration: dt.timedelta | None, keep_firing_for: dt.timedelta | None, repeat_interval: dt.timedelta | None
) -> Policy:
    zero = dt.timedelta(0)
    return Policy(for_duration or zero, keep_firing_for or zero, repeat_interval or zero)


def rule_policy(rule: AlertRule | RuleRow) -> Policy:
    """Return the timings of ``rule``."""
    if isinstance(rule, RuleRow):
        return rule.policy
    return _policy(rule.for_duration, rule.keep_firing_for, rule.repeat_interval)


@dataclass
class Target:
    """One identity whose condition holds now, and what its alert is made of."""

    source: str
    name: str
    labels: dict[str, str]
    observation: Observation
    policy: Policy
    rule_id: int | None = None
    channel_names: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        prefix = "" if self.source == Alert.Source.RULE else f"{self.source}:"
        return _fingerprint(prefix + self.name, self.labels)


@dataclass
class Change:
    """An alert the cycle moves: the snapshot it decided on, and how to decide again on the fresh row."""

    alert: Alert
    steps: list[Step]
    target: Target | None
    policy: Policy
    ended: str = ""


@dataclass
class Bookkeeping:
    """Open alerts whose fields moved without a transition."""

    #: Only the value and ``last_true_at`` (the condition still holds): the common case.
    timed: list[Alert] = field(default_factory=list)
    #: Severity, summary or rule changed too (a rule was edited).
    edited: list[Alert] = field(default_factory=list)


@dataclass
class _Gone:
    """How an open alert whose condition no longer holds is closed."""

    policy: Policy
    ended: str


class Cycle:
    """One round of evaluation at a fixed ``now`` for the lease ``owner``."""

    def __init__(self, now: dt.datetime, owner: str) -> None:
        self.now = now
        self.owner = owner
        self.summary = Summary()
        self.rules: dict[int, RuleRow] = {}
        self.failed: dict[int, str] = {}
        self._rule_channels: dict[int, list[int]] | None = None
        self._channels: dict[int, NotificationChannel] | None = None

    def run(self, *, publish: bool = True) -> Summary:
        targets: dict[str, Target] = {}
        self.rule_targets(targets)
        thresholds_read = self.threshold_targets(targets)
        changes, bookkeeping = self.decide(targets, thresholds_read)
        self.write(changes, bookkeeping)
        self.store_rule_errors()
        if publish:
            publish_metrics(self.now)
        return self.summary

    # --- reading and evaluating -----------------------------------------------------

    def rule_targets(self, targets: dict[str, Target]) -> None:
        rows = AlertRule.objects.filter(enabled=True).order_by("id").values_list(*RuleRow.FIELDS)
        rules = [RuleRow(*row) for row in rows]
        self.rules = {rule.pk: rule for rule in rules}
        self.summary.rules = len(rules)
        parsed: dict[int, Expr] = {}
        requirements: dict[Requirement, None] = {}
        for rule in rules:
            try:
                parsed[rule.pk] = expr = parse(rule.expr)
            except RuleError as error:
                self.failed[rule.pk] = f"expression: {error}"
                continue
            requirements.update(dict.fromkeys(plan(expr).requirements))  # plan() is cached per tree
        cache = EvaluationCache(self.now)
        source = DatabaseSource(self.now)
        self.summary.requirements = len(requirements)
        source.prefetch(requirements, cache)
        for rule in rules:
            if rule.pk not in parsed:
                continue
            try:
                results = evaluate_expression(parsed[rule.pk], source, self.now, cache)
            except RuleError as error:
                self.failed[rule.pk] = str(error)
                continue
            except Exception as error:
                logger.exception("evaluation: rule %r raised; skipped this cycle", rule.name)
                self.failed[rule.pk] = f"evaluation failed ({type(error).__name__}: {error})"
                continue
            for result in results:
                target = rule.target(result)
                targets.setdefault(target.fingerprint, target)
                self.summary.series_results += 1
        self.summary.failed_rules = len(self.failed)
        for pk, message in self.failed.items():
            logger.warning("evaluation: rule %r skipped: %s", self.rules[pk].name, message)

    def threshold_targets(self, targets: dict[str, Target]) -> bool:
        """Add the series monitoring holds at warning or critical; return False when they could not be read."""
        from monitoring.models import Series, Threshold
        from monitoring.status import ThresholdIndex

        try:
            thresholds = {t.pk: t for t in Threshold.objects.filter(enabled=True)}
            index = ThresholdIndex(thresholds.values())
            breaching = Series.objects.filter(status__in=(Series.Status.WARNING, Series.Status.CRITICAL)).values_list(
                "name", "labels", "last_value", "status", "status_since"
            )
            for name, labels, value, status, since in breaching:
                threshold = thresholds.get(index.threshold_id_for(name, labels or {}) or 0)
                if threshold is None:
                    continue  # its threshold was disabled; monitoring clears the status at its next step
                limit = threshold.critical if status == Series.Status.CRITICAL else threshold.warning
                sign = "<=" if threshold.direction == Threshold.Direction.BELOW else ">="
                shown = "no value" if value is None else f"{value:g}"
                cause = f"{name} is {shown}, {status} at {sign} {limit:g}" if limit is not None else f"{name} {status}"
                target = Target(
                    source=Alert.Source.THRESHOLD,
                    name=str(threshold),
                    labels=dict(labels or {}),
                    observation=Observation(value=value, severity=status, summary=cause, since=since, cause=cause),
                    policy=Policy(repeat_interval=THRESHOLD_REPEAT),
                    channel_names=tuple(threshold.channels or ()),
                )
                targets.setdefault(target.fingerprint, target)
        except Exception:
            logger.exception("evaluation: thresholds could not be read; their alerts are left as they are")
            return False
        return True

    # --- deciding -------------------------------------------------------------------

    def decide(self, targets: Mapping[str, Target], thresholds_read: bool) -> tuple[list[Change], Bookkeeping]:
        """Return the alerts that take a transition and those whose fields only moved."""
        changes: list[Change] = []
        bookkeeping = Bookkeeping()
        open_alerts = {a.fingerprint: a for a in Alert.objects.exclude(state=State.RESOLVED).only(*_DECIDING)}
        for fingerprint, target in targets.items():
            alert = open_alerts.pop(fingerprint, None)
            if alert is None:
                new = Alert(
                    source=target.source,
                    rule_id=target.rule_id,
                    name=target.name[:300],
                    fingerprint=fingerprint,
                    labels=target.labels,
                )
                steps = lifecycle.start(new, target.observation, target.policy, self.now)
                changes.append(Change(new, steps, target, target.policy))
                continue
            # The instance is only a snapshot to decide on: the write re-reads the row.
            before = (alert.severity, alert.summary, alert.rule_id)
            moved = (alert.value, alert.last_true_at)
            steps = lifecycle.advance(alert, target.observation, target.policy, self.now)
            if target.rule_id is not None:
                alert.rule_id = target.rule_id  # the rule may have been re-created under the same name
            if steps:
                changes.append(Change(alert, steps, target, target.policy))
            elif before != (alert.severity, alert.summary, alert.rule_id):
                bookkeeping.edited.append(alert)
            elif moved != (alert.value, alert.last_true_at):
                bookkeeping.timed.append(alert)
        gone = self.gone_reasons(open_alerts.values(), thresholds_read)
        for alert in open_alerts.values():
            reason = gone.get(alert.pk)
            if reason is None:
                continue  # its source was not evaluated this cycle: leave it as it is
            steps = lifecycle.advance(alert, None, reason.policy, self.now, ended=reason.ended)
            if steps:
                changes.append(Change(alert, steps, None, reason.policy, reason.ended))
        return changes, bookkeeping

    def gone_reasons(self, alerts: Iterable[Alert], thresholds_read: bool) -> dict[int, _Gone]:
        """Return, per open alert whose condition no longer holds, its policy and why it ended."""
        reasons: dict[int, _Gone] = {}
        orphans: list[Alert] = []
        ruled: list[tuple[Alert, RuleRow]] = []
        for alert in alerts:
            if alert.source == Alert.Source.RULE:
                if alert.rule_id in self.failed:
                    continue
                rule = self.rules.get(alert.rule_id or 0)
                if rule is None:
                    orphans.append(alert)
                else:
                    ruled.append((alert, rule))
            elif alert.source == Alert.Source.THRESHOLD and thresholds_read:
                reasons[alert.pk] = _Gone(Policy(), "the series is no longer at warning or critical")
        if ruled:
            edited = dict(
                AlertRule.objects.filter(pk__in={rule.pk for _, rule in ruled}).values_list("pk", "updated_at")
            )
            for alert, rule in ruled:
                ended = "expression no longer true"
                if rule.name != alert.name:
                    ended = f"the rule was renamed to {rule.name!r}"
                elif edited.get(rule.pk) and edited[rule.pk] > alert.active_since:
                    ended = "expression (edited since the alert started) no longer true"
                reasons[alert.pk] = _Gone(rule.policy, ended)
        if orphans:
            disabled = set(
                AlertRule.objects.filter(pk__in={a.rule_id for a in orphans if a.rule_id}).values_list("pk", flat=True)
            )
            for alert in orphans:
                ended = "the rule was disabled" if alert.rule_id in disabled else "the rule was deleted"
                reasons[alert.pk] = _Gone(Policy(), ended)
        return reasons

    # --- writing --------------------------------------------------------------------

    def write(self, changes: list[Change], bookkeeping: Bookkeeping) -> None:
        for batch in _chunks(changes, WRITE_BATCH):
            self.write_batch(batch)
        if bookkeeping.timed or bookkeeping.edited:
            with transaction.atomic():
                renew(self.owner, self.now)
                write_values(bookkeeping.timed, self.now)
                Alert.objects.bulk_update(bookkeeping.edited, _BOOKKEEPING, batch_size=500)

    def write_batch(self, batch: list[Change]) -> None:
        with transaction.atomic():
            renew(self.owner, self.now)
            existing = [change.alert.pk for change in batch if change.alert.pk is not None]
            fresh = Alert.objects.select_for_update().in_bulk(existing) if existing else {}
            alerts: list[Alert] = []
            transitions: list[AlertTransition] = []
            deliveries: list[Delivery] = []
            for change in batch:
                if change.alert.pk is None:
                    alert, steps = change.alert, change.steps
                    try:
                        with transaction.atomic():
                            alert.save()
                    except IntegrityError:
                        logger.warning("evaluation: alert %s was opened by someone else meanwhile", alert.fingerprint)
                        continue
                else:
                    alert = fresh.get(change.alert.pk)
                    if alert is None:
                        continue
                    # Decide again on the locked row: it may have been acknowledged meanwhile.
                    obs = change.target.observation if change.target else None
                    steps = lifecycle.advance(alert, obs, change.policy, self.now, ended=change.ended)
                    if change.target is not None and change.target.rule_id is not None:
                        alert.rule_id = change.target.rule_id
                    if not steps:
                        continue
                    alert.save()
                alerts.append(alert)
                channels: list[NotificationChannel] | None = None
                for step in steps:
                    transition = AlertTransition.objects.create(
                        alert=alert,
                        event=step.event,
                        from_state=step.from_state,
                        to_state=step.to_state,
                        at=step.at,
                        value=step.value,
                        cause=step.cause[:500],
                    )
                    transitions.append(transition)
                    if step.announced:
                        if channels is None:
                            channels = self.channels_for(alert, change.target)
                        deliveries += outbox.enqueue(transition, channels, self.now)
            if transitions:
                alert_changed.send(sender=Alert, alerts=alerts, transitions=transitions)
            ids = [delivery.pk for delivery in deliveries]
            if ids:
                transaction.on_commit(partial(outbox.kick, ids))
        self.summary.transitions += len(transitions)
        self.summary.deliveries += len(deliveries)

    def channels_for(self, alert: Alert, target: Target | None) -> list[NotificationChannel]:
        """Return where ``alert``'s transitions go: its rule's or threshold's channels, nothing else.

        An alert whose rule or threshold is gone goes to the channels that were told it
        fired, so whoever heard "firing" also hears "resolved".
        """
        if self._channels is None:
            self._channels = {c.pk: c for c in NotificationChannel.objects.all()}
        if alert.source == Alert.Source.RULE and alert.rule_id in self.rules:
            if self._rule_channels is None:
                self._rule_channels = {}
                through = AlertRule.channels.through.objects.filter(alertrule_id__in=list(self.rules))
                for rule_id, channel_id in through.values_list("alertrule_id", "notificationchannel_id"):
                    self._rule_channels.setdefault(rule_id, []).append(channel_id)
            ids = self._rule_channels.get(alert.rule_id or 0, [])
            return [self._channels[pk] for pk in ids if pk in self._channels]
        if target is not None and target.source == Alert.Source.THRESHOLD:
            by_name = {c.name: c for c in self._channels.values()}
            missing = [name for name in target.channel_names if name not in by_name]
            if missing:
                logger.warning("threshold %s names unknown channel(s) %s", target.name, ", ".join(missing))
            return [by_name[name] for name in target.channel_names if name in by_name]
        told = Delivery.objects.filter(alert=alert).values_list("channel_id", flat=True).distinct()
        return [self._channels[pk] for pk in told if pk in self._channels]

    def store_rule_errors(self) -> None:
        """Mark rules that failed (and clear those that recovered); only rules whose error changed are written.

        "Failing since" is the first failure: a message that changes keeps it; recovery clears it.
        """
        started: list[AlertRule] = []
        changed: list[AlertRule] = []
        cleared: list[AlertRule] = []
        for pk, rule in self.rules.items():
            error = self.failed.get(pk, "")[:2000]
            if error == rule.last_error:
                continue
            row = AlertRule(pk=pk, last_error=error, last_error_at=self.now if error else None)
            (cleared if not error else changed if rule.last_error else started).append(row)
        if started or cleared:
            AlertRule.objects.bulk_update(started + cleared, ["last_error", "last_error_at"])
        if changed:
            AlertRule.objects.bulk_update(changed, ["last_error"])


def write_values(alerts: list[Alert], now: dt.datetime) -> None:
    """Store each alert's value and ``last_true_at = now``, in a statement or two whatever their number.

    Every cycle touches every firing alert this way; Django's ``bulk_update`` builds
    an expression object per row and field, which cost more than the evaluation itself.
    PostgreSQL gets ``UPDATE ... FROM unnest(ids, values)`` (two array parameters);
    SQLite one ``UPDATE ... CASE`` per 500 alerts.
    """
    q = connection.ops.quote_name
    table, pk, value, last_true = q(Alert._meta.db_table), q("id"), q("value"), q("last_true_at")
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if alerts:
                cursor.execute(
                    f"UPDATE {table} SET {last_true} = %s, {value} = v.value "  # noqa: S608
                    f"FROM unnest(%s::bigint[], %s::double precision[]) AS v(id, value) WHERE {table}.{pk} = v.id",
                    [stamp, [a.pk for a in alerts], [a.value for a in alerts]],
                )
            return
        for first in range(0, len(alerts), 500):
            chunk = alerts[first : first + 500]
            known = [a for a in chunk if a.value is not None]
            cases = " ".join(["WHEN %s THEN %s"] * len(known))
            new_value = f"CASE {pk} {cases} ELSE NULL END" if known else "NULL"
            cursor.execute(
                f"UPDATE {table} SET {last_true} = %s, {value} = {new_value} "  # noqa: S608
                f"WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})",
                [stamp, *(x for a in known for x in (a.pk, a.value)), *(a.pk for a in chunk)],
            )


def _fingerprint(name: str, labels: Mapping[str, str]) -> str:
    key = (name, tuple(sorted(labels.items())))
    found = _FINGERPRINTS.get(key)
    if found is None:
        if len(_FINGERPRINTS) > 100_000:
            _FINGERPRINTS.clear()
        found = _FINGERPRINTS[key] = lifecycle.fingerprint(name, labels)
    return found


def _chunks(items: list[Change], size: int) -> Iterator[list[Change]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- previews and metrics -------------------------------------------------------------------


def preview(text: str, now: dt.datetime | None = None) -> list[Result]:
    """Return what ``text`` evaluates to right now (raises ``RuleError`` for a bad expression)."""
    now = now or timezone.now()
    expr = parse(text)
    cache = EvaluationCache(now)
    source = DatabaseSource(now)
    source.prefetch(plan(expr).requirements, cache)
    return evaluate_expression(expr, source, now, cache)


#: True while the engine records its own series, so that write does not kick another cycle.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("alerts_engine_publishing", default=False)
_published: dict[str, Any] = {"at": 0.0, "counts": None}
_published_lock = threading.Lock()
#: Seconds between two recordings of unchanged ``alerts_firing`` values (a kick storm is not a sample storm).
PUBLISH_EVERY = 5.0


def firing_counts() -> dict[str, int]:
    """Return the number of firing (or acknowledged) alerts per severity, every severity present."""
    counts = dict.fromkeys(Severity.values, 0)
    rows = Alert.objects.filter(state__in=_FIRING_STATES).values_list("severity").annotate(n=Count("id")).order_by()
    for severity, n in rows:
        counts[severity] = n
    return counts


def publish_metrics(now: dt.datetime, *, force: bool = False) -> bool:
    """Record ``alerts_firing{severity}``; skipped when unchanged and recorded less than 5 s ago."""
    from monitoring.storage import Reading, record

    counts = firing_counts()
    with _published_lock:
        fresh = time.monotonic() - _published["at"] < PUBLISH_EVERY
        if not force and fresh and _published["counts"] == counts:
            return False
        _published.update(at=time.monotonic(), counts=counts)
    token = _publishing.set(True)
    try:
        result = record([Reading("alerts_firing", n, {"severity": s}, ts=now) for s, n in counts.items()], now=now)
    except Exception:
        logger.warning("could not record alerts_firing", exc_info=True)
        return False
    finally:
        _publishing.reset(token)
    for index, reason in result.rejected:
        logger.warning("alerts_firing sample %d not recorded: %s", index, reason)
    return True


# --- kicks ------------------------------------------------------------------------------------

#: Seconds the selectors of the enabled rules are remembered by a process (saving a rule forgets them).
WATCH_TTL = 2.0
_watch: dict[str, Any] = {"at": -WATCH_TTL, "selectors": {}}
_watch_lock = threading.Lock()


def watched_selectors() -> dict[str, list[Selector]]:
    """Return the selectors the enabled rules read, by metric name (cached for a moment)."""
    with _watch_lock:
        if time.monotonic() - _watch["at"] < WATCH_TTL:
            return _watch["selectors"]  # type: ignore[no-any-return]
    selectors: dict[str, set[Selector]] = {}
    for text in AlertRule.objects.filter(enabled=True).values_list("expr", flat=True):
        try:
            requirements = plan(parse(text)).requirements
        except RuleError:
            continue
        for requirement in requirements:
            selectors.setdefault(requirement.selector.name, set()).add(requirement.selector)
    result = {name: list(items) for name, items in selectors.items()}
    with _watch_lock:
        _watch.update(at=time.monotonic(), selectors=result)
    return result


def forget_watched_selectors(**kwargs: Any) -> None:
    """Drop this process's cached selectors (a rule was saved or deleted here)."""
    with _watch_lock:
        _watch["at"] = -WATCH_TTL


def kick() -> None:
    """Ask a worker to run a cycle now (coalesced by the lease); never raises."""
    from alerts.tasks import evaluate

    try:
        evaluate.apply_async(kwargs={"kick": True}, expires=KICK_EXPIRES)
    except Exception:
        logger.warning("could not kick an evaluation; the periodic one will run", exc_info=True)


class _SeriesNames:
    """Per-process memory of each series id's metric name and labels (they never change).

    So a sample of a known series costs no query to tell whether a rule reads it.
    """

    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._known: dict[int, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def of(self, ids: Iterable[int]) -> list[tuple[str, dict[str, str]]]:
        from monitoring.models import Series

        ids = list(ids)
        with self._lock:
            unknown = [i for i in ids if i not in self._known]
        if unknown:
            rows = Series.objects.filter(id__in=unknown).values_list("id", "name", "labels")
            found = {sid: (name, labels or {}) for sid, name, labels in rows}
            with self._lock:
                if len(self._known) + len(found) > self.MAX_ENTRIES:
                    self._known.clear()
                self._known.update(found)  # ids not found (rolled back) are asked again next time
        with self._lock:
            return [self._known[i] for i in ids if i in self._known]

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


series_names = _SeriesNames()


def kick_for_series(series_ids: Iterable[int]) -> bool:
    """Kick a cycle when a rule reads any of these series; return whether one was kicked."""
    try:
        watched = watched_selectors()
        if not watched:
            return False
        rows = series_names.of(series_ids)
        if not any(s.matches(name, labels) for name, labels in rows for s in watched.get(name, ())):
            return False
    except Exception:
        logger.warning("could not tell whether new samples concern a rule", exc_info=True)
        return False
    kick()
    return True


def on_samples_recorded(sender: Any, latest: Mapping[int, Any], **kwargs: Any) -> None:
    """``monitoring.events.samples_recorded``: after commit, kick a cycle if a rule reads these series."""
    if _publishing.get() or not latest:
        return
    transaction.on_commit(partial(kick_for_series, list(latest)))


def on_status_changed(sender: Any, series_ids: list[int], **kwargs: Any) -> None:
    """``monitoring.events.status_changed``: a threshold status moved, announce it without waiting for the tick."""
    transaction.on_commit(kick)


def connect_signals() -> None:
    """Connect the kick receivers (``AlertsConfig.ready``; dispatch uids make it idempotent)."""
    from django.db.models.signals import post_delete, post_save

    from monitoring.events import samples_recorded, status_changed

    samples_recorded.connect(on_samples_recorded, weak=False, dispatch_uid="alerts.engine.samples_recorded")
    status_changed.connect(on_status_changed, weak=False, dispatch_uid="alerts.engine.status_changed")
    post_save.connect(forget_watched_selectors, sender=AlertRule, weak=False, dispatch_uid="alerts.engine.rule_saved")
    post_delete.connect(
        forget_watched_selectors, sender=AlertRule, weak=False, dispatch_uid="alerts.engine.rule_deleted"
    )
