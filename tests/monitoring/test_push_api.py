"""POST /api/v1/metrics as a client sees it: tokens, scopes, bodies, limits."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import time_machine
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from monitoring import push, tokens
from monitoring.models import ApiToken, Sample, Series
from monitoring.storage import series_cache

URL = "/api/v1/metrics"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Series ids cached by an earlier test point at rows its rollback removed.
    series_cache.clear()
    yield
    series_cache.clear()


@pytest.fixture
def token() -> str:
    return tokens.create("nightly-etl", ["push"])[1]


def send(body: object, token: str | None = None, *, client: Client | None = None, raw: bytes | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return (client or Client()).post(URL, data=data, content_type="application/json", **headers)


def nothing_stored() -> bool:
    return not Series.objects.exists() and not Sample.objects.exists()


# --- who may push -----------------------------------------------------------------


def test_anonymous_push_is_refused_with_401_json_not_a_redirect():
    response = send({"name": "jobs_done", "value": 1})

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "Bearer" in response["WWW-Authenticate"]
    assert "error" in response.json()
    assert nothing_stored()


@pytest.mark.parametrize("presented", ["opp_" + "x" * 43, "not-a-token", "opp_"])
def test_unknown_token_is_refused_with_401(presented):
    response = send({"name": "jobs_done", "value": 1}, presented)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid token"
    assert nothing_stored()


def test_non_bearer_authorization_is_refused_with_401(token):
    response = Client().post(
        URL,
        data=json.dumps({"name": "jobs_done", "value": 1}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {token}",
    )
    assert response.status_code == 401


def test_revoked_token_is_refused_with_401(token):
    tokens.revoke(ApiToken.objects.get(name="nightly-etl"))

    response = send({"name": "jobs_done", "value": 1}, token)

    assert response.status_code == 401
    assert response.json()["error"] == "token revoked"
    assert nothing_stored()


def test_expired_token_is_refused_with_401():
    _, plaintext = tokens.create("old", ["push"], expires_at=timezone.now() - dt.timedelta(seconds=1))

    response = send({"name": "jobs_done", "value": 1}, plaintext)

    assert response.status_code == 401
    assert response.json()["error"] == "token expired"


def test_token_expiring_later_still_works():
    _, plaintext = tokens.create("soon", ["push"], expires_at=timezone.now() + dt.timedelta(hours=1))
    assert send({"name": "jobs_done", "value": 1}, plaintext).status_code == 202


def test_token_without_the_push_scope_is_refused_with_403():
    _, plaintext = tokens.create("read-only", [])

    response = send({"name": "jobs_done", "value": 1}, plaintext)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert "push" in response.json()["error"]
    assert nothing_stored()


def test_logged_in_user_without_a_token_is_refused_with_401(plain_client, staff_client):
    for client in (plain_client, staff_client):
        response = send({"name": "jobs_done", "value": 1}, client=client)
        assert response.status_code == 401
        assert response["Content-Type"].startswith("application/json")
    assert nothing_stored()


def test_push_needs_no_csrf_token(token):
    client = Client(enforce_csrf_checks=True)
    assert send({"name": "jobs_done", "value": 1}, token, client=client).status_code == 202


def test_get_is_405_json_for_anyone(token):
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {token}"}):
        response = Client().get(URL, **headers)
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert "error" in response.json()


# --- what is stored ---------------------------------------------------------------


def test_single_sample_is_stored_with_the_host_label(token):
    response = send({"name": "etl_rows_processed", "value": 1250, "labels": {"job": "nightly"}}, token)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    series = Series.objects.get(name="etl_rows_processed")
    assert series.labels == {"job": "nightly", "host": settings.HOSTNAME}
    assert series.last_value == 1250.0
    assert Sample.objects.filter(series=series).count() == 1


def test_client_may_name_the_host_its_value_is_about(token):
    send({"name": "etl_rows_processed", "value": 3, "labels": {"host": "batch-07"}}, token)
    assert Series.objects.get(name="etl_rows_processed").labels == {"host": "batch-07"}


def test_batch_is_stored_whole(token):
    samples = [
        {"name": "queue_depth", "value": 3, "labels": {"queue": "a"}},
        {"name": "queue_depth", "value": 5, "labels": {"queue": "b"}},
        {"name": "jobs_finished_total", "value": 7},
    ]
    response = send({"samples": samples}, token)

    assert response.status_code == 202
    assert response.json() == {"accepted": 3}
    assert Series.objects.count() == 3
    assert Sample.objects.count() == 3
    assert Series.objects.get(name="jobs_finished_total").kind == Series.Kind.COUNTER
    assert Series.objects.get(name="queue_depth", labels__queue="b").last_value == 5


def test_timestamps_as_iso_8601_or_unix_seconds_are_kept(token):
    when = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=10)
    samples = [
        {"name": "a_value", "value": 1, "ts": when.isoformat().replace("+00:00", "Z")},
        {"name": "b_value", "value": 2, "ts": when.timestamp()},
    ]
    assert send({"samples": samples}, token).status_code == 202
    assert sorted(Sample.objects.values_list("ts", flat=True)) == [when, when]


def test_an_empty_batch_is_accepted_and_stores_nothing(token):
    response = send({"samples": []}, token)
    assert response.status_code == 202
    assert response.json() == {"accepted": 0}


# --- bad bodies: every error names its field ----------------------------------------

OK = {"name": "queue_depth", "value": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": 1}, "name"),
        ({"name": "queue_depth"}, "value"),
        ({"name": "queue depth", "value": 1}, "name"),
        ({"name": 12, "value": 1}, "name"),
        ({"name": "queue_depth", "value": "12"}, "value"),
        ({"name": "queue_depth", "value": True}, "value"),
        ({"name": "queue_depth", "value": 10**400}, "value"),
        ({"name": "queue_depth", "value": 1, "labels": {"bad-key": "x"}}, "labels.bad-key"),
        ({"name": "queue_depth", "value": 1, "labels": {"1st": "x"}}, "labels.1st"),
        ({"name": "queue_depth", "value": 1, "labels": {"queue": {"nested": 1}}}, "labels.queue"),
        ({"name": "queue_depth", "value": 1, "labels": ["queue"]}, "labels"),
        ({"name": "queue_depth", "value": 1, "labels": {f"l{i}": "x" for i in range(20)}}, "labels"),
        ({"name": "queue_depth", "value": 1, "ts": "yesterday"}, "ts"),
        ({"name": "queue_depth", "value": 1, "ts": 1.7e12}, "ts"),
        ({"name": "queue_depth", "value": 1, "ts": True}, "ts"),
        ({"name": "queue_depth", "value": 1, "colour": "red"}, "colour"),
        ({"samples": [OK, OK, OK, {**OK, "labels": {"bad-key": "x"}}]}, "samples[3].labels.bad-key"),
        ({"samples": [OK, {"value": 2}]}, "samples[1].name"),
        ({"samples": ["queue_depth 1"]}, "samples[0]"),
        ({"samples": {"name": "queue_depth"}}, "samples"),
        ({"samples": [OK], "extra": 1}, "extra"),
    ],
)
def test_bad_sample_is_refused_naming_its_field_and_nothing_is_stored(token, body, field):
    response = send(body, token)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["error"].startswith(f"{field}: ")
    assert answer["errors"][0]["field"] == field
    assert nothing_stored()


def test_every_bad_sample_of_a_batch_is_listed(token):
    body = {"samples": [{"name": "ok_value", "value": 1}, {"name": "x", "value": "a"}, {"value": 1}]}

    answer = send(body, token).json()

    assert [e["field"] for e in answer["errors"]] == ["samples[1].value", "samples[2].name"]
    assert answer["error_count"] == 2


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_values_are_refused(token, literal):
    response = send(None, token, raw=f'{{"name": "queue_depth", "value": {literal}}}'.encode())

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "value"
    assert nothing_stored()


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00junk", b"[1, 2]", b'"text"', b"[" * 100_000])
def test_junk_body_is_400_json(token, raw):
    response = send(None, token, raw=raw)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=30), -dt.timedelta(days=2)])
def test_times_too_far_in_the_future_or_past_are_refused(token, offset):
    ts = (timezone.now() + offset).isoformat()

    response = send({"name": "queue_depth", "value": 1, "ts": ts}, token)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "ts"


def test_oversized_body_is_413_json(token):
    padding = " " * push.MAX_BODY_BYTES
    response = send(None, token, raw=f'{{"name": "queue_depth", "value": 1}}{padding}'.encode())

    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"
    assert nothing_stored()


def test_too_many_samples_in_one_batch_is_413_naming_samples(token):
    body = {"samples": [{"name": "q", "value": i} for i in range(push.MAX_SAMPLES + 1)]}

    response = send(body, token)

    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "samples"
    assert nothing_stored()


def test_batch_over_the_series_cap_stores_nothing_and_later_pushes_still_work(token):
    with override_settings(MONITORING_MAX_SERIES=1):
        body = {"samples": [{"name": "first_value", "value": 1}, {"name": "second_value", "value": 2}]}
        response = send(body, token)

        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "samples[1]"
        assert "limit" in response.json()["error"]
        assert nothing_stored()

        again = send({"name": "first_value", "value": 1}, token)

    assert again.status_code == 202
    assert Series.objects.get(name="first_value").last_value == 1


# --- rate limit ---------------------------------------------------------------------


def test_rate_limit_per_token_answers_429_with_retry_after():
    _, plaintext = tokens.create("chatty", ["push"], rate_limit_per_minute=2)
    _, other = tokens.create("quiet", ["push"], rate_limit_per_minute=2)
    start = dt.datetime(2026, 3, 1, 12, 0, 45, tzinfo=dt.UTC)

    with time_machine.travel(start, tick=False):
        codes = [send(OK, plaintext).status_code for _ in range(3)]
        refused = send(OK, plaintext)
        other_token = send(OK, other)
    with time_machine.travel(start + dt.timedelta(seconds=20), tick=False):
        next_minute = send(OK, plaintext)

    assert codes == [202, 202, 429]
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("application/json")
    assert refused["Retry-After"] == "15"
    assert refused.json()["retry_after"] == 15
    assert other_token.status_code == 202
    assert next_minute.status_code == 202
    assert Sample.objects.count() == 4  # two, the other token's one, and one in the next minute


def test_rate_limit_zero_means_no_limit():
    _, plaintext = tokens.create("batch", ["push"], rate_limit_per_minute=0)
    assert {send(OK, plaintext).status_code for _ in range(5)} == {202}


# --- secrets ----------------------------------------------------------------------


def test_the_token_never_reaches_the_logs(token, caplog):
    with caplog.at_level(logging.DEBUG):
        send(OK, token)
        send({"name": "bad name", "value": 1}, token)
        send(OK, token[:-1] + "A" if token[-1] != "A" else token[:-1] + "B")
        Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert caplog.records
    assert token not in caplog.text
    assert token[len(tokens.TOKEN_MARK) + 8 :] not in caplog.text
