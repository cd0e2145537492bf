"""Where the rule evaluator reads: monitoring's series, in a constant number of queries per cycle.

:class:`DatabaseSource` is an :class:`alerts.rules.Source` that, before any rule is
evaluated, fills the cycle's :class:`~alerts.rules.EvaluationCache` for every
requirement of every rule at once:

* one query for the latest value of every series of every metric any rule reads
  (monitoring's latest-value cache on ``Series``, never the samples);
* one read of raw samples for every window up to an hour, one of minute rollups for
  windows up to a day, one of hour rollups beyond: each at the longest window of its
  kind, each requirement cut to its own window by ``compute_window``.

So a cycle costs at most about ten queries, whatever the number of rules or series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alerts.rules import EvaluationCache, Matcher, Requirement, Selector
from monitoring import reads
from monitoring.models import Series

#: A latest value older than this many of its series' intervals is stale: no value.
STALE_INTERVALS = 3
#: Above this many series of one metric, equality matchers go through a per-label index.
_INDEX_FROM = 32
_TICK = dt.timedelta(microseconds=1)


def _resolution_class(window: int) -> int:
    """Return 0 for windows read from raw samples, 1 for minute rollups, 2 for hour rollups."""
    if window <= reads.RAW_WINDOW_LIMIT.total_seconds():
        return 0
    return 1 if window <= reads.MINUTE_WINDOW_LIMIT.total_seconds() else 2


class _Row:
    __slots__ = ("at", "id", "interval", "labels", "value")

    def __init__(self, sid: int, labels: dict[str, str], value: float | None, at: dt.datetime | None, interval: int):
        self.id = sid
        self.labels = labels
        self.value = value
        self.at = at
        self.interval = interval


class DatabaseSource:
    """Series of ``monitoring`` as the evaluator's source, at one ``now``."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self._by_name: dict[str, list[_Row]] = {}
        self._loaded: set[str] = set()
        self._index: dict[tuple[str, str], dict[str, list[_Row]]] = {}
        #: Queries this source ran (for the figures; the engine's own are counted elsewhere).
        self.queries = 0

    # --- bulk reading ---------------------------------------------------------------

    def prefetch(self, requirements: Iterable[Requirement], cache: EvaluationCache) -> None:
        """Read every requirement in bulk and store it in ``cache``."""
        requirements = list(requirements)
        self._load({r.selector.name for r in requirements})
        # Windows by the resolution monitoring reads them at; each class is read once, at its longest.
        classes: dict[int, list[Requirement]] = {}
        for r in requirements:
            if r.window is None:
                cache.put(r, self._latest_rows(r.selector))
            else:
                classes.setdefault(_resolution_class(r.window), []).append(r)
        for group in classes.values():
            self._fill_windows(group, cache, max(r.window or 0 for r in group))

    def _load(self, names: set[str]) -> None:
        missing = sorted(names - self._loaded)
        if not missing:
            return
        self.queries += 1
        rows = Series.objects.filter(name__in=missing).values_list(
            "id", "name", "labels", "last_value", "last_at", "interval_seconds"
        )
        for sid, name, labels, value, at, interval in rows:
            self._by_name.setdefault(name, []).append(_Row(sid, labels or {}, value, at, interval or 10))
        self._loaded.update(missing)

    def candidates(self, selector: Selector) -> list[_Row]:
        """Return the series of ``selector``'s metric, narrowed by one equality matcher when many.

        The cache checks every matcher again, so a superset is fine.
        """
        rows = self._by_name.get(selector.name, [])
        if len(rows) <= _INDEX_FROM:
            return rows
        for matcher in selector.matchers:
            if matcher.op == "=":
                index = self._index.get((selector.name, matcher.label))
                if index is None:
                    index = {}
                    for row in rows:
                        index.setdefault(row.labels.get(matcher.label, ""), []).append(row)
                    self._index[(selector.name, matcher.label)] = index
                return index.get(matcher.value, [])
        return rows

    def _fresh(self, row: _Row) -> float | None:
        if row.value is None or row.at is None:
            return None
        if self.now - row.at > dt.timedelta(seconds=STALE_INTERVALS * max(1, row.interval)):
            return None
        return row.value

    def _latest_rows(self, selector: Selector) -> list[tuple[Mapping[str, str], float | None]]:
        return [(row.labels, self._fresh(row)) for row in self.candidates(selector)]

    def _fill_windows(self, requirements: Sequence[Requirement], cache: EvaluationCache, window: int) -> None:
        """Read ``window`` seconds up to ``now`` for the series of ``requirements`` once; fill each."""
        wanted: dict[Requirement, list[_Row]] = {r: self.candidates(r.selector) for r in requirements}
        ids = {row.id for rows in wanted.values() for row in rows}
        if not ids:
            for r in requirements:
                cache.put(r, [])
            return
        # (now - window, now]: the evaluator's windows are left-open and include now.
        self.queries += 1
        points = reads.window(ids, self.now - dt.timedelta(seconds=window) + _TICK, self.now + _TICK, now=self.now)
        raw = window <= reads.RAW_WINDOW_LIMIT.total_seconds()
        pairs: dict[int, Any] = {}
        for requirement, rows in wanted.items():
            series = []
            for row in rows:
                if raw:
                    # Raw readings as (time, value): compute_window cuts each requirement to its window.
                    if row.id not in pairs:
                        pairs[row.id] = [(p.t, p.last) for p in points.get(row.id, ())]
                    series.append((row.labels, pairs[row.id]))
                else:
                    series.append((row.labels, points.get(row.id, [])))
            cache.put_points(requirement, series)

    # --- the Source protocol (previews, and anything the prefetch did not cover) -----

    def latest(self, name: str, matchers: Sequence[Matcher]) -> list[tuple[Mapping[str, str], float | None]]:
        self._load({name})
        return self._latest_rows(Selector(name, tuple(matchers)))

    def window(
        self, name: str, matchers: Sequence[Matcher], start: dt.datetime, end: dt.datetime
    ) -> list[tuple[Mapping[str, str], Any]]:
        self._load({name})
        rows = self.candidates(Selector(name, tuple(matchers)))
        if not rows:
            return []
        self.queries += 1
        points = reads.window([row.id for row in rows], start + _TICK, end + _TICK, now=self.now)
        raw = end - start <= reads.RAW_WINDOW_LIMIT
        return [
            (row.labels, [(p.t, p.last) for p in points.get(row.id, ())] if raw else points.get(row.id, []))
            for row in rows
        ]
