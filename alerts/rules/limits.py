"""Every bound of the rule language in one place (documented in docs/rules.md, "Limits").

Exceeding any of them is a :class:`~alerts.rules.errors.RuleSyntaxError`, so a rule
that parses is known to be cheap to evaluate.
"""

from __future__ import annotations

#: Characters in one expression; checked before anything else, so a 1 MB string costs nothing.
MAX_EXPRESSION_LENGTH = 4096
#: Nested parentheses, calls, aggregations, unary minus and ``not`` (the parser recursion).
MAX_DEPTH = 32
#: Parts of the syntax tree: numbers, selectors, operators, functions, aggregations.
MAX_NODES = 200
#: Selectors (plain or inside a range function) in one expression.
MAX_SELECTORS = 20
#: Label matchers in one selector's braces.
MAX_MATCHERS = 20
#: Seconds; the shortest and longest ``[window]`` of a range function.
MIN_WINDOW = 1
MAX_WINDOW = 30 * 86400
#: Seconds; the largest duration literal (about 31 years) — keeps arithmetic finite.
MAX_DURATION = 10**9
#: Characters in a ``=~`` / ``!~`` pattern.
MAX_REGEX_LENGTH = 200
#: Label values longer than this never match a regex (stored values are at most 200).
MAX_MATCH_VALUE_LENGTH = 256
#: Ways a regex may try to match one value (product of its repetitions' choices): about
#: two unbounded repetitions like ``.*``. Bounds backtracking without a timeout.
MAX_REGEX_WAYS = 2 * (MAX_MATCH_VALUE_LENGTH + 1) ** 2
#: Estimated samples read per matching series, plus nodes (see ``plan.estimated_points``).
MAX_COST = 10_000
