from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SeededDefault(models.Model):
    """A default that was installed once (e.g. a permission given to a default group).

    Seeding skips what is recorded here, so an operator who removes a default
    permission from a group keeps it removed across later migrations.
    """

    key = models.CharField(_("key"), max_length=255, unique=True)
    created_at = models.DateTimeField(_("installed at"), auto_now_add=True)

    class Meta:
        verbose_name = _("seeded default")
        verbose_name_plural = _("seeded defaults")

    def __str__(self) -> str:
        return self.key


class LiveEvent(models.Model):
    """One live update for the status pages, written in the transaction of the change it announces.

    Every web process polls this table and fans new rows out to its own WebSocket
    clients (see :mod:`opsportal.live`); rows are pruned after a few minutes.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(_("kind"), max_length=32)
    payload = models.JSONField(_("payload"), default=dict)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("live event")
        verbose_name_plural = _("live events")

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"
