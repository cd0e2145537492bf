"""The ``rules`` section of ``loadconfig`` / ``exportconfig``, as an operator runs them."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from alerts import engine
from alerts.models import AlertRule
from tests.alerts.delivery_helpers import make_channel

pytestmark = pytest.mark.django_db

DESIGN_EXAMPLE = """\
channels:
  - {name: ops-hook, kind: webhook, target: "http://127.0.0.1:9000/hook", secret: "s3cret"}
  - {name: oncall-mail, kind: email, target: "oncall@example.com"}
rules:
  - name: High CPU
    expr: "avg_over_time(system_cpu_usage_percent[5m]) > 85"
    severity: critical          # info | warning | critical | emergency
    for: 2m
    repeat_interval: 1h
    channels: [ops-hook]
    runbook: "Find the top processes; scale out if sustained."
  - name: Disk almost full
    expr: 'system_disk_usage_percent{mount=~"/data.*"} > 90'
    keep_firing_for: 5m
    labels: {team: storage}
    summary: "{{ $labels.mount }} at {{ $value }} %"
    channels: [ops-hook, oncall-mail]
"""


def load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("loadconfig", str(path), stdout=out, stderr=err)
    except CommandError as error:
        raise CommandError(f"{error}\n{err.getvalue()}") from None
    return out.getvalue()


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(CommandError) as error:
        load(tmp_path, text)
    return str(error.value)


def export() -> str:
    out = io.StringIO()
    call_command("exportconfig", "--include-secrets", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def snapshot() -> list[tuple]:  # type: ignore[type-arg]
    return [
        (
            r.name,
            r.expr,
            r.severity,
            r.for_duration,
            r.keep_firing_for,
            r.repeat_interval,
            r.labels,
            r.summary,
            r.runbook,
            r.enabled,
            sorted(r.channels.values_list("name", flat=True)),
            r.updated_at,
        )
        for r in AlertRule.objects.order_by("name")
    ]


def test_the_design_example_loads_with_defaults_for_what_it_leaves_out(tmp_path):
    out = load(tmp_path, DESIGN_EXAMPLE)
    assert "rules: 2 created, 0 updated, 0 unchanged" in out
    cpu = AlertRule.objects.get(name="High CPU")
    assert cpu.severity == "critical" and cpu.enabled
    assert (cpu.for_duration, cpu.keep_firing_for, cpu.repeat_interval) == (
        dt.timedelta(minutes=2),
        dt.timedelta(0),
        dt.timedelta(hours=1),
    )
    assert list(cpu.channels.values_list("name", flat=True)) == ["ops-hook"]
    assert cpu.runbook.startswith("Find the top processes")
    disk = AlertRule.objects.get(name="Disk almost full")
    assert disk.severity == "warning" and disk.repeat_interval == dt.timedelta(hours=4)
    assert disk.keep_firing_for == dt.timedelta(minutes=5)
    assert disk.labels == {"team": "storage"}
    assert sorted(disk.channels.values_list("name", flat=True)) == ["oncall-mail", "ops-hook"]


def test_loading_twice_and_loading_the_export_change_nothing(tmp_path):
    load(tmp_path, DESIGN_EXAMPLE)
    before = snapshot()
    assert "rules: 0 created, 0 updated, 2 unchanged" in load(tmp_path, DESIGN_EXAMPLE)
    exported = export()
    assert "rules: 0 created, 0 updated, 2 unchanged" in load(tmp_path, exported)
    assert snapshot() == before
    assert export() == exported
    rules = yaml.safe_load(exported)["rules"]
    assert rules[0]["name"] == "Disk almost full" and rules[0]["keep_firing_for"] == "5m"
    assert rules[1] == {
        "name": "High CPU",
        "expr": "avg_over_time(system_cpu_usage_percent[5m]) > 85",
        "severity": "critical",
        "for": "2m",
        "repeat_interval": "1h",
        "runbook": "Find the top processes; scale out if sustained.",
        "channels": ["ops-hook"],
    }


def test_a_changed_item_updates_the_rule_and_its_channels(tmp_path):
    load(tmp_path, DESIGN_EXAMPLE)
    changed = DESIGN_EXAMPLE.replace("channels: [ops-hook]\n    runbook", "channels: [oncall-mail]\n    runbook")
    changed = changed.replace("for: 2m", "for: 0s")
    out = load(tmp_path, changed)
    assert "rules: 0 created, 1 updated, 1 unchanged" in out
    cpu = AlertRule.objects.get(name="High CPU")
    assert cpu.for_duration == dt.timedelta(0)
    assert list(cpu.channels.values_list("name", flat=True)) == ["oncall-mail"]


def test_a_rule_left_out_of_the_file_is_left_alone(tmp_path):
    AlertRule.objects.create(name="Hand-made", expr="system_load1 > 10")
    load(tmp_path, DESIGN_EXAMPLE)
    assert AlertRule.objects.filter(name="Hand-made").exists()


def test_channels_may_come_from_the_database(tmp_path):
    make_channel("stored-hook")
    load(tmp_path, "rules:\n  - {name: r, expr: 'system_load1 > 4', channels: [stored-hook]}\n")
    assert list(AlertRule.objects.get().channels.values_list("name", flat=True)) == ["stored-hook"]


def test_every_error_is_reported_with_its_path_and_nothing_changes(tmp_path):
    make_channel("ops-hook")
    text = """\
