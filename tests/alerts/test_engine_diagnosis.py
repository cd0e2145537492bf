"""What ``diagnose`` says about alert evaluation: late, never ran, a stuck lease, failing rules."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts import diagnosis, engine
from alerts.models import AlertRule, EvaluationLease
from monitoring.models import Threshold
from monitoring.models.liveness import ProcessHeartbeat
from opsportal import diagnosis as portal_diagnosis
from opsportal import health

pytestmark = pytest.mark.django_db


def issues(level: str | None = None) -> list[str]:
    return [issue for found, issue, _ in diagnosis.alerting_problems() if level is None or found == level]


def test_a_portal_that_evaluates_on_time_has_nothing_to_report():
    engine.run(publish=False)
    assert diagnosis.alerting_problems() == []


def test_an_evaluator_that_never_ran_is_critical():
    assert any("no alert evaluation cycle has ever finished" in issue for issue in issues("critical"))


def test_an_evaluator_whose_last_cycle_is_three_intervals_old_is_late():
    engine.run(publish=False)
    EvaluationLease.objects.filter(name="evaluate").update(last_finished_at=timezone.now() - dt.timedelta(minutes=5))
    late = issues("critical")
    assert len(late) == 1 and "the alert evaluator is late: its last cycle finished 5 min" in late[0]


def running(role: str, since: dt.timedelta) -> None:
    now = timezone.now()
    ProcessHeartbeat.objects.create(role=role, host="h", pid=1, started_at=now - since, last_seen=now)


def test_a_portal_that_just_started_is_given_its_first_cycles():
    running("beat", dt.timedelta(seconds=5))
    running("worker", dt.timedelta(minutes=10))
    assert issues("critical") == []  # beat started 5 s ago: no cycle is due yet


def test_beat_and_a_worker_running_for_minutes_without_a_cycle_are_critical():
    running("beat", dt.timedelta(minutes=10))
    running("worker", dt.timedelta(minutes=10))
    assert any("no alert evaluation cycle has ever finished" in issue for issue in issues("critical"))
    engine.run(publish=False)
    EvaluationLease.objects.filter(name="evaluate").update(last_finished_at=timezone.now() - dt.timedelta(minutes=5))
    assert any("the alert evaluator is late" in issue for issue in issues("critical"))


def test_a_disabled_evaluation_task_is_critical():
    engine.run(publish=False)
    PeriodicTask.objects.filter(task="alerts.evaluate").update(enabled=False)
    assert any("is disabled" in issue for issue in issues("critical"))


def test_a_lease_expired_long_ago_that_nobody_took_over_is_stuck():
    engine.run(publish=False)
    EvaluationLease.objects.filter(name="evaluate").update(
        owner="other-host/123/1/abcd", lease_until=timezone.now() - dt.timedelta(minutes=10)
    )
    stuck = [issue for issue in issues("critical") if "lease" in issue]
    assert len(stuck) == 1 and "other-host/123/1/abcd" in stuck[0] and "no evaluator took it over" in stuck[0]


def test_a_lease_held_by_a_dead_process_on_this_host_is_reported():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    engine.run(publish=False)
    EvaluationLease.objects.filter(name="evaluate").update(
        owner=f"{settings.HOSTNAME}/{gone.pid}/1/abcd", lease_until=timezone.now() + dt.timedelta(seconds=20)
    )
    found = [issue for issue in issues("warning") if "which is gone" in issue]
    assert len(found) == 1 and str(gone.pid) in found[0]


def test_failing_rules_and_unknown_threshold_channels_are_named():
    engine.run(publish=False)
    AlertRule.objects.create(name="Broken", expr="x > 1", last_error="several series on the right of '>'")
    AlertRule.objects.create(name="Off", expr="x > 1", enabled=False, last_error="old error")
    Threshold.objects.create(metric="queue_depth", warning=10, channels=["nowhere"])
    warnings = issues("warning")
    assert any("1 alert rule(s) fail to evaluate" in issue and "“Broken”" in issue for issue in warnings)
    assert not any("Off" in issue for issue in warnings)
    assert any("threshold queue_depth sends to channel(s) that do not exist: nowhere" in issue for issue in warnings)


def test_diagnose_reports_alerting_and_delivery_components():
    engine.run(publish=False)
    context = portal_diagnosis.Context(checks=(health.Check("database", health.check_database, critical=True),))
    components = [c for c in portal_diagnosis.COMPONENTS if c.name in ("alerting", "delivery")]
    report = portal_diagnosis.diagnose(components, context)
    assert set(report.components) == {"alerting", "delivery"}
    assert report.components["alerting"].status == "ok"
    EvaluationLease.objects.filter(name="evaluate").update(last_finished_at=timezone.now() - dt.timedelta(hours=1))
    report = portal_diagnosis.diagnose(components, portal_diagnosis.Context(checks=context._checks))
    alerting = report.as_dict()["components"]["alerting"]
    assert alerting["status"] == "critical"
    assert alerting["recommendations"] and "Alerts: evaluate rules and thresholds" in alerting["recommendations"][0]
