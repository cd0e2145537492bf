"""The rule language parser: trees for every construct, exact error positions, hostile text."""

from __future__ import annotations

import ast
import pickle
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.rules import (
    Aggregation,
    BinaryOp,
    Matcher,
    Negation,
    Not,
    NumberLiteral,
    RangeFunction,
    RuleSyntaxError,
    Selector,
    VectorMatching,
    parse,
    plan,
    unparse,
)
from alerts.rules.limits import MAX_DEPTH, MAX_EXPRESSION_LENGTH, MAX_NODES, MAX_SELECTORS
from alerts.rules.regex import regex_matches


def sel(name: str, *matchers: tuple[str, str, str]) -> Selector:
    return Selector(name, tuple(Matcher(label, op, value) for label, op, value in matchers))  # type: ignore[arg-type]


def num(value: float) -> NumberLiteral:
    return NumberLiteral(float(value))


X, Y, Z = sel("x"), sel("y"), sel("z")

GOLDEN = [
    # numbers and durations
    ("42", num(42)),
    ("1.5", num(1.5)),
    (".5", num(0.5)),
    ("1e3", num(1000)),
    ("2.5E-2", num(0.025)),
    ("-7", num(-7)),
    ("+7", num(7)),
    ("30s", num(30)),
    ("5m", num(300)),
    ("1h", num(3600)),
    ("2d", num(172800)),
    ("1w", num(604800)),
    ("1h30m", num(5400)),
    # selectors and matchers
    ("system_load1", sel("system_load1")),
    ("node:cpu:ratio", sel("node:cpu:ratio")),
    ("x{}", X),
    ('x{host="a"}', sel("x", ("host", "=", "a"))),
    ("x{host='a'}", sel("x", ("host", "=", "a"))),
    ('x{host!="a"}', sel("x", ("host", "!=", "a"))),
    ('x{mount=~"/data.*"}', sel("x", ("mount", "=~", "/data.*"))),
    ('x{fs!~"tmpfs|overlay"}', sel("x", ("fs", "!~", "tmpfs|overlay"))),
    ('x{a="1", b!="2",}', sel("x", ("a", "=", "1"), ("b", "!=", "2"))),
    (r'x{path="C:\\dir \"q\""}', sel("x", ("path", "=", 'C:\\dir "q"'))),
    (r'x{n=~"\d+"}', sel("x", ("n", "=~", r"\d+"))),
    # range functions
    ("avg_over_time(x[5m])", RangeFunction("avg_over_time", X, 300)),
    ("max_over_time(x[1h])", RangeFunction("max_over_time", X, 3600)),
    ("min_over_time(x[30s])", RangeFunction("min_over_time", X, 30)),
    ('rate(x{code="500"}[5m])', RangeFunction("rate", sel("x", ("code", "=", "500")), 300)),
    ("increase(x[1h30m])", RangeFunction("increase", X, 5400)),
    ("rate(x [ 5m ] )", RangeFunction("rate", X, 300)),
    # aggregations, by before or after
    ("sum(x)", Aggregation("sum", X)),
    ("avg(x)", Aggregation("avg", X)),
    ("min(x)", Aggregation("min", X)),
    ("max(x)", Aggregation("max", X)),
    ("count(x)", Aggregation("count", X)),
    ("sum by (host) (x)", Aggregation("sum", X, ("host",))),
    ("sum(x) by (host, mount)", Aggregation("sum", X, ("host", "mount"))),
    ("sum by () (x)", Aggregation("sum", X)),
    ("max by (host) (rate(x[5m]))", Aggregation("max", RangeFunction("rate", X, 300), ("host",))),
    # arithmetic and precedence
    ("x + 1", BinaryOp("+", X, num(1))),
    ("x - 1", BinaryOp("-", X, num(1))),
    ("x * 2", BinaryOp("*", X, num(2))),
    ("x / 2", BinaryOp("/", X, num(2))),
    ("1 + 2 * 3", BinaryOp("+", num(1), BinaryOp("*", num(2), num(3)))),
    ("(1 + 2) * 3", BinaryOp("*", BinaryOp("+", num(1), num(2)), num(3))),
    ("x - y - z", BinaryOp("-", BinaryOp("-", X, Y), Z)),
    ("x / y / z", BinaryOp("/", BinaryOp("/", X, Y), Z)),
    ("-x", Negation(X)),
    ("-x * 2", BinaryOp("*", Negation(X), num(2))),
    ("2 * -3", BinaryOp("*", num(2), num(-3))),
    ("- -x", Negation(Negation(X))),
    # comparisons bind looser than arithmetic, tighter than and/or
    ("x > 5", BinaryOp(">", X, num(5))),
    ("x >= 5", BinaryOp(">=", X, num(5))),
    ("x < 5", BinaryOp("<", X, num(5))),
    ("x <= 5", BinaryOp("<=", X, num(5))),
    ("x == 5", BinaryOp("==", X, num(5))),
    ("x != 5", BinaryOp("!=", X, num(5))),
    ("x + 1 > y * 2", BinaryOp(">", BinaryOp("+", X, num(1)), BinaryOp("*", Y, num(2)))),
    ("x > 5 < 10", BinaryOp("<", BinaryOp(">", X, num(5)), num(10))),
    ("heartbeat_age > 5m", BinaryOp(">", sel("heartbeat_age"), num(300))),
    # set operators
    ("x and y", BinaryOp("and", X, Y)),
    ("x or y", BinaryOp("or", X, Y)),
    ("x or y and z", BinaryOp("or", X, BinaryOp("and", Y, Z))),
    ("(x or y) and z", BinaryOp("and", BinaryOp("or", X, Y), Z)),
    ("x > 1 and y < 2", BinaryOp("and", BinaryOp(">", X, num(1)), BinaryOp("<", Y, num(2)))),
    ("not x", Not(X)),
    ("not not x", Not(Not(X))),
    ("x and not y", BinaryOp("and", X, Not(Y))),
    ("not x > 5", Not(BinaryOp(">", X, num(5)))),
    ("not x and y", BinaryOp("and", Not(X), Y)),
    # vector matching
    ("x + on(host) y", BinaryOp("+", X, Y, VectorMatching(True, ("host",)))),
    ("x / ignoring(code) y", BinaryOp("/", X, Y, VectorMatching(False, ("code",)))),
    ("x > on() y", BinaryOp(">", X, Y, VectorMatching(True, ()))),
    ("x and on(host, mount) y", BinaryOp("and", X, Y, VectorMatching(True, ("host", "mount")))),
    ("x or ignoring(a) y", BinaryOp("or", X, Y, VectorMatching(False, ("a",)))),
    ("x and on(host) not y", BinaryOp("and", X, Not(Y), VectorMatching(True, ("host",)))),
    # whitespace and newlines are insignificant
    ("  x\n  >\t5  ", BinaryOp(">", X, num(5))),
]


