"""Evaluating rule expressions against an in-memory source at a fixed ``now``."""

from __future__ import annotations

import datetime as dt
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from alerts.rules import (
    EvaluationCache,
    Requirement,
    Result,
    RuleEvaluationError,
    compute_window,
    evaluate,
    parse,
    plan_all,
    unparse,
)
from alerts.rules.limits import MAX_NODES
from alerts.rules.memory import MemorySource
from tests.alerts.test_rule_parser import scalar_trees, vector_trees

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def run(text: str, source: MemorySource, cache: EvaluationCache | None = None) -> list[tuple[dict[str, str], float]]:
    return [(r.labels, r.value) for r in evaluate(parse(text), source, NOW, cache)]


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource(NOW)
    s.add("system_load1", {"host": "a"}, 5.0)
    s.add("system_load1", {"host": "b"}, 1.0)
    s.add("system_load1", {"host": "c"}, 4.0)
    s.add("cores", {"host": "a"}, 4.0)
    s.add("cores", {"host": "b"}, 2.0)
    s.add("cores", {"host": "c"}, 0.0)
    for mount, used in (("/", 50.0), ("/data", 95.0), ("/data2", 91.0)):
        s.add("system_disk_usage_percent", {"host": "a", "mount": mount}, used)
    s.add("system_disk_usage_percent", {"host": "b", "mount": "/"}, 97.0)
    return s


# -- selectors ---------------------------------------------------------------------


def test_selector_returns_each_matching_series_with_labels_value_and_name(source):
    results = evaluate(parse('system_load1{host!="b"}'), source, NOW)
    assert results == [
        Result({"host": "a"}, 5.0, "system_load1"),
        Result({"host": "c"}, 4.0, "system_load1"),
    ]


@pytest.mark.parametrize(
    ("text", "mounts"),
    [
        ('system_disk_usage_percent{mount="/data"}', ["/data"]),
        ('system_disk_usage_percent{mount=~"/data.*"}', ["/data", "/data2"]),
        ('system_disk_usage_percent{mount=~"/dat"}', []),  # anchored
        ('system_disk_usage_percent{mount!~"/data.*", host="a"}', ["/"]),
        ('system_disk_usage_percent{host="a", mount!="/"}', ["/data", "/data2"]),
        ('system_disk_usage_percent{absent=""}', ["/", "/", "/data", "/data2"]),
    ],
)
def test_matchers_select_series(source, text, mounts):
    assert sorted(labels["mount"] for labels, _ in run(text, source)) == mounts


def test_unknown_metric_is_an_empty_result_not_an_error(source):
    assert run("no_such_metric", source) == []
    assert run("avg_over_time(no_such_metric[5m]) > 1", source) == []
    assert run("sum(no_such_metric)", source) == []
    assert run("no_such_metric + 1", source) == []


def test_source_superset_none_and_non_finite_values_are_filtered():
    class Sloppy:
        def latest(self, name, matchers):
            return [({"host": "a"}, 1.0), ({"host": "b"}, None), ({"host": "c"}, math.nan), ({"host": "d"}, math.inf)]

        def window(self, name, matchers, start, end):
            return []

    assert [(r.labels, r.value) for r in evaluate(parse("x"), Sloppy(), NOW)] == [({"host": "a"}, 1.0)]
    assert [r.labels for r in evaluate(parse('x{host!="a"}'), Sloppy(), NOW)] == []


# -- range functions -----------------------------------------------------------------


@pytest.fixture
def cpu() -> MemorySource:
    s = MemorySource(NOW)
    # Inside (now-5m, now]: 80, 90, 100, 70. The point exactly 5m ago and the future one are outside.
    s.add("cpu", {"host": "a"}, [(ago(300), 1000.0), (ago(240), 80.0), (ago(180), 90.0), (ago(60), 100.0)])
    s.add("cpu", {"host": "a"}, [(NOW, 70.0), (NOW + dt.timedelta(seconds=10), 5000.0)])
    s.add("cpu", {"host": "b"}, [(ago(600), 99.0)])  # nothing in the window
    return s


@pytest.mark.parametrize(
    ("function", "expected"),
    [("avg_over_time", 85.0), ("max_over_time", 100.0), ("min_over_time", 70.0)],
)
def test_over_time_functions_use_the_left_open_window(cpu, function, expected):
    assert run(f"{function}(cpu[5m])", cpu) == [({"host": "a"}, expected)]


