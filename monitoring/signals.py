"""Celery task counts and durations, kept in each worker's memory and flushed as counters.

``task_prerun``/``task_postrun``/``task_failure`` only touch memory; the increments
are added to the stored counters (:mod:`monitoring.collectors.counters`) at most every
``FLUSH_SECONDS``, from the ``task_postrun`` of whichever task ends after that. Every
host runs a collection every 10 s, so an idle worker still flushes.

Counters: ``celery_tasks_total{task,state}``, ``celery_task_failures_total{task}``,
``celery_task_duration_seconds_sum{task}`` and ``celery_task_duration_seconds_count{task}``
(average duration = rate of the sum / rate of the count).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, worker_init, worker_shutdown

from monitoring.collectors.counters import Increments, add_to_totals, key

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
#: Bound on tasks in flight tracked for their start time (a leak guard, not a limit on work).
MAX_IN_FLIGHT = 10_000

task_counts = Increments()
_started: dict[str, float] = {}
_started_lock = threading.Lock()
_flush_lock = threading.Lock()
_last_flush = time.monotonic()
#: Set in worker processes only: eager task runs (tests, shells) count but never write.
_in_worker = False


@worker_init.connect(dispatch_uid="monitoring.worker_init")
def _on_worker_init(**kwargs: Any) -> None:
    global _in_worker
    _in_worker = True


@task_prerun.connect(dispatch_uid="monitoring.task_prerun")
def _on_prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is None:
        return
    with _started_lock:
        if len(_started) < MAX_IN_FLIGHT:
            _started[task_id] = time.perf_counter()


@task_postrun.connect(dispatch_uid="monitoring.task_postrun")
def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    with _started_lock:
        started = _started.pop(task_id, None) if task_id else None
    name = getattr(task, "name", None) or "unknown"
    if started is not None:
        task_counts.add_many(
            {
                key("celery_task_duration_seconds_sum", task=name): time.perf_counter() - started,
                key("celery_task_duration_seconds_count", task=name): 1.0,
            }
        )
    task_counts.add(key("celery_tasks_total", task=name, state=(state or "unknown").lower()))
    maybe_flush()


@task_failure.connect(dispatch_uid="monitoring.task_failure")
def _on_failure(sender: Any = None, **kwargs: Any) -> None:
    task_counts.add(key("celery_task_failures_total", task=getattr(sender, "name", None) or "unknown"))


@worker_shutdown.connect(dispatch_uid="monitoring.worker_shutdown")
def _on_shutdown(**kwargs: Any) -> None:
    maybe_flush(force=True)


def maybe_flush(*, force: bool = False) -> int:
    """Flush the task counters if the last flush is ``FLUSH_SECONDS`` old; return series written."""
    global _last_flush
    if not _in_worker:
        return 0
    if not force and time.monotonic() - _last_flush < FLUSH_SECONDS:
        return 0
    if not _flush_lock.acquire(blocking=False):
        return 0  # another thread of this worker is flushing right now
    try:
        from monitoring.liveness import safely

        _last_flush = time.monotonic()
        return safely(flush)  # a fresh connection, closed afterwards
    finally:
        _flush_lock.release()


def flush() -> int:
    """Add the in-memory task counts to the stored counters; keep them on failure."""
    increments = task_counts.take()
    if not increments:
        return 0
    try:
        return add_to_totals(increments)
    except Exception:
        task_counts.add_many(increments)  # try again at the next flush
        logger.warning("could not flush Celery task counters", exc_info=True)
        return 0
