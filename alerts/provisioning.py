"""The ``channels`` and ``rules`` sections of the provisioning file (see ``opsportal.provisioning``).

An item, as in DESIGN::

    - {name: ops-hook, kind: webhook, target: "http://127.0.0.1:9000/hook", secret: "..."}
    - {name: oncall-mail, kind: email, target: "oncall@example.com"}

Channels are keyed by ``name``. ``target`` and ``secret`` are secrets: they export as
the placeholder unless secrets are asked for, and a key that is absent (or was the
placeholder) keeps what is stored. ``secret: ""`` removes a stored secret. A new channel
needs a real target. Two more keys are optional and left as they are when absent:
``enabled`` and ``send_resolved`` (exported only when false). Every item goes through
``NotificationChannel.full_clean()``, so a file is held to the admin form's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from alerts.fields import UndecryptableSecret
from alerts.models import NotificationChannel

DESIGN_KEYS = ("name", "kind", "target", "secret")
OPTIONAL_KEYS = ("enabled", "send_resolved")
KEYS = DESIGN_KEYS + OPTIONAL_KEYS
NAME_MAX = NotificationChannel._meta.get_field("name").max_length or 100


def _stored(channel: NotificationChannel, field: str) -> str | None:
    """Return the stored plaintext of ``field``, or None when it cannot be decrypted."""
    try:
        return str(getattr(channel, field) or "")
    except UndecryptableSecret:
        return None


def _read_name(item: Mapping[str, Any], max_length: int, fields: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    """Put the item's stripped ``name`` into ``fields``, or its error into ``errors``."""
    name = item.get("name")
    if name is None:
        errors.append((".name", "required"))
    elif not isinstance(name, str) or not name.strip():
        errors.append((".name", "must be a non-empty name"))
    elif len(name.strip()) > max_length:
        errors.append((".name", f"at most {max_length} characters"))
    else:
        fields["name"] = name.strip()


