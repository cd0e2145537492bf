"""Views with known outcomes for the request-metrics tests (``@pytest.mark.urls``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from opsportal.access import public


@public
def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@public
def unavailable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("down", status=503)


@public
def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("this view always fails")


urlpatterns = [
    path("ok", ok),
    path("unavailable", unavailable),
    path("broken", broken),
]
