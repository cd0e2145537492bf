"""Threshold validation (what an operator is told, on which field) and the doc-003 defaults."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from monitoring.defaults import DEFAULT_THRESHOLDS, install_default_thresholds
from monitoring.models import Threshold

pytestmark = pytest.mark.django_db


def errors_of(**fields) -> dict[str, list[str]]:
    threshold = Threshold(**{"metric": "custom_queue_depth", **fields})
    with pytest.raises(ValidationError) as caught:
        threshold.full_clean()
    return caught.value.message_dict


def test_a_sound_threshold_passes_and_gets_its_labels_key_on_save():
    threshold = Threshold(metric="system_disk_usage_percent", labels={"mount": "/", "host": "db1"}, warning=80)
    threshold.full_clean()
    threshold.save()
    threshold.refresh_from_db()
    assert threshold.labels_key == '{"host":"db1","mount":"/"}'


def test_malformed_metric_name_is_refused_on_the_metric_field():
    errors = errors_of(metric="cpu usage %", warning=1)
    assert list(errors) == ["metric"]
    assert "not a metric name" in errors["metric"][0]


def test_unknown_but_well_formed_metric_is_accepted():
    Threshold(metric="shop_orders_pending", warning=100, critical=500).full_clean()


def test_malformed_label_key_and_non_text_value_are_refused_on_labels():
    errors = errors_of(labels={"1mount": "/", "port": 8080}, warning=1)
    assert list(errors) == ["labels"]
    assert any("“1mount” is not a label name" in e for e in errors["labels"])
    assert any("“port” must be text" in e for e in errors["labels"])


def test_labels_must_be_an_object():
    assert "labels" in errors_of(labels=["mount"], warning=1)


def test_at_least_one_level_is_required():
    errors = errors_of()
    assert set(errors) == {"warning", "critical"}


@pytest.mark.parametrize(
    ("direction", "warning", "critical", "message"),
    [
        ("above", 80, 80, "must be above warning (80)"),
        ("above", 80, 70, "must be above warning (80)"),
        ("below", 20, 30, "must be below warning (20)"),
    ],
)
def test_critical_must_lie_beyond_warning_in_the_direction(direction, warning, critical, message):
    errors = errors_of(direction=direction, warning=warning, critical=critical)
    assert errors == {"critical": [message]}


def test_below_thresholds_accept_critical_under_warning():
    Threshold(metric="probe_tls_days_left", direction="below", warning=14, critical=3, clear=21).full_clean()


@pytest.mark.parametrize(
    ("direction", "warning", "critical", "clear"),
    [("above", 80, 95, 80), ("above", 80, 95, 90), ("below", 14, 3, 10), ("above", None, 95, 99)],
)
def test_clear_must_lie_on_the_healthy_side(direction, warning, critical, clear):
    errors = errors_of(direction=direction, warning=warning, critical=critical, clear=clear)
    assert list(errors) == ["clear"]
    assert "healthy side" in errors["clear"][0]


def test_negative_for_duration_is_refused_on_its_field():
    errors = errors_of(warning=1, for_duration=dt.timedelta(seconds=-5))
    assert list(errors) == ["for_duration"]


def test_channels_must_be_a_list_of_names():
    assert list(errors_of(warning=1, channels="ops-hook")) == ["channels"]


def test_same_metric_and_labels_twice_is_refused_whatever_the_key_order():
    Threshold.objects.create(metric="custom_queue_depth", labels={"a": "1", "b": "2"}, warning=1)
    errors = errors_of(labels={"b": "2", "a": "1"}, warning=5)
    assert list(errors) == ["labels"]
    assert "already exists" in errors["labels"][0]


def test_same_metric_with_other_labels_is_another_threshold():
    Threshold.objects.create(metric="custom_queue_depth", labels={"queue": "mail"}, warning=1)
    Threshold(metric="custom_queue_depth", labels={"queue": "sms"}, warning=1).full_clean()


# --- defaults -----------------------------------------------------------------------


def default_levels() -> dict[str, tuple[float | None, float | None]]:
    return {t.metric: (t.warning, t.critical) for t in Threshold.objects.filter(labels_key="{}")}


def test_defaults_from_doc_003_are_installed_by_migrate():
    # The test database was built by migrate, which ran the post_migrate handler.
    levels = default_levels()
    assert levels["system_cpu_usage_percent"] == (70, 85)
    assert levels["system_memory_usage_percent"] == (75, 90)
    assert levels["system_disk_usage_percent"] == (80, 95)
    assert levels["http_request_duration_p95_seconds"] == (2, 5)
    assert levels["http_requests_error_ratio"] == (0.01, 0.05)
    assert len(DEFAULT_THRESHOLDS) == 5


def test_installing_again_never_overwrites_an_edit():
    Threshold.objects.filter(metric="system_cpu_usage_percent").update(warning=60, critical=75)
    assert install_default_thresholds() == 0
    assert default_levels()["system_cpu_usage_percent"] == (60, 75)


def test_a_deleted_default_is_not_re_created():
    Threshold.objects.filter(metric="system_memory_usage_percent").delete()
    assert install_default_thresholds() == 0
    assert "system_memory_usage_percent" not in default_levels()


def test_a_fresh_database_gets_each_default_exactly_once():
    from monitoring.models import InstalledDefault

    Threshold.objects.all().delete()
    InstalledDefault.objects.all().delete()
    assert install_default_thresholds() == len(DEFAULT_THRESHOLDS)
    assert install_default_thresholds() == 0
    assert Threshold.objects.count() == len(DEFAULT_THRESHOLDS)


def test_a_threshold_provisioned_before_the_defaults_is_kept():
    from monitoring.models import InstalledDefault

    Threshold.objects.all().delete()
    InstalledDefault.objects.all().delete()
    Threshold.objects.create(metric="system_disk_usage_percent", warning=85, critical=97)
    install_default_thresholds()
    assert default_levels()["system_disk_usage_percent"] == (85, 97)
