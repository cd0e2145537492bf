"""The ``channels`` section of the provisioning file (see ``opsportal.provisioning``).

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


class ChannelsSection:
    name = "channels"
    # Webhook URLs carry their token in the path, so every target counts as a secret.
    secret_fields: tuple[str, ...] = ("target", "secret")

    def _fields(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return the model fields an item sets and the type errors found (key, message)."""
        fields: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        name = item.get("name")
        if name is None:
            errors.append((".name", "required"))
        elif not isinstance(name, str) or not name.strip():
            errors.append((".name", "must be a non-empty name"))
        elif len(name.strip()) > NAME_MAX:
            errors.append((".name", f"at most {NAME_MAX} characters"))
        else:
            fields["name"] = name.strip()
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
