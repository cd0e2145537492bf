from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class InstalledDefault(models.Model):
    """Marks a shipped default (a threshold, a group permission, ...) as installed once.

    The row outlives the object: a default the operator deleted is not re-created by
    the next ``migrate``, and one the operator edited is never touched again.
    """

    key = models.CharField(_("key"), max_length=300, unique=True)
    installed_at = models.DateTimeField(_("installed at"), auto_now_add=True)

    class Meta:
        verbose_name = _("installed default")
        verbose_name_plural = _("installed defaults")

    def __str__(self) -> str:
        return self.key
