from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils.translation import gettext_lazy as _


class Series(models.Model):
    """One time series: a metric name plus its labels (``host`` always among them).

    The row doubles as the latest-value cache: ``last_value``/``last_at`` are set on
    every write, so readers (status page, evaluator, ``/metrics``) never scan samples.
    """

    class Kind(models.TextChoices):
        GAUGE = "gauge", _("gauge")
        COUNTER = "counter", _("counter")

    class Status(models.TextChoices):
        HEALTHY = "healthy", _("healthy")
        WARNING = "warning", _("warning")
        CRITICAL = "critical", _("critical")
        UNKNOWN = "unknown", _("unknown (no data)")
        STALE = "stale", _("stale (no recent sample)")

    name = models.CharField(_("metric"), max_length=200, db_index=True)
    labels = models.JSONField(_("labels"), default=dict, help_text=_("Label names and values, host included."))
    labels_key = models.CharField(
        _("labels key"), max_length=2000, editable=False, help_text=_("Canonical form of the labels (identity).")
    )
    host = models.CharField(_("host"), max_length=64, db_index=True, blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.GAUGE)
    interval_seconds = models.PositiveIntegerField(
        _("expected interval (s)"),
        default=10,
        help_text=_("How often a sample is expected; no sample for three intervals makes the series stale."),
    )
    last_value = models.FloatField(_("latest value"), null=True, blank=True)
    last_at = models.DateTimeField(_("latest sample at"), null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # Threshold state, maintained by monitoring.status (hysteresis and "for" need memory).
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.UNKNOWN, db_index=True)
    status_since = models.DateTimeField(_("status since"), null=True, blank=True)
    breach_level = models.CharField(_("pending level"), max_length=16, blank=True)
    breach_since = models.DateTimeField(_("breached since"), null=True, blank=True)

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [models.UniqueConstraint(fields=["name", "labels_key"], name="series_identity")]

    def __str__(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


class Sample(models.Model):
    """One raw reading of a series. Kept for the raw retention period (48 h by default)."""

    id = models.BigAutoField(primary_key=True)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="samples", db_index=False)
    ts = models.DateTimeField(_("time"))
    value = models.FloatField(_("value"))

    class Meta:
        verbose_name = _("sample")
        verbose_name_plural = _("samples")
        indexes = [
            # "range of one series" and "latest of one series" are one index range scan.
            models.Index(fields=["series", "ts"], name="sample_series_ts"),
            # retention deletes the oldest rows first.
            models.Index(fields=["ts"], name="sample_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.series_id} @ {self.ts:%Y-%m-%d %H:%M:%S}: {self.value:g}"


class Rollup(models.Model):
    """Aggregate of a series over one bucket of ``resolution`` seconds (60 or 3600)."""

    class Resolution(models.IntegerChoices):
        MINUTE = 60, _("1 minute")
        HOUR = 3600, _("1 hour")

    id = models.BigAutoField(primary_key=True)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="rollups", db_index=False)
    resolution = models.PositiveIntegerField(_("resolution (s)"), choices=Resolution.choices)
    bucket = models.DateTimeField(_("bucket start"))
    min = models.FloatField()
    max = models.FloatField()
    avg = models.FloatField()
    count = models.PositiveIntegerField()
    last = models.FloatField()

    class Meta:
        verbose_name = _("rollup")
        verbose_name_plural = _("rollups")
        constraints = [
            models.UniqueConstraint(fields=["series", "resolution", "bucket"], name="rollup_identity"),
        ]
        indexes = [models.Index(fields=["resolution", "bucket"], name="rollup_resolution_bucket")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.resolution}s @ {self.bucket:%Y-%m-%d %H:%M}: avg {self.avg:g}"


class RollupProgress(models.Model):
    """How far one rollup resolution is complete: its watermark.

    Every bucket that ends at or before ``rolled_until`` has been rolled up, so each
    run of :mod:`monitoring.rollups` starts there and touches only new data.
    """

    resolution = models.PositiveIntegerField(_("resolution (s)"), choices=Rollup.Resolution.choices, unique=True)
    rolled_until = models.DateTimeField(_("rolled up until"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("rollup progress")
        verbose_name_plural = _("rollup progress")

    def __str__(self) -> str:
        return f"{self.get_resolution_display()} until {self.rolled_until}"


class Retention(models.Model):
    """How long data of one resolution is kept; edited in the admin."""

    class Resolution(models.IntegerChoices):
        RAW = 0, _("raw samples")
        MINUTE = 60, _("1 minute rollups")
        HOUR = 3600, _("1 hour rollups")

    resolution = models.PositiveIntegerField(_("resolution"), choices=Resolution.choices, unique=True)
    keep = models.DurationField(_("keep for"), help_text=_("Older data is deleted in batches by the retention task."))

    class Meta:
        verbose_name = _("retention")
        verbose_name_plural = _("retention")
        constraints = [
            models.CheckConstraint(condition=models.Q(keep__gt=dt.timedelta(0)), name="retention_keep_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.get_resolution_display()}: {self.keep}"