def test_rate_and_increase_handle_a_counter_reset():
    s = MemorySource(NOW)
    # 100 -> 160 (+60) -> 20 (reset: +20) -> 80 (+60): 140 over the 180 s sampled.
    s.add("requests_total", {"host": "a"}, [(ago(180), 100.0), (ago(120), 160.0), (ago(60), 20.0), (NOW, 80.0)])
    [(labels, rate)] = run("rate(requests_total[5m])", s)
    assert labels == {"host": "a"}
    assert rate == pytest.approx(140 / 180)
    [(_, increase)] = run("increase(requests_total[5m])", s)
    assert increase == pytest.approx(140 / 180 * 300)


def test_rate_needs_two_points():
    s = MemorySource(NOW)
    s.add("requests_total", {"host": "a"}, [(ago(30), 5.0)])
    s.add("requests_total", {"host": "b"}, [(ago(30), 5.0), (ago(30), 9.0)])  # zero span
    assert run("rate(requests_total[5m])", s) == []
    assert run("increase(requests_total[5m])", s) == []


def test_range_functions_drop_the_metric_name(cpu):
    assert [r.name for r in evaluate(parse("max_over_time(cpu[5m])"), cpu, NOW)] == [None]


def test_rollup_buckets_are_weighted_and_use_their_own_columns():
    # (start, min, avg, max, last, count), like monitoring.reads.WindowPoint.
    buckets = [(ago(7200), 10.0, 20.0, 30.0, 100.0, 1), (ago(3600), 0.0, 50.0, 90.0, 400.0, 3)]
    assert compute_window("avg_over_time", buckets, 3 * 3600, NOW) == pytest.approx((20 + 150) / 4)
    assert compute_window("max_over_time", buckets, 3 * 3600, NOW) == 90.0
    assert compute_window("min_over_time", buckets, 3 * 3600, NOW) == 0.0
    assert compute_window("rate", buckets, 3 * 3600, NOW) == pytest.approx(300 / 3600)
    assert compute_window("increase", buckets, 3 * 3600, NOW) == pytest.approx(300 / 3600 * 3 * 3600)
    assert compute_window("max_over_time", [(NOW + dt.timedelta(minutes=1), 1.0, 1.0, 1.0, 1.0, 1)], 60, NOW) is None


def test_buckets_before_the_window_count_only_when_they_straddle_its_start():
    # A read wider than the window (the engine may read the longest window once).
    buckets = [
        (ago(4 * 3600), 1.0, 1000.0, 1000.0, 1.0, 1),  # wholly before a 2h window
        (ago(3 * 3600), 1.0, 1000.0, 1000.0, 1.0, 1),  # wholly before it too
        (ago(2 * 3600 + 60), 2.0, 10.0, 20.0, 2.0, 2),  # straddles now - 2h
        (ago(3600 + 60), 3.0, 30.0, 40.0, 3.0, 2),
    ]
    assert compute_window("max_over_time", buckets, 2 * 3600, NOW) == 40.0
    assert compute_window("avg_over_time", buckets, 2 * 3600, NOW) == pytest.approx(20.0)
    assert compute_window("max_over_time", buckets[:1], 2 * 3600, NOW) is None


# -- aggregations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sum(system_load1)", [({}, 10.0)]),
        ("avg(system_load1)", [({}, 10.0 / 3)]),
        ("min(system_load1)", [({}, 1.0)]),
        ("max(system_load1)", [({}, 5.0)]),
        ("count(system_load1)", [({}, 3.0)]),
        ("count by (host) (system_disk_usage_percent)", [({"host": "a"}, 3.0), ({"host": "b"}, 1.0)]),
        ("max(system_disk_usage_percent) by (host)", [({"host": "a"}, 95.0), ({"host": "b"}, 97.0)]),
        ("sum by (host, mount) (system_load1)", [({"host": "a"}, 5.0), ({"host": "b"}, 1.0), ({"host": "c"}, 4.0)]),
        ("sum by (nothing) (system_load1)", [({}, 10.0)]),
        ("count(system_disk_usage_percent > 90)", [({}, 3.0)]),
    ],
)
def test_aggregations(source, text, expected):
    results = run(text, source)
    assert [labels for labels, _ in results] == [labels for labels, _ in expected]
    assert [value for _, value in results] == pytest.approx([value for _, value in expected])


