"""Request and task ids carried into every log line."""

from __future__ import annotations

import contextvars
import logging

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class ContextFilter(logging.Filter):
    """Add ``request_id``, ``task_id`` and a short ``context`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = str(getattr(record, "request_id", "") or request_id.get() or _id_of_request(record))
        task_id = str(getattr(record, "task_id", "") or _current_task_id())
        parts = [f"req={rid}" if rid else "", f"task={task_id}" if task_id else ""]
        record.request_id = rid
        record.task_id = task_id
        record.context = " ".join(p for p in parts if p) or "-"
        return True


def _current_task_id() -> str:
    """Return the id of the Celery task running in this thread, or ''."""
    try:
        from celery._state import get_current_task

        task = get_current_task()
        return str(getattr(getattr(task, "request", None), "id", None) or "")
    except Exception:  # noqa: BLE001 - logging must never fail
        return ""


def _id_of_request(record: logging.LogRecord) -> str:
    """Return the id of the request a record was logged about, if it names one.

    Django logs 4xx/5xx answers ("Forbidden: /status/") after the middleware chain
    has returned, when the context variable is already reset; those records carry
    the request itself.
    """
    return str(getattr(getattr(record, "request", None), "request_id", "") or "")
