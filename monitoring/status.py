"""The status of every series against the thresholds, and the portal's overall status.

Each series is healthy, warning or critical by the most specific enabled threshold
that covers it (metric equal, threshold labels a subset of the series' labels, the one
with the most labels wins); unknown while it has no data; stale when no sample came
for three of its intervals. A series no threshold covers is healthy while fresh.

The rules, one step at a time (:func:`step`, pure, driven by tests with fixed ``now``):

* A breach is the value at or beyond ``warning``/``critical`` in the threshold's
  direction (``>=`` for above, ``<=`` for below).
* Getting worse waits for ``for_duration``: the worse level must hold that long
  (``breach_level``/``breach_since`` remember the pending level and since when). A value
  that jumps from warning to critical while warning is still pending keeps the warning
  pending; critical's own wait starts when warning is confirmed, so a short spike never
  skips the wait (critical may come up to one ``for_duration`` later than the spike).
* Getting better is immediate, except that with ``clear`` (hysteresis) a warning or
  critical series becomes healthy only once its value is back past ``clear``; until then
  it shows warning (or critical, for a threshold without a warning level).
* Stale and unknown forget any pending breach; when samples return, the wait starts over.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from monitoring.events import status_changed
from monitoring.models import Series, Threshold

logger = logging.getLogger(__name__)

HEALTHY = Series.Status.HEALTHY.value
WARNING = Series.Status.WARNING.value
CRITICAL = Series.Status.CRITICAL.value
UNKNOWN = Series.Status.UNKNOWN.value
STALE = Series.Status.STALE.value

#: Worst last. Not knowing (unknown, stale) is worse than healthy and better than a
#: known breach: the overall status says "critical" first when something is.
SEVERITY = {HEALTHY: 0, UNKNOWN: 1, STALE: 2, WARNING: 3, CRITICAL: 4}
_LEVEL_RANK = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}
#: A series with no sample for this many intervals is stale.
STALE_INTERVALS = 3


@dataclass(frozen=True)
class Rule:
    """What :func:`step` needs of a threshold (a plain value, so tests need no database)."""

    warning: float | None = None
    critical: float | None = None
    direction: str = Threshold.Direction.ABOVE
    for_duration: dt.timedelta = dt.timedelta(0)
    clear: float | None = None

    @classmethod
    def of(cls, threshold: Threshold) -> Rule:
        return cls(
            warning=threshold.warning,
            critical=threshold.critical,
            direction=threshold.direction,
            for_duration=threshold.for_duration or dt.timedelta(0),
            clear=threshold.clear,
        )

    def beyond(self, value: float, level: float | None) -> bool:
        """Return whether ``value`` is at or beyond ``level`` in the bad direction."""
        if level is None:
            return False
        return value <= level if self.direction == Threshold.Direction.BELOW else value >= level

    def cleared(self, value: float) -> bool:
        """Return whether ``value`` is back past ``clear`` (always, without hysteresis)."""
        if self.clear is None:
            return True
        return value >= self.clear if self.direction == Threshold.Direction.BELOW else value <= self.clear

    def level(self, value: float, current: str) -> str:
        """Return the level ``value`` shows, given the confirmed status ``current``."""
        if self.beyond(value, self.critical):
            return CRITICAL
        if self.beyond(value, self.warning):
            return WARNING
        if current in (WARNING, CRITICAL) and not self.cleared(value):
            # Hysteresis: held at the mildest breach level this threshold has.
            return WARNING if self.warning is not None else CRITICAL
        return HEALTHY


@dataclass(frozen=True)
class State:
    """A series' status memory, as stored on :class:`~monitoring.models.Series`."""

    status: str = UNKNOWN
    status_since: dt.datetime | None = None
    breach_level: str = ""
    breach_since: dt.datetime | None = None

    @classmethod
    def of(cls, series: Series) -> State:
        return cls(series.status, series.status_since, series.breach_level or "", series.breach_since)


def step(
    state: State,
    *,
    value: float | None,
    at: dt.datetime | None,
    interval_seconds: int,
    rule: Rule | None,
    now: dt.datetime,
) -> State:
    """Return the state after one evaluation at ``now`` of a series whose latest sample is ``value`` at ``at``."""
    if value is None or at is None:
        return _become(state, UNKNOWN, now)
    if now - at > dt.timedelta(seconds=STALE_INTERVALS * max(1, interval_seconds)):
        return _become(state, STALE, now)
    current = state.status if state.status in _LEVEL_RANK else HEALTHY
    level = rule.level(value, current) if rule is not None else HEALTHY
    if _LEVEL_RANK[level] <= _LEVEL_RANK[current]:
        # Better or the same: immediate (hysteresis is already in ``level``).
        return _become(state, level, now)

    # Worse: the new level must hold for ``for_duration``.
    assert rule is not None
    pending, since = state.breach_level, state.breach_since
    if pending not in _LEVEL_RANK or _LEVEL_RANK[pending] <= _LEVEL_RANK[current] or since is None:
        pending, since = level, now
    elif _LEVEL_RANK[level] < _LEVEL_RANK[pending]:
        # Critical pending, value back to warning: warning has held since the same time.
        pending = level
    if now - since >= rule.for_duration:
        confirmed = _become(state, pending, now)
        if _LEVEL_RANK[level] > _LEVEL_RANK[pending]:
            # Warning confirmed while the value is already critical: critical's wait starts now.
            return State(confirmed.status, confirmed.status_since, level, now)
        return confirmed
    # While a breach waits, a series that had no status yet shows its level of now.
    shown = _become(state, current, now)
    return State(shown.status, shown.status_since, pending, since)


