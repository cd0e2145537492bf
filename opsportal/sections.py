"""The status page as sections: one builder per source, one snapshot for the page and the socket.

A section is a name and a function that returns JSON-ready data for it. The server
renders the first load from :func:`build_snapshot` (``templates/opsportal/sections/<name>.html``)
and the WebSocket sends the same dict, so the page means the same with or without
JavaScript. A new source (heartbeats, backup freshness, acknowledge buttons) plugs in with
``@section("name")``, a template and a renderer in ``status.js``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.models import Alert
from monitoring import reads
from monitoring.models import Series
from monitoring.status import SEVERITY, ThresholdIndex, overall_status, status_counts, worst
from opsportal.live import AlertItem, SeriesValue, SnapshotPayload, iso

Builder = Callable[[dt.datetime], Any]
_SECTIONS: dict[str, Builder] = {}

#: Sparklines cover this much history.
SPARK_WINDOW = dt.timedelta(hours=1)
SPARK_POINTS = 60
MAX_TILES = 300
MAX_ALERTS = 200
ACTIVE_ALERT_STATES = (Alert.State.PENDING, Alert.State.FIRING, Alert.State.ACKNOWLEDGED)


def section(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder`` as the section ``name`` (sections keep registration order)."""

    def register(builder: Builder) -> Builder:
        _SECTIONS[name] = builder
        return builder

    return register


def section_names() -> list[str]:
    return list(_SECTIONS)


def build_snapshot(now: dt.datetime | None = None) -> SnapshotPayload:
    """Return every section's current data."""
    now = now or timezone.now()
    return {"at": iso(now) or "", "sections": {name: build(now) for name, build in _SECTIONS.items()}}


