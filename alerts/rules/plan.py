"""What an expression reads, so a cycle fetches each distinct input once for all rules."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.rules.nodes import Expr, RangeFunction, Selector, walk


@dataclass(frozen=True, slots=True)
class Requirement:
    """One input of an evaluation: latest values (``function is None``) or a range function.

    ``selector`` is canonical (matchers sorted), so ``x{a="1",b="2"}`` and
    ``x{b="2",a="1"}`` are one requirement and one cache entry.
    """

    selector: Selector
    function: str | None = None
    window: int | None = None

    @classmethod
    def of(cls, node: Selector | RangeFunction) -> Requirement:
        """Return the requirement a selector or range-function node reads."""
        if isinstance(node, RangeFunction):
            return cls(node.selector.canonical(), node.function, node.window)
        return cls(node.canonical())


@dataclass(frozen=True, slots=True)
class Plan:
    """The distinct requirements of one or more expressions and what they cost."""

    requirements: tuple[Requirement, ...]
    #: Estimated samples read per matching series, plus the number of nodes (see ``estimated_points``).
    cost: int

    @property
    def metric_names(self) -> frozenset[str]:
        """Return the metric names read (to find the rules a new sample concerns)."""
        return frozenset(r.selector.name for r in self.requirements)

    def reads(self, name: str, labels: Mapping[str, str]) -> bool:
        """Return whether a series with this name and labels is an input of the plan."""
        return any(r.selector.matches(name, labels) for r in self.requirements)


def estimated_points(window: int | None) -> int:
    """Return the samples one series contributes to a requirement.

    Assumes what storage keeps: raw samples every 10 s for windows up to 1 h, minute
    rollups up to 1 d, hourly rollups beyond. A latest value is one point.
    """
    if window is None:
        return 1
    if window <= 3600:
        return math.ceil(window / 10)
    if window <= 86400:
        return math.ceil(window / 60)
    return math.ceil(window / 3600)


@functools.lru_cache(maxsize=16384)
def plan(expr: Expr) -> Plan:
    """Return the distinct requirements of ``expr`` (in first-use order) and its cost."""
    return plan_all([expr])


def plan_all(exprs: Iterable[Expr]) -> Plan:
    """Return one plan for many expressions: the union of their requirements.

    The engine calls this once per cycle over every enabled rule, reads each
    requirement once, and hands the results to ``evaluate`` through an ``EvaluationCache``.
    """
    requirements: dict[Requirement, None] = {}
    nodes = 0
    for expr in exprs:
        for node in walk(expr):
            nodes += 1
            if isinstance(node, Selector | RangeFunction):
                requirements.setdefault(Requirement.of(node))
    cost = nodes + sum(estimated_points(r.window) for r in requirements)
    return Plan(tuple(requirements), cost)
