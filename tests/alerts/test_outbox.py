"""The delivery outbox with a fixed clock: claims, leases, backoff, expiry, order, sweep."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import close_old_connections
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts import outbox
from alerts.models import Delivery, DeliveryAttempt, NotificationChannel
from alerts.transports import Result
from monitoring.models import Series
from monitoring.storage import series_cache
from tests.alerts.delivery_helpers import NOW, Sink, make_alert, make_channel, smtp_sink, transition

__all__ = ["smtp_sink"]  # the SMTP sink fixture

pytestmark = pytest.mark.django_db

S = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _fresh_series_cache() -> Iterator[None]:
    # The sweep records metrics; series ids cached by an earlier test were rolled back.
    series_cache.clear()
    yield
    series_cache.clear()


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


# --- enqueue ----------------------------------------------------------------------------


def test_enqueue_writes_one_delivery_per_enabled_channel_webhooks_due_now_humans_after_group_wait() -> None:
    hook = make_channel("hook")
    mail = make_channel("mail", kind="email", target="oncall@example.com")
    off = make_channel("off", enabled=False)
    firing = transition(make_alert(), "firing")

    rows = outbox.enqueue(firing, [hook, mail, off, hook], now=NOW)

    assert sorted(d.channel.name for d in rows) == ["hook", "mail"]
    by_name = {d.channel.name: d for d in rows}
    assert by_name["hook"].next_attempt_at == NOW and by_name["hook"].send_after is None
    assert by_name["mail"].next_attempt_at == NOW + outbox.GROUP_WAIT == by_name["mail"].send_after
    assert outbox.GROUP_WAIT <= dt.timedelta(seconds=5)
    assert by_name["hook"].delivery_id != by_name["mail"].delivery_id
    assert all(d.state == "pending" and d.attempts == 0 for d in rows)


def test_pending_transitions_are_not_announced_and_resolved_only_where_wanted() -> None:
    hook = make_channel("hook")
    quiet = make_channel("quiet", send_resolved=False)
    alert = make_alert()

    assert outbox.enqueue(transition(alert, "pending"), [hook, quiet], now=NOW) == []
    resolved = outbox.enqueue(transition(alert, "resolved"), [hook, quiet], now=NOW)

    assert [d.channel.name for d in resolved] == ["hook"]


def test_a_repeat_is_announced_as_firing_and_the_message_is_frozen_at_enqueue() -> None:
    alert = make_alert()
    [delivery] = outbox.enqueue(transition(alert, "repeat", value=97.0), [make_channel()], now=NOW)
    alert.summary = "changed later"
    alert.save()

    delivery.refresh_from_db()
    assert delivery.event == "repeat"
    assert delivery.payload["event"] == "firing"
    assert delivery.payload["alert"]["value"] == 97.0
    assert delivery.payload["alert"]["summary"] == "High CPU on web-1"


# --- claims and leases ---------------------------------------------------------------------


def test_a_second_claimer_gets_nothing_while_the_first_holds_the_lease() -> None:
    channel = make_channel()
    for host in ("a", "b", "c"):
        outbox.enqueue(transition(make_alert(labels={"host": host}), "firing"), [channel], now=NOW)

    first = outbox.claim(NOW, "worker-a")
    second = outbox.claim(NOW, "worker-b")

    assert len(first) == 3 and second == []
    assert set(Delivery.objects.values_list("state", "owner", "attempts")) == {("sending", "worker-a", 1)}


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_never_send_a_delivery_twice(httpserver: HTTPServer) -> None:
    received: list[str] = []
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        with lock:
            received.append(request.headers["X-OpsPortal-Delivery"])
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(handler)
    channels = [make_channel(f"hook-{n}", target=httpserver.url_for("/hook")) for n in range(3)]
    for n in range(10):
        outbox.enqueue(transition(make_alert(labels={"host": f"h{n}"}), "firing"), channels, now=NOW)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            outbox.deliver_due(now=lambda: NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    counts = Counter(received)
    assert len(counts) == 30 and set(counts.values()) == {1}
    assert set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}
    assert DeliveryAttempt.objects.count() == 30


def test_an_expired_lease_is_released_and_the_delivery_sent_again(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)
    [[_claimed]] = outbox.claim(NOW, "worker-that-dies")  # ... and never finishes
    lease = outbox.lease_for()

    outbox.deliver_due(now=lambda: NOW + lease - S)
    assert httpserver.log == []  # the lease still holds

    outbox.deliver_due(now=lambda: NOW + lease + S)

    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.attempts == 2
    [(request, _)] = httpserver.log
    assert request.headers["X-OpsPortal-Delivery"] == str(delivery.delivery_id)
    lost, ok = delivery.attempt_log.all()
    assert lost.outcome == "retry" and "lease expired" in lost.error
    assert ok.outcome == "ok"


def test_a_worker_whose_lease_was_taken_over_cannot_overwrite_the_outcome(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)
    [[slow]] = outbox.claim(NOW, "slow-worker")
    late = NOW + outbox.lease_for() + S
    outbox.deliver_due(now=lambda: late)  # another worker takes over and delivers

    outbox.finish([slow], "slow-worker", Result.retry("finally timed out"), NOW, 70_000, late)

    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    assert delivery.attempt_log.filter(error="finally timed out").exists()  # still recorded


@pytest.mark.django_db(transaction=True)
def test_a_long_run_renews_the_lease_and_skips_a_delivery_another_worker_took(httpserver: HTTPServer) -> None:
    channel = make_channel(target=httpserver.url_for("/hook"))
    first, second = (
        outbox.enqueue(transition(make_alert(labels={"host": h}), "firing"), [channel], now=NOW)[0] for h in "ab"
    )

    def taken_over_meanwhile(request: Request) -> Response:
        # While the first is being sent, the second's lease passes to another worker.
        Delivery.objects.filter(pk=second.pk).update(owner="another-worker")
        close_old_connections()
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(taken_over_meanwhile)
    times = iter([NOW, NOW, NOW, at(30), at(30)])

    outbox.deliver_due(now=lambda: next(times, at(30)))

    [(request, _)] = httpserver.log
    assert request.headers["X-OpsPortal-Delivery"] == str(first.delivery_id)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == "delivered"
    assert (second.state, second.owner, second.attempts) == ("sending", "another-worker", 1)


# --- retries, backoff, expiry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 5, 10), (2, 10, 20), (3, 20, 40), (6, 150, 300), (40, 150, 300)]
)
def test_backoff_doubles_with_jitter_and_is_capped_at_five_minutes(attempt: int, low: float, high: float) -> None:
    assert outbox.backoff_seconds(attempt, rng=lambda a, b: a) == low
    assert outbox.backoff_seconds(attempt, rng=lambda a, b: b) == high
    samples = [outbox.backoff_seconds(attempt) for _ in range(200)]
    assert all(low <= s <= high for s in samples)
    assert len(set(samples)) > 100  # jittered, not a fixed schedule


def test_retry_after_wins_when_longer_than_the_backoff_and_is_bounded() -> None:
    assert outbox.retry_delay(1, 120, rng=lambda a, b: b) == 120
    assert outbox.retry_delay(6, 2, rng=lambda a, b: b) == 300
    assert outbox.retry_delay(1, 10 * 86400, rng=lambda a, b: b) == outbox.MAX_RETRY_AFTER


def test_failures_are_retried_on_the_backoff_schedule_until_max_age_then_expire(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert outbox.MAX_AGE == dt.timedelta(hours=24)  # the default; an hour keeps this test short
    monkeypatch.setattr(outbox, "MAX_AGE", dt.timedelta(hours=1))
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    channel = make_channel(target=httpserver.url_for("/hook"))
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [channel], now=NOW)
    deadline = NOW + dt.timedelta(hours=1)
    clock = NOW
    waits: list[float] = []

    while True:
        outbox.deliver_due(now=lambda clock=clock: clock)
        delivery.refresh_from_db()
        if delivery.state != "pending":
            break
        waits.append((delivery.next_attempt_at - clock).total_seconds())
        clock = delivery.next_attempt_at
        assert len(waits) < 1000

    assert delivery.state == "expired"
    assert clock == deadline  # the last try is made at the max age, not skipped
    assert 5 <= waits[0] <= 10
    assert max(waits) <= 300
    assert delivery.attempts == len(httpserver.log) == len(waits) + 1
    assert delivery.attempt_log.count() == delivery.attempts
    channel.refresh_from_db()
    assert channel.failures_total == delivery.attempts and channel.flagged_at is None


def test_a_permanent_refusal_does_not_hold_back_the_next_notice(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hook").respond_with_data("bad payload", status=422)
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    alert = make_alert()
    outbox.enqueue(transition(alert, "firing"), [channel], now=NOW)
    outbox.enqueue(transition(alert, "resolved", at=at(60)), [channel], now=at(60))

    outbox.deliver_due(now=lambda: at(60))

    assert list(Delivery.objects.order_by("id").values_list("event", "state")) == [
        ("firing", "failed"),
        ("resolved", "delivered"),
    ]


def test_a_failing_channel_is_tried_once_per_run_and_its_other_messages_wait_untried(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/down").respond_with_data("slow down", status=429, headers={"Retry-After": "90"})
    httpserver.expect_request("/up").respond_with_data("ok")
    down = make_channel("down", target=httpserver.url_for("/down"))
    up = make_channel("up", target=httpserver.url_for("/up"))
    for host in "abcd":
        outbox.enqueue(transition(make_alert(labels={"host": host}), "firing"), [down, up], now=NOW)

    outbox.deliver_due(now=lambda: NOW)

    paths = [request.path for request, _ in httpserver.log]
    assert paths.count("/down") == 1 and paths.count("/up") == 4
    waiting = Delivery.objects.filter(channel=down)
    assert set(waiting.values_list("state", "next_attempt_at")) == {("pending", at(90))}
    assert sorted(waiting.values_list("attempts", flat=True)) == [0, 0, 0, 1]  # only one was tried
    assert DeliveryAttempt.objects.filter(delivery__channel=down).count() == 1


def test_what_the_run_budget_leaves_is_put_back_untried_and_kicked(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerts.tasks import deliver

    kicked: list[Any] = []
    monkeypatch.setattr(deliver, "apply_async", lambda args=None, **kw: kicked.append(args[0]))
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    for host in "abc":
        outbox.enqueue(transition(make_alert(labels={"host": host}), "firing"), [channel], now=NOW)
    ticks = iter(range(0, 1000, 25))  # seconds of wall clock: each look at it costs 25 s

    outbox.deliver_due(now=lambda: NOW, budget=60, clock=lambda: next(ticks))

    states = list(Delivery.objects.order_by("id").values_list("state", "attempts", "owner"))
    assert states[0] == ("delivered", 1, "")
    assert states[1:] == [("pending", 0, ""), ("pending", 0, "")]
    assert sorted(pk for ids in kicked for pk in ids) == list(
        Delivery.objects.filter(state="pending").values_list("id", flat=True).order_by("id")
    )


# --- order per alert ------------------------------------------------------------------------


def test_a_later_notice_waits_until_the_earlier_one_of_the_same_alert_is_done(httpserver: HTTPServer) -> None:
    status = {"code": 503}

    def handler(request: Request) -> Response:
        return Response("x", status=status["code"])

    httpserver.expect_request("/hook").respond_with_handler(handler)
    channel = make_channel(target=httpserver.url_for("/hook"))
    alert, other = make_alert(), make_alert(labels={"host": "db-1"})
    [firing] = outbox.enqueue(transition(alert, "firing"), [channel], now=NOW)
    outbox.enqueue(transition(other, "firing", at=at(1)), [channel], now=at(1))
    [resolved] = outbox.enqueue(transition(alert, "resolved", at=at(2)), [channel], now=at(2))

    outbox.deliver_due(now=lambda: at(2))
    firing.refresh_from_db()

    # One failed try: the channel pauses for this run, and the resolved notice is held
    # back anyway while its alert's firing notice is open.
    assert [json.loads(r.data)["alert"]["labels"]["host"] for r, _ in httpserver.log] == ["web-1"]
    assert outbox.due(at(3)).filter(pk=resolved.pk).exists() is False

    status["code"] = 200
    outbox.deliver_due(now=lambda: firing.next_attempt_at)

    events = [(json.loads(r.data)["event"], json.loads(r.data)["alert"]["id"]) for r, _ in httpserver.log]
    mine = [event for event, alert_id in events if alert_id == alert.pk]
    assert mine == ["firing", "firing", "resolved"]  # one failed try, then in order
    assert set(Delivery.objects.filter(alert=alert).values_list("state", flat=True)) == {"delivered"}


def test_order_is_per_channel_a_failing_channel_does_not_hold_back_another(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down").respond_with_data("x", status=503)
    httpserver.expect_request("/up").respond_with_data("ok")
    down = make_channel("down", target=httpserver.url_for("/down"))
    up = make_channel("up", target=httpserver.url_for("/up"))
    alert = make_alert()
    outbox.enqueue(transition(alert, "firing"), [down, up], now=NOW)
    outbox.enqueue(transition(alert, "resolved", at=at(1)), [down, up], now=at(1))

    outbox.deliver_due(now=lambda: at(1))

    states = set(Delivery.objects.filter(channel=up).values_list("event", "state"))
    assert states == {("firing", "delivered"), ("resolved", "delivered")}


# --- grouping --------------------------------------------------------------------------------


def test_a_retried_group_resends_the_same_members(smtp_sink: Sink) -> None:
    smtp_sink.data_replies = ["451 4.3.0 Try again later"]
    mail = make_channel("mail", kind="email", target="oncall@example.com")
    first = [outbox.enqueue(transition(make_alert(labels={"host": h}), "firing"), [mail], now=NOW)[0] for h in "ab"]
    outbox.deliver_due(now=lambda: at(5))
    # A new alert arrives while the group waits for its retry.
    late = outbox.enqueue(transition(make_alert(labels={"host": "c"}), "firing"), [mail], now=at(6))[0]
    retry_at = Delivery.objects.get(pk=first[0].pk).next_attempt_at

    outbox.deliver_due(now=lambda: max(retry_at, at(11)))

    sent = [sorted(m["X-OpsPortal-Delivery"].split(", ")) for m in smtp_sink.messages]
    assert sent == [sorted(str(d.delivery_id) for d in first), [str(late.delivery_id)]]
    assert Delivery.objects.get(pk=first[0].pk).attempts == 2


# --- sweep, kick, metrics -------------------------------------------------------------------------


def test_sweep_rekicks_every_due_delivery_releases_leases_and_publishes_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alerts.tasks import deliver

    kicked: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(deliver, "apply_async", lambda args=None, **kw: kicked.append((args, kw)))
    hook = make_channel("hook")
    other = make_channel("other")
    due_now = outbox.enqueue(transition(make_alert(), "firing"), [hook, other], now=NOW)
    outbox.claim(NOW, "vanished-worker", ids=[due_now[1].pk])
    NotificationChannel.objects.filter(pk=hook.pk).update(failures_total=4)
    later = outbox.enqueue(transition(make_alert(labels={"host": "x"}), "firing"), [hook], now=NOW)
    Delivery.objects.filter(pk=later[0].pk).update(next_attempt_at=at(3600))
    when = NOW + outbox.lease_for() + S

    summary = outbox.sweep(now=when)

    assert summary == {"released": 1, "kicked": 2, "pruned": 0}
    kicked_ids = sorted(pk for args, _ in kicked for pk in args[0])
    assert kicked_ids == sorted(d.pk for d in due_now)
    series = {
        (s.name, s.labels.get("channel")): s.last_value for s in Series.objects.filter(name__startswith="deliver")
    }
    assert series[("deliveries_pending", None)] == 3
    assert series[("delivery_failures_total", "hook")] == 4
    assert series[("delivery_failures_total", "other")] == 0


def test_a_second_sweep_while_one_runs_is_skipped() -> None:
    assert outbox._claim_cycle("delivery_sweep", "first", NOW)

    assert outbox.sweep(now=NOW + S) == {"skipped": 1}
    assert outbox.sweep(now=NOW + outbox.SWEEP_LEASE + S)["kicked"] == 0


def test_kick_never_raises_when_the_broker_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from alerts.tasks import deliver

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(deliver, "apply_async", broken)
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [make_channel()], now=NOW)

    outbox.kick([delivery.pk])

    assert "the sweep will send them" in caplog.text


def test_kick_sends_due_rows_now_and_grouped_rows_when_their_wait_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    from alerts.tasks import deliver

    kicked: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(deliver, "apply_async", lambda args=None, **kw: kicked.append((args, kw)))
    firing = transition(make_alert(), "firing")
    hook, mail = make_channel("hook"), make_channel("mail", kind="email", target="oncall@example.com")
    rows = {d.channel.name: d for d in outbox.enqueue(firing, [hook, mail])}

    outbox.kick([d.pk for d in rows.values()])

    assert ((rows["hook"].pk,)[0] in kicked[0][0][0]) and "countdown" not in kicked[0][1]
    assert kicked[1][0][0] == [rows["mail"].pk] and 4 < kicked[1][1]["countdown"] <= 5.5


def test_a_channel_kind_without_a_transport_yet_keeps_its_deliveries_waiting() -> None:
    slack = make_channel("slack", kind="slack", target="https://hooks.slack.example/T/B/X")
    [delivery] = outbox.enqueue(transition(make_alert(), "firing"), [slack], now=NOW)

    outbox.deliver_due(now=lambda: at(5))

    delivery.refresh_from_db()
    assert delivery.state == "pending" and "no transport" in delivery.last_error


def test_finished_deliveries_are_pruned_after_the_keep_period_a_batch_at_a_time(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    channel = make_channel(target=httpserver.url_for("/hook"))
    for host in "abc":
        outbox.enqueue(transition(make_alert(labels={"host": host}), "firing"), [channel], now=NOW)
    outbox.deliver_due(now=lambda: NOW)
    [still_open] = outbox.enqueue(transition(make_alert(labels={"host": "d"}), "firing"), [channel], now=NOW)
    later = NOW + outbox.KEEP_FINISHED + S

    assert outbox.prune(NOW + outbox.KEEP_FINISHED - S) == 0
    assert outbox.prune(later, batch=2) == 2
    assert outbox.prune(later, batch=2) == 1

    assert list(Delivery.objects.values_list("pk", flat=True)) == [still_open.pk]  # open ones are kept
    assert DeliveryAttempt.objects.count() == 0
