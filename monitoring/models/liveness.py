from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ProcessHeartbeat(models.Model):
    """A row each beat, worker and (serving) web process rewrites every few seconds.

    ``/readyz``, ``diagnose``, ``celery_workers_alive`` and the per-host dispatcher read
    these rows: they answer "is it alive" without a round trip through the broker.
    """

    class Role(models.TextChoices):
        BEAT = "beat", _("beat")
        WORKER = "worker", _("worker")
        WEB = "web", _("web")

    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    host = models.CharField(_("host"), max_length=64, help_text=_("OPSPORTAL_HOSTNAME of the process."))
    pid = models.PositiveIntegerField(_("pid"))
    node = models.CharField(_("node name"), max_length=200, blank=True)
    queues = models.CharField(_("queues"), max_length=500, blank=True)
    started_at = models.DateTimeField(_("started at"))
    last_seen = models.DateTimeField(_("last seen"), db_index=True)

    class Meta:
        verbose_name = _("process heartbeat")
        verbose_name_plural = _("process heartbeats")
        constraints = [models.UniqueConstraint(fields=["role", "host", "pid"], name="process_heartbeat_identity")]
        indexes = [models.Index(fields=["role", "last_seen"], name="process_heartbeat_fresh")]

    def __str__(self) -> str:
        return f"{self.role} {self.host}:{self.pid}"
