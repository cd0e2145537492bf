"""API tokens: issue, verify, revoke, rate-limit.

A token is ``opp_`` followed by 43 url-safe random characters (256 bits). Only its
SHA-256 is stored, with the first :data:`PREFIX_LENGTH` characters in clear so an
operator can tell tokens apart and the verifier finds the row by an indexed lookup
before comparing hashes in constant time. Being random and long, a token needs no
salt or slow hash. The plaintext exists once: in the return value of
:func:`create` / :func:`issue`, shown to the operator and never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from monitoring.models import ApiToken

log = logging.getLogger(__name__)

#: The recognisable start of every token (secret scanners and people spot it).
TOKEN_MARK = "opp_"
#: Characters kept in clear: the mark plus 8 random characters.
PREFIX_LENGTH = 12
_RANDOM_BYTES = 32
#: ``last_used_at`` is written at most this often per token (no write per request).
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
SCOPES = frozenset(ApiToken.Scope.values)


class TokenError(ValueError):
    """A token cannot be created as asked (duplicate name, unknown scope...)."""


class Refusal(Exception):
    """Why a request's token is not accepted; ``status`` is the HTTP answer (401/403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def hash_token(plaintext: str) -> str:
    """Return the SHA-256 hex digest stored for ``plaintext``."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate() -> str:
    """Return a new random token (not stored anywhere)."""
    return TOKEN_MARK + secrets.token_urlsafe(_RANDOM_BYTES)


def issue(token: ApiToken) -> str:
    """Give the unsaved ``token`` a fresh secret; return the plaintext (show it once)."""
    plaintext = generate()
    token.prefix = plaintext[:PREFIX_LENGTH]
    token.token_hash = hash_token(plaintext)
    return plaintext


def clean_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """Return ``scopes`` de-duplicated in a stable order, or raise :class:`TokenError`."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise TokenError(f"unknown scope {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SCOPES))}")
    return sorted(set(scopes))


def create(
    name: str,
    scopes: list[str] | tuple[str, ...] = (ApiToken.Scope.PUSH,),
    *,
    expires_at: dt.datetime | None = None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiToken, str]:
    """Create and save a token; return it with its plaintext (the only time it exists)."""
    name = (name or "").strip()
    if not name:
        raise TokenError("a token needs a name")
    max_length = ApiToken._meta.get_field("name").max_length or 100
    if len(name) > max_length:
        raise TokenError(f"the name is longer than {max_length} characters")
    token = ApiToken(name=name, scopes=clean_scopes(scopes), expires_at=expires_at)
    if rate_limit_per_minute is not None:
        if rate_limit_per_minute < 0:
            raise TokenError("the rate limit cannot be negative")
        token.rate_limit_per_minute = rate_limit_per_minute
    plaintext = issue(token)
    try:
        with transaction.atomic():
            token.save()
    except IntegrityError:
        if ApiToken.objects.filter(name=name).exists():
            raise TokenError(f"a token named {name!r} already exists") from None
        raise
    log.info("API token %r created (prefix %s, scopes %s)", name, token.prefix, ",".join(token.scopes))
    return token, plaintext


def revoke(token: ApiToken, *, now: dt.datetime | None = None) -> bool:
    """Revoke ``token`` now; return False when it already was."""
    now = now or timezone.now()
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if updated:
        token.revoked_at = now
        log.info("API token %r revoked (prefix %s)", token.name, token.prefix)
    return bool(updated)


def state(token: ApiToken, *, now: dt.datetime | None = None) -> str:
    """Return ``active``, ``revoked`` or ``expired``."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def bearer(authorization: str) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def find(plaintext: str) -> ApiToken | None:
    """Return the stored token whose hash matches ``plaintext`` (constant-time compare)."""
    if len(plaintext) < PREFIX_LENGTH or len(plaintext) > 200 or not plaintext.startswith(TOKEN_MARK):
        return None
    digest = hash_token(plaintext)
    found = None
    for candidate in ApiToken.objects.filter(prefix=plaintext[:PREFIX_LENGTH]):
        if hmac.compare_digest(candidate.token_hash, digest):
            found = candidate
    return found


def authenticate(plaintext: str | None, scope: str, *, now: dt.datetime | None = None) -> ApiToken:
    """Return the live token for ``plaintext`` holding ``scope`` or raise :class:`Refusal`.

    Records the use at most once per :data:`LAST_USED_RESOLUTION`: the conditional
    UPDATE lets only one of several concurrent requests write.
    """
    now = now or timezone.now()
    if not plaintext:
        raise Refusal(401, "authentication required: send Authorization: Bearer <token>")
    token = find(plaintext)
    if token is None:
        raise Refusal(401, "invalid token")
    current = state(token, now=now)
    if current != "active":
        raise Refusal(401, f"token {current}")
    if scope not in (token.scopes or []):
        raise Refusal(403, f"token lacks the '{scope}' scope")
    stale_before = now - LAST_USED_RESOLUTION
    if token.last_used_at is None or token.last_used_at <= stale_before:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    retry_after: int = 0


def check_rate(token: ApiToken, *, now: float | None = None) -> RateDecision:
    """Count one request against ``token``'s per-minute limit (0 means no limit).

    A fixed one-minute window counted in the shared cache (atomic on Redis, close
    enough on the single-process file cache). If the cache is down the request is
    let through: losing the limit for a while beats refusing every push.
    """
    limit = token.rate_limit_per_minute
    if not limit:
        return RateDecision(True, 0)
    now = time.time() if now is None else now
    window = int(now // 60)
    key = f"monitoring:push-rate:{token.pk}:{token.prefix}:{window}"
    try:
        cache.add(key, 0, timeout=120)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.set(key, 1, timeout=120)
            count = 1
    except Exception as error:  # noqa: BLE001 - any cache backend failure means "no limit for now"
        log.warning("rate limit not enforced, cache unavailable: %s", type(error).__name__)
        return RateDecision(True, limit)
    if count <= limit:
        return RateDecision(True, limit)
    retry_after = max(1, math.ceil((window + 1) * 60 - now))
    return RateDecision(False, limit, retry_after)
