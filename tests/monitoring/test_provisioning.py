"""``loadconfig`` / ``exportconfig`` with the thresholds section, as an operator runs them."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from monitoring.models import Threshold
from opsportal import provisioning

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]

DESIGN_EXAMPLE = """\
thresholds:
  - {metric: system_cpu_usage_percent, warning: 70, critical: 85, direction: above, for: 1m, channels: [ops-hook]}
  - {metric: system_disk_usage_percent, labels: {mount: /}, warning: 80, critical: 95}
"""


def load(tmp_path: Path, text: str) -> tuple[str, str]:
    """Run loadconfig on ``text``; return (stdout, stderr); raise CommandError like the shell sees exit 1."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("loadconfig", str(path), stdout=out, stderr=err)
    except CommandError as error:
        error.stderr = err.getvalue()  # type: ignore[attr-defined]
        raise
    return out.getvalue(), err.getvalue()


def export() -> str:
    out = io.StringIO()
    call_command("exportconfig", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def snapshot() -> list[tuple]:
    return list(
        Threshold.objects.order_by("pk").values_list(
            "pk", "metric", "labels_key", "warning", "critical", "direction", "for_duration", "clear", "channels",
            "enabled", "description", "updated_at",
        )
    )  # fmt: skip


def test_loading_the_design_example_creates_and_updates_thresholds(tmp_path):
    out, _ = load(tmp_path, DESIGN_EXAMPLE)
    assert out.strip() == "thresholds: 1 created, 1 updated, 0 unchanged"
    cpu = Threshold.objects.get(metric="system_cpu_usage_percent", labels_key="{}")
    assert cpu.for_duration == dt.timedelta(minutes=1)
    assert cpu.channels == ["ops-hook"]
    root = Threshold.objects.get(metric="system_disk_usage_percent", labels_key='{"mount":"/"}')
    assert (root.warning, root.critical, root.labels) == (80, 95, {"mount": "/"})


def test_loading_twice_changes_nothing_the_second_time(tmp_path):
    load(tmp_path, DESIGN_EXAMPLE)
    before = snapshot()
    out, _ = load(tmp_path, DESIGN_EXAMPLE)
    assert out.strip() == "thresholds: 0 created, 0 updated, 2 unchanged"
    assert snapshot() == before


def test_export_then_load_changes_nothing(tmp_path):
    Threshold.objects.create(
        metric="probe_tls_days_left",
        labels={"target": "shop"},
        warning=14,
        critical=3,
        direction="below",
        clear=21.5,
        for_duration=dt.timedelta(hours=1, minutes=30, milliseconds=250),
        channels=["ops-hook", "oncall-mail"],
        enabled=False,
        description="Renew with certbot.",
    )
    load(tmp_path, DESIGN_EXAMPLE)
    before = snapshot()
    text = export()
    out, _ = load(tmp_path, text)
    # Other sections (channels, rules) are in the export too; this test is about thresholds.
    assert f"thresholds: 0 created, 0 updated, {len(before)} unchanged" in out.splitlines()
    assert snapshot() == before
    assert export() == text


def test_export_reads_like_the_design_example(tmp_path):
    load(tmp_path, DESIGN_EXAMPLE)
    items = yaml.safe_load(export())["thresholds"]
    assert {"metric": "system_cpu_usage_percent", "warning": 70, "critical": 85, "direction": "above",
            "for": "1m", "channels": ["ops-hook"]} in items  # fmt: skip
    assert {"metric": "system_disk_usage_percent", "labels": {"mount": "/"}, "warning": 80, "critical": 95,
            "direction": "above"} in items  # fmt: skip


def test_a_file_with_several_bad_entries_reports_each_with_its_path_and_changes_nothing(tmp_path):
    before = snapshot()
    bad = """\
thresholds:
  - {metric: system_cpu_usage_percent, warning: 50, critical: 60}
  - {metric: system_disk_usage_percent, labels: {mount: /}, warning: 80, critical: 60}
  - {metric: "cpu usage", warning: high, colour: red}
  - {metric: system_load1, warning: 4, critical: 8, for: 5 minutes, direction: sideways}
  - {metric: system_memory_usage_percent, warning: 75, clear: 80}
  - {metric: system_cpu_usage_percent, warning: 1}
  - {metric: system_swap_usage_percent, labels: {1host: a, mount: 2}, warning: 5}
"""
    with pytest.raises(CommandError) as caught:
        load(tmp_path, bad)
    lines = caught.value.stderr.strip().splitlines()
    assert lines == [
        "thresholds[1].critical: must be above warning (80)",
        "thresholds[2].colour: unknown key (expected one of metric, labels, warning, critical, direction, for, "
        "clear, channels, enabled, description)",
        "thresholds[2].warning: must be a number (got 'high')",
        "thresholds[2].metric: “cpu usage” is not a metric name: use letters, digits, _ and :, not starting "
        "with a digit",
        "thresholds[3].direction: must be above or below (got 'sideways')",
        "thresholds[3].for: “5 minutes” is not a duration like 30s, 5m, 2h, 1d or 1h30m",
        "thresholds[4].clear: must be below warning (75): a breached series clears on the healthy side",
        "thresholds[5]: same metric and labels as thresholds[0]",
        'thresholds[6].labels.mount: must be text; quote it: "2"',
    ]
    assert "9 errors; nothing was changed" in str(caught.value)
    assert caught.value.returncode == 1
    assert snapshot() == before  # thresholds[0] was valid, yet not applied


def test_a_bad_label_name_is_reported_on_labels(tmp_path):
    with pytest.raises(CommandError) as caught:
        load(tmp_path, "thresholds:\n  - {metric: system_swap_usage_percent, labels: {1host: a}, warning: 5}\n")
    assert caught.value.stderr.strip() == "thresholds[0].labels: “1host” is not a label name: use letters, digits and _"


def test_a_yaml_syntax_error_names_the_line_and_changes_nothing(tmp_path):
    before = snapshot()
    text = "thresholds:\n  - {metric: system_cpu_usage_percent, warning: 10\n  - {metric: system_load1, warning: 4}\n"
    with pytest.raises(CommandError) as caught:
        load(tmp_path, text)
    assert caught.value.stderr.startswith("line 3, column ")
    assert "YAML syntax error" in caught.value.stderr
    assert snapshot() == before


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    text = "thresholds:\n  - metric: system_load1\n    warning: 4\n    warning: 40\n"
    with pytest.raises(CommandError) as caught:
        load(tmp_path, text)
    assert "line 4" in caught.value.stderr and "'warning' twice (the first is on line 3)" in caught.value.stderr
    assert not Threshold.objects.filter(metric="system_load1").exists()


def test_an_unknown_section_is_an_error_and_nothing_is_applied(tmp_path):
    text = DESIGN_EXAMPLE + "dashboards:\n  - {name: x}\n"
    with pytest.raises(CommandError) as caught:
        load(tmp_path, text)
    message = caught.value.stderr.strip()
    assert message.startswith("dashboards: unknown section (known: ") and "thresholds" in message
    assert not Threshold.objects.filter(labels_key='{"mount":"/"}').exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "(file): must be a mapping of sections"),
        ("thresholds: {metric: a}\n", "thresholds: must be a list of items"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused(tmp_path, text, message):
    with pytest.raises(CommandError) as caught:
        load(tmp_path, text)
    assert caught.value.stderr.startswith(message)


def test_every_section_is_optional(tmp_path):
    before = snapshot()
    assert load(tmp_path, "")[0].strip() == "nothing to load: the file has no sections"
    assert load(tmp_path, "thresholds:\n")[0].strip() == "thresholds: 0 created, 0 updated, 0 unchanged"
    assert snapshot() == before


def test_a_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(CommandError) as caught:
        call_command("loadconfig", str(tmp_path / "nope.yaml"), stdout=io.StringIO(), stderr=io.StringIO())
    assert "nothing was changed" in str(caught.value)


def test_check_validates_without_applying(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(DESIGN_EXAMPLE)
    call_command("loadconfig", str(path), "--check", stdout=io.StringIO(), stderr=io.StringIO())
    assert not Threshold.objects.filter(labels_key='{"mount":"/"}').exists()


def test_durations_accept_seconds_minutes_hours_days(tmp_path):
    load(
        tmp_path,
        "thresholds:\n"
        "  - {metric: a_s, warning: 1, for: 30s}\n"
        "  - {metric: a_m, warning: 1, for: 5m}\n"
        "  - {metric: a_h, warning: 1, for: 2h}\n"
        "  - {metric: a_d, warning: 1, for: 1d}\n"
        "  - {metric: a_mix, warning: 1, for: 1h30m}\n",
    )
    got = dict(Threshold.objects.filter(metric__startswith="a_").values_list("metric", "for_duration"))
    assert {k: v.total_seconds() for k, v in got.items()} == {
        "a_s": 30, "a_m": 300, "a_h": 7200, "a_d": 86400, "a_mix": 5400,
    }  # fmt: skip


def test_exportconfig_writes_a_file_and_says_so_on_stderr(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("exportconfig", str(tmp_path / "out.yaml"), stdout=out, stderr=err)
    assert out.getvalue() == ""
    assert "wrote" in err.getvalue()
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["thresholds"]


class SecretSection:
    """A stand-in for a section with secrets (the channels section arrives with the alerts app)."""

    name = "vault"
    secret_fields = ("secret",)

    def __init__(self) -> None:
        self.stored = {"hook": "s3cr3t"}
        self.applied: list = []

    def validate(self, items, document):
        return []

    def apply(self, items):
        for item in items:
            if "secret" in item:
                self.stored[item["name"]] = item["secret"]
        self.applied = items
        return {"unchanged": len(items)}

    def export(self):
        return [{"name": name, "secret": secret} for name, secret in self.stored.items()]


def test_secrets_export_as_placeholders_and_loading_a_placeholder_keeps_the_secret(monkeypatch):
    section = SecretSection()
    monkeypatch.setattr(provisioning, "SECTIONS", [*provisioning.SECTIONS, section])
    text = provisioning.export_text()
    assert "s3cr3t" not in text
    assert yaml.safe_load(text)["vault"] == [{"name": "hook", "secret": provisioning.SECRET_PLACEHOLDER}]
    assert "s3cr3t" in provisioning.export_text(include_secrets=True)

    provisioning.load_text(text)
    assert section.applied == [{"name": "hook"}]
    assert section.stored == {"hook": "s3cr3t"}


def test_exportconfig_prints_only_yaml_on_stdout(tmp_path):
    """As a real process: nothing but the YAML reaches stdout (logs go to stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DATABASE_URL", "REDIS_URL"))}
    env.update({"OPSPORTAL_DATA_DIR": str(tmp_path / "data"), "OPSPORTAL_LOG_LEVEL": "info"})

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    assert manage("migrate", "--noinput").returncode == 0
    result = manage("exportconfig")
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert "thresholds" in document  # with the other registered sections (channels, rules)
    assert {item["metric"] for item in document["thresholds"]} >= {"system_cpu_usage_percent"}
    assert result.stdout.startswith("channels:")  # the first registered section: YAML alone on stdout


def test_shared_values_can_live_under_an_x_anchor(tmp_path):
    text = """\
x-defaults: &defaults {direction: below, for: 10m}
thresholds:
  - <<: *defaults
    metric: probe_tls_days_left
    warning: 14
    critical: 3
"""
    out, _ = load(tmp_path, text)
    assert out.strip() == "thresholds: 1 created, 0 updated, 0 unchanged"
    tls = Threshold.objects.get(metric="probe_tls_days_left")
    assert tls.direction == "below" and tls.for_duration == dt.timedelta(minutes=10)


def test_a_label_name_that_is_not_text_is_refused(tmp_path):
    with pytest.raises(CommandError) as caught:
        load(tmp_path, "thresholds:\n  - {metric: system_load1, labels: {null: a}, warning: 4}\n")
    assert caught.value.stderr.strip() == "thresholds[0].labels: label names must be text (got None)"


def test_a_metric_nothing_reports_loads_with_a_warning_on_stderr(tmp_path):
    out, err = load(
        tmp_path, "thresholds:\n  - {metric: system_load1, warning: 4}\n  - {metric: sytem_load5, warning: 4}\n"
    )
    assert out.strip() == "thresholds: 2 created, 0 updated, 0 unchanged"
    assert err.strip() == (
        "warning: thresholds[1].metric: sytem_load5 is not a built-in metric and no series has that name yet (a typo?)"
    )
