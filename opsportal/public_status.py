"""The public status page: opted-in components, up/degraded/down, and recent incidents.

Only what an operator chose to publish leaves this module: each component's name and
description, its state, and when its incidents started and ended. Hosts, labels,
values, rule expressions and alert names stay inside. The page is the same for every
visitor, so the rendered body is cached for a few seconds and marked cacheable for
proxies; a burst of visitors costs one render.

A fixed number of queries whatever the number of components: the components and their
rules and thresholds (three), the series of their metrics (one), their alerts (one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from alerts.models import Alert
from monitoring.models import Series
from opsportal.access import public
from opsportal.models import PublicComponent

UP, DEGRADED, DOWN = "up", "degraded", "down"
_RANK = {UP: 0, DEGRADED: 1, DOWN: 2}
#: Series statuses as the public reads them: only a confirmed critical breach is "down".
SERIES_STATE: dict[str, str] = {
    Series.Status.HEALTHY.value: UP,
    Series.Status.WARNING.value: DEGRADED,
    Series.Status.STALE.value: DEGRADED,
    Series.Status.UNKNOWN.value: DEGRADED,
    Series.Status.CRITICAL.value: DOWN,
}
#: Firing alerts by severity; info alerts change nothing.
ALERT_STATE = {"warning": DEGRADED, "critical": DOWN, "emergency": DOWN}
FIRING = (Alert.State.FIRING, Alert.State.ACKNOWLEDGED)
INCIDENT_WINDOW = dt.timedelta(days=7)
MAX_INCIDENTS = 50
#: How long one rendering is served to everybody, and how long proxies and browsers may keep it.
CACHE_SECONDS = 15
MAX_AGE = 30
CACHE_KEY = "opsportal:public-status:v1"


@dataclass
class ComponentState:
    """What the public sees of one component."""

    name: str
    description: str
    status: str = UP


@dataclass(frozen=True)
class Incident:
    """A period during which a component was degraded or down; ``end`` is None while it lasts."""

    name: str
    start: dt.datetime
    end: dt.datetime | None


@dataclass
class PublicStatus:
    components: list[ComponentState] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)

    @property
    def overall(self) -> str:
        return worst(c.status for c in self.components)

    @property
    def headline(self) -> str:
        overall = self.overall
        if overall == UP:
            return "All systems operational"
        if overall == DEGRADED:
            return "Degraded performance"
        if all(c.status == DOWN for c in self.components):
            return "Major outage"
        return "Partial outage"


def worst(states: Iterable[str]) -> str:
    """Return the worst of ``states`` (up when there are none)."""
    return max(states, key=_RANK.__getitem__, default=UP)


def _matches(labels: Mapping[str, str], match: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match.items())


def _threshold_alert_metric(name: str) -> str:
    """Return the metric of a threshold alert's name (``metric`` or ``metric{labels}``)."""
    return name.split("{", 1)[0]


