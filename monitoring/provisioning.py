"""The ``thresholds`` section of the provisioning file (see ``opsportal.provisioning``).

An item, as in DESIGN::

    - {metric: system_cpu_usage_percent, warning: 70, critical: 85, direction: above, for: 1m, channels: [ops-hook]}
    - {metric: system_disk_usage_percent, labels: {mount: /}, warning: 80, critical: 95}

Items are keyed by metric + labels. The DESIGN keys describe the whole threshold: a key
left out means its default (no labels, no level, ``above``, ``for: 0s``, no ``clear``,
no channels). Two more keys are optional and left as they are when absent:
``enabled`` (exported only as ``enabled: false``) and ``description`` (exported when
set). Every item goes through ``Threshold.full_clean()``, so a file is held to the same
rules as the admin form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from monitoring.durations import format_duration, parse_duration
from monitoring.models import Threshold
from monitoring.models.thresholds import unknown_metrics
from monitoring.storage import labels_key

#: YAML key → model field, where they differ.
_FIELD_OF_KEY = {"for": "for_duration"}
_KEY_OF_FIELD = {v: k for k, v in _FIELD_OF_KEY.items()}
DESIGN_KEYS = ("metric", "labels", "warning", "critical", "direction", "for", "clear", "channels")
OPTIONAL_KEYS = ("enabled", "description")
#: Fields a file always sets (their default when the key is absent).
_DECLARED_FIELDS = ("labels", "warning", "critical", "direction", "for_duration", "clear", "channels")


def _number(value: float) -> float | int:
    """Return ``value`` as an int when it is whole, so the export reads ``70``, not ``70.0``."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _same_duration(a: dt.timedelta, b: dt.timedelta) -> bool:
    # Exported durations are rounded to the millisecond; equal at that precision is unchanged.
    return format_duration(a) == format_duration(b)


