"""Series status against thresholds, driven with fixed times."""

from __future__ import annotations

import datetime as dt

import pytest

from monitoring import status
from monitoring.models import Series, Threshold
from monitoring.status import CRITICAL, HEALTHY, STALE, UNKNOWN, WARNING, Rule, State, step

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CPU = Rule(warning=70, critical=85)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class Driver:
    """Feed one sample per step (taken at the step's time) and keep the state."""

    def __init__(self, rule: Rule | None, interval: int = 10) -> None:
        self.rule = rule
        self.interval = interval
        self.state = State()

    def feed(self, seconds: float, value: float | None, *, sample_age: float = 0) -> str:
        now = at(seconds)
        sample_at = None if value is None else now - dt.timedelta(seconds=sample_age)
        self.state = step(
            self.state, value=value, at=sample_at, interval_seconds=self.interval, rule=self.rule, now=now
        )
        return self.state.status


# --- the state machine --------------------------------------------------------------


def test_levels_follow_the_value_at_once_without_for():
    series = Driver(CPU)
    assert series.feed(0, 50) == HEALTHY
    assert series.feed(10, 70) == WARNING  # at the level counts
    assert series.feed(20, 90) == CRITICAL
    assert series.feed(30, 75) == WARNING
    assert series.feed(40, 10) == HEALTHY


def test_below_direction_breaches_under_the_levels():
    series = Driver(Rule(warning=14, critical=3, direction="below"))
    assert series.feed(0, 30) == HEALTHY
    assert series.feed(10, 10) == WARNING
    assert series.feed(20, 2) == CRITICAL


def test_a_breach_shorter_than_for_never_changes_the_status():
    series = Driver(Rule(warning=70, critical=85, for_duration=dt.timedelta(minutes=1)))
    assert series.feed(0, 50) == HEALTHY
    assert series.feed(10, 90) == HEALTHY
    assert series.feed(50, 90) == HEALTHY
    assert series.feed(60, 50) == HEALTHY  # dropped before the minute was up
    assert series.feed(70, 90) == HEALTHY  # a new breach waits the full minute again
    assert series.feed(120, 90) == HEALTHY
    assert series.feed(130, 90) == CRITICAL


def test_a_breach_that_lasts_for_changes_the_status_and_remembers_since_when():
    series = Driver(Rule(warning=70, for_duration=dt.timedelta(seconds=30)))
    series.feed(0, 50)
    series.feed(10, 75)
    assert series.state.breach_level == WARNING and series.state.breach_since == at(10)
    assert series.feed(39, 75) == HEALTHY
    assert series.feed(40, 75) == WARNING
    assert series.state.status_since == at(40)
    assert series.state.breach_level == "" and series.state.breach_since is None


def test_critical_pending_that_falls_back_to_warning_keeps_its_start():
    series = Driver(Rule(warning=70, critical=85, for_duration=dt.timedelta(seconds=30)))
    series.feed(0, 50)
    series.feed(10, 90)  # critical pending
    series.feed(20, 75)  # still a warning breach, since 10
    assert series.feed(40, 75) == WARNING


def test_a_critical_spike_during_a_pending_warning_does_not_skip_the_wait():
    series = Driver(Rule(warning=70, critical=85, for_duration=dt.timedelta(seconds=30)))
    series.feed(0, 75)
    series.feed(20, 95)
    assert series.feed(30, 95) == WARNING  # warning held 30 s; critical only 10 s
    assert series.feed(50, 95) == WARNING
    assert series.feed(60, 95) == CRITICAL


def test_getting_better_is_immediate_even_with_for():
    series = Driver(Rule(warning=70, critical=85, for_duration=dt.timedelta(minutes=5)))
    series.feed(0, 95)
    assert series.feed(300, 95) == CRITICAL
    assert series.feed(310, 75) == WARNING
    assert series.feed(320, 10) == HEALTHY


def test_hysteresis_holds_a_breach_until_the_value_is_back_past_clear():
    series = Driver(Rule(warning=80, critical=95, clear=70))
    series.feed(0, 85)
    assert series.feed(10, 75) == WARNING  # under warning but not past clear
    assert series.feed(20, 79) == WARNING
    assert series.feed(30, 70) == HEALTHY  # at clear counts as cleared
    assert series.feed(40, 75) == HEALTHY  # under warning: no new breach


def test_hysteresis_from_critical_holds_at_warning():
    series = Driver(Rule(warning=80, critical=95, clear=70))
    series.feed(0, 99)
    assert series.feed(10, 75) == WARNING
    assert series.feed(20, 60) == HEALTHY


def test_hysteresis_of_a_critical_only_threshold_holds_critical():
    series = Driver(Rule(critical=95, clear=90))
    series.feed(0, 96)
    assert series.feed(10, 93) == CRITICAL
    assert series.feed(20, 89) == HEALTHY


def test_no_data_is_unknown():
    assert Driver(CPU).feed(0, None) == UNKNOWN


def test_no_sample_for_three_intervals_is_stale_whatever_the_value():
    series = Driver(CPU, interval=10)
    assert series.feed(0, 95) == CRITICAL
    assert series.feed(30, 95, sample_age=30) == CRITICAL  # exactly three intervals: not yet
    assert series.feed(31, 95, sample_age=31) == STALE
    assert series.state.status_since == at(31)
    assert series.feed(40, 50) == HEALTHY  # samples are back


def test_stale_forgets_a_pending_breach():
    series = Driver(Rule(warning=70, for_duration=dt.timedelta(seconds=30)))
    series.feed(0, 80)
    series.feed(40, 80, sample_age=40)
    assert series.state.status == STALE and series.state.breach_level == ""
    assert series.feed(50, 80) == HEALTHY  # the wait starts again
    assert series.feed(80, 80) == WARNING


