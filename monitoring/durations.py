"""Durations as operators write them in YAML: ``30s``, ``5m``, ``2h``, ``1d``, ``1h30m``, ``500ms``.

Shared by every provisioning section (``for``, ``repeat_interval``, heartbeat ``period``,
...), so the same text means the same time everywhere. :func:`format_duration` is the
inverse of :func:`parse_duration`, which makes ``exportconfig`` → ``loadconfig`` a no-op.
"""

from __future__ import annotations

import datetime as dt
import re

#: Unit → milliseconds, largest first (the order a duration must be written in).
UNITS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_PART = re.compile(r"(\d+)(ms|[dhms])")
_WHOLE = re.compile(r"^(?:\d+(?:ms|[dhms]))+$")
#: Longest duration accepted (about ten years); ``timedelta`` itself overflows much later.
MAX_SECONDS = 10 * 366 * 86400

HINT = "a duration like 30s, 5m, 2h, 1d or 1h30m"


def parse_duration(value: object) -> dt.timedelta:
    """Return ``value`` (``"90s"``, ``"1h30m"``, ``0``) as a timedelta or raise ``ValueError``.

    Units are ``d``, ``h``, ``m``, ``s`` and ``ms``, each at most once, largest first. A bare
    ``0`` is accepted (nothing to misread); any other bare number is refused, because
    ``5`` could mean seconds or minutes.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {HINT}")
    if isinstance(value, int) and value == 0:
        return dt.timedelta(0)
    if not isinstance(value, str):
        raise ValueError(f"expected {HINT}")
    text = value.strip().lower()
    if text == "0":
        return dt.timedelta(0)
    if not _WHOLE.match(text):
        raise ValueError(f"“{value}” is not {HINT}")
    units = [unit for _, unit in _PART.findall(text)]
    if len(set(units)) != len(units) or units != sorted(units, key=lambda u: -UNITS[u]):
        raise ValueError(f"“{value}” is not {HINT} (each unit once, largest first)")
    millis = sum(int(number) * UNITS[unit] for number, unit in _PART.findall(text))
    if millis > MAX_SECONDS * 1000:
        raise ValueError(f"“{value}” is longer than ten years")
    return dt.timedelta(milliseconds=millis)


def format_duration(value: dt.timedelta) -> str:
    """Return ``value`` in the shortest text :func:`parse_duration` reads back (``"1h30m"``).

    Anything finer than a millisecond is rounded away.
    """
    millis = round(value / dt.timedelta(milliseconds=1))
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in UNITS.items():
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
