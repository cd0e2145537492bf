"""Request id and the staff-only default."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from opsportal.access import PUBLIC_VIEW_NAMES, is_api, is_public
from opsportal.logging import request_id

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accept a well-formed ``X-Request-ID`` or make one; echo it and log it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response["X-Request-ID"] = rid
        return response


class StaffOnlyMiddleware:
    """Refuse everything but public views to anyone who is not active staff.

    Anonymous visitors are redirected to the login page (API paths get 401 JSON);
    logged-in non-staff get 403. Views then check their own finer permissions.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            match = resolve(request.path_info)
            view: object = match.func
            public = is_public(view) or match.view_name in PUBLIC_VIEW_NAMES
        except Resolver404:
            view, public = None, False
        if public:
            return self.get_response(request)
        user = request.user
        api = is_api(view, request.path_info)
        if not user.is_authenticated:
            if api:
                return JsonResponse({"error": "authentication required"}, status=401)
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            if api:
                return JsonResponse({"error": "staff only"}, status=403)
            return render(request, "403.html", {"not_staff": True}, status=403)
        return self.get_response(request)
