"""API tokens: shown once, stored hashed, managed by command and admin."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from monitoring import tokens
from monitoring.models import ApiToken
from monitoring.storage import series_cache

TOKEN = re.compile(r"opp_[A-Za-z0-9_-]{43}")
PUSH = "/api/v1/metrics"
ADMIN = "/admin/monitoring/apitoken/"


@pytest.fixture(autouse=True)
def _fresh_caches():
    series_cache.clear()
    yield
    series_cache.clear()


def push_status(plaintext: str) -> int:
    return (
        Client()
        .post(
            PUSH,
            data=json.dumps({"name": "jobs_done", "value": 1}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {plaintext}",
        )
        .status_code
    )


def everything_in_the_database() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


# --- create_token -------------------------------------------------------------------


@pytest.mark.django_db
def test_create_token_prints_only_the_token_and_stores_its_hash():
    out, err = io.StringIO(), io.StringIO()

    call_command("create_token", "nightly-etl", "--scope", "push", stdout=out, stderr=err)

    plaintext = out.getvalue().strip()
    assert TOKEN.fullmatch(plaintext), out.getvalue()
    assert out.getvalue() == plaintext + "\n"
    token = ApiToken.objects.get(name="nightly-etl")
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.prefix == plaintext[:12]
    assert token.scopes == ["push"]
    assert plaintext not in everything_in_the_database()
    assert plaintext not in err.getvalue()
    assert push_status(plaintext) == 202


@pytest.mark.django_db
def test_create_token_defaults_to_the_push_scope_and_takes_limits():
    out = io.StringIO()
    call_command("create_token", "etl", "--expires-days", "30", "--rate-limit", "60", stdout=out, stderr=io.StringIO())

    token = ApiToken.objects.get(name="etl")
    assert token.scopes == ["push"]
    assert token.rate_limit_per_minute == 60
    assert token.expires_at - timezone.now() > dt.timedelta(days=29)


@pytest.mark.django_db
def test_each_token_is_different():
    seen = {tokens.create(f"t{i}", ["push"])[1] for i in range(20)}
    assert len(seen) == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["taken"], "already exists"),
        (["other", "--scope", "admin"], "unknown scope"),
        ([" "], "needs a name"),
        (["x" * 101], "longer than"),
        (["other", "--expires-days", "0"], "--expires-days"),
    ],
)
def test_create_token_refuses_bad_input_with_one_line(args, message):
    tokens.create("taken", ["push"])
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("create_token", *args, stdout=out, stderr=io.StringIO())

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert out.getvalue() == ""
    assert ApiToken.objects.count() == 1


def _migrated_database(path: Path) -> bool:
    """Copy the migrated test database to ``path`` when it is SQLite; return whether it was."""
    test_db = settings.DATABASES["default"]
    if test_db["ENGINE"] != "django.db.backends.sqlite3":
        return False
    with sqlite3.connect(test_db["NAME"]) as source, sqlite3.connect(path) as target:
        source.backup(target)
    return True


def test_create_token_command_line_exit_codes_and_streams(django_db_setup, tmp_path: Path):
    """The real command line: the token alone on stdout, one-line errors and exit 1."""
    env = {
        **os.environ,
        "OPSPORTAL_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "OPSPORTAL_LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*manage, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    if not _migrated_database(tmp_path / "cli.sqlite3"):
        assert run("migrate", "--verbosity", "0").returncode == 0
    created = run("create_token", "cli-job", "--scope", "push")
    duplicate = run("create_token", "cli-job")
    bad_scope = run("create_token", "cli-other", "--scope", "everything")

    assert created.returncode == 0, created.stderr
    assert TOKEN.fullmatch(created.stdout.strip())
    assert created.stdout.count("\n") == 1
    assert created.stdout.strip() not in created.stderr
    for refused, word in ((duplicate, "already exists"), (bad_scope, "unknown scope")):
        assert refused.returncode != 0
        assert refused.stdout == ""
        assert refused.stderr.strip().count("\n") == 0
        assert word in refused.stderr


# --- verification -------------------------------------------------------------------


@pytest.mark.django_db
def test_last_used_is_written_at_most_once_a_minute():
    token, plaintext = tokens.create("web", ["push"])
    start = timezone.now()

    tokens.authenticate(plaintext, "push", now=start)
    tokens.authenticate(plaintext, "push", now=start + dt.timedelta(seconds=30))
    after_30s = ApiToken.objects.get(pk=token.pk).last_used_at
    tokens.authenticate(plaintext, "push", now=start + dt.timedelta(seconds=61))
    after_61s = ApiToken.objects.get(pk=token.pk).last_used_at

    assert after_30s == start
    assert after_61s == start + dt.timedelta(seconds=61)


@pytest.mark.django_db
def test_a_token_differing_in_one_character_is_refused():
    _, plaintext = tokens.create("web", ["push"])
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")

    with pytest.raises(tokens.Refusal) as caught:
        tokens.authenticate(tampered, "push")

    assert caught.value.status == 401


# --- admin --------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_a_new_token_once_and_never_its_hash(staff_client):
    form = staff_client.get(ADMIN + "add/")
    assert form.status_code == 200

    response = staff_client.post(
        ADMIN + "add/",
        {
            "name": "ci-pusher",
            "scopes": ["push"],
            "rate_limit_per_minute": "120",
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )

    assert response.status_code == 200
    shown = TOKEN.findall(response.content.decode())
    assert len(shown) == 1
    plaintext = shown[0]
    token = ApiToken.objects.get(name="ci-pusher")
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.scopes == ["push"]
    assert plaintext not in everything_in_the_database()
    for page in (ADMIN, ADMIN + f"{token.pk}/change/", ADMIN + "?q=ci"):
        body = staff_client.get(page).content.decode()
        assert plaintext not in body
        assert token.token_hash not in body
        assert "ci-pusher" in body
    assert token.prefix in staff_client.get(ADMIN).content.decode()
    assert push_status(plaintext) == 202


@pytest.mark.django_db
def test_admin_revoke_action_ends_with_a_message_and_the_token_stops_working(staff_client):
    token, plaintext = tokens.create("to-revoke", ["push"])
    _, kept_plaintext = tokens.create("to-keep", ["push"])

    response = staff_client.post(ADMIN, {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True)

    assert response.status_code == 200
    assert "Revoked 1 token." in response.content.decode()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert push_status(plaintext) == 401
    assert push_status(kept_plaintext) == 202
    assert "revoked" in staff_client.get(ADMIN + "?state=revoked").content.decode()


@pytest.mark.django_db
def test_admin_edit_keeps_the_secret(staff_client):
    token, plaintext = tokens.create("edit-me", ["push"])

    response = staff_client.post(
        ADMIN + f"{token.pk}/change/",
        {"name": "edited", "scopes": ["push"], "rate_limit_per_minute": "5", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )

    assert response.status_code == 200
    assert not TOKEN.search(response.content.decode())
    assert ApiToken.objects.get(pk=token.pk).rate_limit_per_minute == 5
    assert push_status(plaintext) == 202


@pytest.mark.django_db
def test_admin_token_pages_are_staff_only(client, plain_client):
    assert client.get(ADMIN).status_code == 302
    assert plain_client.get(ADMIN).status_code == 403