def test_a_series_without_threshold_is_healthy_while_fresh():
    series = Driver(None)
    assert series.feed(0, 1e9) == HEALTHY
    assert series.feed(100, 1e9, sample_age=100) == STALE


def test_status_since_only_moves_when_the_status_changes():
    series = Driver(CPU)
    series.feed(0, 75)
    series.feed(10, 80)
    assert series.state.status == WARNING and series.state.status_since == at(0)


def test_worst_orders_critical_warning_stale_unknown_healthy():
    assert status.worst([HEALTHY, WARNING, CRITICAL]) == CRITICAL
    assert status.worst([HEALTHY, STALE, WARNING]) == WARNING
    assert status.worst([HEALTHY, UNKNOWN, STALE]) == STALE
    assert status.worst([HEALTHY, UNKNOWN]) == UNKNOWN
    assert status.worst([HEALTHY]) == HEALTHY
    assert status.worst([]) == UNKNOWN


# --- against the database -----------------------------------------------------------


def make_series(name: str, labels: dict[str, str], value: float | None, *, age: float = 0, interval: int = 10):
    labels = {"host": "web1", **labels}
    from monitoring.storage import labels_key

    return Series.objects.create(
        name=name,
        labels=labels,
        labels_key=labels_key(labels),
        host=labels["host"],
        interval_seconds=interval,
        last_value=value,
        last_at=None if value is None else T0 - dt.timedelta(seconds=age),
    )


def statuses() -> dict[str, str]:
    return {str(s): s.status for s in Series.objects.all()}


@pytest.mark.django_db
def test_the_most_specific_enabled_threshold_decides():
    Threshold.objects.filter(metric="system_disk_usage_percent").delete()
    Threshold.objects.create(metric="system_disk_usage_percent", warning=80, critical=95)
    Threshold.objects.create(metric="system_disk_usage_percent", labels={"mount": "/data"}, warning=50, critical=60)
    Threshold.objects.create(
        metric="system_disk_usage_percent", labels={"mount": "/data", "host": "web1"}, warning=90, critical=99
    )
    Threshold.objects.create(
        metric="system_disk_usage_percent", labels={"mount": "/data", "host": "web2"}, warning=1, enabled=False
    )
    root = make_series("system_disk_usage_percent", {"mount": "/"}, 85)
    data1 = make_series("system_disk_usage_percent", {"mount": "/data"}, 85)
    data2 = make_series("system_disk_usage_percent", {"mount": "/data", "host": "web2"}, 55)

    status.evaluate(now=T0)

    root.refresh_from_db()
    data1.refresh_from_db()
    data2.refresh_from_db()
    assert root.status == WARNING  # the metric-wide threshold
    assert data1.status == HEALTHY  # mount=/data,host=web1 beats mount=/data
    assert data2.status == WARNING  # the host=web2 threshold is disabled: mount=/data decides


@pytest.mark.django_db
def test_evaluate_sets_status_and_since_and_leaves_unchanged_rows_alone():
    cpu = make_series("system_cpu_usage_percent", {}, 90)
    idle = make_series("system_cpu_usage_percent", {"host": "web2"}, 5)
    never = make_series("shop_orders_pending", {}, None)
    old = make_series("system_memory_usage_percent", {}, 50, age=3600)

    summary = status.evaluate(now=T0)
    assert summary.series == 4 and summary.changed == 4
    assert statuses() == {
        str(cpu): CRITICAL,
        str(idle): HEALTHY,
        str(never): UNKNOWN,
        str(old): STALE,
    }
    cpu.refresh_from_db()
    assert cpu.status_since == T0

    assert status.evaluate(now=at(5)).changed == 0
    cpu.refresh_from_db()
    assert cpu.status_since == T0


@pytest.mark.django_db
def test_evaluate_keeps_the_latest_value_cache_intact():
    cpu = make_series("system_cpu_usage_percent", {}, 90)
    status.evaluate(now=T0)
    cpu.refresh_from_db()
    assert cpu.last_value == 90 and cpu.last_at == T0


@pytest.mark.django_db
def test_evaluate_runs_a_constant_number_of_queries(django_assert_max_num_queries):
    for i in range(5):
        make_series("system_cpu_usage_percent", {"host": f"h{i}"}, 90)
    # Two reads, one bulk update, plus what receivers of status_changed (the live page) add.
    with django_assert_max_num_queries(20) as few:
        status.evaluate(now=T0)
    for i in range(5, 150):
        make_series("system_cpu_usage_percent", {"host": f"h{i}"}, 90)
    Series.objects.update(status=HEALTHY)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert status.evaluate(now=T0).changed == 150


@pytest.mark.django_db
def test_overall_status_is_the_worst_series():
    assert status.overall_status() == UNKNOWN  # nothing to judge yet
    make_series("system_cpu_usage_percent", {}, 10)
    status.evaluate(now=T0)
    assert status.overall_status() == HEALTHY
    make_series("system_memory_usage_percent", {}, 50, age=3600)
    status.evaluate(now=T0)
    assert status.overall_status() == STALE
    make_series("system_disk_usage_percent", {"mount": "/"}, 85)
    status.evaluate(now=T0)
    assert status.overall_status() == WARNING
    make_series("system_cpu_usage_percent", {"host": "web2"}, 99)
    status.evaluate(now=T0)
    assert status.overall_status() == CRITICAL
    assert status.status_counts() == {HEALTHY: 1, UNKNOWN: 0, STALE: 1, WARNING: 1, CRITICAL: 1}
