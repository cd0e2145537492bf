"""Re-checking the sessions of open status sockets, all at once, as a new request would."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from opsportal.socket_auth import check_sessions, session_refusal


def session_of(user) -> str:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.django_db
def test_bulk_check_decides_like_a_new_request_for_each_session(superuser, staff_user, plain_user):
    User = get_user_model()
    keys = {
        "staff": session_of(superuser),
        "plain": session_of(plain_user),
        "expired": session_of(User.objects.create_user("late", is_staff=True)),
        "password changed": session_of(User.objects.create_user("moved", password="old-pw-123456", is_staff=True)),
        "deactivated": session_of(User.objects.create_user("gone", is_staff=True)),
        "staff removed": session_of(staff_user),
        "unknown": "no-such-session-key",
    }
    Session.objects.filter(session_key=keys["expired"]).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    moved = User.objects.get(username="moved")
    moved.set_password("new-pw-654321")
    moved.save()
    User.objects.filter(username="gone").update(is_active=False)
    User.objects.filter(pk=staff_user.pk).update(is_staff=False)

    bulk = check_sessions([*keys.values(), None])

    expected = {
        "staff": None,
        "plain": 4403,
        "expired": 4401,
        "password changed": 4401,
        "deactivated": 4401,
        "staff removed": 4403,
        "unknown": 4401,
    }
    assert {name: bulk[key] for name, key in keys.items()} == expected
    assert bulk[None] == 4401
    # The one-at-a-time check (used for other session engines) agrees.
    assert {name: session_refusal(key) for name, key in keys.items()} == expected


@pytest.mark.django_db
def test_bulk_check_costs_the_same_few_queries_for_many_sessions(superuser, django_assert_max_num_queries):
    keys = [session_of(superuser) for _ in range(50)]
    with django_assert_max_num_queries(2):
        codes = check_sessions(keys)
    assert set(codes.values()) == {None}
