"""Receivers that turn other apps' changes into live events (connected in ``OpsPortalConfig.ready()``).

Monitoring and alerts never import ``opsportal``: they send signals (monitoring's
:mod:`monitoring.events`, Django's ``post_save`` of :class:`~alerts.models.Alert`) and
these receivers publish. Each one runs inside the transaction of the change, in a
savepoint: a failure to publish is logged and never undoes the change it announces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from alerts.models import Alert
from monitoring.events import samples_recorded, status_changed
from monitoring.status import overall_status
from opsportal import live, sections

logger = logging.getLogger(__name__)


@contextmanager
def _guarded(what: str) -> Iterator[None]:
    try:
        with transaction.atomic():
            yield
    except (DatabaseError, KeyError, TypeError, ValueError):
        logger.warning("live update for %s not published", what, exc_info=True)


def on_samples_recorded(sender: Any, latest: dict[int, Any], **kwargs: Any) -> None:
    """Publish one ``metrics`` event per ``record()`` call: the latest values of its tile series."""
    with _guarded("recorded samples"):
        series = sections.tile_series(latest)
        if series:
            live.publish("metrics", {"at": timezone.now().isoformat(), "series": series})


def on_status_changed(sender: Any, series_ids: list[int], **kwargs: Any) -> None:
    """Publish the new statuses, with the overall status (it may change with any series)."""
    with _guarded("status changes"):
        live.publish(
            "metrics",
            {"at": timezone.now().isoformat(), "series": sections.tile_series(series_ids), "overall": overall_status()},
        )


def on_alert_saved(sender: Any, instance: Alert, raw: bool = False, **kwargs: Any) -> None:
    if raw:  # loaddata
        return
    with _guarded(f"alert {instance.pk}"):
        live.publish("alert", {"at": timezone.now().isoformat(), "alerts": [sections.alert_item(instance)]})


def on_alert_deleted(sender: Any, instance: Alert, **kwargs: Any) -> None:
    with _guarded(f"alert {instance.pk}"):
        item = sections.alert_item(instance, state="deleted")
        live.publish("alert", {"at": timezone.now().isoformat(), "alerts": [item]})


def on_logged_out(sender: Any, request: Any = None, **kwargs: Any) -> None:
    """Close the sockets of the session that logged out, in every web process (code 4401)."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        with _guarded("logout"):
            live.publish("session_ended", {"session": live.session_fingerprint(key)})


_RECEIVERS: tuple[tuple[Any, Callable[..., None], Any], ...] = (
    (samples_recorded, on_samples_recorded, None),
    (status_changed, on_status_changed, None),
    (post_save, on_alert_saved, Alert),
    (post_delete, on_alert_deleted, Alert),
    (user_logged_out, on_logged_out, None),
)


def connect() -> None:
    """Connect every receiver once (``dispatch_uid``: ready() may run twice in tests)."""
    for signal, receiver, sender in _RECEIVERS:
        signal.connect(receiver, sender=sender, weak=False, dispatch_uid=f"opsportal.live.{receiver.__name__}")
