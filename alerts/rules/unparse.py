"""Print a syntax tree back as canonical text that parses to the same tree."""

from __future__ import annotations

from alerts.rules.lexer import DURATION_UNITS
from alerts.rules.nodes import (
    Aggregation,
    Expr,
    Matcher,
    Negation,
    Not,
    NumberLiteral,
    RangeFunction,
    Selector,
    VectorMatching,
)

# Binding strength: a child binding less tightly than its parent needs parentheses.
_OR, _AND, _NOT, _COMPARISON, _ADDITIVE, _TERM, _UNARY, _ATOM = range(8)
_BINARY_LEVEL = {
    "or": _OR,
    "and": _AND,
    **dict.fromkeys((">", ">=", "<", "<=", "==", "!="), _COMPARISON),
    "+": _ADDITIVE,
    "-": _ADDITIVE,
    "*": _TERM,
    "/": _TERM,
}


def unparse(expr: Expr) -> str:
    """Return canonical text for ``expr``: ``parse(unparse(e)) == e``."""
    return _unparse(expr)[0]


def format_duration(seconds: int) -> str:
    """Return ``seconds`` as a duration literal: 5400 -> ``1h30m``, 0 -> ``0s``."""
    parts = []
    for unit, size in DURATION_UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_number(value: float) -> str:
    """Return the shortest literal that reads back as exactly ``value``."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def quote(value: str) -> str:
    """Return ``value`` as a double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def format_selector(selector: Selector) -> str:
    """Return ``name{label="value", ...}`` (just the name without matchers)."""
    if not selector.matchers:
        return selector.name
    return selector.name + "{" + ", ".join(_matcher(m) for m in selector.matchers) + "}"


def _matcher(matcher: Matcher) -> str:
    return f"{matcher.label}{matcher.op}{quote(matcher.value)}"


def _labels(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(labels) + ")"


def _matching(matching: VectorMatching | None) -> str:
    if matching is None:
        return ""
    return ("on" if matching.on else "ignoring") + _labels(matching.labels) + " "


def _wrap(expr: Expr, minimum: int) -> str:
    text, level = _unparse(expr)
    return text if level >= minimum else f"({text})"


def _unparse(expr: Expr) -> tuple[str, int]:
    if isinstance(expr, NumberLiteral):
        text = format_number(expr.value)
        return text, _UNARY if text.startswith("-") else _ATOM
    if isinstance(expr, Selector):
        return format_selector(expr), _ATOM
    if isinstance(expr, RangeFunction):
        return f"{expr.function}({format_selector(expr.selector)}[{format_duration(expr.window)}])", _ATOM
    if isinstance(expr, Aggregation):
        by = f" by {_labels(expr.by)}" if expr.by else ""
        return f"{expr.op}{by} ({_unparse(expr.expr)[0]})", _ATOM
    if isinstance(expr, Negation):
        return "-" + _wrap(expr.expr, _UNARY), _UNARY
    if isinstance(expr, Not):
        return "not " + _wrap(expr.expr, _NOT), _NOT
    level = _BINARY_LEVEL[expr.op]
    lhs = _wrap(expr.lhs, level)
    rhs = _wrap(expr.rhs, level + 1)
    return f"{lhs} {expr.op} {_matching(expr.matching)}{rhs}", level
