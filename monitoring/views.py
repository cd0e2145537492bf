"""HTTP edges of the monitoring app: the push API and ``/metrics``.

Both authenticate on their own (bearer tokens), so they are marked ``@public`` for the
staff-only middleware and ``@api`` so nothing on them ever redirects to a login page.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from monitoring import exposition, push, tokens
from monitoring.models import ApiToken
from opsportal.access import api, public

log = logging.getLogger(__name__)

_CHALLENGE = 'Bearer realm="opsportal"'


def _error(status: int, message: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@csrf_exempt
@public
@api
@never_cache
def push_metrics(request: HttpRequest) -> HttpResponse:
    """Accept one sample or a batch from a client holding a token with the ``push`` scope.

    202 ``{"accepted": n}``; 400 naming each bad field (a batch with one bad sample
    stores nothing); 401/403 for the token; 413 too large; 429 over the token's rate.
    """
    if request.method != "POST":
        response = _error(405, "method not allowed: POST a JSON sample or {\"samples\": [...]}")
        response["Allow"] = "POST"
        return response
    now = timezone.now()
    try:
        token = tokens.authenticate(
            tokens.bearer(request.headers.get("Authorization", "")), ApiToken.Scope.PUSH, now=now
        )
    except tokens.Refusal as refusal:
        exposition.count_push("unauthorized" if refusal.status == 401 else "forbidden")
        response = _error(refusal.status, refusal.message)
        if refusal.status == 401:
            response["WWW-Authenticate"] = _CHALLENGE
        return response

    rate = tokens.check_rate(token)
    if not rate.allowed:
        exposition.count_push("rate_limited")
        response = _error(
            429, f"rate limit of {rate.limit} requests per minute exceeded", retry_after=rate.retry_after
        )
        response["Retry-After"] = str(rate.retry_after)
        return response

    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > push.MAX_BODY_BYTES:
        return _too_large()
    try:
        # At most one byte past the cap: a chunked body (no Content-Length) is never read whole.
        body = request.read(push.MAX_BODY_BYTES + 1)
    except RequestDataTooBig:
        return _too_large()
    except UnreadablePostError:
        return _error(400, "body: could not be read", errors=[{"field": "body", "message": "could not be read"}])

    try:
        parsed = push.parse(body, host=settings.HOSTNAME, now=now)
        accepted = push.store(parsed, host=settings.HOSTNAME, now=now)
    except push.PushError as error:
        exposition.count_push("too_large" if error.status == 413 else "invalid", error.samples)
        return _error(
            error.status,
            str(error),
            errors=[{"field": e.field, "message": e.message} for e in error.errors],
            error_count=error.total,
        )
    exposition.count_push("accepted", accepted)
    log.debug("push by token %s: %d samples", token.prefix, accepted)
    return JsonResponse({"accepted": accepted}, status=202)


def _too_large() -> JsonResponse:
    exposition.count_push("too_large")
    return _error(413, f"body: larger than {push.MAX_BODY_BYTES} bytes", errors=[
        {"field": "body", "message": f"larger than {push.MAX_BODY_BYTES} bytes"}
    ], error_count=1)


@public
@api
@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for ``Authorization: Bearer <OPSPORTAL_METRICS_TOKEN>`` or staff.

    Refusals are plain text (what a scraper shows in its target page), never a redirect.
    """
    presented = tokens.bearer(request.headers.get("Authorization", ""))
    if presented is not None:
        expected = settings.METRICS_TOKEN or ""
        if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            return _refuse(401, "invalid metrics token\n")
    elif not request.user.is_authenticated:
        return _refuse(401, "authentication required: send Authorization: Bearer <OPSPORTAL_METRICS_TOKEN>\n")
    elif not (request.user.is_active and request.user.is_staff):
        return _refuse(403, "forbidden: /metrics is for staff or the metrics token\n")
    body, content_type = exposition.render(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


def _refuse(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = _CHALLENGE
    return response
