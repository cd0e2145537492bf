"""The Celery app: ``celery -A opsportal worker`` / ``celery -A opsportal beat``.

Settings come from Django settings under the ``CELERY_`` prefix (see settings.py for
the broker, JSON-only serialisation, time limits and the acks_late policy). Each
worker runs a timer that writes its liveness row; beat writes its own from the
scheduler's tick (``opsportal.beat``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging
from django.conf import settings
from kombu import Exchange, Queue

from opsportal.env import EnvError, exit_on_env_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")

try:
    settings.INSTALLED_APPS  # noqa: B018 - load settings now, to fail with one line
except EnvError as error:
    exit_on_env_error(error)

app = Celery("opsportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.set_default()
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@setup_logging.connect
def _use_django_logging(**kwargs: Any) -> None:
    """Keep Django's LOGGING (JSON or console, request/task ids) in Celery processes."""
    import logging.config

    logging.config.dictConfig(settings.LOGGING)


def host_queue(hostname: str | None = None) -> str:
    """Return the queue only the workers of ``hostname`` (default: this host) consume."""
    return f"host.{hostname or settings.HOSTNAME}"


def worker_queues(hostname: str | None = None) -> list[str]:
    """Return the queues a worker on this host consumes: the default and its host queue."""
    return [settings.CELERY_TASK_DEFAULT_QUEUE, host_queue(hostname)]


class HostQueue(bootsteps.Step):
    """Make every worker consume its host queue ``host.<OPSPORTAL_HOSTNAME>`` too.

    Added when the blueprint is applied, which is after ``-Q``/``-X`` were handled,
    so ``celery -A opsportal worker -Q celery`` still gets its host queue (the
    per-host collection dispatcher routes there).
    """

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        name = host_queue()
        # The same shape Celery gives a queue it creates for a sender (its own direct
        # exchange), so ``apply_async(queue=name)`` from any process reaches it.
        worker.app.amqp.queues.select_add(Queue(name, Exchange(name), routing_key=name))


class Liveness(bootsteps.StartStopStep):
    """Write this worker's liveness row every few seconds from the worker's timer."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        from django.utils import timezone

        self.started_at = timezone.now()
        self.beat(worker)
        self.tref = worker.timer.call_repeatedly(settings.LIVENESS_INTERVAL_SECONDS, self.beat, (worker,), priority=10)

    def beat(self, worker: Any) -> None:
        from monitoring import liveness

        queues = sorted(q.name for q in worker.app.amqp.queues.consume_from.values()) if worker.app.amqp.queues else []
        try:
            liveness.safely(
                liveness.record, liveness.Role.WORKER, node=worker.hostname, queues=queues, started_at=self.started_at
            )
        except Exception:
            logger.warning("could not write the worker liveness row", exc_info=True)

    def stop(self, worker: Any) -> None:
        from monitoring import liveness

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            liveness.safely(liveness.forget, liveness.Role.WORKER)
        except Exception:
            logger.warning("could not remove the worker liveness row", exc_info=True)


app.steps["worker"].add(HostQueue)
app.steps["worker"].add(Liveness)
