"""The life of one alert, one evaluation at a time: pending → firing → resolved.

Pure functions over an :class:`~alerts.models.Alert` instance (no query, no save), so
the engine can decide on a snapshot, then decide again on the locked row inside the
write transaction, and tests can drive it with a fixed ``now``.

* A condition that starts holding opens an alert: ``pending`` while ``for`` has not
  elapsed, ``firing`` (announced) once it has — at once for ``for: 0s``.
* A pending alert whose condition stops before ``for`` elapsed is resolved quietly:
  it was never announced, so nobody is told it ended.
* A firing alert whose condition stops stays firing for ``keep_firing_for`` after the
  condition was last true (flapping is damped), then resolves with a notice.
* A firing alert is announced again every ``repeat_interval`` (0: never). An
  acknowledged one is not (the acknowledgement is the answer).
* A severity that rises while firing is announced; one that falls is recorded only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from alerts.models import Alert, AlertTransition

Event = AlertTransition.Event
State = Alert.State

#: Severity order, mildest first.
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2, "emergency": 3}
OPEN_STATES = (State.PENDING, State.FIRING, State.ACKNOWLEDGED)


@dataclass(frozen=True)
class Policy:
    """The timings of the rule or threshold an alert comes from."""

    for_duration: dt.timedelta = dt.timedelta(0)
    keep_firing_for: dt.timedelta = dt.timedelta(0)
    repeat_interval: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class Observation:
    """What one evaluation saw for one identity whose condition holds now."""

    value: float | None
    severity: str
    summary: str = ""
    #: Since when the condition holds, when the source knows (a threshold's status); else now.
    since: dt.datetime | None = None
    #: Why the condition holds, in words (e.g. "value 93.5 >= critical 85").
    cause: str = ""


@dataclass(frozen=True)
class Step:
    """One transition to store: the event, the states, the value and why."""

    event: str
    from_state: str
    to_state: str
    at: dt.datetime
    value: float | None
    cause: str

    @property
    def announced(self) -> bool:
        """Return whether the transition is sent to the alert's channels."""
        if self.event == Event.RESOLVED:
            return self.from_state != State.PENDING
        return self.event in (Event.FIRING, Event.REPEAT)


def fingerprint(name: str, labels: Mapping[str, str]) -> str:
    """Return the identity of an alert: sha256 of its name and canonical labels."""
    canonical = json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{name}\x00{canonical}".encode()).hexdigest()


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def describe(delta: dt.timedelta) -> str:
    """Return a duration as operators write it (``2m``, ``1h30m``, ``0s``)."""
    from monitoring.durations import format_duration

    return format_duration(delta)


def start(alert: Alert, observation: Observation, policy: Policy, now: dt.datetime) -> list[Step]:
    """Open ``alert`` (new, unsaved, with its identity set) for a condition that holds now."""
    alert.severity = observation.severity
    alert.summary = observation.summary[:500]
    alert.value = _finite(observation.value)
    alert.active_since = min(observation.since or now, now)
    alert.last_true_at = now
    alert.state = State.PENDING
    held = now - alert.active_since
    if held >= policy.for_duration:
        return [_fire(alert, "", observation, policy, now)]
    cause = f"{observation.cause or 'condition true'}; fires after for {describe(policy.for_duration)}"
    return [Step(Event.PENDING, "", State.PENDING, now, alert.value, cause)]


