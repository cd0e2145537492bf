"""Evaluate a syntax tree against a data source at a fixed ``now``.

Values inside the evaluator are either a plain float (a number) or a *vector*: a dict
from a label set (sorted tuple of pairs, metric name excluded) to ``(value, name)``,
where ``name`` is the metric name while it still applies (selectors and comparisons
keep it; arithmetic, functions and aggregations drop it). "No value" — a false
number comparison, a division by zero — is the empty vector, and it propagates.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerts.rules.errors import RuleEvaluationError
from alerts.rules.functions import ARITHMETIC, COMPARISON, Bucket, Point, aggregate, compute_window
from alerts.rules.nodes import (
    Aggregation,
    BinaryOp,
    Expr,
    Matcher,
    Negation,
    Not,
    NumberLiteral,
    RangeFunction,
    Selector,
    VectorMatching,
)
from alerts.rules.plan import Requirement

LabelKey = tuple[tuple[str, str], ...]
Vector = dict[LabelKey, tuple[float, str | None]]
Value = float | Vector
Row = tuple[Mapping[str, str], float | None]
#: One series of a window: its labels and raw points or rollup buckets.
SeriesPoints = tuple[Mapping[str, str], Sequence[Point | Bucket]]


class Source(Protocol):
    """Where the evaluator reads data.

    A source may return a superset of the matching series (matchers are checked again)
    and values that are None or not finite (they are skipped).
    """

    def latest(self, name: str, matchers: Sequence[Matcher]) -> Iterable[Row]:
        """Return ``(labels, value)`` of the current (not stale) value of each matching series."""
        ...

    def window(
        self, name: str, matchers: Sequence[Matcher], start: dt.datetime, end: dt.datetime
    ) -> Iterable[SeriesPoints]:
        """Return ``(labels, points)`` of each matching series between start and end.

        Points are raw ``(ts, value)`` pairs or rollup buckets shaped like
        ``monitoring.reads.WindowPoint`` ``(start, min, avg, max, last, count)``.
        """
        ...


@dataclass(frozen=True)
class Result:
    """One series an expression returns: its labels (without the metric name) and value."""

    labels: dict[str, str]
    value: float
    #: The metric name when the result is still that metric's value (``x > 5``), else None.
    name: str | None = None


@dataclass
class EvaluationCache:
    """The inputs of one evaluation cycle, keyed by :class:`Requirement`.

    Create one per cycle (one ``now``) and pass it to every ``evaluate`` call: each
    requirement is read from the source at most once. The engine may fill it in bulk
    beforehand with :meth:`put` / :meth:`put_points`.
    """

    now: dt.datetime
    _vectors: dict[Requirement, Vector] = field(default_factory=dict, repr=False)
    #: Results of composite sub-expressions: rules that differ only in a threshold share
    #: their ``sum by (host) (...)``. Vectors are never mutated after they are stored.
    _computed: dict[Expr, Value] = field(default_factory=dict, repr=False)

    def __contains__(self, requirement: object) -> bool:
        return requirement in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def put(self, requirement: Requirement, rows: Iterable[Row]) -> None:
        """Store ``(labels, value)`` rows: latest values, or already computed function values."""
        matchers = requirement.selector.matchers
        name = requirement.selector.name if requirement.function is None else None
        vector: Vector = {}
        for labels, value in rows:
            if value is None or not math.isfinite(value) or not all(m.matches(labels.get(m.label)) for m in matchers):
                continue
            vector[_key(labels)] = (float(value), name)
        self._vectors[requirement] = vector

    def put_points(self, requirement: Requirement, series: Iterable[SeriesPoints]) -> None:
        """Store a range requirement from each series' points or buckets (the function is applied here)."""
        if requirement.function is None or requirement.window is None:
            raise ValueError("put_points needs a range-function requirement")
        function, window = requirement.function, requirement.window
        rows = []
        for labels, points in series:
            value = compute_window(function, points, window, self.now)
            if value is not None:
                rows.append((labels, value))
        self.put(requirement, rows)

    def fetch(self, requirement: Requirement, source: Source) -> Vector:
        """Return the vector of ``requirement``, reading ``source`` only on the first use."""
        vector = self._vectors.get(requirement)
        if vector is None:
            selector = requirement.selector
            if requirement.function is None or requirement.window is None:
                self.put(requirement, source.latest(selector.name, selector.matchers))
            else:
                start = self.now - dt.timedelta(seconds=requirement.window)
                self.put_points(requirement, source.window(selector.name, selector.matchers, start, self.now))
            vector = self._vectors[requirement]
        return vector

    def results(self, requirement: Requirement) -> list[Result]:
        """Return what is stored for ``requirement`` (empty when nothing is)."""
        return _results(self._vectors.get(requirement, {}))


