"""What diagnose reports about collection: stale collectors, retention behind, cardinality."""

from __future__ import annotations

import datetime as dt

import pytest

from monitoring import diagnosis
from monitoring.models import Sample, Series
from monitoring.storage import labels_key

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def series(name: str, host: str, age_seconds: float | None, **labels: str) -> Series:
    labels = {"host": host, **labels}
    return Series.objects.create(
        name=name,
        labels=labels,
        labels_key=labels_key(labels),
        host=host,
        interval_seconds=10,
        last_value=None if age_seconds is None else 1.0,
        last_at=None if age_seconds is None else NOW - dt.timedelta(seconds=age_seconds),
    )


def test_fresh_collectors_report_nothing():
    series("system_cpu_usage_percent", "web1", 5)
    series("process_open_fds", "web2", 12, service="web")
    series("db_up", "web1", 8)
    assert diagnosis.stale_collectors(NOW) == []


def test_a_host_that_stopped_reporting_is_a_warning_naming_it():
    series("system_cpu_usage_percent", "web1", 5)
    series("system_cpu_usage_percent", "web2", 600)
    series("system_load1", "web2", 31)
    [(level, issue, action)] = diagnosis.stale_collectors(NOW)
    assert level == "warning"
    assert "1 of 2 hosts stopped reporting: web2 (last sample 31 s ago)" in issue
    assert "OPSPORTAL_HOSTNAME" in action


def test_every_host_stale_is_critical():
    series("system_cpu_usage_percent", "web1", 3600)
    series("system_cpu_usage_percent", "web2", 90000)
    [(level, issue, _)] = diagnosis.stale_collectors(NOW)
    assert level == "critical"
    assert "web1 (last sample 1.0 h ago)" in issue and "web2 (last sample 1.0 d ago)" in issue


def test_pushed_metrics_and_series_without_samples_are_not_collectors():
    series("shop_orders_pending", "web1", 86400)
    series("system_cpu_usage_percent", "web3", None)
    assert diagnosis.stale_collectors(NOW) == []


def test_stopped_portal_wide_collectors_are_reported():
    series("system_cpu_usage_percent", "web1", 5)
    series("db_up", "web1", 120)
    [(level, issue, _)] = diagnosis.stale_collectors(NOW)
    assert level == "warning" and "database, broker and Celery collectors last wrote 2 min ago" in issue


def test_raw_samples_kept_well_past_retention_are_reported():
    cpu = series("system_cpu_usage_percent", "web1", 5)
    Sample.objects.create(series=cpu, ts=NOW - dt.timedelta(hours=48 + 3), value=1)
    problems = diagnosis.retention_behind(NOW)
    assert any(level == "warning" and "retention behind: raw" in issue for level, issue, _ in problems)


def test_samples_within_retention_are_fine():
    cpu = series("system_cpu_usage_percent", "web1", 5)
    Sample.objects.create(series=cpu, ts=NOW - dt.timedelta(hours=47), value=1)
    assert not [p for p in diagnosis.retention_behind(NOW) if "retention" in p[1]]


def test_series_count_near_the_cap_warns_and_names_the_largest_metric(settings):
    settings.MONITORING_MAX_SERIES = 10
    for i in range(8):
        series("shop_requests_total", "web1", 5, path=f"/item/{i}")
    [(level, issue, action)] = diagnosis.cardinality()
    assert level == "warning"
    assert "8 series, 80 % of the cap of 10" in issue and "shop_requests_total (8)" in issue
    assert "OPSPORTAL_MAX_SERIES" in action


def test_series_count_at_the_cap_is_critical(settings):
    settings.MONITORING_MAX_SERIES = 10
    for i in range(10):
        series("shop_requests_total", "web1", 5, path=f"/item/{i}")
    [(level, issue, _)] = diagnosis.cardinality()
    assert level == "critical" and "new series are refused" in issue


def test_few_series_report_nothing(settings):
    settings.MONITORING_MAX_SERIES = 100
    series("system_cpu_usage_percent", "web1", 5)
    assert diagnosis.cardinality() == []


def test_collection_problems_gathers_all_three(settings):
    settings.MONITORING_MAX_SERIES = 2
    series("system_cpu_usage_percent", "web1", 5)
    series("system_cpu_usage_percent", "web2", 600)
    issues = [issue for _, issue, _ in diagnosis.collection_problems(NOW)]
    assert any("stopped reporting" in i for i in issues)
    assert any("reached the cap" in i for i in issues)


class DatabaseUp:
    """The part of diagnose's Context the collection component reads."""

    def passed(self, name: str) -> bool:
        return True


def test_diagnose_reports_collection_findings_with_their_actions(settings):
    from opsportal import diagnosis as portal_diagnosis

    settings.MONITORING_MAX_SERIES = 100
    series("system_cpu_usage_percent", "web1", 0)
    Series.objects.filter(host="web1").update(last_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    finding = portal_diagnosis.collection(DatabaseUp())
    assert finding.status == "critical"
    assert "no host collects metrics any more: web1" in finding.issues[0]
    assert finding.recommendations[0].startswith("Check that beat and a worker run")
    assert "collection" in {c.name for c in portal_diagnosis.COMPONENTS}
