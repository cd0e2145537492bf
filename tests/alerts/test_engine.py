"""The evaluation engine with a fixed clock: rules and thresholds in, alerts, transitions and deliveries out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts import engine, outbox
from alerts.models import Alert, AlertRule, AlertTransition, Delivery, EvaluationLease
from monitoring import reads, status
from monitoring.models import Threshold
from monitoring.storage import Reading, record, series_cache
from opsportal.models import LiveEvent
from tests.alerts.delivery_helpers import make_channel

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def push(name: str, value: float, when: dt.datetime, host: str = "web-1", **labels: str) -> None:
    result = record([Reading(name, value, labels, ts=when)], host=host, now=when)
    assert result.accepted == 1, result.rejected


def cycle(when: dt.datetime) -> engine.Summary:
    summary = engine.run(now=when, publish=False)
    assert not summary.skipped
    return summary


def make_rule(name: str = "High CPU", expr: str = "system_cpu_usage_percent > 85", **extra: Any) -> AlertRule:
    channels = extra.pop("channels", None)
    rule = AlertRule.objects.create(name=name, expr=expr, **extra)
    if channels:
        rule.channels.set(channels)
    return rule


def events(alert: Alert) -> list[str]:
    return list(alert.transitions.order_by("at", "id").values_list("event", flat=True))


def sent(alert: Alert) -> list[str]:
    """Return the events delivered (or to be delivered) for ``alert``, in order."""
    return list(Delivery.objects.filter(alert=alert).order_by("transition_id").values_list("event", flat=True))


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Series ids and rule selectors are cached per process; each test rolls its rows back.
    series_cache.clear()
    engine.series_names.clear()
    engine.forget_watched_selectors()
    yield
    series_cache.clear()
    engine.series_names.clear()
    engine.forget_watched_selectors()


@pytest.fixture
def hook():
    return make_channel("ops-hook")


# --- the lifecycle of a rule's alert ---------------------------------------------------------


def test_an_alert_is_pending_during_for_then_fires_once_and_is_announced(hook):
    make_rule(for_duration=dt.timedelta(minutes=2), channels=[hook], severity="critical")
    for seconds in (0, 60, 110):
        push("system_cpu_usage_percent", 93.5, at(seconds))
        cycle(at(seconds))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.PENDING
    assert Delivery.objects.count() == 0  # pending is never announced

    push("system_cpu_usage_percent", 94.0, at(120))
    cycle(at(120))
    push("system_cpu_usage_percent", 95.0, at(130))
    cycle(at(130))

    alert.refresh_from_db()
    assert alert.state == Alert.State.FIRING
    assert alert.fired_at == at(120) and alert.active_since == at(0)
    assert alert.value == 95.0
    assert events(alert) == ["pending", "firing"]
    firing = alert.transitions.get(event="firing")
    assert firing.at == at(120) and firing.value == 94.0 and "for 2m" in firing.cause
    delivery = Delivery.objects.get()
    assert (delivery.channel, delivery.transition) == (hook, firing)
    assert delivery.payload["event"] == "firing"
    assert delivery.payload["alert"]["rule"] == "High CPU"
    assert delivery.payload["alert"]["severity"] == "critical"
    assert delivery.payload["alert"]["labels"] == {"host": "web-1"}
    assert delivery.payload["alert"]["value"] == 94.0


def test_a_rule_with_for_zero_fires_on_its_first_cycle(hook):
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    summary = cycle(at(0))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.FIRING and alert.fired_at == at(0)
    assert events(alert) == ["firing"]
    assert (summary.transitions, summary.deliveries) == (1, 1)


def test_a_pending_alert_that_clears_before_for_is_resolved_without_a_notice(hook):
    make_rule(for_duration=dt.timedelta(minutes=5), channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    push("system_cpu_usage_percent", 20, at(30))
    cycle(at(30))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.RESOLVED
    assert events(alert) == ["pending", "resolved"]
    assert Delivery.objects.count() == 0


def test_a_firing_alert_resolves_with_a_notice_when_the_expression_turns_false(hook):
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    push("system_cpu_usage_percent", 40, at(10))
    cycle(at(10))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.RESOLVED and alert.resolved_at == at(10)
    assert sent(alert) == ["firing", "resolved"]
    resolved = Delivery.objects.get(event="resolved")
    assert resolved.payload["event"] == "resolved"
    assert resolved.payload["alert"]["resolved_at"] == "2026-03-01T12:00:10Z"
    # A new breach afterwards is a new alert, announced again.
    push("system_cpu_usage_percent", 99, at(20))
    cycle(at(20))
    assert Alert.objects.count() == 2
    assert Alert.objects.exclude(pk=alert.pk).get().state == Alert.State.FIRING


def test_keep_firing_for_damps_flapping_and_then_resolves(hook):
    make_rule(keep_firing_for=dt.timedelta(minutes=1), channels=[hook])
    values = [99, 40, 99, 40, 40, 40, 40, 40, 40]  # every 10 s: a flap, then calm
    for step, value in enumerate(values):
        push("system_cpu_usage_percent", value, at(step * 10))
        cycle(at(step * 10))
        if step < 8:
            assert Alert.objects.get().state == Alert.State.FIRING, f"step {step}"
    alert = Alert.objects.get()
    # Last true at 20 s; the keep-firing minute ends at 80 s.
    assert alert.state == Alert.State.RESOLVED and alert.resolved_at == at(80)
    assert sent(alert) == ["firing", "resolved"]
    assert "keep firing for 1m" in alert.transitions.get(event="resolved").cause


def test_a_firing_alert_is_not_resent_within_repeat_interval_but_is_after(hook):
    make_rule(repeat_interval=dt.timedelta(minutes=30), channels=[hook])
    for minute in range(0, 61, 5):
        push("system_cpu_usage_percent", 99, at(minute * 60))
        cycle(at(minute * 60))
    alert = Alert.objects.get()
    assert sent(alert) == ["firing", "repeat", "repeat"]
    repeats = list(alert.transitions.filter(event="repeat").values_list("at", flat=True))
    assert repeats == [at(30 * 60), at(60 * 60)]
    assert Delivery.objects.filter(event="repeat").first().payload["event"] == "firing"


def test_an_acknowledged_alert_is_not_repeated(hook):
    make_rule(repeat_interval=dt.timedelta(minutes=1), channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    Alert.objects.update(state=Alert.State.ACKNOWLEDGED)
    push("system_cpu_usage_percent", 99, at(600))
    cycle(at(600))
    alert = Alert.objects.get()
    assert alert.state == Alert.State.ACKNOWLEDGED
    assert sent(alert) == ["firing"]


def test_editing_a_rule_keeps_its_open_alert_until_the_new_expression_is_false(hook):
    rule = make_rule(channels=[hook])
    push("system_cpu_usage_percent", 90, at(0))
    cycle(at(0))
    first = Alert.objects.get()

    rule.expr = "system_cpu_usage_percent > 80"  # still true at 90
    rule.save()
    push("system_cpu_usage_percent", 90, at(10))
    cycle(at(10))
    assert Alert.objects.get().pk == first.pk
    assert sent(first) == ["firing"]

    push("system_cpu_usage_percent", 82, at(20))  # true for the new expression, false for the old
    cycle(at(20))
    assert Alert.objects.get(pk=first.pk).state == Alert.State.FIRING

    rule.expr = "system_cpu_usage_percent > 95"
    rule.save()
    push("system_cpu_usage_percent", 90, at(30))
    cycle(at(30))
    first.refresh_from_db()
    assert first.state == Alert.State.RESOLVED
    assert sent(first) == ["firing", "resolved"]
    assert "edited" in first.transitions.get(event="resolved").cause


def test_each_series_of_a_vector_rule_is_its_own_alert_with_its_labels(hook):
    make_rule("Disk full", 'system_disk_usage_percent{mount=~"/.*"} > 90', channels=[hook], labels={"team": "ops"})
    push("system_disk_usage_percent", 95, at(0), mount="/")
    push("system_disk_usage_percent", 97, at(0), mount="/data")
    push("system_disk_usage_percent", 40, at(0), mount="/boot")
    push("system_disk_usage_percent", 99, at(0), host="db-1", mount="/")
    cycle(at(0))
    labels = sorted((a.labels["host"], a.labels["mount"]) for a in Alert.objects.all())
    assert labels == [("db-1", "/"), ("web-1", "/"), ("web-1", "/data")]
    assert all(a.labels["team"] == "ops" for a in Alert.objects.all())
    assert len({a.fingerprint for a in Alert.objects.all()}) == 3
    assert Delivery.objects.filter(event="firing").count() == 3

    push("system_disk_usage_percent", 50, at(10), mount="/data")
    push("system_disk_usage_percent", 95, at(10), mount="/")
    push("system_disk_usage_percent", 99, at(10), host="db-1", mount="/")
    cycle(at(10))
    resolved = Alert.objects.get(state=Alert.State.RESOLVED)
    assert resolved.labels == {"host": "web-1", "mount": "/data", "team": "ops"}
    assert Alert.objects.filter(state=Alert.State.FIRING).count() == 2


def test_identity_is_the_rule_name_and_labels(hook):
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    alert = Alert.objects.get()
    assert alert.fingerprint == engine.lifecycle.fingerprint("High CPU", {"host": "web-1"})


def test_an_average_over_a_window_reads_the_samples_of_the_window(hook):
    make_rule(expr="avg_over_time(system_cpu_usage_percent[1m]) > 85", channels=[hook])
    for seconds, value in [(0, 100), (20, 100), (40, 60), (60, 70)]:
        push("system_cpu_usage_percent", value, at(seconds))
    cycle(at(60))  # (0, 60]: 100, 60, 70 -> 76.7
    assert Alert.objects.count() == 0
    push("system_cpu_usage_percent", 100, at(70))
    push("system_cpu_usage_percent", 100, at(80))
    cycle(at(80))  # (20, 80]: 60, 70, 100, 100 -> 82.5
    assert Alert.objects.count() == 0
    push("system_cpu_usage_percent", 100, at(90))
    cycle(at(100))  # (40, 100]: 70, 100, 100, 100 -> 92.5
    assert Alert.objects.get().value == pytest.approx(92.5)


# --- failures do not stop the cycle ------------------------------------------------------------


def test_a_rule_on_an_unknown_metric_yields_nothing_and_does_not_fail(hook):
    make_rule("Ghost", "no_such_metric > 1", channels=[hook])
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    summary = cycle(at(0))
    assert summary.failed_rules == 0
    assert list(Alert.objects.values_list("name", flat=True)) == ["High CPU"]
    assert AlertRule.objects.get(name="Ghost").last_error == ""


def test_one_failing_rule_is_marked_and_skipped_and_the_others_still_fire(hook):
    # Two series on the right share the labels the match uses: ambiguous, an evaluation error.
    bad = make_rule("Ambiguous", "system_load1 > on() system_disk_usage_percent", channels=[hook])
    broken = make_rule("Broken", "this is (not valid")  # saved past the admin's check
    make_rule(channels=[hook])
    push("system_load1", 5, at(0))
    push("system_disk_usage_percent", 1, at(0), mount="/")
    push("system_disk_usage_percent", 2, at(0), mount="/data")
    push("system_cpu_usage_percent", 99, at(0))
    summary = cycle(at(0))
    assert summary.failed_rules == 2
    assert list(Alert.objects.values_list("name", flat=True)) == ["High CPU"]
    bad.refresh_from_db()
    broken.refresh_from_db()
    assert "several series on the right" in bad.last_error and bad.last_error_at == at(0)
    assert broken.last_error.startswith("expression: ") and "column" in broken.last_error
    # Fixed: the error clears on the next cycle.
    bad.expr = "system_load1 > 4"
    bad.save()
    push("system_load1", 5, at(10))
    push("system_cpu_usage_percent", 99, at(10))
    cycle(at(10))
    bad.refresh_from_db()
    assert bad.last_error == "" and bad.last_error_at is None
    assert Alert.objects.filter(name="Ambiguous", state="firing").count() == 1


def test_the_open_alerts_of_a_failing_rule_are_left_alone(hook):
    rule = make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    AlertRule.objects.filter(pk=rule.pk).update(expr="system_cpu_usage_percent > (")
    push("system_cpu_usage_percent", 10, at(10))
    cycle(at(10))
    assert Alert.objects.get().state == Alert.State.FIRING  # not resolved by a rule that could not run


def test_a_disabled_or_deleted_rule_resolves_its_alerts_and_tells_who_heard_them_fire(hook):
    disabled = make_rule("A", "system_cpu_usage_percent > 85", channels=[hook])
    deleted = make_rule("B", "system_cpu_usage_percent > 80", channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    disabled.enabled = False
    disabled.save()
    deleted.delete()
    cycle(at(10))
    a, b = Alert.objects.get(name="A"), Alert.objects.get(name="B")
    assert (a.state, b.state) == ("resolved", "resolved")
    assert sent(a) == ["firing", "resolved"] and sent(b) == ["firing", "resolved"]
    assert a.transitions.get(event="resolved").cause == "the rule was disabled"
    assert b.transitions.get(event="resolved").cause == "the rule was deleted"


# --- the outbox, the live page and the metric -----------------------------------------------------


def test_a_transition_and_its_deliveries_are_written_together_or_not_at_all(hook, monkeypatch):
    mail = make_channel("oncall-mail", kind="email", target="oncall@example.com")
    make_rule(channels=[hook, mail])
    push("system_cpu_usage_percent", 99, at(0))
    real_enqueue = outbox.enqueue

    def enqueue_then_fail(*args: Any, **kwargs: Any) -> Any:
        real_enqueue(*args, **kwargs)
        raise RuntimeError("the database went away mid-write")

    monkeypatch.setattr(outbox, "enqueue", enqueue_then_fail)
    with pytest.raises(RuntimeError):
        engine.run(now=at(0), publish=False)
    assert (Alert.objects.count(), AlertTransition.objects.count(), Delivery.objects.count()) == (0, 0, 0)
    assert EvaluationLease.objects.get(name="evaluate").owner == ""  # released for the next tick

    monkeypatch.setattr(outbox, "enqueue", real_enqueue)
    cycle(at(10))
    firing = AlertTransition.objects.get(event="firing")
    assert sorted(firing.deliveries.values_list("channel__name", flat=True)) == ["oncall-mail", "ops-hook"]


def test_deliveries_are_kicked_after_commit(hook, monkeypatch, django_capture_on_commit_callbacks):
    kicked: list[list[int]] = []
    monkeypatch.setattr(outbox, "kick", lambda ids: kicked.append(list(ids)))
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    with django_capture_on_commit_callbacks(execute=True):
        cycle(at(0))
    assert kicked == [[Delivery.objects.get().pk]]


def test_an_alert_goes_only_to_its_rules_channels():
    make_channel("ops-hook")
    make_rule()  # no channels
    push("system_cpu_usage_percent", 99, at(0))
    cycle(at(0))
    assert Alert.objects.get().state == Alert.State.FIRING
    assert Delivery.objects.count() == 0


def test_alert_transitions_reach_the_live_page(hook):
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    before = LiveEvent.objects.filter(kind="alert").count()
    cycle(at(0))
    published = LiveEvent.objects.filter(kind="alert").order_by("id")
    assert published.count() == before + 1
    item = published.last().payload["alerts"][0]
    assert (item["name"], item["state"]) == ("High CPU", "firing")


def test_alerts_firing_is_recorded_per_severity(hook):
    make_rule(channels=[hook], severity="critical")
    make_rule("Load", "system_load1 > 4", severity="warning")
    push("system_cpu_usage_percent", 99, at(0))
    push("system_load1", 9, at(0))
    engine.run(now=at(0))  # publishes
    values = {s.labels["severity"]: s.value for s in reads.latest("alerts_firing")}
    assert values == {"info": 0, "warning": 1, "critical": 1, "emergency": 0}


def test_a_cycle_costs_the_same_number_of_queries_for_few_or_many_rules(hook):
    for host in range(20):
        push("system_cpu_usage_percent", 50 + host, at(0), host=f"web-{host}")
        push("system_load1", host, at(0), host=f"web-{host}")
    for n in range(5):
        make_rule(f"cpu {n}", f"avg_over_time(system_cpu_usage_percent[5m]) > {90 + n}")
    cycle(at(0))
    with CaptureQueriesContext(connection) as few:
        cycle(at(0))
    for n in range(5, 100):
        kind = [
            "system_load1 > {}",
            "max_over_time(system_cpu_usage_percent[{}m]) > 99",
            "system_cpu_usage_percent > {}",
        ]
        make_rule(f"rule {n}", kind[n % 3].format(n % 50 + 1))
    cycle(at(0))
    with CaptureQueriesContext(connection) as many:
        cycle(at(0))

    def statements(captured: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]

    assert len(statements(many)) == len(statements(few)) <= 12


# --- thresholds through the same lifecycle -----------------------------------------------------


@pytest.fixture
def no_default_thresholds():
    Threshold.objects.all().delete()  # the shipped defaults would decide these series


def test_threshold_levels_open_one_alert_whose_severity_follows_with_hysteresis(hook, no_default_thresholds):
    Threshold.objects.create(
        metric="system_cpu_usage_percent", warning=80, critical=90, clear=70, channels=["ops-hook"]
    )

    def step(seconds: int, value: float) -> Alert | None:
        push("system_cpu_usage_percent", value, at(seconds))
        status.evaluate(at(seconds))
        cycle(at(seconds))
        return Alert.objects.filter(source="threshold").order_by("-id").first()

    alert = step(0, 85)
    assert (alert.state, alert.severity, alert.labels) == ("firing", "warning", {"host": "web-1"})
    assert alert.name == "system_cpu_usage_percent"
    alert = step(10, 95)
    assert (alert.state, alert.severity) == ("firing", "critical")
    alert = step(20, 75)  # below warning, but not back past clear: held at warning
    assert (alert.state, alert.severity) == ("firing", "warning")
    alert = step(30, 72)
    assert alert.state == "firing"
    alert = step(40, 65)  # past clear: healthy
    assert alert.state == "resolved"
    assert events(alert) == ["firing", "firing", "changed", "resolved"]
    # Rising to critical is announced, falling back to warning only recorded.
    assert sent(alert) == ["firing", "firing", "resolved"]
    assert [d.payload["alert"]["severity"] for d in Delivery.objects.order_by("id")][:2] == ["warning", "critical"]
    assert Alert.objects.filter(source="threshold").count() == 1


def test_a_threshold_breach_shorter_than_its_for_opens_no_alert(hook, no_default_thresholds):
    Threshold.objects.create(metric="system_cpu_usage_percent", warning=80, for_duration=dt.timedelta(minutes=1))
    for seconds, value in [(0, 95), (30, 95), (50, 20)]:
        push("system_cpu_usage_percent", value, at(seconds))
        status.evaluate(at(seconds))
        cycle(at(seconds))
    assert Alert.objects.count() == 0


# --- single flight -------------------------------------------------------------------------------


def test_a_second_claimer_gets_nothing_while_the_lease_is_held():
    assert engine.claim("first", at(0))
    assert not engine.claim("second", at(1))
    assert engine.run(now=at(2), publish=False).skipped
    # An expired lease (its worker died) is taken over.
    assert engine.claim("second", at(0) + engine.LEASE + dt.timedelta(seconds=1))


def test_a_kick_during_a_cycle_makes_it_run_again_before_releasing(hook, monkeypatch):
    make_rule(channels=[hook])
    rounds: list[dt.datetime] = []
    real_run = engine.Cycle.run

    def run_and_get_kicked(self: engine.Cycle, **kwargs: Any) -> engine.Summary:
        rounds.append(self.now)
        if len(rounds) == 1:
            # A sample arrives mid-cycle and its kick finds the lease taken.
            push("system_cpu_usage_percent", 99, at(0))
            assert engine.run(now=at(0), kick=True).skipped
            assert EvaluationLease.objects.get(name="evaluate").rerun_requested
        return real_run(self, **kwargs)

    monkeypatch.setattr(engine.Cycle, "run", run_and_get_kicked)
    summary = engine.run(now=at(0), publish=False)
    assert summary.rounds == 2 and len(rounds) == 2
    assert Alert.objects.get().state == Alert.State.FIRING  # the second round saw the sample
    lease = EvaluationLease.objects.get(name="evaluate")
    assert (lease.owner, lease.rerun_requested, lease.lease_until) == ("", False, None)
    assert lease.last_finished_at == at(0) and lease.last_duration_ms is not None


def test_a_cycle_that_lost_its_lease_writes_nothing(hook, monkeypatch):
    make_rule(channels=[hook])
    push("system_cpu_usage_percent", 99, at(0))
    real_decide = engine.Cycle.decide

    def decide_slowly(self: engine.Cycle, *args: Any) -> Any:
        # The cycle stalls past its lease; another evaluator takes over.
        EvaluationLease.objects.filter(name="evaluate").update(owner="someone else")
        return real_decide(self, *args)

    monkeypatch.setattr(engine.Cycle, "decide", decide_slowly)
    engine.run(now=at(0), publish=False)
    assert Alert.objects.count() == 0 and AlertTransition.objects.count() == 0


# --- kicks on new samples ---------------------------------------------------------------------------


def test_a_sample_a_rule_reads_kicks_an_evaluation_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    kicks: list[int] = []
    monkeypatch.setattr(engine, "kick", lambda: kicks.append(1))
    make_rule(expr='system_disk_usage_percent{mount="/"} > 90')
    engine.forget_watched_selectors()
    with django_capture_on_commit_callbacks(execute=True):
        push("system_load1", 3, at(0))
        push("system_disk_usage_percent", 50, at(0), mount="/data")
    assert kicks == []
    with django_capture_on_commit_callbacks(execute=True):
        push("system_disk_usage_percent", 50, at(0), mount="/")
    assert kicks == [1]


def test_the_engines_own_metric_does_not_kick_itself(monkeypatch, django_capture_on_commit_callbacks):
    kicks: list[int] = []
    monkeypatch.setattr(engine, "kick", lambda: kicks.append(1))
    make_rule("Many alerts", "alerts_firing > 10")
    engine.forget_watched_selectors()
    with django_capture_on_commit_callbacks(execute=True):
        engine.publish_metrics(at(0), force=True)
    assert kicks == []
