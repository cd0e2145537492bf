"""The rule language: a small PromQL-style subset, parsed by our own code (never ``eval``).

Public API (see docs/rules.md for the language)::

    expr = parse(text)                      # RuleSyntaxError("expected ')'", position)
    unparse(expr)                           # canonical text, parses back to ``expr``
    p = plan(expr)                          # p.requirements, p.cost, p.metric_names, p.reads(...)
    cache = EvaluationCache(now)            # one per cycle; optionally filled in bulk
    evaluate(expr, source, now, cache)      # list[Result(labels, value, name)]

Nothing here imports Django.
"""

from __future__ import annotations

from alerts.rules.errors import RuleError, RuleEvaluationError, RuleSyntaxError
from alerts.rules.evaluator import EvaluationCache, Result, Source, evaluate
from alerts.rules.functions import compute_window
from alerts.rules.nodes import (
    AGGREGATIONS,
    RANGE_FUNCTIONS,
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
from alerts.rules.parser import parse
from alerts.rules.plan import Plan, Requirement, estimated_points, plan, plan_all
from alerts.rules.unparse import format_duration, format_selector, quote, unparse

__all__ = [
    "AGGREGATIONS",
    "RANGE_FUNCTIONS",
    "Aggregation",
    "BinaryOp",
    "EvaluationCache",
    "Expr",
    "Matcher",
    "Negation",
    "Not",
    "NumberLiteral",
    "Plan",
    "RangeFunction",
    "Requirement",
    "Result",
    "RuleError",
    "RuleEvaluationError",
    "RuleSyntaxError",
    "Selector",
    "Source",
    "VectorMatching",
    "compute_window",
    "estimated_points",
    "evaluate",
    "format_duration",
    "format_selector",
    "parse",
    "plan",
    "plan_all",
    "quote",
    "unparse",
]
