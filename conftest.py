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
