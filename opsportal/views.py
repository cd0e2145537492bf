from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from opsportal import health, sections
from opsportal.access import api, public


@public
@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests."""
    return JsonResponse({"status": "ok"})


@public
@api
@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every dependency answers; 503 when a critical one does not.

    The body carries names, statuses and timings only: no hosts, URLs or errors.
    """
    results = health.run_checks()
    status = health.overall(results)
    body = {
        "status": status,
        "checks": {r.name: {"status": r.status, "response_time_ms": r.response_time_ms} for r in results},
    }
    return JsonResponse(body, status=503 if status == "unhealthy" else 200)


@require_safe
@never_cache
def status_page(request: HttpRequest) -> HttpResponse:
    """The staff status page: rendered from the same snapshot the WebSocket sends first.

    Complete as plain HTML; ``status.js`` then keeps it live over ``/ws/status/``.
    """
    snapshot = sections.build_snapshot()
    context = {
        "title": "Status",
        "snapshot": snapshot,
        "sections": snapshot["sections"],
        "ws_path": "/ws/status/",
    }
    return render(request, "opsportal/status.html", context)