def _become(state: State, status: str, now: dt.datetime) -> State:
    """Return ``state`` with ``status`` (since ``now`` when it changed) and no pending breach."""
    since = state.status_since if state.status == status and state.status_since else now
    return State(status, since, "", None)


# --- choosing the threshold -------------------------------------------------------


class ThresholdIndex:
    """The enabled thresholds by metric, most specific first, for fast matching."""

    def __init__(self, thresholds: Iterable[Threshold]) -> None:
        by_metric: dict[str, list[tuple[dict[str, str], Rule, int | None]]] = {}
        ordered = sorted(thresholds, key=lambda t: (-len(t.labels or {}), t.labels_key, t.pk or 0))
        for threshold in ordered:
            entry = (dict(threshold.labels or {}), Rule.of(threshold), threshold.pk)
            by_metric.setdefault(threshold.metric, []).append(entry)
        self._by_metric = by_metric

    @classmethod
    def load(cls) -> ThresholdIndex:
        return cls(Threshold.objects.filter(enabled=True))

    def _match(self, metric: str, labels: Mapping[str, str]) -> tuple[Rule, int | None] | None:
        for match, rule, pk in self._by_metric.get(metric, ()):
            if all(labels.get(key) == value for key, value in match.items()):
                return rule, pk
        return None

    def rule_for(self, metric: str, labels: Mapping[str, str]) -> Rule | None:
        """Return the rule of the most specific threshold covering the series, if any.

        Among equally specific thresholds the one whose labels sort first decides, so
        the choice never depends on the order rows come back in.
        """
        found = self._match(metric, labels)
        return found[0] if found else None

    def threshold_id_for(self, metric: str, labels: Mapping[str, str]) -> int | None:
        """Return the id of the threshold that decides the series, if any."""
        found = self._match(metric, labels)
        return found[1] if found else None


# --- evaluating every series ------------------------------------------------------

_FIELDS = ("status", "status_since", "breach_level", "breach_since")


@dataclass
class Summary:
    series: int = 0
    changed: int = 0

    def __str__(self) -> str:
        return f"evaluated {self.series} series, {self.changed} changed status"


def evaluate(now: dt.datetime | None = None) -> Summary:
    """Step every series once and store the states that changed.

    Two reads (thresholds, series) and one bulk update per 500 changed series, whatever
    the number of series. Only the status fields are written, so a sample recorded
    meanwhile (``last_value``/``last_at``) is never overwritten; two overlapping runs
    compute the same states from the same rows.
    """
    now = now or timezone.now()
    index = ThresholdIndex.load()
    summary = Summary()
    changed: list[Series] = []
    rows = Series.objects.only("id", "name", "labels", "interval_seconds", "last_value", "last_at", *_FIELDS).iterator(
        chunk_size=2000
    )
    for series in rows:
        summary.series += 1
        before = State.of(series)
        after = step(
            before,
            value=series.last_value,
            at=series.last_at,
            interval_seconds=series.interval_seconds,
            rule=index.rule_for(series.name, series.labels or {}),
            now=now,
        )
        if after != before:
            for name in _FIELDS:
                setattr(series, name, getattr(after, name))
            changed.append(series)
    if changed:
        with transaction.atomic():
            Series.objects.bulk_update(changed, _FIELDS, batch_size=500)
            status_changed.send(sender=Series, series_ids=[series.pk for series in changed])
    summary.changed = len(changed)
    return summary


def worst(statuses: Iterable[str]) -> str:
    """Return the worst of ``statuses``; unknown when there are none."""
    return max(statuses, key=lambda s: SEVERITY.get(s, SEVERITY[UNKNOWN]), default=UNKNOWN)


def overall_status() -> str:
    """Return the portal's overall status: the worst status of any series (one query)."""
    return worst(Series.objects.values_list("status", flat=True).distinct())


def status_counts() -> dict[str, int]:
    """Return how many series have each status (every status present, zero or more)."""
    counts = dict.fromkeys(SEVERITY, 0)
    for status, count in Series.objects.values_list("status").annotate(n=Count("id")).order_by():
        counts[status] = count
    return counts