def _url(name: str, *args: Any) -> str:
    """Return the path of ``name``, or "" when that page is not installed."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


# --- tiles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TileSpec:
    metric: str
    title: str
    unit: str = ""
    #: Label whose value goes into the title (``Disk /data``).
    title_label: str = ""


#: The key series, in the order a host's tiles show them.
TILES: tuple[TileSpec, ...] = (
    TileSpec("system_cpu_usage_percent", "CPU", "%"),
    TileSpec("system_memory_usage_percent", "Memory", "%"),
    TileSpec("system_disk_usage_percent", "Disk", "%", "mount"),
    TileSpec("system_load1", "Load (1 m)"),
    TileSpec("db_up", "Database", "up"),
    TileSpec("db_query_latency_ms", "DB latency", "ms"),
    TileSpec("broker_up", "Broker", "up"),
    TileSpec("broker_latency_ms", "Broker latency", "ms"),
    TileSpec("celery_workers_alive", "Workers", "count"),
    TileSpec("http_request_duration_p95_seconds", "Request p95", "s"),
    TileSpec("http_requests_error_ratio", "Error ratio", "ratio"),
)
TILE_SPECS = {spec.metric: spec for spec in TILES}
TILE_METRICS = frozenset(TILE_SPECS)
_ORDER = {spec.metric: index for index, spec in enumerate(TILES)}


def format_value(value: float | None, unit: str) -> str:
    """Return ``value`` as a tile shows it (the unit decides the form)."""
    if value is None or not math.isfinite(value):
        return "—"
    if unit == "up":
        return "up" if value >= 1 else "down"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:.2f}"


def tile_title(spec: TileSpec, labels: dict[str, str]) -> str:
    if spec.title_label and labels.get(spec.title_label):
        return f"{spec.title} {labels[spec.title_label]}"
    return spec.title


_SERIES_FIELDS = ("id", "name", "host", "labels", "last_value", "last_at", "status", "status_since")


def series_value(row: dict[str, Any]) -> SeriesValue:
    """Return the live form of one series row (a ``values(*_SERIES_FIELDS)`` dict)."""
    spec = TILE_SPECS.get(row["name"])
    return {
        "id": row["id"],
        "name": row["name"],
        "host": row["host"],
        "labels": row["labels"] or {},
        "value": row["last_value"],
        "display": format_value(row["last_value"], spec.unit if spec else ""),
        "at": iso(row["last_at"]),
        "status": row["status"],
        "status_since": iso(row["status_since"]),
    }


def tile_series(ids: Iterable[int]) -> list[SeriesValue]:
    """Return the live form of the tile series among ``ids`` (one query per 1,000 ids)."""
    wanted = sorted(set(ids))
    found: list[SeriesValue] = []
    for start in range(0, len(wanted), 1000):
        rows = Series.objects.filter(id__in=wanted[start : start + 1000], name__in=TILE_METRICS).values(*_SERIES_FIELDS)
        found.extend(series_value(row) for row in rows)
    return found


def limits_text(warning: float | None, critical: float | None, direction: str, unit: str) -> str:
    """Return the threshold as a tile states it: ``warn ≥ 70.0 % · crit ≥ 85.0 %``."""
    sign = "≤" if direction == "below" else "≥"
    parts = []
    if warning is not None:
        parts.append(f"warn {sign} {format_value(warning, unit)}")
    if critical is not None:
        parts.append(f"crit {sign} {format_value(critical, unit)}")
    return " · ".join(parts) if parts else "no threshold"


@section("tiles")
def tiles_section(now: dt.datetime) -> dict[str, Any]:
    """Return the key series grouped by host, with thresholds and an hour of sparkline."""
    rows = list(Series.objects.filter(name__in=TILE_METRICS).values(*_SERIES_FIELDS))
    rows.sort(key=lambda r: (r["host"], _ORDER[r["name"]], sorted((r["labels"] or {}).items())))
    truncated = len(rows) > MAX_TILES
    rows = rows[:MAX_TILES]
    index = ThresholdIndex.load()
    sparks = reads.range_read([r["id"] for r in rows], now - SPARK_WINDOW, now, max_points=SPARK_POINTS, now=now)
    hosts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        spec = TILE_SPECS[row["name"]]
        labels = row["labels"] or {}
        rule = index.rule_for(row["name"], labels)
        tile: dict[str, Any] = dict(series_value(row))
        tile.update(
            title=tile_title(spec, labels),
            unit=spec.unit,
            warning=rule.warning if rule else None,
            critical=rule.critical if rule else None,
            direction=rule.direction if rule else "above",
            limits=limits_text(rule.warning, rule.critical, rule.direction, spec.unit) if rule else "no threshold",
            history_url=_url("series-history", row["id"]),
            spark=[[round(p.t.timestamp(), 3), p.avg] for p in sparks.get(row["id"], [])],
        )
        hosts.setdefault(row["host"], []).append(tile)
    return {"hosts": [{"host": host, "tiles": tiles} for host, tiles in hosts.items()], "truncated": truncated}


# --- alerts ----------------------------------------------------------------------------

#: How an active alert weighs in the overall status.
ALERT_LEVEL = {"info": "healthy", "warning": "warning", "critical": "critical", "emergency": "critical"}
_SEVERITY_ORDER = {"emergency": 0, "critical": 1, "warning": 2, "info": 3}


def alert_item(alert: Alert, *, state: str | None = None) -> AlertItem:
    """Return the live form of ``alert`` (its rule's runbook included)."""
    rule = alert.rule if alert.rule_id else None
    runbook = (rule.runbook if rule else "") or ""
    first_line = runbook.strip().split()[0] if runbook.strip() else ""
    return {
        "id": alert.pk,
        "name": alert.name,
        "labels": alert.labels or {},
        "severity": alert.severity,
        "state": state or alert.state,
        "value": alert.value,
        "summary": alert.summary,
        "active_since": iso(alert.active_since),
        "runbook": runbook[:500],
        "runbook_url": first_line if first_line.startswith(("https://", "http://")) else "",
        "url": _url("admin:alerts_alert_change", alert.pk)
        or (_url("admin:alerts_alertrule_change", alert.rule_id) if alert.rule_id else ""),
    }


def active_alerts() -> list[AlertItem]:
    alerts = Alert.objects.filter(state__in=ACTIVE_ALERT_STATES).select_related("rule")
    items = [alert_item(a) for a in alerts.order_by("-active_since")[:MAX_ALERTS]]
    items.sort(key=lambda a: (_SEVERITY_ORDER.get(a["severity"], 9), a["state"] != "firing"))
    return items


def alerts_level(alerts: Iterable[AlertItem]) -> str:
    """Return the status active alerts give the portal (firing and acknowledged count)."""
    levels = [ALERT_LEVEL.get(a["severity"], "warning") for a in alerts if a["state"] in ("firing", "acknowledged")]
    return worst(levels) if levels else "healthy"


@section("alerts")
def alerts_section(now: dt.datetime) -> dict[str, Any]:
    return {"alerts": active_alerts()}


# --- overall ---------------------------------------------------------------------------


@section("overall")
def overall_section(now: dt.datetime) -> dict[str, Any]:
    """Return the worst of every series' status and of the active alerts."""
    series = overall_status()
    status = worst([series, alerts_level(active_alerts())])
    return {"status": status, "series": series, "counts": status_counts(), "severity": SEVERITY}