def evaluate(expr: Expr, source: Source, now: dt.datetime, cache: EvaluationCache | None = None) -> list[Result]:
    """Return the series ``expr`` yields at ``now``, sorted by labels.

    A number yields one result with empty labels. Unknown metrics yield nothing. Raises
    :class:`RuleEvaluationError` only for ambiguous one-to-one matching.
    """
    if cache is None:
        cache = EvaluationCache(now)
    elif cache.now != now:
        raise ValueError("the cache belongs to an evaluation at another time")
    value = _Evaluator(source, cache).value_of(expr)
    if isinstance(value, float):
        return [Result({}, value)] if math.isfinite(value) else []
    return _results(value)


_requirement = functools.lru_cache(maxsize=65536)(Requirement.of)


def _results(vector: Vector) -> list[Result]:
    return [Result(dict(key), value, name) for key, (value, name) in sorted(vector.items())]


def _key(labels: Mapping[str, str]) -> LabelKey:
    # An empty label value is the same as no label (PromQL).
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _format(key: LabelKey) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in key) + "}"


class _Evaluator:
    def __init__(self, source: Source, cache: EvaluationCache) -> None:
        self.source = source
        self.cache = cache

    def value_of(self, expr: Expr) -> Value:
        if isinstance(expr, NumberLiteral):
            return expr.value
        if isinstance(expr, Selector | RangeFunction):
            return self.cache.fetch(_requirement(expr), self.source)
        computed = self.cache._computed
        value = computed.get(expr)
        if value is None:
            value = computed[expr] = self.compute(expr)
        return value

    def compute(self, expr: Expr) -> Value:
        if isinstance(expr, BinaryOp):
            return self.binary(expr)
        if isinstance(expr, Aggregation):
            return self.aggregation(expr)
        if isinstance(expr, Negation):
            operand = self.value_of(expr.expr)
            if isinstance(operand, float):
                return -operand
            return {key: (-value, None) for key, (value, _) in operand.items()}
        if isinstance(expr, Not):
            return {} if self.vector(expr.expr) else {_absent_labels(expr.expr): (1.0, None)}
        raise TypeError(f"not an expression: {expr!r}")

    def vector(self, expr: Expr) -> Vector:
        value = self.value_of(expr)
        return {(): (value, None)} if isinstance(value, float) else value

    def aggregation(self, expr: Aggregation) -> Vector:
        groups: dict[LabelKey, list[float]] = {}
        by = set(expr.by)
        for key, (value, _) in self.vector(expr.expr).items():
            groups.setdefault(tuple(p for p in key if p[0] in by), []).append(value)
        out: Vector = {}
        for group, values in groups.items():
            result = aggregate(expr.op, values)
            if math.isfinite(result):
                out[group] = (result, None)
        return out

    def binary(self, expr: BinaryOp) -> Value:
        op = expr.op
        if op == "and" and isinstance(expr.rhs, Not):
            return _set_operation("unless", self.vector(expr.lhs), self.vector(expr.rhs.expr), expr.matching)
        if op in ("and", "or"):
            return _set_operation(op, self.vector(expr.lhs), self.vector(expr.rhs), expr.matching)
        lhs, rhs = self.value_of(expr.lhs), self.value_of(expr.rhs)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return _scalars(op, lhs, rhs)
        if isinstance(rhs, float):
            assert not isinstance(lhs, float)
            return _vector_scalar(op, lhs, rhs, vector_left=True)
        if isinstance(lhs, float):
            return _vector_scalar(op, rhs, lhs, vector_left=False)
        return _one_to_one(op, lhs, rhs, expr.matching)


