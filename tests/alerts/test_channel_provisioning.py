"""The ``channels`` section of ``loadconfig`` / ``exportconfig``, as an operator runs them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection

from alerts.models import NotificationChannel
from alerts.provisioning import ChannelsSection
from opsportal import provisioning
from tests.alerts.delivery_helpers import make_channel

pytestmark = pytest.mark.django_db

DESIGN_EXAMPLE = """\
channels:
  - {name: ops-hook, kind: webhook, target: "http://127.0.0.1:9000/hook", secret: "s3cret-hmac-key"}
  - {name: oncall-mail, kind: email, target: "oncall@example.com"}
"""


@pytest.fixture(autouse=True)
def channels_section(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make sure the section is registered (first: other sections refer to channel names)."""
    sections = [s for s in provisioning.SECTIONS if s.name != "channels"]
    monkeypatch.setattr(provisioning, "SECTIONS", [ChannelsSection(), *sections])
    yield


def load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("loadconfig", str(path), stdout=out, stderr=err)
    except CommandError as error:
        error.stderr = err.getvalue()  # type: ignore[attr-defined]
        raise
    return out.getvalue()


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("exportconfig", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(CommandError) as error:
        load(tmp_path, text)
    return str(error.value) + getattr(error.value, "stderr", "")


def rows() -> list[tuple]:  # type: ignore[type-arg]
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, kind, target, secret, enabled, send_resolved FROM alerts_notificationchannel")
        return sorted(cursor.fetchall())


def test_loading_the_design_example_creates_the_channels_with_encrypted_secrets(tmp_path: Path) -> None:
    out = load(tmp_path, DESIGN_EXAMPLE)

    assert "channels: 2 created, 0 updated, 0 unchanged" in out
    hook = NotificationChannel.objects.get(name="ops-hook")
    assert (hook.kind, hook.target, hook.secret) == ("webhook", "http://127.0.0.1:9000/hook", "s3cret-hmac-key")
    assert NotificationChannel.objects.get(name="oncall-mail").recipients() == ["oncall@example.com"]
    raw = " ".join(str(v) for row in rows() for v in row)
    assert "127.0.0.1:9000" not in raw and "s3cret" not in raw


def test_export_hides_targets_and_secrets_unless_asked(tmp_path: Path) -> None:
    load(tmp_path, DESIGN_EXAMPLE)

    hidden = yaml.safe_load(export())["channels"]
    shown = yaml.safe_load(export("--include-secrets"))["channels"]

    assert hidden == [
        {"name": "oncall-mail", "kind": "email", "target": "<secret>"},
        {"name": "ops-hook", "kind": "webhook", "target": "<secret>", "secret": "<secret>"},
    ]
    assert shown == [
        {"name": "oncall-mail", "kind": "email", "target": "oncall@example.com"},
        {"name": "ops-hook", "kind": "webhook", "target": "http://127.0.0.1:9000/hook", "secret": "s3cret-hmac-key"},
    ]


@pytest.mark.parametrize("flags", [(), ("--include-secrets",)])
def test_export_then_load_changes_nothing(tmp_path: Path, flags: tuple[str, ...]) -> None:
    load(tmp_path, DESIGN_EXAMPLE)
    NotificationChannel.objects.filter(name="oncall-mail").update(enabled=False, send_resolved=False)
    before = rows()

    out = load(tmp_path, export(*flags))

    assert "channels: 0 created, 0 updated, 2 unchanged" in out
    assert rows() == before  # not even re-encrypted


def test_a_placeholder_keeps_the_stored_secret_and_a_real_value_replaces_it(tmp_path: Path) -> None:
    load(tmp_path, DESIGN_EXAMPLE)

    load(tmp_path, 'channels:\n  - {name: ops-hook, kind: webhook, target: "<secret>", secret: "new-key"}\n')

    hook = NotificationChannel.objects.get(name="ops-hook")
    assert (hook.target, hook.secret) == ("http://127.0.0.1:9000/hook", "new-key")
    load(tmp_path, 'channels:\n  - {name: ops-hook, kind: webhook, secret: ""}\n')
    assert NotificationChannel.objects.get(name="ops-hook").secret == ""


def test_loading_a_new_target_clears_the_channel_flag(tmp_path: Path) -> None:
    channel = make_channel(target="http://127.0.0.1:9000/old", flag_reason="receiver answered 404")
    NotificationChannel.objects.filter(pk=channel.pk).update(flagged_at="2026-01-01T00:00:00Z")

    load(tmp_path, 'channels:\n  - {name: ops-hook, kind: webhook, target: "http://127.0.0.1:9000/new"}\n')

    channel.refresh_from_db()
    assert channel.target == "http://127.0.0.1:9000/new" and channel.flagged_at is None


def test_every_error_is_reported_with_its_path_and_nothing_changes(tmp_path: Path) -> None:
    make_channel("existing")
    before = rows()
    text = """\
channels:
  - {name: a, kind: pager, target: "http://x.example/"}
  - {name: b, kind: webhook, target: "ftp://x.example/"}
  - {name: c, kind: email, target: "not-an-address"}
  - {name: d, kind: webhook, target: "<secret>"}
  - {kind: webhook, target: "http://x.example/", colour: red}
  - {name: a, kind: webhook, target: "http://x.example/"}
  - {name: e, kind: webhook, target: 42, enabled: "yes"}
  - just a string
"""

    message = load_error(tmp_path, text)

    for expected in (
        "channels[0].kind: must be one of webhook, email, slack, discord, sms, apprise (got 'pager')",
        "channels[1].target: Expected an http:// or https:// URL.",
        "channels[2].target: Not a valid email address (position 1 in the list).",
        "channels[3].target: required for a new channel",
        "channels[4].name: required",
        "channels[4].colour: unknown key",
        "channels[5].name: 'a' is already channels[0]",
        "channels[6].target: must be text (quote it)",
        "channels[6].enabled: must be true or false",
        "channels[7]: must be a mapping",
    ):
        assert expected in message, f"{expected!r} not in:\n{message}"
    assert "42" not in message  # a secret's value is never echoed
    assert rows() == before


def test_channels_the_file_does_not_mention_are_left_alone(tmp_path: Path) -> None:
    make_channel("kept-by-hand", target="http://127.0.0.1:9000/manual")

    load(tmp_path, DESIGN_EXAMPLE)

    assert NotificationChannel.objects.filter(name="kept-by-hand").exists()