@pytest.mark.parametrize(("text", "tree"), GOLDEN, ids=[text for text, _ in GOLDEN])
def test_golden_tree(text, tree):
    assert parse(text) == tree


@pytest.mark.parametrize(("text", "tree"), GOLDEN, ids=[text for text, _ in GOLDEN])
def test_unparse_reparses_to_the_same_tree(text, tree):
    assert parse(unparse(tree)) == tree


CANONICAL = [
    ("avg_over_time(system_cpu_usage_percent[5m])>85 and system_load1>4", None),
    (
        'rate(http_requests_total{status=~"5.."}[5m]) / rate(http_requests_total[5m]) > 0.05',
        None,
    ),
    ("sum(x) by (host)", "sum by (host) (x)"),
    ("(x)", "x"),
    ("((x + y)) * 2", "(x + y) * 2"),
    ("x - (y - z)", "x - (y - z)"),
    ("(x - y) - z", "x - y - z"),
    ("not (x and y)", "not (x and y)"),
    ("(not x) > 1", None),
    ("-(x + 1)", "-(x + 1)"),
    ("1h30m", "5400"),
    ("rate(x[90m])", "rate(x[1h30m])"),
    ("x{a='it''s'}", None),
    ("1e20", "1e+20"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_unparse_is_canonical_and_stable(text, expected):
    try:
        tree = parse(text)
    except RuleSyntaxError:
        assert expected is None  # the case documents a rejected spelling
        return
    printed = unparse(tree)
    if expected is not None:
        assert printed == expected
    assert unparse(parse(printed)) == printed


ERRORS = [
    ("(x", "expected ')' at column 3"),
    ("sum(rate(x[5m]) by (host)", "expected ')' at column 17"),
    ("sum by (host) (rate(x[5m])", "expected ')' at column 27"),
    ("avg_over_time(system_cpu_usage_percent[5m] > 85", "expected ')' at column 44"),
    ("foo(x)", "unknown function 'foo' at column 1"),
    ("x > 1 and histogram_quantile(0.9, x)", "unknown function 'histogram_quantile' at column 11"),
    ("avg_over_time(x[31d])", "window must be at most 30d at column 17"),
    ("rate(x[0s])", "window must be at least 1s at column 8"),
    ("rate(x)", "expected window like [5m] at column 7"),
    ("rate(x[300])", "expected window like [5m] at column 8"),
    ("rate(x[5m)", "expected ']' at column 10"),
    ("rate(sum(x)[5m])", "rate needs a selector with a window, like rate(metric[5m]) at column 6"),
    (
        "x[5m]",
        "a window like [5m] is only allowed inside avg_over_time, increase, max_over_time, "
        "min_over_time, rate at column 2",
    ),
    ('x{host="a"', "expected '}' at column 11"),
    ('x{host="a" mount="/"}', "expected '}' at column 12"),
    ("x{host=a}", "expected quoted label value at column 8"),
    ('x{host~"a"}', "unexpected character '~' at column 7"),
    ('x{host=="a"}', "expected '=', '!=', '=~' or '!~' at column 7"),
    ('x{1a="b"}', "malformed number at column 3"),
    ('x{"a"="b"}', "expected label name at column 3"),
    ('x{a="b}', "unterminated string at column 5"),
    ("x > 'abc", "unterminated string at column 5"),
    ('x{a=~"(a+)+"}', "regex must not repeat a group that itself repeats or alternates, like (a+)+ at column 6"),
    ('x{a=~"(x)\\1"}', "regex must not use backreferences or lookaround at column 6"),
    ('x{a=~"(?=x)"}', "regex must not use backreferences or lookaround at column 6"),
    ('x{a=~"[a-"}', "invalid regex: unterminated character set at column 6"),
    ('x{a=~".*a.*b.*c"}', "regex is too complex: use at most two unbounded repetitions like .* at column 6"),
    ("", "expected expression at column 1"),
    ("   ", "expected expression at column 4"),
    (")", "expected expression at column 1"),
    ("x +", "expected expression at column 4"),
    ("x y", "unexpected 'y' at column 3"),
    ("x = 5", "unexpected '='; compare with '==' at column 3"),
    ("x AND y", "keywords are lowercase: write 'and' at column 3"),
    ("x unless y", "'unless' is not supported; write 'a and not b' at column 3"),
    ("x > bool 5", "'bool' is not supported; a comparison keeps the series for which it holds at column 5"),
    ("sum without (a) (x)", "'without' is not supported; list the labels to keep with 'by' at column 5"),
    ("x offset 5m", "'offset' is not supported at column 3"),
    ("x + on(a) group_left y", "'group_left' is not supported; binary operations match one-to-one at column 11"),
    ("sum by (a) (x) by (b)", "'by' is given twice at column 16"),
    ("sum(5)", "sum needs series, not a number at column 5"),
    ("count(1 + 2)", "count needs series, not a number at column 7"),
    ("5 and x", "'and' needs series on both sides at column 3"),
    ("x or 1", "'or' needs series on both sides at column 3"),
    ("not 1", "'not' needs series, not a number at column 5"),
    ("1 + on(a) x", "on(...) needs series on both sides at column 3"),
    ("x * ignoring(a) 2", "ignoring(...) needs series on both sides at column 3"),
    ("and", "expected expression at column 1"),
    ("x > NaN", "NaN and Inf are not allowed as numbers at column 5"),
    ("x < inf", "NaN and Inf are not allowed as numbers at column 5"),
    ("x > 1e999", "number is too large at column 5"),
    ("x > 1e", "malformed number at column 5"),
    ("x > 0x1F", "malformed number at column 5"),
    ("x > 1.5h", "a duration takes whole numbers, like 90s or 1h30m at column 5"),
    ("x > 30m1h", "malformed duration (use units w, d, h, m, s from largest to smallest) at column 5"),
    ("x > 5ms", "malformed duration (use units w, d, h, m, s from largest to smallest) at column 5"),
    ("x > 99999999999999d", "duration is too large at column 5"),
    ("x > 5 % 2", "unexpected character '%' at column 7"),
    ("x\n  > @", "unexpected character '@' at line 2, column 5"),
    ("x > \x00", "unexpected character U+0000 at column 5"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[text for text, _ in ERRORS])
def test_error_names_what_and_where(text, message):
    with pytest.raises(RuleSyntaxError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_error_carries_message_and_position_separately():
    with pytest.raises(RuleSyntaxError) as caught:
        parse("sum by (host) (rate(x[5m])")
    assert caught.value.message == "expected ')'"
    assert caught.value.position == 26
    assert caught.value.column == 27
    assert isinstance(caught.value, ValueError)


def test_errors_survive_pickling_with_their_position():
    with pytest.raises(RuleSyntaxError) as caught:
        parse("x\n  > @")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (str(copy), copy.message, copy.position, copy.line, copy.column) == (
        "unexpected character '@' at line 2, column 5",
        "unexpected character '@'",
        6,
        2,
        5,
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('id')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "x.__class__",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('1')",
        "lambda: 1",
        "[x for x in y]",
        "x if y else z",
        "x ** 2",
        "x % 2",
        "x ^ 2",
        "`x`",
        "x; y",
        "x{a=`b`}",
        '{a="b"}',
        '"just a string"',
        "sum",
        "rate",
        'x{a="b"}[5m]',
        "rate(x[5m:1m])",
        "x @ 1609746000",
    ],
)
def test_hostile_or_foreign_text_is_a_syntax_error(text):
    with pytest.raises(RuleSyntaxError):
        parse(text)


def test_ten_thousand_nested_parentheses_fail_fast_without_recursion_error():
    text = "(" * 10_000 + "x" + ")" * 10_000
    started = time.perf_counter()
    with pytest.raises(RuleSyntaxError, match="at most 4096 characters"):
        parse(text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "text",
    [
        "(" * 2000 + "x" + ")" * 2000,
        "-" * 4000 + "x",
        "not " * 1000 + "x",
        "sum(" * 800 + "x" + ")" * 800,
        "(" * 4000,
    ],
)
def test_deep_nesting_within_the_length_limit_stops_at_the_depth_limit(text):
    with pytest.raises(RuleSyntaxError, match=f"nests deeper than {MAX_DEPTH} levels"):
        parse(text)


def test_nesting_up_to_the_depth_limit_is_accepted():
    assert parse("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH) == X


def test_a_one_megabyte_string_fails_fast():
    for text in ("x" * 1_000_000, 'x{a="' + "a" * 1_000_000 + '"}', "1" * 1_000_000):
        started = time.perf_counter()
        with pytest.raises(RuleSyntaxError) as caught:
            parse(text)
        assert caught.value.message == f"expression must be at most {MAX_EXPRESSION_LENGTH} characters"
        assert time.perf_counter() - started < 0.1


def test_long_flat_expressions_hit_the_node_limit():
    with pytest.raises(RuleSyntaxError, match=f"more than {MAX_NODES} parts"):
        parse(" + ".join(["1"] * 1000))


def test_too_many_selectors_is_rejected():
    text = " + ".join(f"m{i}" for i in range(MAX_SELECTORS + 1))
    with pytest.raises(RuleSyntaxError, match=f"more than {MAX_SELECTORS} selectors"):
        parse(text)
    parse(" + ".join(f"m{i}" for i in range(MAX_SELECTORS)))


def test_too_expensive_windows_are_rejected():
    # Each 1d window reads ~1,440 minute rollups per series; seven exceed the cost bound.
    text = " + ".join(f"rate(m{i}[1d])" for i in range(7))
    with pytest.raises(RuleSyntaxError, match="too expensive"):
        parse(text)
    parse(" + ".join(f"rate(m{i}[1d])" for i in range(6)))


def test_huge_numbers_and_digit_strings_are_handled():
    assert parse("1" * 300) == num(float("1" * 300))
    with pytest.raises(RuleSyntaxError, match="number is too large"):
        parse("9" * 400)
    assert parse("1e-400") == num(0.0)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("/data.*", "/data/db", True),
        ("/data.*", "/srv/data", False),  # anchored at both ends
        ("5..", "503", True),
        ("5..", "5030", False),
        ("tmpfs|overlay", "overlay", True),
        ("", "", True),
        ("a.b", "a\nb", True),  # '.' matches newlines, like PromQL
    ],
)
def test_regex_matchers_are_fully_anchored(pattern, value, matches):
    assert Matcher("l", "=~", pattern).matches(value) is matches
    assert Matcher("l", "!~", pattern).matches(value) is not matches


@pytest.mark.parametrize(
    "pattern",
    [".*.*x", "(a*)?(a*)?x", "[a-z]+-[a-z]+x", "(a|aa)(a|aa)(a|aa).*x", r"\d{1,3}(\.\d{1,3}){3}x"],
)
def test_worst_accepted_regexes_match_long_values_quickly(pattern):
    parse(f'x{{l=~"{pattern}"}}')
    value = "a" * 256
    started = time.perf_counter()
    assert regex_matches(pattern + "_unique", value) is False
    assert time.perf_counter() - started < 0.05


def test_regex_never_runs_on_values_longer_than_the_bound():
    assert Matcher("l", "=~", ".*").matches("a" * 10_000) is False
    assert Matcher("l", "!~", ".*").matches("a" * 10_000) is True


def test_plan_lists_each_distinct_input_once():
    tree = parse(
        'rate(http_requests_total{status=~"5.."}[5m]) / rate(http_requests_total[5m]) > 0.05'
        ' and rate(http_requests_total[5m]) > 1 and up{b="1", a="2"} and up{a="2", b="1"}'
    )
    requirements = plan(tree).requirements
    assert [(r.selector.name, r.function, r.window) for r in requirements] == [
        ("http_requests_total", "rate", 300),
        ("http_requests_total", "rate", 300),
        ("up", None, None),
    ]
    assert requirements[0].selector.matchers == (Matcher("status", "=~", "5.."),)
    assert plan(tree).metric_names == {"http_requests_total", "up"}
    assert plan(tree).reads("up", {"a": "2", "b": "1", "host": "h"})
    assert not plan(tree).reads("up", {"a": "2"})


def test_plan_cost_grows_with_window_and_size():
    assert plan(parse("x")).cost < plan(parse("x + y")).cost < plan(parse("rate(x[5m])")).cost
    assert plan(parse("rate(x[5m])")).cost < plan(parse("rate(x[1h])")).cost


def test_the_rule_package_never_calls_dynamic_evaluation_builtins():
    forbidden = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "locals", "vars"}
    package = Path(__file__).resolve().parents[2] / "alerts" / "rules"
    calls = [
        (path.name, node.func.id)
        for path in sorted(package.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in forbidden
    ]
    assert len(list(package.glob("*.py"))) >= 10
    assert calls == []


def test_every_example_in_the_reference_page_parses():
    page = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    section = page.split("## Examples", 1)[1].split("## Grammar", 1)[0]
    examples = [m.group(1).replace("\\|", "|") for m in re.finditer(r"^\| `(.+?)` \|", section, re.MULTILINE)]
    assert len(examples) >= 10
    for text in examples:
        assert parse(unparse(parse(text))) == parse(text)


# -- generated input ---------------------------------------------------------------

TOKENS = [
    "x", "system_load1", "http_requests_total", "host", "mount", "a:b", "_",
    "0", "1", "2.5", ".5", "1e3", "1e", "5m", "1h30m", "31d", "0s", "1.5h", "NaN", "Inf",
    '"a"', "'b'", '"5.."', '"(a+)+"', '"', "'", "\\",
    "{", "}", "[", "]", "(", ")", ",", "=", "==", "!=", "=~", "!~", ">", ">=", "<", "<=",
    "+", "-", "*", "/", "%", "^", ".", "@", ":",
    "and", "or", "not", "by", "on", "ignoring", "unless", "bool", "without", "offset", "group_left",
    "sum", "avg", "min", "max", "count", "rate", "increase", "avg_over_time", "max_over_time",
    "min_over_time", "foo", "__import__", "__class__",
    " ", "\n", "\t",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_raises_nothing_but_rule_syntax_error(text):
    try:
        tree = parse(text)
    except RuleSyntaxError:
        return
    assert parse(unparse(tree)) == tree


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.sampled_from([" ", ""]))
def test_token_soup_raises_nothing_but_rule_syntax_error(tokens, glue):
    try:
        tree = parse(glue.join(tokens))
    except RuleSyntaxError:
        return
    assert parse(unparse(tree)) == tree


# Well-typed trees, generated directly, must print and re-parse to themselves.
_labels = st.sampled_from(["host", "mount", "code", "on", "by"])
_label_lists = st.lists(_labels, max_size=3, unique=True).map(tuple)
_matchers = st.builds(
    Matcher,
    _labels,
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(["", "a", "/data.*", 'q"uote', "back\\slash", "new\nline", "tab\t", "5.."]),
)
_selectors = st.builds(
    Selector,
    st.sampled_from(["x", "y", "node:ratio", "system_load1"]),
    st.lists(_matchers, max_size=3).map(tuple),
)
_scalars = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300).map(NumberLiteral)
_windows = st.integers(min_value=1, max_value=3600) | st.sampled_from([5400, 86400, 30 * 86400])
_range_calls = st.builds(
    RangeFunction,
    st.sampled_from(["avg_over_time", "max_over_time", "min_over_time", "rate", "increase"]),
    _selectors,
    _windows,
)
_matching = st.none() | st.builds(VectorMatching, st.booleans(), _label_lists)


def _extend_vectors(children):
    vectors, scalars = children
    either = vectors | scalars
    return (
        st.builds(Aggregation, st.sampled_from(["sum", "avg", "min", "max", "count"]), vectors, _label_lists)
        | st.builds(Negation, vectors)
        | st.builds(Not, vectors)
        | st.builds(BinaryOp, st.sampled_from(["and", "or"]), vectors, vectors, _matching)
        | st.builds(BinaryOp, st.sampled_from(["+", "-", "*", "/", ">", "<=", "==", "!="]), vectors, vectors, _matching)
        | st.builds(BinaryOp, st.sampled_from(["+", "*", ">", "!="]), vectors, scalars)
        | st.builds(BinaryOp, st.sampled_from(["-", "/", "<", "=="]), either, vectors)
    )


scalar_trees = st.recursive(
    _scalars, lambda s: st.builds(BinaryOp, st.sampled_from(["+", "-", "*", "/", ">", "=="]), s, s), max_leaves=4
)
vector_trees = st.recursive(
    _selectors | _range_calls,
    lambda v: _extend_vectors((v, scalar_trees)),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_trees | scalar_trees)
def test_generated_trees_round_trip_through_text(tree):
    assert parse(unparse(tree)) == tree
