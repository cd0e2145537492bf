"""Staff only by default: every URL of the project, tried as anonymous, plain user and staff.

The patterns are discovered from the resolver, so a URL added later is walked too; if
the walk cannot build a path for a new pattern it fails and says which one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize

from opsportal.access import PUBLIC_VIEW_NAMES, is_api, is_public

STAFF_ONLY_MIDDLEWARE = "opsportal.middleware.StaffOnlyMiddleware"
LOGIN_PATH = "/admin/login/"
#: DESIGN's allowlist: the only places a view may be reachable without a staff session.
DESIGN_PUBLIC_PREFIXES = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/ping/",
    "/status/public/",
    "/api/",
    "/alerts/ack/",
    "/admin/login/",
    "/admin/logout/",
)


@dataclass(frozen=True)
class Endpoint:
    path: str
    view: Callable[..., object]
    view_name: str | None
    route: str

    @property
    def public(self) -> bool:
        return is_public(self.view) or self.view_name in PUBLIC_VIEW_NAMES

    @property
    def api(self) -> bool:
        return is_api(self.view, self.path)

    def __str__(self) -> str:
        return f"{self.path} ({self.route})"


def _candidates() -> list[str]:
    """Values tried for each URL parameter: ids, a uuid, a word, every app label."""
    labels = [config.label for config in apps.get_app_configs()]
    return ["1", "2b1f0c5e-8d9a-4c61-9f0e-5a7b3c2d1e00", "abc", *labels]


def _walk(
    patterns: list[URLPattern | URLResolver], regex: str = "", namespace: str = ""
) -> Iterator[tuple[URLPattern, str, str]]:
    for entry in patterns:
        part = entry.pattern.regex.pattern.removeprefix("^")
        if isinstance(entry, URLResolver):
            inner_ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, regex + part, inner_ns)
        else:
            yield entry, regex + part, namespace


def _concrete_path(pattern: URLPattern, regex: str) -> str | None:
    """Return a path that resolves to ``pattern``, filling its parameters with plausible values."""
    for template, params in normalize(regex):
        for values in itertools.product(_candidates(), repeat=len(params)):
            path = "/" + template % dict(zip(params, values, strict=True))
            try:
                match = resolve(path)
            except Resolver404:
                continue
            if match.func is pattern.callback:
                return path
    return None


def discover_endpoints() -> list[Endpoint]:
    endpoints = []
    unbuildable = []
    for pattern, regex, namespace in _walk(get_resolver().url_patterns):
        path = _concrete_path(pattern, regex)
        if path is None:
            unbuildable.append(regex)
            continue
        name = f"{namespace}{pattern.name}" if pattern.name else None
        endpoints.append(Endpoint(path, pattern.callback, name, regex))
    assert not unbuildable, f"add parameter values to _candidates() so these can be walked: {unbuildable}"
    return endpoints


def is_login_redirect(response, path: str) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response["Location"])
    return location.path == LOGIN_PATH and parse_qs(location.query).get("next") == [path]


def is_staff_only_page(response) -> bool:
    """Return whether ``response`` is the middleware's refusal page or JSON."""
    if response.status_code not in (401, 403):
        return False
    if response.get("Content-Type", "").startswith("application/json"):
        return "error" in response.json()
    return b"is not a staff account" in response.content


@pytest.fixture(scope="module")
def endpoints() -> list[Endpoint]:
    return discover_endpoints()


def test_walk_finds_the_project_and_admin_urls(endpoints):
    names = {e.view_name for e in endpoints}
    assert {"healthz", "readyz", "status", "admin:index", "admin:login", "admin:logout"} <= names
    assert "admin:auth_user_change" in names
    assert "admin:app_list" in names  # a regex pattern, filled from the app labels
    assert any(e.route.startswith("admin/(?P<url>") for e in endpoints)  # the admin's catch-all


def test_public_views_are_only_those_design_allows(endpoints):
    public = sorted(e.path for e in endpoints if e.public)
    assert {"/healthz", "/readyz", "/admin/login/", "/admin/logout/"} <= set(public)
    assert [p for p in public if not p.startswith(DESIGN_PUBLIC_PREFIXES)] == []


