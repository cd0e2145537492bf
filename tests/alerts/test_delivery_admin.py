"""The delivery admin: read-only, every attempt shown, filters for what needs attention."""

from __future__ import annotations

import pytest
from django.test import Client

from alerts import outbox
from alerts.models import Delivery
from alerts.transports import Result
from tests.alerts.delivery_helpers import NOW, make_alert, make_channel, transition

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/alerts/delivery/"


@pytest.fixture
def deliveries() -> dict[str, Delivery]:
    """One delivered, one retrying, one failed, one waiting; on two channels."""
    hook = make_channel("ops-hook")
    mail = make_channel("oncall-mail", kind="email", target="oncall@example.com")
    rows: dict[str, Delivery] = {}
    outcomes = {"delivered": Result.ok(200), "retrying": Result.retry("receiver answered 503", 503)}
    outcomes["failed"] = Result.permanent("receiver answered 404 Not Found", 404)
    for name, result in outcomes.items():
        [delivery] = outbox.enqueue(transition(make_alert(labels={"host": name}), "firing"), [hook], now=NOW)
        [[claimed]] = outbox.claim(NOW, f"test-{name}", ids=[delivery.pk])
        outbox.finish([claimed], f"test-{name}", result, NOW, 12, NOW)
        rows[name] = Delivery.objects.get(pk=delivery.pk)
    [rows["waiting"]] = outbox.enqueue(transition(make_alert(labels={"host": "w"}), "firing"), [mail], now=NOW)
    return rows


def listed(client: Client, query: str = "") -> set[int]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_delivery_pages_are_for_staff_with_rights_only(
    client: Client,
    plain_client: Client,
    staff_user,
    deliveries: dict[str, Delivery],  # type: ignore[no-untyped-def]
) -> None:
    staff = Client()
    staff.force_login(staff_user)
    url = f"{CHANGELIST}{deliveries['failed'].pk}/change/"

    for page in (CHANGELIST, url):
        anonymous = client.get(page)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
        assert plain_client.get(page).status_code == 403
        assert staff.get(page).status_code == 403


def test_filters_find_failing_pending_and_per_channel(staff_client: Client, deliveries: dict[str, Delivery]) -> None:
    ids = {name: d.pk for name, d in deliveries.items()}
    mail_id = deliveries["waiting"].channel_id

    assert listed(staff_client) == set(ids.values())
    assert listed(staff_client, "?attention=failing") == {ids["retrying"], ids["failed"]}
    assert listed(staff_client, "?attention=pending") == {ids["retrying"], ids["waiting"]}
    assert listed(staff_client, f"?channel__id__exact={mail_id}") == {ids["waiting"]}
    assert listed(staff_client, "?state__exact=delivered") == {ids["delivered"]}
    assert listed(staff_client, f"?q={deliveries['failed'].delivery_id}") == {ids["failed"]}
    # The alert column links to all deliveries of that alert.
    assert listed(staff_client, f"?alert__id__exact={deliveries['retrying'].alert_id}") == {ids["retrying"]}


def test_the_list_never_counts_the_whole_table(staff_client: Client, deliveries: dict[str, Delivery]) -> None:
    response = staff_client.get(CHANGELIST + "?attention=failing")

    assert response.context["cl"].show_full_result_count is False


def test_a_delivery_shows_its_attempts_and_cannot_be_edited_added_or_deleted(
    staff_client: Client, deliveries: dict[str, Delivery]
) -> None:
    failed = deliveries["failed"]
    url = f"{CHANGELIST}{failed.pk}/change/"

    page = staff_client.get(url).content.decode()

    assert "receiver answered 404 Not Found" in page and str(failed.delivery_id) in page
    assert "refused for good" in page  # the attempt row, inline
    assert 'name="_save"' not in page
    assert staff_client.post(url, {"state": "pending"}).status_code == 403
    assert staff_client.get(f"{CHANGELIST}add/").status_code == 403
    assert staff_client.post(f"{CHANGELIST}{failed.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Delivery.objects.get(pk=failed.pk).state == "failed"
