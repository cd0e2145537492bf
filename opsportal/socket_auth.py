"""Who may keep a status socket open: close codes for users and sessions.

At connect, channels' ``AuthMiddlewareStack`` has resolved the user; :func:`refusal`
turns it into a close code. While the socket is open, each web process re-checks the
sessions of all its clients at once (:func:`check_sessions`, called by the live
poller): a few queries per check, whatever the number of clients, where one
``get_user()`` per client would cost two queries and a connection each.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
    load_backend,
)
from django.utils import timezone
from django.utils.crypto import constant_time_compare

#: Close codes the page treats as final (it stops reconnecting).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

_DB_ENGINES = ("django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db")


def refusal(user: Any) -> int | None:
    """Return the close code ``user`` gets, or None when staff may watch."""
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if not (user.is_active and user.is_staff):
        return CLOSE_FORBIDDEN
    return None


def session_refusal(session_key: str | None) -> int | None:
    """Load one session afresh and return the close code its user would get now.

    The checks of a new request: the session exists and has not expired, the user
    exists and may authenticate, and the session's auth hash still matches (a password
    change ends it).
    """
    if not session_key:
        return CLOSE_UNAUTHENTICATED
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return refusal(get_user(SimpleNamespace(session=store)))  # type: ignore[arg-type]


def check_sessions(keys: Iterable[str | None]) -> dict[str | None, int | None]:
    """Return the close code (or None) for each session key: :func:`session_refusal` in bulk.

    With database sessions: one query for the sessions and one for their users per 500
    keys. Other session engines are checked one key at a time.
    """
    keys = set(keys)
    if settings.SESSION_ENGINE not in _DB_ENGINES:
        return {key: session_refusal(key) for key in keys}
    from django.contrib.sessions.models import Session

    result: dict[str | None, int | None] = dict.fromkeys(keys, CLOSE_UNAUTHENTICATED)
    wanted = sorted(k for k in keys if k)
    now = timezone.now()
    for start in range(0, len(wanted), 500):
        sessions = {
            s.session_key: s.get_decoded()
            for s in Session.objects.filter(session_key__in=wanted[start : start + 500], expire_date__gt=now)
        }
        user_ids = {data.get(SESSION_KEY) for data in sessions.values()} - {None}
        users = {str(u.pk): u for u in get_user_model()._default_manager.filter(pk__in=user_ids)}
        for key, data in sessions.items():
            user = users.get(str(data.get(SESSION_KEY)))
            if user is not None and _still_valid(user, data):
                result[key] = refusal(user)
    return result


def _still_valid(user: Any, data: dict[str, Any]) -> bool:
    """Return whether the session ``data`` still logs ``user`` in (as ``get_user()`` decides)."""
    backend_path = data.get(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    backend = load_backend(backend_path)
    can = getattr(backend, "user_can_authenticate", None)
    if can is not None and not can(user):
        return False
    session_hash = data.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(session_hash, h) for h in user.get_session_auth_fallback_hash())
