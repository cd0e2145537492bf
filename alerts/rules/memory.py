"""An in-memory :class:`~alerts.rules.evaluator.Source`: for tests, benchmarks and previews of sample data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

from alerts.rules.functions import Point
from alerts.rules.nodes import Matcher


class MemorySource:
    """Series held in a dict; ``latest`` is the newest point at or before ``now``.

    Counts the calls it answers (``reads``) so tests can check that a cycle reads each
    requirement once.
    """

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Point]] = {}
        self.reads = 0

    def add(
        self, name: str, labels: Mapping[str, str], points: Sequence[Point] | float, at: dt.datetime | None = None
    ) -> None:
        """Add points to a series; a bare number is one point at ``at`` (default ``now``)."""
        if isinstance(points, int | float):
            when = at or self.now
            if when is None:
                raise ValueError("a single value needs a time: pass at= or now=")
            points = [(when, float(points))]
        key = (name, tuple(sorted(labels.items())))
        self.series.setdefault(key, []).extend(points)
        self.series[key].sort()

    def _matching(self, name: str, matchers: Sequence[Matcher]) -> Iterator[tuple[dict[str, str], list[Point]]]:
        for (series_name, key), points in self.series.items():
            labels = dict(key)
            if series_name == name and all(m.matches(labels.get(m.label)) for m in matchers):
                yield labels, points

    def latest(self, name: str, matchers: Sequence[Matcher]) -> list[tuple[dict[str, str], float]]:
        self.reads += 1
        rows = []
        for labels, points in self._matching(name, matchers):
            past = [p for p in points if self.now is None or p[0] <= self.now]
            if past:
                rows.append((labels, past[-1][1]))
        return rows

    def window(
        self, name: str, matchers: Sequence[Matcher], start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dict[str, str], list[Point]]]:
        self.reads += 1
        return [
            (labels, [p for p in points if start <= p[0] <= end]) for labels, points in self._matching(name, matchers)
        ]
