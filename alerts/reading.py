"""Where the rule evaluator reads: monitoring's series, in a constant number of queries per cycle.

:class:`DatabaseSource` is an :class:`alerts.rules.Source` that, before any rule is
evaluated, fills the cycle's :class:`~alerts.rules.EvaluationCache` for every
requirement of every rule at once:

* one query for the latest value of every series of every metric any rule reads
  (monitoring's latest-value cache on ``Series``, never the samples);
* raw samples for windows up to an hour, each series read once over the longest
  window it needs (rounded up to 1 m, 5 m, 15 m or 1 h: at most four queries);
* one read of minute rollups for windows up to a day and one of hour rollups beyond,
  at the longest window of their kind (:func:`monitoring.reads.window`);

each requirement cut to its own window by ``compute_window``. So a cycle costs at most
about a dozen queries, whatever the number of rules or series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from django.db import connection

from alerts.rules import EvaluationCache, Matcher, Requirement, Selector
from monitoring import reads
from monitoring.models import Sample, Series

#: A latest value older than this many of its series' intervals is stale: no value.
STALE_INTERVALS = 3
#: Above this many series of one metric, equality matchers go through a per-label index.
_INDEX_FROM = 32
_TICK = dt.timedelta(microseconds=1)
#: Seconds: raw windows are read in these lengths (a window is read at the first tier it fits).
_RAW_TIERS = (60, 300, 900, 3600)
#: Series ids in one ``IN (...)`` (SQLite accepts 32,766 parameters; the series cap is 20,000).
_IDS_PER_QUERY = 5000


def raw_samples(ids: Sequence[int], start: dt.datetime, end: dt.datetime) -> Iterator[tuple[int, dt.datetime, float]]:
    """Yield ``(series id, time, value)`` of the raw samples of ``ids`` with ``start < time <= end``.

    Read on a plain cursor, times as text (SQLite) or epoch seconds (PostgreSQL): the
    ORM's per-row converters parse every timestamp, most of the cost of reading tens of
    thousands of samples; here each distinct time is converted once (collectors stamp
    a whole batch alike). On PostgreSQL the ids travel as one array parameter, so the
    statement stays short whatever their number.
    """
    q = connection.ops.quote_name
    table, sid_column, ts = q(Sample._meta.db_table), q("series_id"), q("ts")
    low = connection.ops.adapt_datetimefield_value(start)
    high = connection.ops.adapt_datetimefield_value(end)
    postgres = connection.vendor == "postgresql"
    # Text or a number: neither goes through a datetime converter.
    column = f"date_part('epoch', {ts})" if postgres else f"{ts} || ''"
    seen: dict[Any, dt.datetime] = {}
    ids = list(ids)
    with connection.cursor() as cursor:
        for first in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[first : first + _IDS_PER_QUERY]
            params: list[Any]
            if postgres:
                where, params = f"{sid_column} = ANY(%s)", [chunk]
            else:
                where, params = f"{sid_column} IN ({', '.join(['%s'] * len(chunk))})", list(chunk)
            cursor.execute(
                f"SELECT {sid_column}, {column}, {q('value')} FROM {table} "  # noqa: S608
                f"WHERE {where} AND {ts} > %s AND {ts} <= %s",
                [*params, low, high],
            )
            while rows := cursor.fetchmany(5000):
                for sid, when, value in rows:
                    moment = seen.get(when)
                    if moment is None:
                        moment = seen[when] = _as_datetime(when)
                    yield sid, moment, value


def _as_datetime(value: Any) -> dt.datetime:
    """Return a stored time (epoch seconds, SQLite's text in UTC, or a datetime) as an aware datetime."""
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


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
        raw = window <= reads.RAW_WINDOW_LIMIT.total_seconds()
        if raw:
            points: dict[int, Any] = self._raw_points(wanted)
        else:
            # (now - window, now]: the evaluator's windows are left-open and include now.
            self.queries += 1
            start = self.now - dt.timedelta(seconds=window) + _TICK
            points = reads.window(ids, start, self.now + _TICK, now=self.now)
        for requirement, rows in wanted.items():
            cache.put_points(requirement, [(row.labels, points.get(row.id, ())) for row in rows])

    def _raw_points(self, wanted: Mapping[Requirement, list[_Row]]) -> dict[int, list[tuple[dt.datetime, float]]]:
        """Return raw ``(time, value)`` points per series, each series read over the longest window it needs.

        Series are grouped by that window rounded up to a few tiers, one query per tier,
        so a series only a 1-minute rule reads is not read for an hour.
        """
        needs: dict[int, int] = {}
        for requirement, rows in wanted.items():
            tier = next(t for t in _RAW_TIERS if (requirement.window or 0) <= t)
            for row in rows:
                needs[row.id] = max(needs.get(row.id, 0), tier)
        by_tier: dict[int, list[int]] = {}
        for sid, tier in needs.items():
            by_tier.setdefault(tier, []).append(sid)
        points: dict[int, list[tuple[dt.datetime, float]]] = {}
        for tier, ids in by_tier.items():
            self.queries += 1
            for sid, ts, value in raw_samples(ids, self.now - dt.timedelta(seconds=tier), self.now):
                points.setdefault(sid, []).append((ts, value))
        return points

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
        if end - start <= reads.RAW_WINDOW_LIMIT:
            raw: dict[int, list[tuple[dt.datetime, float]]] = {}
            for sid, ts, value in raw_samples([row.id for row in rows], start, end):
                raw.setdefault(sid, []).append((ts, value))
            return [(row.labels, raw.get(row.id, [])) for row in rows]
        points = reads.window([row.id for row in rows], start + _TICK, end + _TICK, now=self.now)
        return [(row.labels, points.get(row.id, [])) for row in rows]
