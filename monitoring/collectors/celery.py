"""Celery: workers and beat alive (from liveness rows) and the length of each queue.

Task failures and durations are counted by each worker itself (:mod:`monitoring.signals`)
and stored as ``celery_tasks_total{task,state}``, ``celery_task_failures_total{task}``,
``celery_task_duration_seconds_sum{task}`` and ``celery_task_duration_seconds_count{task}``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings

from monitoring import liveness
from monitoring.collectors.base import Collector, Scope, register
from monitoring.storage import Reading

logger = logging.getLogger(__name__)

#: Queues reported at most (cardinality guard: one host queue per host).
MAX_QUEUES = 100


def known_queues(workers: list[object]) -> list[str]:
    """Return the default queue and every queue a live worker consumes."""
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for row in workers:
        names.update(q for q in getattr(row, "queues", "").split(",") if q and not q.endswith(".pidbox"))
    return sorted(names)[:MAX_QUEUES]


def queue_lengths(names: list[str]) -> dict[str, int]:
    """Return the number of messages waiting in each queue (an absent queue is empty)."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    lengths: dict[str, int] = {}
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)
        channel: Any = conn.default_channel
        for name in names:
            try:
                lengths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:
                lengths[name] = 0  # Redis drops a list once it is empty
    return lengths


@register
class CeleryCollector(Collector):
    name = "celery"
    scope = Scope.CLUSTER
    description = "Celery workers and beat alive, and messages waiting per queue"

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        workers = liveness.fresh(liveness.Role.WORKER, now=now)
        beats = liveness.fresh(liveness.Role.BEAT, now=now)
        readings = [
            self.gauge("celery_workers_alive", len(workers)),
            self.gauge("celery_beat_alive", len(beats)),
        ]
        try:
            lengths = queue_lengths(known_queues(list(workers)))
        except Exception as error:  # noqa: BLE001 - a broker failure is broker_up's to report
            logger.warning("celery collector: queue lengths unavailable: %s: %s", type(error).__name__, error)
            return readings
        readings += [self.gauge("celery_queue_length", n, queue=name) for name, n in lengths.items()]
        return readings