def advance(
    alert: Alert,
    observation: Observation | None,
    policy: Policy,
    now: dt.datetime,
    *,
    ended: str = "condition no longer true",
) -> list[Step]:
    """Move an open ``alert`` along at ``now``; ``observation`` is None when its condition does not hold.

    ``ended`` says why the condition does not hold, for the transition's cause.
    Returns the transitions to store (often none: the alert's value and
    ``last_true_at`` may still have changed).
    """
    if alert.state not in OPEN_STATES:
        return []
    if observation is None:
        return _ended(alert, policy, now, ended)
    alert.value = _finite(observation.value)
    alert.last_true_at = now
    steps: list[Step] = []
    if alert.state == State.PENDING:
        if now - alert.active_since >= policy.for_duration:
            alert.severity = observation.severity
            steps.append(_fire(alert, State.PENDING, observation, policy, now))
        else:
            alert.severity = observation.severity
            alert.summary = observation.summary[:500] or alert.summary
        return steps
    before = alert.severity
    if observation.severity != before:
        alert.severity = observation.severity
        rose = SEVERITY_RANK.get(observation.severity, 0) > SEVERITY_RANK.get(before, 0)
        cause = f"severity {'rose' if rose else 'fell'} from {before} to {observation.severity}"
        if observation.cause:
            cause += f": {observation.cause}"
        if rose and alert.state == State.FIRING:
            alert.summary = observation.summary[:500] or alert.summary
            alert.last_notified_at = now
            return [Step(Event.FIRING, State.FIRING, State.FIRING, now, alert.value, cause)]
        steps.append(Step(Event.CHANGED, alert.state, alert.state, now, alert.value, cause))
    if alert.state == State.FIRING and policy.repeat_interval > dt.timedelta(0):
        last = alert.last_notified_at or alert.fired_at or alert.active_since
        if now - last >= policy.repeat_interval:
            alert.summary = observation.summary[:500] or alert.summary
            alert.last_notified_at = now
            cause = f"still firing after repeat interval {describe(policy.repeat_interval)}"
            steps.append(Step(Event.REPEAT, State.FIRING, State.FIRING, now, alert.value, cause))
    return steps


def _fire(alert: Alert, from_state: str, observation: Observation, policy: Policy, now: dt.datetime) -> Step:
    alert.state = State.FIRING
    alert.fired_at = now
    alert.last_notified_at = now
    alert.summary = observation.summary[:500] or alert.summary
    held = describe(now - alert.active_since)
    cause = observation.cause or "condition true"
    if policy.for_duration > dt.timedelta(0):
        cause = f"{cause} for {held} (for {describe(policy.for_duration)})"
    return Step(Event.FIRING, from_state, State.FIRING, now, alert.value, cause)


def _ended(alert: Alert, policy: Policy, now: dt.datetime, why: str) -> list[Step]:
    if alert.state == State.PENDING:
        cause = f"{why} before for {describe(policy.for_duration)} elapsed; never announced"
        return [_resolve(alert, now, cause)]
    last_true = alert.last_true_at or alert.active_since
    if policy.keep_firing_for > dt.timedelta(0) and now - last_true < policy.keep_firing_for:
        return []  # damped: stays open while the keep-firing period runs
    cause = why
    if policy.keep_firing_for > dt.timedelta(0):
        cause = f"{why} for {describe(now - last_true)} (keep firing for {describe(policy.keep_firing_for)})"
    return [_resolve(alert, now, cause)]


def _resolve(alert: Alert, now: dt.datetime, cause: str) -> Step:
    before = alert.state
    alert.state = State.RESOLVED
    alert.resolved_at = now
    alert.next_escalation_at = None
    return Step(Event.RESOLVED, before, State.RESOLVED, now, alert.value, cause)


# --- summaries ------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*\$?(value|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")


def render_summary(template: str, name: str, labels: Mapping[str, str], value: float | None) -> str:
    """Return a rule's summary with ``{{ $value }}`` and ``{{ $labels.NAME }}`` filled in.

    Plain text substitution only (no expressions). An empty template gives
    ``"NAME on host=web-1, mount=/: 93.5"``.
    """
    shown = "no value" if value is None else f"{value:g}"
    if not template:
        where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return f"{name} on {where}: {shown}" if where else f"{name}: {shown}"

    def fill(match: re.Match[str]) -> str:
        if match.group(1) == "value":
            return shown
        return str(labels.get(match.group(2), ""))

    return _PLACEHOLDER.sub(fill, template)