def public_status(now: dt.datetime | None = None) -> PublicStatus | None:
    """Return the state of every enabled component and their incidents; None when none is enabled."""
    now = now or timezone.now()
    components = list(PublicComponent.objects.filter(enabled=True).prefetch_related("alert_rules", "thresholds"))
    if not components:
        return None
    metrics = {c.metric for c in components if c.metric}
    series_by_metric: dict[str, list[tuple[dict[str, str], str]]] = {}
    if metrics:
        for name, labels, status in Series.objects.filter(name__in=metrics).values_list("name", "labels", "status"):
            series_by_metric.setdefault(name, []).append((labels or {}, status))

    rule_ids = {rule.pk for c in components for rule in c.alert_rules.all()}
    threshold_names = {str(t) for c in components for t in c.thresholds.all()}
    concerned = Q(rule_id__in=rule_ids) if rule_ids else Q(pk__in=[])
    if threshold_names:
        concerned |= Q(source=Alert.Source.THRESHOLD, name__in=threshold_names)
    for metric in metrics:
        concerned |= Q(source=Alert.Source.THRESHOLD, name=metric) | Q(
            source=Alert.Source.THRESHOLD, name__startswith=metric + "{"
        )
    recent = ~Q(state=Alert.State.RESOLVED) | Q(resolved_at__gte=now - INCIDENT_WINDOW)
    alerts = list(
        Alert.objects.filter(concerned, recent, fired_at__isnull=False)
        .exclude(severity="info")
        .only("source", "rule_id", "name", "labels", "severity", "state", "fired_at", "resolved_at")
    )

    result = PublicStatus()
    periods: list[tuple[str, dt.datetime, dt.datetime | None]] = []
    for component in components:
        state = ComponentState(component.name, component.description)
        statuses = []
        if component.metric:
            match = component.labels or {}
            found = [s for labels, s in series_by_metric.get(component.metric, []) if _matches(labels, match)]
            # No matching series at all is not knowing: degraded, like an unknown series.
            statuses.append(worst(SERIES_STATE.get(s, DEGRADED) for s in found) if found else DEGRADED)
        rules = {rule.pk for rule in component.alert_rules.all()}
        thresholds = {str(t) for t in component.thresholds.all()}
        for alert in alerts:
            if not _concerns(alert, component, rules, thresholds):
                continue
            if alert.state in FIRING:
                statuses.append(ALERT_STATE.get(alert.severity, UP))
            periods.append((component.name, alert.fired_at or alert.active_since, alert.resolved_at))
        state.status = worst(statuses)
        result.components.append(state)
    result.incidents = merge_incidents(periods)
    return result


def _concerns(alert: Alert, component: PublicComponent, rules: set[int], thresholds: set[str]) -> bool:
    if alert.rule_id is not None and alert.rule_id in rules:
        return True
    if alert.source != Alert.Source.THRESHOLD:
        return False
    if alert.name in thresholds:
        return True
    return (
        bool(component.metric)
        and _threshold_alert_metric(alert.name) == component.metric
        and _matches(alert.labels or {}, component.labels or {})
    )


def merge_incidents(periods: Iterable[tuple[str, dt.datetime, dt.datetime | None]]) -> list[Incident]:
    """Return one incident per overlapping run of alert periods of a component, newest first.

    Ten hosts failing together are one incident of the component, not ten.
    """
    by_component: dict[str, list[tuple[dt.datetime, dt.datetime | None]]] = {}
    for name, start, end in periods:
        by_component.setdefault(name, []).append((start, end))
    incidents: list[Incident] = []
    for name, spans in by_component.items():
        spans.sort(key=lambda span: span[0])
        run_start, run_end = spans[0]
        for start, end in spans[1:]:
            if run_end is None or start <= run_end:
                run_end = None if run_end is None or end is None else max(run_end, end)
            else:
                incidents.append(Incident(name, run_start, run_end))
                run_start, run_end = start, end
        incidents.append(Incident(name, run_start, run_end))
    incidents.sort(key=lambda i: i.start, reverse=True)
    return incidents[:MAX_INCIDENTS]


def render_public_status(now: dt.datetime | None = None) -> tuple[int, str]:
    """Return the HTTP status and body of the public page (404 while no component is opted in)."""
    now = now or timezone.now()
    status = public_status(now)
    if status is None:
        return 404, render_to_string("opsportal/public_status.html", {"disabled": True})
    context = {"status": status, "generated_at": now, "window_days": INCIDENT_WINDOW.days}
    return 200, render_to_string("opsportal/public_status.html", context)


@public
@require_safe
def public_status_page(request: HttpRequest) -> HttpResponse:
    """The sanitised public status page; the same cached body for every visitor."""
    cached = cache.get(CACHE_KEY)
    if cached is None:
        cached = render_public_status()
        cache.set(CACHE_KEY, cached, CACHE_SECONDS)
    code, body = cached
    response = HttpResponse(body, status=code)
    patch_cache_control(response, public=True, max_age=MAX_AGE)
    return response
