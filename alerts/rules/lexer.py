"""Turn expression text into tokens in one linear pass (no regex backtracking, ASCII only)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from alerts.rules.errors import RuleSyntaxError
from alerts.rules.limits import MAX_DURATION

TokenKind = Literal["number", "duration", "string", "ident", "op", "eof"]

_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT_START = _LETTERS | {"_", ":"}
_IDENT_CHARS = _IDENT_START | _DIGITS
_SPACE = frozenset(" \t\r\n")
_TWO_CHAR_OPS = frozenset({"==", "!=", "=~", "!~", ">=", "<="})
_ONE_CHAR_OPS = frozenset("+-*/<>=(){}[],")
#: Seconds per duration unit, largest first (a duration lists units in this order).
DURATION_UNITS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    pos: int
    #: Parsed value: float for numbers, int seconds for durations, str for strings.
    value: float | int | str | None = None


def describe(token: Token) -> str:
    """Return how an error message names ``token``."""
    if token.kind == "eof":
        return "end of expression"
    text = token.text if len(token.text) <= 20 else token.text[:17] + "..."
    return f"'{text}'"


def tokenize(text: str) -> list[Token]:
    """Return the tokens of ``text`` ending with an ``eof`` token; raise RuleSyntaxError."""
    return list(iter_tokens(text))


def iter_tokens(text: str) -> Iterator[Token]:
    """Yield the tokens of ``text`` one by one (so the parser reports the earliest error)."""
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if char in _SPACE:
            pos += 1
        elif char in _DIGITS or (char == "." and pos + 1 < end and text[pos + 1] in _DIGITS):
            token = _number(text, pos)
            yield token
            pos += len(token.text)
        elif char in _IDENT_START:
            start = pos
            while pos < end and text[pos] in _IDENT_CHARS:
                pos += 1
            yield Token("ident", text[start:pos], start)
        elif char in "\"'":
            token = _string(text, pos)
            yield token
            pos += len(token.text)
        elif text[pos : pos + 2] in _TWO_CHAR_OPS:
            yield Token("op", text[pos : pos + 2], pos)
            pos += 2
        elif char in _ONE_CHAR_OPS:
            yield Token("op", char, pos)
            pos += 1
        else:
            raise RuleSyntaxError(f"unexpected character {_show(char)}", pos, text)
    yield Token("eof", "", end)


def _show(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f"'{char}'"
    return f"U+{ord(char):04X}"


def _digits(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _DIGITS:
        pos += 1
    return pos


def _number(text: str, start: int) -> Token:
    """Scan a number (``12``, ``1.5``, ``.5``, ``1e-3``) or a duration (``5m``, ``1h30m``)."""
    pos = _digits(text, start)
    integer = pos > start
    if pos < len(text) and text[pos] == ".":
        pos = _digits(text, pos + 1)
        integer = False
    if pos < len(text) and text[pos] in "eE":
        exponent = pos + 1
        if exponent < len(text) and text[exponent] in "+-":
            exponent += 1
        after = _digits(text, exponent)
        if after == exponent:
            raise RuleSyntaxError("malformed number", start, text)
        pos, integer = after, False
    if pos < len(text) and text[pos] in _IDENT_CHARS:
        if integer and text[pos] in DURATION_UNITS:
            return _duration(text, start)
        if text[pos] in DURATION_UNITS and "e" not in text[start:pos].lower():
            raise RuleSyntaxError("a duration takes whole numbers, like 90s or 1h30m", start, text)
        raise RuleSyntaxError("malformed number", start, text)
    literal = text[start:pos]
    value = float(literal)
    if not math.isfinite(value):
        raise RuleSyntaxError("number is too large", start, text)
    return Token("number", literal, start, value)


def _duration(text: str, start: int) -> Token:
    """Scan ``<int><unit>`` groups with units in decreasing order, each at most once."""
    pos, seconds, allowed = start, 0, list(DURATION_UNITS)
    while pos < len(text) and text[pos] in _DIGITS:
        digits_end = _digits(text, pos)
        unit = text[digits_end] if digits_end < len(text) else ""
        if unit not in allowed:
            raise RuleSyntaxError("malformed duration (use units w, d, h, m, s from largest to smallest)", start, text)
        if digits_end - pos > 12:
            raise RuleSyntaxError("duration is too large", start, text)
        seconds += int(text[pos:digits_end]) * DURATION_UNITS[unit]
        allowed = allowed[allowed.index(unit) + 1 :]
        pos = digits_end + 1
    if pos < len(text) and text[pos] in _IDENT_CHARS | {"."}:
        raise RuleSyntaxError("malformed duration (use units w, d, h, m, s from largest to smallest)", start, text)
    if seconds > MAX_DURATION:
        raise RuleSyntaxError("duration is too large", start, text)
    return Token("duration", text[start:pos], start, seconds)


def _string(text: str, start: int) -> Token:
    r"""Scan a quoted string; ``\\ \" \' \n \t`` are escapes, any other backslash is kept (regexes)."""
    quote, pos = text[start], start + 1
    parts: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return Token("string", text[start : pos + 1], start, "".join(parts))
        if char == "\\":
            if pos + 1 >= len(text):
                break
            following = text[pos + 1]
            parts.append(_ESCAPES.get(following, "\\" + following))
            pos += 2
            continue
        parts.append(char)
        pos += 1
    raise RuleSyntaxError("unterminated string", start, text)
