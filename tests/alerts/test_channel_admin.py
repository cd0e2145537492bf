"""The notification channel admin, tried as anonymous, plain user, staff without rights and admin."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from pytest_httpserver import HTTPServer

from alerts.models import NotificationChannel
from tests.alerts.delivery_helpers import Sink, make_channel, smtp_sink

__all__ = ["smtp_sink"]  # the SMTP sink fixture

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/alerts/notificationchannel/"
TOKEN_URL = "http://127.0.0.1:9000/hooks/T0KEN-abcdef"
SECRET = "hmac-secret-7f3e9a1a2b"


def change_url(channel: NotificationChannel) -> str:
    return f"{CHANGELIST}{channel.pk}/change/"


def form_data(channel: NotificationChannel, **overrides: str) -> dict[str, str]:
    data = {"name": channel.name, "kind": channel.kind, "target": "", "secret": "", "enabled": "on"}
    if channel.send_resolved:
        data["send_resolved"] = "on"
    data.update(overrides)
    return data


def run_test_action(client: Client, *channels: NotificationChannel) -> list[str]:
    response = client.post(
        CHANGELIST,
        {"action": "send_test_notification", "_selected_action": [c.pk for c in channels]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_channel_pages_are_for_staff_with_rights_only(client: Client, plain_client: Client, staff_user) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel()
    staff = Client()
    staff.force_login(staff_user)

    for url in (CHANGELIST, change_url(channel), f"{CHANGELIST}add/"):
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
        assert plain_client.get(url).status_code == 403
        assert staff.get(url).status_code == 403


def test_the_list_shows_a_hint_of_the_target_never_the_target_or_secret(staff_client: Client) -> None:
    make_channel(target=TOKEN_URL, secret=SECRET)
    make_channel("oncall-mail", kind="email", target="oncall@example.com")

    page = staff_client.get(CHANGELIST).content.decode()

    assert "http://127.0.0.1:9000/…" in page and "o•••@example.com" in page
    assert "T0KEN" not in page and SECRET not in page and "oncall@example.com" not in page


def test_the_edit_form_never_shows_the_stored_target_or_secret(staff_client: Client) -> None:
    channel = make_channel(target=TOKEN_URL, secret=SECRET)

    page = staff_client.get(change_url(channel)).content.decode()

    assert "T0KEN" not in page and SECRET not in page
    assert "Stored:" in page and "http://127.0.0.1:9000/…" in page and "••••1a2b" in page


def test_saving_with_empty_target_and_secret_keeps_the_stored_values(staff_client: Client) -> None:
    channel = make_channel(target=TOKEN_URL, secret=SECRET)

    response = staff_client.post(change_url(channel), form_data(channel, name="renamed-hook"))

    assert response.status_code == 302, response.content.decode()[-2000:]
    channel.refresh_from_db()
    assert (channel.name, channel.target, channel.secret) == ("renamed-hook", TOKEN_URL, SECRET)


def test_a_new_target_replaces_the_old_and_clears_the_flag(staff_client: Client) -> None:
    channel = make_channel(target=TOKEN_URL, secret=SECRET, flag_reason="receiver answered 404")
    NotificationChannel.objects.filter(pk=channel.pk).update(flagged_at="2026-01-01T00:00:00Z")

    staff_client.post(change_url(channel), form_data(channel, target="https://hooks.example.com/new"))

    channel.refresh_from_db()
    assert channel.target == "https://hooks.example.com/new" and channel.secret == SECRET
    assert channel.flagged_at is None and channel.flag_reason == ""


def test_the_secret_can_be_removed_on_purpose(staff_client: Client) -> None:
    channel = make_channel(target=TOKEN_URL, secret=SECRET)

    staff_client.post(change_url(channel), form_data(channel, clear_secret="on"))

    channel.refresh_from_db()
    assert channel.secret == "" and channel.target == TOKEN_URL


@pytest.mark.parametrize(
    ("kind", "target", "error"),
    [
        ("webhook", "", "This field is required."),
        ("webhook", "ftp://example.com/x", "Expected an http:// or https:// URL."),
        ("email", "oncall@example.com, not-an-address", "Not a valid email address (position 2 in the list)."),
    ],
)
def test_adding_a_channel_checks_its_target(staff_client: Client, kind: str, target: str, error: str) -> None:
    response = staff_client.post(
        f"{CHANGELIST}add/", {"name": "new", "kind": kind, "target": target, "secret": "", "enabled": "on"}
    )

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not NotificationChannel.objects.filter(name="new").exists()


def test_adding_a_channel_stores_target_and_secret(staff_client: Client) -> None:
    response = staff_client.post(
        f"{CHANGELIST}add/",
        {"name": "new", "kind": "webhook", "target": TOKEN_URL, "secret": SECRET, "enabled": "on"},
    )

    assert response.status_code == 302
    channel = NotificationChannel.objects.get(name="new")
    assert (channel.target, channel.secret) == (TOKEN_URL, SECRET)


def test_send_test_notification_reports_delivered(staff_client: Client, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"), secret=SECRET)

    messages = run_test_action(staff_client, channel)

    assert messages == ["ops-hook: delivered (status 200)"]
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert body["event"] == "firing" and body["alert"]["rule"] == "OpsPortal test notification"
    assert "requested by root" in body["alert"]["summary"]
    assert request.headers["X-OpsPortal-Signature"].startswith("sha256=")


def test_send_test_notification_says_why_it_failed_and_a_later_good_test_clears_the_flag(
    staff_client: Client, httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request("/hook").respond_with_data("no such hook", status=404)
    httpserver.expect_oneshot_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))

    failed = run_test_action(staff_client, channel)

    assert failed == ["ops-hook: failed permanently: receiver answered 404 Not Found: no such hook"]
    channel.refresh_from_db()
    assert channel.flagged_at is not None
    assert "flagged" in staff_client.get(CHANGELIST).content.decode()

    assert run_test_action(staff_client, channel) == ["ops-hook: delivered (status 200)"]
    channel.refresh_from_db()
    assert channel.flagged_at is None


def test_a_receiver_that_is_down_is_reported_as_retryable(staff_client: Client, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("maintenance", status=503)
    channel = make_channel(target=httpserver.url_for("/hook"))

    [message] = run_test_action(staff_client, channel)

    assert message == "ops-hook: failed, will retry: receiver answered 503 Service Unavailable: maintenance"


def test_viewers_see_channels_but_cannot_send_tests_or_edit(staff_user, httpserver: HTTPServer) -> None:  # type: ignore[no-untyped-def]
    staff_user.user_permissions.add(Permission.objects.get(codename="view_notificationchannel"))
    viewer = Client()
    viewer.force_login(get_user_model().objects.get(pk=staff_user.pk))
    channel = make_channel(target=httpserver.url_for("/hook"))

    page = viewer.get(CHANGELIST).content.decode()
    response = viewer.post(CHANGELIST, {"action": "send_test_notification", "_selected_action": [channel.pk]})

    assert "Send test notification" not in page
    detail = viewer.get(change_url(channel)).content.decode()
    assert httpserver.url_for("/hook") not in detail
    assert httpserver.url_for("/") + "…" in detail  # the hint only
    assert response.status_code in (200, 302) and httpserver.log == []
    assert viewer.post(change_url(channel), form_data(channel, name="x")).status_code == 403


def test_a_channel_whose_key_was_lost_still_lists_and_asks_for_the_target_again(staff_client: Client) -> None:
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        channel = make_channel(target=TOKEN_URL, secret=SECRET)

    listing = staff_client.get(CHANGELIST)
    edit = staff_client.get(change_url(channel))
    save = staff_client.post(change_url(channel), form_data(channel))

    assert listing.status_code == 200 and "cannot be decrypted" in listing.content.decode()
    assert edit.status_code == 200 and "cannot be decrypted" in edit.content.decode()
    assert save.status_code == 200 and "enter the value again" in save.content.decode()
    fixed = staff_client.post(change_url(channel), form_data(channel, target=TOKEN_URL, clear_secret="on"))
    assert fixed.status_code == 302
    channel.refresh_from_db()
    assert channel.target == TOKEN_URL and channel.secret == ""


def test_send_test_notification_to_an_email_channel(staff_client: Client, smtp_sink: Sink) -> None:
    channel = make_channel("oncall-mail", kind="email", target="oncall@example.com")

    assert run_test_action(staff_client, channel) == ["oncall-mail: delivered (status 250)"]

    [message] = smtp_sink.messages
    assert message["Subject"] == "[INFO] OpsPortal test notification: firing"
    assert "requested by root" in message.get_body(("plain",)).get_content()
