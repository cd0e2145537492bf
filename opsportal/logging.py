"""Request and task ids carried into every log line."""

from __future__ import annotations

import contextvars
import logging

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class ContextFilter(logging.Filter):
    """Add ``request_id``, ``task_id`` and a short ``context`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", "") or request_id.get()
        task_id = getattr(record, "task_id", "")
        if not task_id:
            try:
                from celery import current_task

                task = current_task._get_current_object()
                task_id = task.request.id if task is not None and task.request.id else ""
            except Exception:  # noqa: BLE001 - logging must never fail
                task_id = ""
        record.task_id = task_id
        parts = [f"req={record.request_id}" if record.request_id else "", f"task={task_id}" if task_id else ""]
        record.context = " ".join(p for p in parts if p) or "-"
        return True
