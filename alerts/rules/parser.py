"""Recursive-descent parser: expression text to a checked, bounded syntax tree.

Grammar (lowest precedence first; binary operators are left-associative)::

    expr        = and_expr { "or" [matching] and_expr }
    and_expr    = not_expr { "and" [matching] not_expr }
    not_expr    = "not" not_expr | comparison
    comparison  = additive { (">"|">="|"<"|"<="|"=="|"!=") [matching] additive }
    additive    = term { ("+"|"-") [matching] term }
    term        = unary { ("*"|"/") [matching] unary }
    unary       = ("-"|"+") unary | primary
    primary     = number | duration | "(" expr ")" | range_call | aggregation | selector
    range_call  = range_fn "(" selector "[" duration "]" ")"
    aggregation = agg_op [by] "(" expr ")" [by]
    by          = "by" label_list
    matching    = ("on" | "ignoring") label_list
    selector    = metric_name [ "{" [ matcher { "," matcher } [","] ] "}" ]
    matcher     = label_name ("="|"!="|"=~"|"!~") string
    label_list  = "(" [ label_name { "," label_name } [","] ] ")"

Every recursion goes through :meth:`_Parser.enter`, so depth is bounded before Python's
stack is; the text length is checked first, so a huge input costs nothing.
"""

from __future__ import annotations

import functools
import re

from alerts.rules.errors import RuleSyntaxError
from alerts.rules.lexer import Token, describe, iter_tokens
from alerts.rules.limits import (
    MAX_COST,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_MATCHERS,
    MAX_NODES,
    MAX_SELECTORS,
    MAX_WINDOW,
    MIN_WINDOW,
)
from alerts.rules.nodes import (
    AGGREGATIONS,
    COMPARISON_OPS,
    MATCH_OPS,
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
    is_vector,
)
from alerts.rules.plan import plan
from alerts.rules.regex import UnsafeRegex, compile_label_regex

KEYWORDS = frozenset({"and", "or", "not", "by", "on", "ignoring"})
#: PromQL words we do not support, with what to write instead.
UNSUPPORTED = {
    "unless": "'unless' is not supported; write 'a and not b'",
    "bool": "'bool' is not supported; a comparison keeps the series for which it holds",
    "without": "'without' is not supported; list the labels to keep with 'by'",
    "offset": "'offset' is not supported",
    "group_left": "'group_left' is not supported; binary operations match one-to-one",
    "group_right": "'group_right' is not supported; binary operations match one-to-one",
}
_NOT_NUMBERS = frozenset({"nan", "inf", "infinity"})
_NOT_METRIC_NAMES = KEYWORDS | AGGREGATIONS | RANGE_FUNCTIONS | frozenset(UNSUPPORTED)
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_NAME_LENGTH = 200
_WINDOW_HINT = "expected window like [5m]"


def parse(text: str) -> Expr:
    """Return the syntax tree of ``text`` or raise :class:`RuleSyntaxError`.

    Trees are immutable, so results are cached by text: re-parsing every rule on every
    evaluation cycle is a dictionary lookup.
    """
    if not isinstance(text, str):
        raise RuleSyntaxError("expression must be text", 0)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise RuleSyntaxError(f"expression must be at most {MAX_EXPRESSION_LENGTH} characters", MAX_EXPRESSION_LENGTH)
    return _parse_cached(text)


