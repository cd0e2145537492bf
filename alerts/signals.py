"""Signals the alerts app sends, so others (the live page) react without alerts importing them.

Each alert whose state changes is also saved with ``Model.save()``, so Django's
``post_save`` of :class:`~alerts.models.Alert` fires for it (``opsportal.live_wiring``
listens to that). :data:`alert_changed` carries the same news in one batch.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent by the evaluation engine inside the transaction that stores alert transitions,
#: once per batch. Arguments: ``alerts`` — the :class:`~alerts.models.Alert` rows that
#: changed state; ``transitions`` — the :class:`~alerts.models.AlertTransition` rows written.
alert_changed = Signal()
