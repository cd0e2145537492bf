"""Signals monitoring sends, so other apps can react without monitoring importing them.

Receivers run inside the transaction of the change (a row they write commits, or rolls
back, with it). Keep them short: they sit on the write path of every collection.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent by :func:`monitoring.storage.record` once per call, after the samples are
#: inserted and the latest-value cache moved. Arguments: ``latest`` — ``{series id:
#: (time, value)}`` of every series touched by the call.
samples_recorded = Signal()

#: Sent by :func:`monitoring.status.evaluate` when series changed status. Arguments:
#: ``series_ids`` — the ids whose status changed.
status_changed = Signal()
