"""Template helpers of the status page (the same drawing ``status.js`` does when live)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

SPARK_WIDTH = 160
SPARK_HEIGHT = 32


@register.filter
def sparkline(points: list[list[float]] | None) -> SafeString:
    """Return an inline SVG line of ``[[epoch seconds, value], ...]`` (numbers only go in)."""
    w, h, pad = SPARK_WIDTH, SPARK_HEIGHT, 2.0
    values = [(float(t), float(v)) for t, v in points or () if v is not None]
    if len(values) < 2:
        return format_html(
            '<svg class="spark" width="{}" height="{}" viewBox="0 0 {} {}" aria-hidden="true"></svg>', w, h, w, h
        )
    t0, t1 = values[0][0], values[-1][0]
    lo, hi = min(v for _, v in values), max(v for _, v in values)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    xs = [pad + (t - t0) / span_t * (w - 2 * pad) for t, _ in values]
    ys = [pad + (hi - v) / span_v * (h - 2 * pad) for _, v in values]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return format_html(
        '<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"'
        ' aria-label="last hour: {lo} to {hi}">'
        '<polyline points="{line}" fill="none" stroke="currentColor" stroke-width="1.5"/></svg>',
        w=w,
        h=h,
        lo=f"{lo:g}",
        hi=f"{hi:g}",
        line=line,
    )


@register.filter
def as_datetime(value: Any) -> dt.datetime | None:
    """Parse an ISO time from a snapshot (``None`` stays ``None``)."""
    if isinstance(value, dt.datetime) or value is None:
        return value
    return parse_datetime(str(value))


@register.filter
def labels_text(labels: dict[str, str] | None) -> str:
    """Return ``{a="1", b="2"}`` without ``host`` (the page groups by host already)."""
    shown = {k: v for k, v in (labels or {}).items() if k != "host"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
