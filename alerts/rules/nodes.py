"""The syntax tree of a rule expression: small immutable, hashable dataclasses.

Equal trees compare and hash equal, so a tree is its own cache key and
``parse(unparse(tree)) == tree``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from alerts.rules.regex import UnsafeRegex, compile_label_regex, regex_matches

MatchOp = Literal["=", "!=", "=~", "!~"]
ArithmeticOp = Literal["+", "-", "*", "/"]
ComparisonOp = Literal[">", ">=", "<", "<=", "==", "!="]
SetOp = Literal["and", "or"]

MATCH_OPS: frozenset[str] = frozenset({"=", "!=", "=~", "!~"})
ARITHMETIC_OPS: frozenset[str] = frozenset({"+", "-", "*", "/"})
COMPARISON_OPS: frozenset[str] = frozenset({">", ">=", "<", "<=", "==", "!="})
SET_OPS: frozenset[str] = frozenset({"and", "or"})
#: Functions over a ``selector[window]``.
RANGE_FUNCTIONS: frozenset[str] = frozenset({"avg_over_time", "max_over_time", "min_over_time", "rate", "increase"})
AGGREGATIONS: frozenset[str] = frozenset({"sum", "avg", "min", "max", "count"})


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``label op "value"`` inside a selector's braces; regexes match the whole value."""

    label: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op not in MATCH_OPS:
            raise ValueError(f"unknown matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                compile_label_regex(self.value)
            except UnsafeRegex as exc:
                raise ValueError(str(exc)) from None

    def matches(self, value: str | None) -> bool:
        """Return whether a label ``value`` (``None`` or ``""`` when absent) satisfies this matcher."""
        value = value or ""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        if self.op == "=~":
            return regex_matches(self.value, value)
        return not regex_matches(self.value, value)


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    """A number; durations in expressions (``5m``) are numbers of seconds."""

    value: float


@dataclass(frozen=True, slots=True)
class Selector:
    """``name{label="value", ...}``: the series of one metric whose labels match."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """Return whether a series (metric ``name`` and ``labels``) is selected."""
        return name == self.name and all(m.matches(labels.get(m.label)) for m in self.matchers)

    def canonical(self) -> Selector:
        """Return the same selection with matchers sorted and de-duplicated (a cache key)."""
        return Selector(self.name, tuple(sorted(set(self.matchers), key=lambda m: (m.label, m.op, m.value))))


@dataclass(frozen=True, slots=True)
class RangeFunction:
    """``function(selector[window])`` with the window in seconds."""

    function: str
    selector: Selector
    window: int


@dataclass(frozen=True, slots=True)
class Aggregation:
    """``op by (labels) (expr)``; an empty ``by`` aggregates everything into one series."""

    op: str
    expr: Expr
    by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """``on(labels)`` (``on=True``) or ``ignoring(labels)`` after a binary operator."""

    on: bool
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """``lhs op lhs`` for arithmetic, comparisons, ``and`` and ``or``."""

    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None = None


@dataclass(frozen=True, slots=True)
class Negation:
    """Unary minus of a series expression (a minus before a number folds into the number)."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class Not:
    """``not expr``: one series when ``expr`` is empty; as ``a and not b``, the series of a without b."""

    expr: Expr


Expr = NumberLiteral | Selector | RangeFunction | Aggregation | BinaryOp | Negation | Not


def is_vector(expr: Expr) -> bool:
    """Return whether ``expr`` yields series (labelled values) rather than one plain number."""
    if isinstance(expr, NumberLiteral):
        return False
    if isinstance(expr, BinaryOp):
        return is_vector(expr.lhs) or is_vector(expr.rhs)
    if isinstance(expr, Negation):
        return is_vector(expr.expr)
    return True


def children(expr: Expr) -> tuple[Expr, ...]:
    """Return the direct sub-expressions of ``expr``."""
    if isinstance(expr, BinaryOp):
        return (expr.lhs, expr.rhs)
    if isinstance(expr, Aggregation | Negation | Not):
        return (expr.expr,)
    return ()


def walk(expr: Expr) -> list[Expr]:
    """Return every node of ``expr``, parents before children, without recursion."""
    out: list[Expr] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children(node)))
    return out
