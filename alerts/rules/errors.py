"""The errors of the rule language: one for text that is not a valid rule, one for evaluation."""

from __future__ import annotations


class RuleError(ValueError):
    """Base of every error the rule language raises on purpose."""


class RuleSyntaxError(RuleError):
    """An expression that cannot be accepted: bad syntax, bad types or a limit exceeded.

    ``message`` says what is wrong, ``position`` is the 0-based offset into the text
    it refers to; ``str()`` gives both in the operator's words (``expected ')' at column 27``).
    """

    def __init__(self, message: str, position: int, text: str | None = None) -> None:
        self.message = message
        self.position = max(0, position)
        self.line, self.column = _line_and_column(text, self.position)
        if self.line > 1:
            where = f"at line {self.line}, column {self.column}"
        else:
            where = f"at column {self.column}"
        super().__init__(f"{message} {where}")

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle (multiprocessing, some result backends) without re-reading the text.
        return (_rebuild, (self.message, self.position, self.line, self.column))


def _rebuild(message: str, position: int, line: int, column: int) -> RuleSyntaxError:
    error = RuleSyntaxError(message, position)
    error.line, error.column = line, column
    error.args = (f"{message} at column {column}" if line == 1 else f"{message} at line {line}, column {column}",)
    return error


class RuleEvaluationError(RuleError):
    """An expression that parsed but cannot be evaluated against this data.

    Raised only for ambiguous vector matching (several series on one side share the
    labels used for matching); the engine reports it on the rule and goes on.
    """


def _line_and_column(text: str | None, position: int) -> tuple[int, int]:
    """Return the 1-based line and column of ``position`` (single-line when text is unknown)."""
    if not text:
        return 1, position + 1
    position = min(position, len(text))
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1