def test_aggregations_drop_the_metric_name(source):
    assert [r.name for r in evaluate(parse("sum by (host) (system_load1)"), source, NOW)] == [None, None, None]


# -- comparisons and arithmetic ----------------------------------------------------


def test_comparison_filters_series_and_keeps_their_values_and_name(source):
    results = evaluate(parse("system_load1 > 3"), source, NOW)
    assert results == [Result({"host": "a"}, 5.0, "system_load1"), Result({"host": "c"}, 4.0, "system_load1")]


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("system_load1 >= 4", ["a", "c"]),
        ("system_load1 < 4", ["b"]),
        ("system_load1 <= 4", ["b", "c"]),
        ("system_load1 == 4", ["c"]),
        ("system_load1 != 4", ["a", "b"]),
        ("3 < system_load1", ["a", "c"]),  # the number on the left still filters the series
        ("system_load1 > 1 < 5", ["c"]),
    ],
)
def test_every_comparison_operator_filters(source, text, hosts):
    assert [labels["host"] for labels, _ in run(text, source)] == hosts


def test_number_on_the_left_keeps_the_series_value(source):
    assert run("3 < system_load1", source) == [({"host": "a"}, 5.0), ({"host": "c"}, 4.0)]


def test_disk_per_mount_is_one_result_per_series(source):
    assert run("system_disk_usage_percent > 90", source) == [
        ({"host": "a", "mount": "/data"}, 95.0),
        ({"host": "a", "mount": "/data2"}, 91.0),
        ({"host": "b", "mount": "/"}, 97.0),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", [({}, 7.0)]),
        ("(1 + 2) * 3", [({}, 9.0)]),
        ("10 / 4 - 1", [({}, 1.5)]),
        ("-2 * -3", [({}, 6.0)]),
        ("5m / 1s", [({}, 300.0)]),
        ("5 > 3", [({}, 5.0)]),
        ("3 > 5", []),
        ("(3 > 5) + 1", []),
        ("1 / 0", []),
        ("0 / 0", []),
        ("1e308 * 10", []),
    ],
)
def test_number_arithmetic_and_comparison(source, text, expected):
    assert run(text, source) == expected


def test_arithmetic_with_a_number_applies_to_each_series_and_drops_the_name(source):
    results = evaluate(parse("system_load1 * 10 - 1"), source, NOW)
    assert [(r.labels["host"], r.value, r.name) for r in results] == [
        ("a", 49.0, None),
        ("b", 9.0, None),
        ("c", 39.0, None),
    ]
    assert run("100 - system_load1{host='a'}", source) == [({"host": "a"}, 95.0)]
    assert run("-system_load1{host='a'}", source) == [({"host": "a"}, -5.0)]


def test_series_arithmetic_matches_identical_labels(source):
    assert run("system_load1 / cores", source) == [({"host": "a"}, 1.25), ({"host": "b"}, 0.5)]


def test_division_by_zero_drops_the_series(source):
    # host c has 0 cores: no value, so "load per core > 1" cannot fire on it.
    assert [labels["host"] for labels, _ in run("system_load1 / cores > 0", source)] == ["a", "b"]


def test_series_comparison_keeps_the_left_side(source):
    assert run("system_load1 > cores", source) == [({"host": "a"}, 5.0), ({"host": "c"}, 4.0)]


def test_series_without_a_partner_are_dropped(source):
    source.add("cores", {"host": "d"}, 8.0)
    assert [labels["host"] for labels, _ in run("cores - system_load1", source)] == ["a", "b", "c"]


# -- vector matching ------------------------------------------------------------------


@pytest.fixture
def http() -> MemorySource:
    s = MemorySource(NOW)
    for host, counts in {"a": {"200": 900.0, "500": 100.0}, "b": {"200": 1000.0, "503": 10.0}}.items():
        for status, total in counts.items():
            s.add("http_requests_total", {"host": host, "status": status}, [(ago(240), 0.0), (NOW, total)])
    s.add("http_errors_budget", {"host": "a"}, 0.05)
    s.add("http_errors_budget", {"host": "b"}, 0.05)
    return s