class ThresholdsSection:
    name = "thresholds"
    secret_fields: tuple[str, ...] = ()

    # --- reading items ------------------------------------------------------------

    def _fields(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return the model fields an item sets and the type errors found (key, message)."""
        errors: list[tuple[str, str]] = []
        fields: dict[str, Any] = {}
        metric = item.get("metric")
        if metric is None:
            errors.append((".metric", "required"))
        elif not isinstance(metric, str):
            errors.append((".metric", "must be a metric name"))
        else:
            fields["metric"] = metric.strip()

        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            errors.append((".labels", "must be a mapping of label names to values, e.g. {mount: /}"))
        else:
            clean_labels = {}
            for key, value in labels.items():
                if not isinstance(key, str):
                    errors.append((".labels", f"label names must be text (got {key!r})"))
                elif not isinstance(value, str):
                    errors.append((f".labels.{key}", f'must be text; quote it: "{value}"'))
                else:
                    clean_labels[str(key)] = value
            fields["labels"] = clean_labels

        for key in ("warning", "critical", "clear"):
            value = item.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                errors.append((f".{key}", f"must be a number (got {value!r})"))
            else:
                fields[key] = None if value is None else float(value)

        direction = item.get("direction", Threshold.Direction.ABOVE)
        if direction not in Threshold.Direction.values:
            errors.append((".direction", f"must be {' or '.join(Threshold.Direction.values)} (got {direction!r})"))
        else:
            fields["direction"] = direction

        try:
            fields["for_duration"] = parse_duration(item.get("for", 0))
        except ValueError as error:
            errors.append((".for", str(error)))

        channels = item.get("channels") or []
        if not isinstance(channels, list) or not all(isinstance(c, str) and c.strip() for c in channels):
            errors.append((".channels", "must be a list of channel names, e.g. [ops-hook]"))
        else:
            fields["channels"] = list(channels)

        if "enabled" in item:
            if not isinstance(item["enabled"], bool):
                errors.append((".enabled", "must be true or false"))
            else:
                fields["enabled"] = item["enabled"]
        if "description" in item:
            description = item["description"]
            if description is not None and not isinstance(description, str):
                errors.append((".description", "must be text"))
            else:
                fields["description"] = description or ""
        return fields, errors

    def _existing(self) -> dict[tuple[str, str], Threshold]:
        return {(t.metric, t.labels_key): t for t in Threshold.objects.all()}

    # --- the section interface ----------------------------------------------------

    def validate(self, items: list[Any], document: Mapping[str, Any]) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        existing = self._existing()
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            path = f"[{index}]"
            if not isinstance(item, dict):
                errors.append((path, "must be a mapping with metric and warning and/or critical"))
                continue
            for key in item:
                if key not in DESIGN_KEYS and key not in OPTIONAL_KEYS:
                    expected = ", ".join(DESIGN_KEYS + OPTIONAL_KEYS)
                    errors.append((f"{path}.{key}", f"unknown key (expected one of {expected})"))
            fields, problems = self._fields(item)
            errors.extend((path + key, message) for key, message in problems)
            # Keys that already have an error: the model's checks of them would only repeat it
            # (or, for the levels, compare against a value that could not be read).
            unreadable = {_FIELD_OF_KEY.get(key[1:].split(".")[0], key[1:].split(".")[0]) for key, _ in problems}
            if unreadable & {"warning", "critical", "clear", "direction"}:
                unreadable |= {"warning", "critical", "clear"}
            if "metric" not in fields:
                continue
            key = (fields["metric"], labels_key(fields.get("labels", {})))
            if "labels" in fields:
                if key in seen:
                    errors.append((path, f"same metric and labels as {self.name}[{seen[key]}]"))
                    continue
                seen[key] = index
            threshold = existing.get(key) or Threshold()
            for name, value in fields.items():
                setattr(threshold, name, value)
            try:
                threshold.full_clean(exclude=unreadable)
            except ValidationError as error:
                for name, messages in error.message_dict.items():
                    if name in unreadable:
                        continue
                    where = "" if name == "__all__" else "." + _KEY_OF_FIELD.get(name, name)
                    errors.extend((path + where, message) for message in messages)
        return errors

    def warnings(self, items: list[Any]) -> list[tuple[str, str]]:
        """Return notes on valid items that are probably mistakes: a metric nothing reports."""
        metrics = [item["metric"].strip() for item in items]
        unknown = unknown_metrics(metrics)
        return [
            (f"[{index}].metric", f"{metric} is not a built-in metric and no series has that name yet (a typo?)")
            for index, metric in enumerate(metrics)
            if metric in unknown
        ]

    def apply(self, items: list[Any]) -> dict[str, int]:
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        existing = self._existing()
        for item in items:
            fields, _ = self._fields(item)
            key = (fields["metric"], labels_key(fields["labels"]))
            threshold = existing.get(key)
            if threshold is None:
                threshold = Threshold(**fields)
                threshold.full_clean()
                threshold.save()
                existing[key] = threshold
                counts["created"] += 1
                continue
            changed = [name for name, value in fields.items() if not self._equal(name, getattr(threshold, name), value)]
            if not changed:
                counts["unchanged"] += 1
                continue
            for name in changed:
                setattr(threshold, name, fields[name])
            threshold.full_clean()
            threshold.save()
            counts["updated"] += 1
        return counts

    @staticmethod
    def _equal(name: str, stored: Any, wanted: Any) -> bool:
        if name == "for_duration":
            return _same_duration(stored or dt.timedelta(0), wanted)
        return bool(stored == wanted)

    def export(self) -> list[dict[str, Any]]:
        items = []
        for threshold in Threshold.objects.order_by("metric", "labels_key"):
            item: dict[str, Any] = {"metric": threshold.metric}
            if threshold.labels:
                item["labels"] = dict(sorted(threshold.labels.items()))
            if threshold.warning is not None:
                item["warning"] = _number(threshold.warning)
            if threshold.critical is not None:
                item["critical"] = _number(threshold.critical)
            item["direction"] = threshold.direction
            if threshold.for_duration:
                item["for"] = format_duration(threshold.for_duration)
            if threshold.clear is not None:
                item["clear"] = _number(threshold.clear)
            if threshold.channels:
                item["channels"] = list(threshold.channels)
            if not threshold.enabled:
                item["enabled"] = False
            if threshold.description:
                item["description"] = threshold.description
            items.append(item)
        return items