class ChannelsSection:
    name = "channels"
    # Webhook URLs carry their token in the path, so every target counts as a secret.
    secret_fields: tuple[str, ...] = ("target", "secret")

    def _fields(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return the model fields an item sets and the type errors found (key, message)."""
        fields: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        _read_name(item, NAME_MAX, fields, errors)
        kind = item.get("kind")
        kinds = ", ".join(NotificationChannel.Kind.values)
        if kind is None:
            errors.append((".kind", f"required (one of {kinds})"))
        elif kind not in NotificationChannel.Kind.values:
            errors.append((".kind", f"must be one of {kinds} (got {kind!r})"))
        else:
            fields["kind"] = kind
        for key in ("target", "secret"):
            if key in item:
                value = item[key]
                if value is None and key == "secret":
                    value = ""
                if not isinstance(value, str):
                    # Never echo the value: it is a secret.
                    errors.append((f".{key}", "must be text (quote it)"))
                else:
                    fields[key] = value.strip()
        for key in OPTIONAL_KEYS:
            if key in item:
                if not isinstance(item[key], bool):
                    errors.append((f".{key}", "must be true or false"))
                else:
                    fields[key] = item[key]
        return fields, errors

    def _existing(self) -> dict[str, NotificationChannel]:
        return {c.name: c for c in NotificationChannel.objects.all()}

    # --- the section interface ------------------------------------------------------

    def validate(self, items: list[Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        existing = self._existing()
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"[{index}]"
            if not isinstance(item, dict):
                errors.append((path, "must be a mapping with name, kind and target"))
                continue
            for key in item:
                if key not in KEYS:
                    errors.append((f"{path}.{key}", f"unknown key (expected one of {', '.join(KEYS)})"))
            fields, problems = self._fields(item)
            errors.extend((path + key, message) for key, message in problems)
            if "name" not in fields:
                continue
            if fields["name"] in seen:
                errors.append((f"{path}.name", f"{fields['name']!r} is already {self.name}[{seen[fields['name']]}]"))
                continue
            seen[fields["name"]] = index
            channel = existing.get(fields["name"])
            if channel is None and "target" not in fields:
                errors.append(
                    (f"{path}.target", "required for a new channel (a placeholder only keeps a stored target)")
                )
                continue
            if problems:
                continue
            channel = channel or NotificationChannel()
            for name, value in fields.items():
                setattr(channel, name, value)
            try:
                channel.full_clean(validate_unique=False)
            except ValidationError as error:
                for name, messages in error.message_dict.items():
                    where = "" if name == "__all__" else f".{name}"
                    errors.extend((path + where, message) for message in messages)
        return errors

    def apply(self, items: list[Any]) -> dict[str, int]:
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        existing = self._existing()
        for item in items:
            fields, _ = self._fields(item)
            channel = existing.get(fields["name"])
            if channel is None:
                channel = NotificationChannel(**fields)
                channel.full_clean()
                channel.save()
                existing[channel.name] = channel
                counts["created"] += 1
                continue
            changed = [
                name
                for name, value in fields.items()
                if (_stored(channel, name) if name in self.secret_fields else getattr(channel, name)) != value
            ]
            if not changed:
                counts["unchanged"] += 1
                continue
            for name in changed:
                setattr(channel, name, fields[name])
            if {"target", "secret"} & set(changed):
                # A new target or secret is a fix attempt: an old refusal no longer says anything.
                channel.flagged_at = None
                channel.flag_reason = ""
            channel.full_clean()
            channel.save()
            counts["updated"] += 1
        return counts

    def export(self) -> list[dict[str, Any]]:
        """Return every channel; a value that cannot be decrypted is left out (loading keeps it), never garbled."""
        items = []
        for channel in NotificationChannel.objects.order_by("name"):
            item: dict[str, Any] = {"name": channel.name, "kind": channel.kind}
            for key in ("target", "secret"):
                value = _stored(channel, key)
                if value:
                    item[key] = value
            if not channel.enabled:
                item["enabled"] = False
            if not channel.send_resolved:
                item["send_resolved"] = False
            items.append(item)
        return items


# --- rules ------------------------------------------------------------------------------
#
# An item, as in DESIGN::
#
#     - name: High CPU
#       expr: "avg_over_time(system_cpu_usage_percent[5m]) > 85"
#       severity: critical          # info | warning | critical | emergency
#       for: 2m
#       repeat_interval: 1h
#       channels: [ops-hook]
#       runbook: "Find the top processes; scale out if sustained."
#
# Rules are keyed by ``name``. The DESIGN keys describe the whole rule: one left out
# means its default (severity warning, for 0s, keep_firing_for 0s, repeat_interval 4h,
# no labels, summary, runbook or channels). ``enabled`` is optional and left as it is
# when absent (exported only as ``enabled: false``). Channels are names defined in the
# same file's ``channels`` section or already stored. Loading a rule kicks an evaluation,
# so a ``for: 0s`` rule notifies at once, without a restart.

RULE_KEYS = (
    "name",
    "expr",
    "severity",
    "for",
    "keep_firing_for",
    "repeat_interval",
    "labels",
    "summary",
    "runbook",
    "channels",
)
RULE_OPTIONAL_KEYS = ("enabled",)
_RULE_DURATIONS = {"for": "for_duration", "keep_firing_for": "keep_firing_for", "repeat_interval": "repeat_interval"}
_RULE_FIELD_KEYS = {"for_duration": "for"}


def _rule_defaults() -> dict[str, Any]:
    from alerts.models import AlertRule

    return {
        "severity": AlertRule._meta.get_field("severity").default,
        "for_duration": AlertRule._meta.get_field("for_duration").default,
        "keep_firing_for": AlertRule._meta.get_field("keep_firing_for").default,
        "repeat_interval": AlertRule._meta.get_field("repeat_interval").default,
        "labels": {},
        "summary": "",
        "runbook": "",
    }


class RulesSection:
    name = "rules"
    secret_fields: tuple[str, ...] = ()

    def _fields(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[tuple[str, str]]]:
        """Return the model fields an item sets, its channel names and the errors found (key, message)."""
        from alerts.models import AlertRule
        from alerts.models.alerts import Severity
        from alerts.rules import RuleError, parse
        from monitoring.durations import parse_duration
        from monitoring.models.thresholds import LABEL_NAME

        fields: dict[str, Any] = _rule_defaults()
        errors: list[tuple[str, str]] = []
        _read_name(item, AlertRule._meta.get_field("name").max_length or 200, fields, errors)
        expr = item.get("expr")
        if expr is None:
            errors.append((".expr", 'required, e.g. "avg_over_time(system_cpu_usage_percent[5m]) > 85"'))
        elif not isinstance(expr, str):
            errors.append((".expr", "must be text (quote it)"))
        else:
            try:
                parse(expr)
                fields["expr"] = expr.strip()
            except RuleError as error:
                errors.append((".expr", str(error)))
        severity = item.get("severity", fields["severity"])
        if severity not in Severity.values:
            errors.append((".severity", f"must be one of {', '.join(Severity.values)} (got {severity!r})"))
        else:
            fields["severity"] = severity
        for key, field_name in _RULE_DURATIONS.items():
            if key in item:
                try:
                    fields[field_name] = parse_duration(item[key])
                except ValueError as error:
                    errors.append((f".{key}", str(error)))
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            errors.append((".labels", "must be a mapping of label names to text, e.g. {team: ops}"))
        else:
            for key, value in labels.items():
                if not isinstance(key, str) or not LABEL_NAME.match(key):
                    errors.append((f".labels.{key}", "not a label name: use letters, digits and _"))
                elif not isinstance(value, str):
                    errors.append((f".labels.{key}", f'must be text; quote it: "{value}"'))
            fields["labels"] = {str(k): v for k, v in labels.items()}
        for key in ("summary", "runbook"):
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                errors.append((f".{key}", "must be text"))
            else:
                fields[key] = (value or "").strip()
        channels = item.get("channels") or []
        names: list[str] = []
        if not isinstance(channels, list):
            errors.append((".channels", "must be a list of channel names, e.g. [ops-hook]"))
        else:
            for index, channel in enumerate(channels):
                if not isinstance(channel, str) or not channel.strip():
                    errors.append((f".channels[{index}]", "must be a channel name"))
                else:
                    names.append(channel.strip())
        if "enabled" in item:
            if not isinstance(item["enabled"], bool):
                errors.append((".enabled", "must be true or false"))
            else:
                fields["enabled"] = item["enabled"]
        return fields, names, errors

    def _existing(self) -> dict[str, Any]:
        from alerts.models import AlertRule

        return {rule.name: rule for rule in AlertRule.objects.prefetch_related("channels")}

    def validate(self, items: list[Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
        from alerts.models import AlertRule

        errors: list[tuple[str, str]] = []
        existing = self._existing()
        known_channels = set(NotificationChannel.objects.values_list("name", flat=True))
        for channel in document.get("channels") or []:
            if isinstance(channel, dict) and isinstance(channel.get("name"), str):
                known_channels.add(channel["name"].strip())
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"[{index}]"
            if not isinstance(item, dict):
                errors.append((path, "must be a mapping with name and expr"))
                continue
            for key in item:
                if key not in RULE_KEYS and key not in RULE_OPTIONAL_KEYS:
                    expected = ", ".join(RULE_KEYS + RULE_OPTIONAL_KEYS)
                    errors.append((f"{path}.{key}", f"unknown key (expected one of {expected})"))
            fields, _, problems = self._fields(item)
            errors.extend((path + key, message) for key, message in problems)
            listed = item.get("channels")
            for position, channel in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(channel, str) and channel.strip() and channel.strip() not in known_channels:
                    errors.append(
                        (f"{path}.channels[{position}]", f"unknown channel {channel!r} (define it under channels:)")
                    )
            if "name" not in fields:
                continue
            if fields["name"] in seen:
                errors.append((f"{path}.name", f"{fields['name']!r} is already {self.name}[{seen[fields['name']]}]"))
                continue
            seen[fields["name"]] = index
            if problems:
                continue
            rule = existing.get(fields["name"]) or AlertRule()
            for name, value in fields.items():
                setattr(rule, name, value)
            try:
                rule.full_clean(validate_unique=False)
            except ValidationError as error:
                for name, messages in error.message_dict.items():
                    key = _RULE_FIELD_KEYS.get(name, name)
                    where = "" if name == "__all__" else f".{key}"
                    errors.extend((path + where, message) for message in messages)
        return errors

    def apply(self, items: list[Any]) -> dict[str, int]:
        from django.db import transaction

        from alerts import engine
        from alerts.models import AlertRule
        from monitoring.durations import format_duration

        counts = {"created": 0, "updated": 0, "unchanged": 0}
        existing = self._existing()
        channels = {c.name: c for c in NotificationChannel.objects.all()}
        for item in items:
            fields, names, _ = self._fields(item)
            wanted = {channels[name].pk for name in names}
            rule = existing.get(fields["name"])
            if rule is None:
                rule = AlertRule(**fields)
                rule.full_clean()
                rule.save()
                rule.channels.set(wanted)
                counts["created"] += 1
                continue

            def same(name: str, value: Any, stored_rule: Any = rule) -> bool:
                stored = getattr(stored_rule, name)
                if name in _RULE_DURATIONS.values():
                    return bool(format_duration(stored) == format_duration(value))
                return bool(stored == value)

            changed = [name for name, value in fields.items() if not same(name, value)]
            channels_changed = {c.pk for c in rule.channels.all()} != wanted
            if not changed and not channels_changed:
                counts["unchanged"] += 1
                continue
            for name in changed:
                setattr(rule, name, fields[name])
            if changed:
                rule.full_clean()
                rule.save()
            if channels_changed:
                rule.channels.set(wanted)
            counts["updated"] += 1
        if counts["created"] or counts["updated"]:
            transaction.on_commit(engine.kick)
        return counts

    def export(self) -> list[dict[str, Any]]:
        from alerts.models import AlertRule
        from monitoring.durations import format_duration

        defaults = _rule_defaults()
        items = []
        for rule in AlertRule.objects.prefetch_related("channels").order_by("name"):
            item: dict[str, Any] = {"name": rule.name, "expr": rule.expr, "severity": rule.severity}
            if rule.for_duration:
                item["for"] = format_duration(rule.for_duration)
            if rule.keep_firing_for:
                item["keep_firing_for"] = format_duration(rule.keep_firing_for)
            if rule.repeat_interval != defaults["repeat_interval"]:
                item["repeat_interval"] = format_duration(rule.repeat_interval)
            if rule.labels:
                item["labels"] = dict(sorted(rule.labels.items()))
            if rule.summary:
                item["summary"] = rule.summary
            if rule.runbook:
                item["runbook"] = rule.runbook
            names = sorted(c.name for c in rule.channels.all())
            if names:
                item["channels"] = names
            if not rule.enabled:
                item["enabled"] = False
            items.append(item)
        return items
