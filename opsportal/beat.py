"""Beat's scheduler: django-celery-beat's DatabaseScheduler that also reports liveness."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler as BaseScheduler

logger = logging.getLogger(__name__)


class DatabaseScheduler(BaseScheduler):
    """Write beat's liveness row from ``tick()``, at most every ``LIVENESS_INTERVAL_SECONDS``.

    Writing from the tick (not from a side thread) means the row goes stale as soon
    as the scheduling loop itself stops, which is what an operator wants to know.
    """

    _last_liveness = 0.0

    def setup_schedule(self) -> None:
        self._started_at = timezone.now()
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now - self._last_liveness >= settings.LIVENESS_INTERVAL_SECONDS:
            self._last_liveness = now
            self._write_liveness()
        delay = super().tick(*args, **kwargs)
        return min(delay, settings.LIVENESS_INTERVAL_SECONDS)

    def _write_liveness(self) -> None:
        from monitoring import liveness

        try:
            liveness.safely(liveness.record, liveness.Role.BEAT, node="beat", started_at=self._started_at)
        except Exception:
            logger.warning("could not write beat's liveness row", exc_info=True)

    def close(self) -> None:
        from monitoring import liveness

        try:
            liveness.safely(liveness.forget, liveness.Role.BEAT)
        except Exception:
            logger.warning("could not remove beat's liveness row", exc_info=True)
        super().close()