def test_error_ratio_per_host_with_sum_by(http):
    text = (
        'sum by (host) (rate(http_requests_total{status=~"5.."}[5m]))'
        " / sum by (host) (rate(http_requests_total[5m])) > 0.05"
    )
    assert run(text, http) == [({"host": "a"}, pytest.approx(0.1))]


def test_ratio_of_the_same_labels_matches_each_status_to_itself(http):
    text = 'rate(http_requests_total{status=~"5.."}[5m]) / rate(http_requests_total[5m])'
    assert run(text, http) == [({"host": "a", "status": "500"}, 1.0), ({"host": "b", "status": "503"}, 1.0)]


def test_on_matches_by_the_listed_labels_and_keeps_only_them(http):
    text = 'rate(http_requests_total{status="500"}[5m]) / on(host) sum by (host) (rate(http_requests_total[5m]))'
    assert run(text, http) == [({"host": "a"}, pytest.approx(0.1))]


def test_ignoring_matches_without_the_listed_labels(http):
    text = (
        'rate(http_requests_total{status=~"5.."}[5m]) / ignoring(status) sum by (host) '
        "(rate(http_requests_total[5m])) > ignoring(status) http_errors_budget"
    )
    assert run(text, http) == [({"host": "a"}, pytest.approx(0.1))]


def test_comparison_with_on_keeps_left_values(source):
    assert run('system_disk_usage_percent{mount="/"} > on(host) cores * 20', source) == [({"host": "b"}, 97.0)]


def test_many_to_one_matching_is_an_evaluation_error(source):
    with pytest.raises(RuleEvaluationError, match="several series on the left of '>'"):
        evaluate(parse("system_disk_usage_percent > on(host) cores"), source, NOW)
    with pytest.raises(RuleEvaluationError, match="several series on the right of '<'"):
        evaluate(parse("cores < on(host) system_disk_usage_percent"), source, NOW)


def test_an_ambiguous_right_side_is_only_an_error_when_a_left_series_needs_it(source):
    assert run('cores{host="c"} * on(host) system_disk_usage_percent', source) == []


# -- and / or / not ---------------------------------------------------------------------


@pytest.fixture
def cpu_load() -> MemorySource:
    s = MemorySource(NOW)
    for host, cpu_pct, load in (("a", 90.0, 5.0), ("b", 90.0, 1.0), ("c", 10.0, 9.0)):
        s.add("system_cpu_usage_percent", {"host": host}, [(ago(t), cpu_pct) for t in range(0, 300, 10)])
        s.add("system_load1", {"host": host}, load)
    return s


def test_design_example_and_keeps_left_series_that_have_a_right_partner(cpu_load):
    text = "avg_over_time(system_cpu_usage_percent[5m]) > 85 and system_load1 > 4"
    assert run(text, cpu_load) == [({"host": "a"}, 90.0)]


def test_and_ignores_the_metric_name_and_keeps_the_left_name(cpu_load):
    results = evaluate(parse("system_load1 and system_cpu_usage_percent > 50"), cpu_load, NOW)
    assert [(r.labels["host"], r.value, r.name) for r in results] == [
        ("a", 5.0, "system_load1"),
        ("b", 1.0, "system_load1"),
    ]


def test_or_is_the_union_preferring_the_left(cpu_load):
    assert run("system_load1 > 4 or system_cpu_usage_percent > 50", cpu_load) == [
        ({"host": "a"}, 5.0),
        ({"host": "b"}, 90.0),
        ({"host": "c"}, 9.0),
    ]


def test_and_not_keeps_left_series_without_a_right_partner(cpu_load):
    assert run("system_load1 and not system_cpu_usage_percent > 50", cpu_load) == [({"host": "c"}, 9.0)]


def test_set_operators_honour_on(source):
    assert [r[0] for r in run("system_disk_usage_percent and on(host) system_load1 > 4", source)] == [
        {"host": "a", "mount": "/"},
        {"host": "a", "mount": "/data"},
        {"host": "a", "mount": "/data2"},
    ]
    assert [r[0]["host"] for r in run("system_disk_usage_percent and ignoring(mount) not cores > 3", source)] == ["b"]
    assert run("system_load1 or on(host) system_disk_usage_percent", source) == run("system_load1", source)


