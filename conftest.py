"""Shared fixtures: the three kinds of visitor every view and consumer is tried as."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def staff_user(db):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("staff", "staff@example.com", "pw-staff-1234", is_staff=True)


@pytest.fixture
def superuser(db):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1234")


@pytest.fixture
def plain_user(db):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("plain", "plain@example.com", "pw-plain-1234")


@pytest.fixture
def staff_client(superuser) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def plain_client(plain_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(plain_user)
    return client


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Give each PostgreSQL test session its own database, so parallel sessions never collide."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        db.setdefault("TEST", {})["NAME"] = f"test_opsportal_{os.getpid()}"


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> None:
    """Tests log users in thousands of times; real hashing would dominate their run time."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _postgres_admin_cursor():  # type: ignore[no-untyped-def]
    """Return a cursor on the server's maintenance database (outside any test transaction)."""
    from django.db import connections

    return connections["default"]._nodb_cursor()


@pytest.fixture(autouse=True, scope="session")
def _postgres_test_database_hygiene(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """Drop test databases of dead sessions; cut stray connections so ours can be dropped.

    Threads and subprocesses of live-update tests may still hold a connection when the
    session ends; PostgreSQL then refuses to drop the database and it would pile up.
    """
    from django.db import connections

    if not connections["default"].vendor == "postgresql":
        yield
        return
    with django_db_blocker.unblock(), _postgres_admin_cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'test_opsportal_%%'")
        for (name,) in cursor.fetchall():
            pid = name.rsplit("_", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    yield
    name = connections["default"].settings_dict["NAME"]
    with django_db_blocker.unblock(), _postgres_admin_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
