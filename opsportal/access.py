"""Who may reach which view: staff only, unless a view says otherwise.

DESIGN's allowlist is expressed on the views themselves: ``@public`` for the
endpoints anyone may call (health probes, ping URLs, the public status page) and
``@api`` for endpoints that authenticate by token or answer 401 JSON instead of
redirecting to the login page. ``StaffOnlyMiddleware`` enforces the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

#: Admin views every visitor must reach to be able to log in at all.
PUBLIC_VIEW_NAMES = frozenset({"admin:login", "admin:logout"})


def public(view: F) -> F:
    """Mark ``view`` as reachable without a staff session (it does its own checks)."""
    view.opsportal_public = True  # type: ignore[attr-defined]
    return view


def api(view: F) -> F:
    """Mark ``view`` as an API endpoint: refusals are 401/403 JSON, never a redirect."""
    view.opsportal_api = True  # type: ignore[attr-defined]
    return view


def is_public(view: object) -> bool:
    return bool(getattr(view, "opsportal_public", False))


def is_api(view: object, path: str) -> bool:
    return bool(getattr(view, "opsportal_api", False)) or path.startswith("/api/")