rules:
  - name: Broken
    expr: "avg_over_time(system_cpu_usage_percent[5m] > 85"
  - {name: Bad fields, expr: "up == 0", severity: loud, for: 5 minutes, labels: {bad-key: x}, colour: red}
  - {name: Unknown channel, expr: "up == 0", channels: [ops-hook, nowhere]}
  - {expr: "up == 0"}
  - {name: Broken, expr: "up == 0"}
"""
    error = load_error(tmp_path, text)
    lines = error.splitlines()
    assert any(line.startswith("rules[0].expr: expected ')'") and "column" in line for line in lines), error
    assert "rules[1].severity: must be one of info, warning, critical, emergency (got 'loud')" in lines
    assert any(line.startswith("rules[1].for: ") for line in lines)
    assert any(line.startswith("rules[1].labels.bad-key: ") for line in lines)
    assert any(line.startswith("rules[1].colour: unknown key") for line in lines)
    assert "rules[2].channels[1]: unknown channel 'nowhere' (define it under channels:)" in lines
    assert "rules[3].name: required" in lines
    assert "rules[4].name: 'Broken' is already rules[0]" in lines
    assert AlertRule.objects.count() == 0


def test_the_exact_column_of_a_syntax_error(tmp_path):
    # The parser's message: what was expected and where (1-based column).
    error = load_error(tmp_path, 'rules:\n  - {name: r, expr: "max(system_load1 > 4"}\n')
    assert "rules[0].expr: expected ')' at column 21" in error


def test_hostile_expressions_are_errors_not_crashes(tmp_path):
    deep = "(" * 5000 + "1" + ")" * 5000
    text = yaml.safe_dump({"rules": [{"name": "a", "expr": "__import__('os')"}, {"name": "b", "expr": deep}]})
    error = load_error(tmp_path, text)
    assert "rules[0].expr: " in error and "rules[1].expr: " in error
    assert AlertRule.objects.count() == 0


def test_loading_rules_kicks_an_evaluation_after_commit(tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    kicks: list[int] = []
    monkeypatch.setattr(engine, "kick", lambda: kicks.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        load(tmp_path, DESIGN_EXAMPLE)
    assert kicks == [1]
    with django_capture_on_commit_callbacks(execute=True):
        load(tmp_path, DESIGN_EXAMPLE)  # nothing changed: nothing to evaluate anew
    assert kicks == [1]