@pytest.mark.django_db
def test_anonymous_is_sent_to_login_everywhere_but_public_views(endpoints, client):
    wrong = []
    for endpoint in endpoints:
        response = client.get(endpoint.path)
        if endpoint.public:
            ok = not is_login_redirect(response, endpoint.path) and not is_staff_only_page(response)
            ok = ok and (response.status_code < 500 or response.status_code == 503)
        elif endpoint.api:
            ok = response.status_code == 401 and response["Content-Type"].startswith("application/json")
        else:
            ok = is_login_redirect(response, endpoint.path)
        if not ok:
            wrong.append(f"{endpoint}: {response.status_code} {response.get('Location', '')}")
    assert wrong == []


@pytest.mark.django_db
def test_plain_user_is_refused_everywhere_but_public_views(endpoints, plain_client):
    wrong = []
    for endpoint in endpoints:
        response = plain_client.get(endpoint.path)
        if endpoint.public:
            ok = not is_login_redirect(response, endpoint.path) and not is_staff_only_page(response)
            ok = ok and (response.status_code < 500 or response.status_code == 503)
        elif endpoint.api:
            ok = response.status_code == 403 and response["Content-Type"].startswith("application/json")
        else:
            ok = response.status_code == 403 and is_staff_only_page(response)
        if not ok:
            wrong.append(f"{endpoint}: {response.status_code}")
    assert wrong == []


@pytest.mark.django_db
def test_staff_pass_the_middleware_everywhere_and_never_get_a_server_error(endpoints, staff_client):
    answers = {endpoint: staff_client.get(endpoint.path) for endpoint in endpoints}
    # The same session through the same stack minus StaffOnlyMiddleware (a client
    # builds its middleware chain once, so this needs a client of its own).
    assert STAFF_ONLY_MIDDLEWARE in settings.MIDDLEWARE
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != STAFF_ONLY_MIDDLEWARE]):
        bare_client = Client()
        bare_client.cookies = staff_client.cookies
        bare = {endpoint: bare_client.get(endpoint.path).status_code for endpoint in endpoints}
    wrong = []
    for endpoint, response in answers.items():
        # Only a health probe may answer 503 (unhealthy), and it does so on purpose.
        server_error = response.status_code >= 500 and not (response.status_code == 503 and endpoint.public)
        # The middleware must change nothing for staff: same answer as without it.
        if server_error or response.status_code != bare[endpoint]:
            wrong.append(f"{endpoint}: {response.status_code} (without the middleware: {bare[endpoint]})")
    assert wrong == []


@pytest.mark.django_db
def test_staff_without_any_permission_reach_the_admin_and_status_page(staff_user):
    client = Client()
    client.force_login(staff_user)

    assert client.get("/admin/").status_code == 200
    assert client.get("/status/").status_code == 200


@pytest.mark.django_db
def test_inactive_staff_are_treated_as_logged_out(staff_user, client):
    client.force_login(staff_user)
    staff_user.is_active = False
    staff_user.save()

    response = client.get("/status/")

    assert is_login_redirect(response, "/status/")


@pytest.mark.django_db
def test_unknown_url_sends_anonymous_to_login_and_refuses_plain_user(client, plain_client, staff_client):
    path = "/no-such-page/"
    assert is_login_redirect(client.get(path), path)
    refused = plain_client.get(path)
    assert refused.status_code == 403
    assert is_staff_only_page(refused)
    assert staff_client.get(path).status_code == 404


@pytest.mark.django_db
def test_unknown_api_url_answers_json_not_a_redirect(client, plain_client):
    anonymous = client.get("/api/v1/no-such-endpoint")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "authentication required"}
    plain = plain_client.get("/api/v1/no-such-endpoint")
    assert plain.status_code == 403
    assert plain["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_login_redirect_keeps_the_query_string(client):
    response = client.get("/status/?tab=alerts&x=1")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == LOGIN_PATH
    assert parse_qs(location.query)["next"] == ["/status/?tab=alerts&x=1"]


@pytest.mark.django_db
def test_admin_login_page_is_served_to_anyone(client):
    response = client.get(LOGIN_PATH)
    assert response.status_code == 200
    assert re.search(rb'name="password"', response.content)