@functools.lru_cache(maxsize=16384)
def _parse_cached(text: str) -> Expr:
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.stream = iter_tokens(text)
        self.tokens: list[Token] = [next(self.stream)]
        self.index = 0
        self.depth = 0
        self.nodes = 0
        self.selectors = 0

    # -- helpers -----------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def peek(self) -> Token:
        self.fill(self.index + 1)
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def fill(self, index: int) -> None:
        """Read tokens up to ``index`` (lexing lazily: an earlier syntax error wins)."""
        while len(self.tokens) <= index and self.tokens[-1].kind != "eof":
            self.tokens.append(next(self.stream))

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
            self.fill(self.index)
        return token

    def error(self, message: str, pos: int) -> RuleSyntaxError:
        return RuleSyntaxError(message, pos, self.text)

    def is_op(self, op: str, token: Token | None = None) -> bool:
        token = self.tok if token is None else token
        return token.kind == "op" and token.text == op

    def is_word(self, word: str, token: Token | None = None) -> bool:
        token = self.tok if token is None else token
        return token.kind == "ident" and token.text == word

    def expect(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.unexpected(f"expected '{op}'")
        return self.advance()

    def unexpected(self, message: str | None = None) -> RuleSyntaxError:
        """Return the error for the current token, with a hint for known mistakes."""
        token = self.tok
        if token.kind == "ident":
            if token.text in UNSUPPORTED:
                return self.error(UNSUPPORTED[token.text], token.pos)
            if token.text.lower() in KEYWORDS and token.text not in KEYWORDS:
                return self.error(f"keywords are lowercase: write '{token.text.lower()}'", token.pos)
        if self.is_op("=") and message is None:
            return self.error("unexpected '='; compare with '=='", token.pos)
        return self.error(message or f"unexpected {describe(token)}", token.pos)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nests deeper than {MAX_DEPTH} levels", token.pos)

    def leave(self) -> None:
        self.depth -= 1

    def node(self, expr: Expr, token: Token) -> Expr:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"expression has more than {MAX_NODES} parts", token.pos)
        return expr

    # -- grammar -----------------------------------------------------------------

    def parse(self) -> Expr:
        expr = self.parse_or()
        if self.tok.kind != "eof":
            raise self.unexpected()
        cost = plan(expr).cost
        if cost > MAX_COST:
            raise self.error(f"expression is too expensive (estimated cost {cost}, at most {MAX_COST})", 0)
        return expr

    def parse_or(self) -> Expr:
        lhs = self.parse_and()
        while self.is_word("or"):
            op = self.advance()
            matching = self.parse_matching()
            lhs = self.binary(op, lhs, self.parse_and(), matching)
        return lhs

    def parse_and(self) -> Expr:
        lhs = self.parse_not()
        while self.is_word("and"):
            op = self.advance()
            matching = self.parse_matching()
            lhs = self.binary(op, lhs, self.parse_not(), matching)
        return lhs

    def parse_not(self) -> Expr:
        if not self.is_word("not"):
            return self.parse_comparison()
        token = self.advance()
        self.enter(token)
        operand_token = self.tok
        operand = self.parse_not()
        self.leave()
        if not is_vector(operand):
            raise self.error("'not' needs series, not a number", operand_token.pos)
        return self.node(Not(operand), token)

    def parse_comparison(self) -> Expr:
        lhs = self.parse_additive()
        while self.tok.kind == "op" and self.tok.text in COMPARISON_OPS:
            op = self.advance()
            matching = self.parse_matching()
            lhs = self.binary(op, lhs, self.parse_additive(), matching)
        return lhs

    def parse_additive(self) -> Expr:
        lhs = self.parse_term()
        while self.is_op("+") or self.is_op("-"):
            op = self.advance()
            matching = self.parse_matching()
            lhs = self.binary(op, lhs, self.parse_term(), matching)
        return lhs

    def parse_term(self) -> Expr:
        lhs = self.parse_unary()
        while self.is_op("*") or self.is_op("/"):
            op = self.advance()
            matching = self.parse_matching()
            lhs = self.binary(op, lhs, self.parse_unary(), matching)
        return lhs

    def parse_unary(self) -> Expr:
        if not (self.is_op("-") or self.is_op("+")):
            return self.parse_primary()
        token = self.advance()
        self.enter(token)
        operand = self.parse_unary()
        self.leave()
        if token.text == "+":
            return operand
        if isinstance(operand, NumberLiteral):
            return NumberLiteral(-operand.value)
        return self.node(Negation(operand), token)

    def parse_primary(self) -> Expr:
        token = self.tok
        if token.kind in ("number", "duration"):
            self.advance()
            assert isinstance(token.value, int | float)
            return self.node(NumberLiteral(float(token.value)), token)
        if self.is_op("("):
            self.advance()
            self.enter(token)
            expr = self.parse_or()
            self.expect(")")
            self.leave()
            return expr
        if token.kind != "ident":
            raise self.unexpected("expected expression")
        name = token.text
        if name in UNSUPPORTED or (name.lower() in KEYWORDS and name not in KEYWORDS):
            raise self.unexpected()
        if name.lower() in _NOT_NUMBERS:
            raise self.error("NaN and Inf are not allowed as numbers", token.pos)
        if name in KEYWORDS:
            raise self.error("expected expression", token.pos)
        if name in AGGREGATIONS:
            return self.parse_aggregation()
        if name in RANGE_FUNCTIONS:
            return self.parse_range_function()
        if self.is_op("(", self.peek()):
            raise self.error(f"unknown function '{name}'", token.pos)
        selector = self.parse_selector()
        if self.is_op("["):
            raise self.error(
                "a window like [5m] is only allowed inside " + ", ".join(sorted(RANGE_FUNCTIONS)), self.tok.pos
            )
        return selector

    def parse_range_function(self) -> Expr:
        token = self.advance()
        self.expect("(")
        self.enter(token)
        argument = self.tok
        if argument.kind != "ident" or argument.text in _NOT_METRIC_NAMES or argument.text.lower() in _NOT_NUMBERS:
            raise self.error(
                f"{token.text} needs a selector with a window, like {token.text}(metric[5m])", argument.pos
            )
        if self.is_op("(", self.peek()):
            raise self.error(f"unknown function '{argument.text}'", argument.pos)
        selector = self.parse_selector()
        if not self.is_op("["):
            raise self.unexpected(_WINDOW_HINT)
        self.advance()
        window = self.tok
        if window.kind != "duration":
            raise self.unexpected(_WINDOW_HINT)
        assert isinstance(window.value, int)
        if window.value > MAX_WINDOW:
            raise self.error(f"window must be at most {MAX_WINDOW // 86400}d", window.pos)
        if window.value < MIN_WINDOW:
            raise self.error(f"window must be at least {MIN_WINDOW}s", window.pos)
        self.advance()
        self.expect("]")
        self.expect(")")
        self.leave()
        return self.node(RangeFunction(token.text, selector, window.value), token)

    def parse_aggregation(self) -> Expr:
        token = self.advance()
        by = None
        if self.is_word("by"):
            self.advance()
            by = self.parse_label_list()
        if self.tok.kind == "ident" and self.tok.text in UNSUPPORTED:
            raise self.unexpected()
        self.expect("(")
        self.enter(token)
        argument = self.tok
        expr = self.parse_or()
        self.expect(")")
        self.leave()
        if self.is_word("by"):
            if by is not None:
                raise self.error("'by' is given twice", self.tok.pos)
            self.advance()
            by = self.parse_label_list()
        if not is_vector(expr):
            raise self.error(f"{token.text} needs series, not a number", argument.pos)
        return self.node(Aggregation(token.text, expr, by or ()), token)

    def parse_matching(self) -> VectorMatching | None:
        if not (self.is_word("on") or self.is_word("ignoring")):
            return None
        on = self.advance().text == "on"
        labels = self.parse_label_list()
        if self.tok.kind == "ident" and self.tok.text in UNSUPPORTED:
            raise self.unexpected()
        return VectorMatching(on, labels)

    def parse_label_list(self) -> tuple[str, ...]:
        self.expect("(")
        labels: list[str] = []
        while not self.is_op(")"):
            labels.append(self.label_name())
            if len(labels) > MAX_MATCHERS:
                raise self.error(f"at most {MAX_MATCHERS} labels in a list", self.tok.pos)
            if not self.is_op(","):
                break
            self.advance()
        self.expect(")")
        return tuple(labels)

    def label_name(self) -> str:
        token = self.tok
        if token.kind != "ident" or not LABEL_NAME.fullmatch(token.text):
            raise self.unexpected("expected label name")
        self.advance()
        return token.text

    def parse_selector(self) -> Selector:
        token = self.advance()
        if len(token.text) > MAX_NAME_LENGTH:
            raise self.error(f"metric name must be at most {MAX_NAME_LENGTH} characters", token.pos)
        self.selectors += 1
        if self.selectors > MAX_SELECTORS:
            raise self.error(f"expression has more than {MAX_SELECTORS} selectors", token.pos)
        matchers: list[Matcher] = []
        if self.is_op("{"):
            self.advance()
            while not self.is_op("}"):
                matchers.append(self.parse_matcher())
                if len(matchers) > MAX_MATCHERS:
                    raise self.error(f"at most {MAX_MATCHERS} matchers in a selector", self.tok.pos)
                if not self.is_op(","):
                    break
                self.advance()
            self.expect("}")
        selector = Selector(token.text, tuple(matchers))
        self.node(selector, token)
        return selector

    def parse_matcher(self) -> Matcher:
        label = self.label_name()
        op = self.tok
        if op.kind != "op" or op.text not in MATCH_OPS:
            raise self.unexpected("expected '=', '!=', '=~' or '!~'")
        self.advance()
        value = self.tok
        if value.kind != "string":
            raise self.unexpected("expected quoted label value")
        self.advance()
        assert isinstance(value.value, str)
        if op.text in ("=~", "!~"):
            try:
                compile_label_regex(value.value)
            except UnsafeRegex as exc:
                raise self.error(str(exc), value.pos) from None
        return Matcher(label, op.text, value.value)  # type: ignore[arg-type]

    def binary(self, op: Token, lhs: Expr, rhs: Expr, matching: VectorMatching | None) -> Expr:
        if op.text in ("and", "or") and not (is_vector(lhs) and is_vector(rhs)):
            raise self.error(f"'{op.text}' needs series on both sides", op.pos)
        if matching is not None and not (is_vector(lhs) and is_vector(rhs)):
            word = "on" if matching.on else "ignoring"
            raise self.error(f"{word}(...) needs series on both sides", op.pos)
        return self.node(BinaryOp(op.text, lhs, rhs, matching), op)
