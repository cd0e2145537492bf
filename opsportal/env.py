"""Typed readers for environment variables.

Every reader fails with :class:`EnvError`, whose message is one line naming the
variable and what it accepts. ``manage.py``, the ASGI app and the Celery app turn
that error into a single line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class EnvError(Exception):
    """A configuration variable holds a value the portal cannot use."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool = False, *, environ: Mapping[str, str] | None = None) -> bool:
    """Return a boolean; anything but 1/0/true/false/yes/no/on/off is an error."""
    value = _raw(name, environ)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise EnvError(name, f"expected one of 1/0/true/false/yes/no/on/off, got {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(name, f"expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise EnvError(name, f"expected a whole number >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise EnvError(name, f"expected a whole number <= {maximum}, got {number}")
    return number


def env_choice(
    name: str, choices: Sequence[str], default: str, *, environ: Mapping[str, str] | None = None
) -> str:
    value = _raw(name, environ)
    if value is None:
        return default
    if value.lower() not in choices:
        raise EnvError(name, f"expected one of {'|'.join(choices)}, got {value!r}")
    return value.lower()


def env_list(name: str, default: Sequence[str] = (), *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Return a comma-separated list with blanks dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str,
    schemes: Sequence[str],
    default: str = "",
    *,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Return a URL whose scheme is one of ``schemes`` (an empty default means unset)."""
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise EnvError(name, f"expected a URL ({'|'.join(schemes)}://...), got a malformed value") from None
    if parts.scheme not in schemes:
        raise EnvError(name, f"expected a URL with scheme {'|'.join(schemes)}, got scheme {parts.scheme or 'none'!r}")
    if not parts.hostname and parts.scheme not in {"sqlite", "filesystem"}:
        raise EnvError(name, "expected a URL with a host name")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def env_hostname(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Return a host name usable in a queue name and a metric label."""
    value = env_str(name, default, environ=environ)
    if not _HOSTNAME.match(value):
        raise EnvError(name, f"expected letters, digits, '.', '_' or '-' (at most 63), got {value!r}")
    return value


def redact_url(url: str) -> str:
    """Return ``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def exit_on_env_error(error: EnvError) -> Any:
    """Print the one-line configuration error and exit with status 2."""
    import sys

    sys.stderr.write(f"opsportal: configuration error: {error}\n")
    raise SystemExit(2)