def _absent_labels(expr: Expr) -> LabelKey:
    """Return the labels ``not expr`` reports: the selector's equality matchers (like PromQL ``absent``)."""
    selector = expr.selector if isinstance(expr, RangeFunction) else expr
    if not isinstance(selector, Selector):
        return ()
    equal = [m for m in selector.matchers if m.op == "="]
    labels = {m.label: m.value for m in equal}
    repeated = {m.label for m in equal if sum(1 for n in equal if n.label == m.label) > 1}
    return _key({k: v for k, v in labels.items() if k not in repeated})


def _scalars(op: str, lhs: float, rhs: float) -> Value:
    if op in COMPARISON:
        return lhs if COMPARISON[op](lhs, rhs) else {}
    result = ARITHMETIC[op](lhs, rhs)
    return result if math.isfinite(result) else {}


def _vector_scalar(op: str, vector: Vector, scalar: float, *, vector_left: bool) -> Vector:
    out: Vector = {}
    if op in COMPARISON:
        compare = COMPARISON[op]
        for key, (value, name) in vector.items():
            if compare(value, scalar) if vector_left else compare(scalar, value):
                out[key] = (value, name)
        return out
    apply = ARITHMETIC[op]
    for key, (value, _) in vector.items():
        result = apply(value, scalar) if vector_left else apply(scalar, value)
        if math.isfinite(result):
            out[key] = (result, None)
    return out


def _signature(matching: VectorMatching | None) -> Callable[[LabelKey], LabelKey]:
    """Return the function giving the labels two series are matched on."""
    if matching is None:
        return lambda key: key
    labels = frozenset(matching.labels)
    if matching.on:
        return lambda key: tuple(p for p in key if p[0] in labels)
    return lambda key: tuple(p for p in key if p[0] not in labels)


_AMBIGUOUS = object()


def _one_to_one(op: str, lhs: Vector, rhs: Vector, matching: VectorMatching | None) -> Vector:
    """Return ``lhs op rhs`` pairing each left series with the one right series of the same signature."""
    signature = _signature(matching)
    right: dict[LabelKey, object] = {}
    for key, (value, _) in rhs.items():
        sig = signature(key)
        right[sig] = _AMBIGUOUS if sig in right else value
    out: Vector = {}
    for key, (value, name) in lhs.items():
        sig = signature(key)
        other = right.get(sig)
        if other is None:
            continue
        if other is _AMBIGUOUS:
            raise RuleEvaluationError(
                f"several series on the right of '{op}' have the labels {_format(sig)}; "
                "match one-to-one with on(...) or ignoring(...)"
            )
        if sig in out:
            raise RuleEvaluationError(
                f"several series on the left of '{op}' have the labels {_format(sig)}; "
                "match one-to-one with on(...) or ignoring(...)"
            )
        assert isinstance(other, float)
        if op in COMPARISON:
            if COMPARISON[op](value, other):
                keep_name = matching is None or not matching.on
                out[sig] = (value, name if keep_name else None)
            else:
                # Mark the signature as used so a second left series is still caught.
                out[sig] = (math.nan, None)
            continue
        out[sig] = (ARITHMETIC[op](value, other), None)
    return {key: point for key, point in out.items() if math.isfinite(point[0])}


def _set_operation(op: str, lhs: Vector, rhs: Vector, matching: VectorMatching | None) -> Vector:
    """Return ``lhs and/or/unless rhs`` by signature (values and labels from the side kept)."""
    signature = _signature(matching)
    if op == "or":
        left = {signature(key) for key in lhs}
        out = dict(lhs)
        out.update((key, point) for key, point in rhs.items() if signature(key) not in left)
        return out
    right = {signature(key) for key in rhs}
    keep = op == "and"
    return {key: point for key, point in lhs.items() if (signature(key) in right) == keep}
