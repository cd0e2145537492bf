"""Many evaluators at once on PostgreSQL (services tier): every transition is stored and sent once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from alerts import engine
from alerts.models import Alert, AlertRule, AlertTransition, Delivery, EvaluationLease
from monitoring.storage import Reading, record, series_cache
from tests.alerts.delivery_helpers import make_channel

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

EVALUATORS = 8
ROUNDS = 6
HOSTS = 25


def evaluate_at_once() -> list[engine.Summary]:
    """Run ``EVALUATORS`` threads, each with its own connection, calling the cycle ``ROUNDS`` times."""
    barrier = threading.Barrier(EVALUATORS)
    summaries: list[engine.Summary] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def evaluator(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            for round_ in range(ROUNDS):
                # Half of them arrive as kicks (they ask a running cycle to go again).
                summary = engine.run(publish=False, kick=(index + round_) % 2 == 0)
                with lock:
                    summaries.append(summary)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluator, args=(i,)) for i in range(EVALUATORS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(summaries) == EVALUATORS * ROUNDS
    return summaries


def test_concurrent_evaluators_never_double_a_transition_or_a_delivery():
    assert connection.vendor == "postgresql"
    series_cache.clear()
    hook = make_channel("ops-hook")
    rule = AlertRule.objects.create(name="Queue backed up", expr="queue_depth > 100")
    rule.channels.set([hook])

    record([Reading("queue_depth", 500, {"queue": f"q{n}"}) for n in range(HOSTS)])
    summaries = evaluate_at_once()
    assert any(not s.skipped for s in summaries)
    assert sum(1 for s in summaries if s.skipped) > 0  # they did overlap, and the lease turned them away

    assert Alert.objects.filter(state=Alert.State.FIRING).count() == HOSTS
    firing = Counter(AlertTransition.objects.filter(event="firing").values_list("alert_id", flat=True))
    assert len(firing) == HOSTS and set(firing.values()) == {1}
    assert Delivery.objects.filter(event="firing").count() == HOSTS

    record([Reading("queue_depth", 5, {"queue": f"q{n}"}) for n in range(HOSTS)])
    evaluate_at_once()

    assert Alert.objects.filter(state=Alert.State.RESOLVED).count() == HOSTS
    resolved = Counter(AlertTransition.objects.filter(event="resolved").values_list("alert_id", flat=True))
    assert len(resolved) == HOSTS and set(resolved.values()) == {1}
    assert Delivery.objects.filter(event="resolved").count() == HOSTS
    assert AlertTransition.objects.count() == 2 * HOSTS
    lease = EvaluationLease.objects.get(name="evaluate")
    assert (lease.owner, lease.lease_until) == ("", None)