def test_not_is_one_result_when_the_series_is_missing(source):
    assert run('not heartbeat_seconds_since_ping{check="backup", host=~"b.*"}', source) == [({"check": "backup"}, 1.0)]
    assert run('not avg_over_time(probe_success{target="api"}[5m])', source) == [({"target": "api"}, 1.0)]
    assert run("not (system_load1 > 100)", source) == [({}, 1.0)]
    assert run("not system_load1", source) == []
    assert run("not not system_load1", source) == [({}, 1.0)]


def test_or_not_adds_an_absence_result(source):
    assert run('system_load1 > 4 or not cores{host="z"}', source) == [({"host": "a"}, 5.0), ({"host": "z"}, 1.0)]


# -- the per-cycle cache ------------------------------------------------------------


def test_a_cycle_reads_each_requirement_once_across_rules(cpu_load):
    rules = [
        "avg_over_time(system_cpu_usage_percent[5m]) > 85 and system_load1 > 4",
        "avg_over_time(system_cpu_usage_percent[5m]) > 50",
        "system_load1 > 1 and avg_over_time(system_cpu_usage_percent[5m]) < 95",
        "system_load1 / system_load1",
    ]
    cache = EvaluationCache(NOW)
    for rule in rules:
        evaluate(parse(rule), cpu_load, NOW, cache)
    assert cpu_load.reads == 2
    assert len(cache) == 2


def test_a_prefetched_cache_answers_without_the_source(cpu_load):
    class Unreachable:
        def latest(self, name, matchers):
            raise AssertionError("read despite the prefetch")

        def window(self, name, matchers, start, end):
            raise AssertionError("read despite the prefetch")

    exprs = [parse("avg_over_time(system_cpu_usage_percent[5m]) > 85 and system_load1 > 4")]
    cache = EvaluationCache(NOW)
    for requirement in plan_all(exprs).requirements:
        name = requirement.selector.name
        series = [(dict(key), points) for (n, key), points in cpu_load.series.items() if n == name]
        if requirement.function is None:
            cache.put(requirement, [(labels, points[-1][1]) for labels, points in series])
        else:
            cache.put_points(requirement, series)
    assert evaluate(exprs[0], Unreachable(), NOW, cache) == [Result({"host": "a"}, 90.0)]


def test_cache_put_checks_matchers_so_the_engine_may_pass_all_series_of_a_metric(source):
    requirement = Requirement.of(parse('system_load1{host=~"a|c"}'))  # type: ignore[arg-type]
    cache = EvaluationCache(NOW)
    cache.put(requirement, [({"host": "a"}, 1.0), ({"host": "b"}, 2.0), ({"host": "c"}, 3.0)])
    assert [r.labels["host"] for r in cache.results(requirement)] == ["a", "c"]


def test_equivalent_selectors_share_a_cache_entry(source):
    cache = EvaluationCache(NOW)
    evaluate(parse('system_disk_usage_percent{host="a", mount="/"}'), source, NOW, cache)
    evaluate(parse('system_disk_usage_percent{mount="/", host="a"}'), source, NOW, cache)
    assert source.reads == 1


def test_a_cache_from_another_time_is_refused(source):
    with pytest.raises(ValueError, match="another time"):
        evaluate(parse("system_load1"), source, NOW, EvaluationCache(ago(10)))


# -- robustness ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_trees | scalar_trees)
def test_any_valid_tree_evaluates_or_reports_ambiguous_matching(tree):
    s = MemorySource(NOW)
    for name in ("x", "y", "node:ratio", "system_load1"):
        for host, mount in (("a", "/"), ("a", "/data"), ("b", "/")):
            s.add(name, {"host": host, "mount": mount}, [(ago(120), 3.0), (ago(60), 0.0), (NOW, 2.0)])
    try:
        results = evaluate(tree, s, NOW)
    except RuleEvaluationError:
        return
    assert all(math.isfinite(r.value) and isinstance(r.labels, dict) for r in results)
    assert len({tuple(sorted(r.labels.items())) for r in results}) == len(results)


def test_the_largest_accepted_tree_evaluates_well_within_the_recursion_limit(source):
    text = "system_load1" + " + 1" * ((MAX_NODES - 1) // 2)
    tree = parse(text)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(600)  # pytest's own frames included; the default is 1,000
    try:
        results = run(text, source)
        printed = unparse(tree)
    finally:
        sys.setrecursionlimit(limit)
    assert [value for _, value in results] == [5.0 + 99, 1.0 + 99, 4.0 + 99]
    assert parse(printed) == tree
