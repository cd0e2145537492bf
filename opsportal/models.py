from __future__ import annotations

from django.db import models
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
