"""Label regexes that cannot run away: checked structurally, compiled once, anchored.

Python's ``re`` backtracks and has no timeout, so a pattern is accepted only when the
number of ways it can try to match one value is small: no backreferences or lookaround,
no repetition of a group that itself repeats or alternates (``(a+)+``, ``(a|ab)*``), and a
bounded product of repetition choices. Values are bounded in length too, so the worst
match is a few hundred thousand steps.
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre  # type: ignore[attr-defined]  # the parsed form shows the structure
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from alerts.rules.limits import MAX_MATCH_VALUE_LENGTH, MAX_REGEX_LENGTH, MAX_REGEX_WAYS

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT}
_FORBIDDEN = {sre.GROUPREF, sre.GROUPREF_EXISTS, sre.ASSERT, sre.ASSERT_NOT}


class UnsafeRegex(ValueError):
    """A pattern that does not compile or could backtrack for too long."""


@functools.lru_cache(maxsize=2048)
def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """Return ``pattern`` compiled for full matches, or raise :class:`UnsafeRegex`."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise UnsafeRegex(f"regex must be at most {MAX_REGEX_LENGTH} characters")
    try:
        parsed = sre_parse.parse(pattern, re.DOTALL)
        _ways(parsed.data)
        return re.compile(pattern, re.DOTALL)
    except UnsafeRegex:
        raise
    except (re.error, OverflowError, ValueError, RecursionError, IndexError, TypeError) as exc:
        raise UnsafeRegex(f"invalid regex: {_reason(exc)}") from None


def regex_matches(pattern: str, value: str) -> bool:
    """Return whether ``value`` matches ``pattern`` entirely (PromQL anchoring)."""
    if len(value) > MAX_MATCH_VALUE_LENGTH:
        return False
    return _cached_match(pattern, value)


@functools.lru_cache(maxsize=65536)
def _cached_match(pattern: str, value: str) -> bool:
    return compile_label_regex(pattern).fullmatch(value) is not None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, re.error):
        return exc.msg
    return "pattern is too complex"


def _ways(items: Any) -> int:
    """Return how many ways ``items`` (a parsed sequence) can try to match; raise when unsafe."""
    total = 1
    for op, arg in items:
        if op in _FORBIDDEN:
            raise UnsafeRegex("regex must not use backreferences or lookaround")
        if op in _REPEATS:
            total *= _repeat_ways(*arg)
        elif op is sre.BRANCH:
            total *= sum(_ways(branch.data) for branch in arg[1])
        elif op is sre.SUBPATTERN:
            total *= _ways(arg[3].data)
        elif op is sre.ATOMIC_GROUP:
            total *= _ways(arg.data)
        if total > MAX_REGEX_WAYS:
            raise UnsafeRegex("regex is too complex: use at most two unbounded repetitions like .*")
    return total


def _repeat_ways(low: int, high: int, body: Any) -> int:
    body_ways = _ways(body.data if hasattr(body, "data") else body)
    if low == high:
        # A fixed count multiplies the body's choices: (\.\d{1,3}){3} is 3**3 ways.
        return 1 if body_ways == 1 else body_ways ** min(high, 64)
    if high == 1:
        return 1 + body_ways
    if body_ways != 1:
        # (a+)+ and (a|ab)* split one string in exponentially many ways.
        raise UnsafeRegex("regex must not repeat a group that itself repeats or alternates, like (a+)+")
    return min(high, MAX_MATCH_VALUE_LENGTH) - min(low, MAX_MATCH_VALUE_LENGTH) + 1
