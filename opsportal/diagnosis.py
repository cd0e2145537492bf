"""Self-diagnosis of the portal, behind ``python manage.py diagnose``.

``diagnose`` answers the questions an operator asks when something seems off: does
the database answer, is the broker reachable, are workers consuming, is beat
scheduling, do the cache, the live page's channel layer and the disk work. It runs
the readiness checks of ``/readyz`` once (:func:`opsportal.health.run_checks`) and
adds what only an operator's tool should do, such as a control-plane ping of the
workers. Findings are grouped by component; each has a status, its issues and one
recommended action per issue.

Components are a plain list, :data:`COMPONENTS`. A later feature adds its own
check by appending ``Component("name", function)``, where ``function`` takes the
shared :class:`Context` and returns a :class:`Finding`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from django.conf import settings

from opsportal import health

logger = logging.getLogger(__name__)

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

#: Seconds diagnose waits for the workers' answers to its ping.
PING_TIMEOUT_SECONDS = 2.0
#: Extra seconds the ping may spend reaching the broker before diagnose gives up on it.
PING_CONNECT_SECONDS = 3


@dataclass
class Finding:
    """What one component check found: a status and issues, each with its action."""

    status: str = OK
    issues: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)

    def add(self, status: str, issue: str, action: str) -> None:
        """Record ``issue`` and what to do about it; the worst status wins."""
        self.issues.append(issue)
        self.recommendations.append(action)
        if _RANK[status] > _RANK[self.status]:
            self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "issues": list(self.issues), "recommendations": list(self.recommendations)}


@dataclass(frozen=True)
class PingResult:
    """The node names that answered a control-plane ping, or why none could be sent."""

    answered: frozenset[str] = frozenset()
    error: str = ""


def ping_workers(timeout: float, expected: int | None = None) -> PingResult:
    """Ping every worker over the broker and return the node names that answered.

    The ping runs in a daemon thread bounded by ``timeout`` plus a connect allowance,
    so a broker that hangs cannot hang diagnose (nor its exit). ``expected`` lets the
    ping return as soon as that many workers answered.
    """
    from opsportal.celery import app

    outcome: dict[str, PingResult] = {}

    def run() -> None:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=PING_CONNECT_SECONDS)
                replies = app.control.ping(timeout=timeout, connection=conn, limit=expected)
            outcome["result"] = PingResult(frozenset(name for reply in replies or [] for name in reply))
        except Exception as exc:
            logger.debug("diagnose: ping failed", exc_info=True)
            outcome["result"] = PingResult(error=f"the ping failed ({type(exc).__name__})")

    thread = threading.Thread(target=run, name="diagnose-ping", daemon=True)
    thread.start()
    thread.join(timeout + PING_CONNECT_SECONDS + 1.0)
    if "result" not in outcome:
        return PingResult(error=f"the broker did not carry the ping within {timeout + PING_CONNECT_SECONDS:g} s")
    return outcome["result"]


class Context:
    """What the component checks share; each probe runs at most once per diagnosis."""

    def __init__(
        self,
        *,
        checks: tuple[health.Check, ...] | None = None,
        deadline: float | None = None,
        ping: Callable[[float, int | None], PingResult] | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self._checks = health.CHECKS if checks is None else checks
        self._deadline = health.DEADLINE_SECONDS if deadline is None else deadline
        self._ping = ping or ping_workers
        self.ping_timeout = PING_TIMEOUT_SECONDS if ping_timeout is None else ping_timeout
        #: Why liveness rows could not be read, once :meth:`fresh_rows` failed.
        self.rows_problem = ""

    @cached_property
    def readiness(self) -> dict[str, health.CheckResult]:
        """Return the ``/readyz`` checks by name."""
        return {result.name: result for result in health.run_checks(self._checks, self._deadline)}

    def check(self, name: str) -> health.CheckResult:
        """Return the readiness check ``name`` (a failing placeholder when it was not run)."""
        try:
            return self.readiness[name]
        except KeyError:
            return health.CheckResult(name, health.FAIL, 0.0, False, f"check {name!r} was not run", "")

    def passed(self, name: str) -> bool:
        return self.check(name).status == health.OK

    def fresh_rows(self, role: str) -> list[Any] | None:
        """Return the fresh liveness rows of ``role``; None (and ``rows_problem``) when unreadable."""
        if not self.passed("database"):
            self.rows_problem = "the database is unreachable"
            return None
        from monitoring import liveness

        try:
            return liveness.fresh(role)
        except Exception as exc:
            logger.debug("diagnose: cannot read liveness rows", exc_info=True)
            self.rows_problem = f"the liveness table cannot be read ({type(exc).__name__})"
            return None

    @cached_property
    def worker_rows(self) -> list[Any] | None:
        from monitoring.liveness import Role

        return self.fresh_rows(Role.WORKER)

    @cached_property
    def beat_rows(self) -> list[Any] | None:
        from monitoring.liveness import Role

        return self.fresh_rows(Role.BEAT)

    @cached_property
    def ping(self) -> PingResult:
        """Return the workers' answers to one control-plane ping (skipped when the broker is down)."""
        if not self.passed("broker"):
            return PingResult(error="the broker is unreachable")
        nodes = {row.node for row in self.worker_rows or []}
        return self._ping(self.ping_timeout, len(nodes) or None)


# --- component checks -------------------------------------------------------------

FIX_DATABASE_FIRST = "Fix the database component's issue first, then run diagnose again."


def _readiness_component(check_name: str, failing: str) -> Callable[[Context], Finding]:
    """Return a component check that reports the readiness check ``check_name`` as ``failing``."""

    def component(ctx: Context) -> Finding:
        finding = Finding()
        result = ctx.check(check_name)
        if result.status != health.OK:
            finding.add(failing, result.detail, result.action)
        return finding

    component.__doc__ = f"Report the readiness check {check_name!r}; a failure is {failing}."
    return component


def database(ctx: Context) -> Finding:
    """Nothing works without the database, nor on a schema behind the code: both are critical."""
    finding = _readiness_component("database", CRITICAL)(ctx)
    if finding.status == OK:
        pending = _pending_migrations()
        if pending:
            finding.add(
                CRITICAL,
                f"{pending} database migration(s) not applied",
                "Run `python manage.py migrate` (runportal does it on start).",
            )
    return finding


def _pending_migrations() -> int:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def broker(ctx: Context) -> Finding:
    """No task runs without the broker: unreachable is critical; set-aside messages warn."""
    finding = _readiness_component("broker", CRITICAL)(ctx)
    if not settings.REDIS_URL:
        bad = Path(settings.BROKER_DIR) / "bad"
        count = sum(1 for _ in bad.glob("*.msg")) if bad.is_dir() else 0
        if count:
            finding.add(
                WARNING,
                f"{count} undecodable message file(s) were set aside in {bad}",
                "Look at them for the cause (a full disk, a killed writer), then delete them.",
            )
    return finding


def workers(ctx: Context) -> Finding:
    """Workers are consuming when they write fresh liveness rows and answer a ping."""
    finding = Finding()
    rows = ctx.worker_rows
    ping = ctx.ping
    stale = settings.LIVENESS_STALE_SECONDS
    if rows is None:
        if ping.answered:
            finding.add(
                WARNING,
                f"{len(ping.answered)} worker(s) answer the ping, but their liveness rows cannot be read: "
                f"{ctx.rows_problem}",
                FIX_DATABASE_FIRST,
            )
        else:
            finding.add(
                CRITICAL,
                f"cannot tell whether workers run: {ctx.rows_problem}, "
                + (f"and {ping.error}" if ping.error else "and no worker answered the ping"),
                FIX_DATABASE_FIRST,
            )
        return finding
    if ping.error:
        if rows:
            issue = f"{len(rows)} worker(s) report liveness but cannot consume: {ping.error}"
        else:
            issue = f"no worker reported in the last {stale} s, and {ping.error}"
        finding.add(
            CRITICAL, issue, "Fix the broker first (see the broker component); workers reconnect by themselves."
        )
        return finding
    if not rows and not ping.answered:
        finding.add(
            CRITICAL,
            f"no worker is running (none reported in the last {stale} s, none answered the ping): "
            "nothing collects, evaluates alerts or delivers notifications",
            health.START_WORKER_ACTION,
        )
    elif not rows:
        finding.add(
            CRITICAL,
            f"worker(s) {', '.join(sorted(ping.answered))} answer the ping but write no liveness rows, "
            "so no collection is dispatched to their host",
            "Give the workers the same DATABASE_URL as the web processes and check their log for database errors.",
        )
    elif not ping.answered:
        finding.add(
            CRITICAL,
            f"{len(rows)} worker(s) report liveness but none answered the ping within {ctx.ping_timeout:g} s: "
            "tasks are not being consumed",
            "Restart the workers and read their log; their consumer is stuck or cut off from the broker.",
        )
    else:
        for node in sorted({row.node for row in rows} - ping.answered):
            finding.add(
                WARNING,
                f"worker {node} reports liveness but did not answer the ping within {ctx.ping_timeout:g} s",
                f"Restart {node} and read its log; its consumer may be stuck.",
            )
    return finding


def scheduler(ctx: Context) -> Finding:
    """Beat schedules every periodic task: missing is critical, several at once warn."""
    finding = Finding()
    rows = ctx.beat_rows
    if rows is None:
        finding.add(CRITICAL, f"cannot tell whether beat runs: {ctx.rows_problem}", FIX_DATABASE_FIRST)
    elif not rows:
        finding.add(
            CRITICAL,
            f"beat has not reported in the last {settings.LIVENESS_STALE_SECONDS} s: nothing schedules "
            "collection, alert evaluation, heartbeat sweeps or backups",
            health.START_BEAT_ACTION,
        )
    elif len(rows) > 1:
        where = ", ".join(f"{row.host} pid {row.pid}" for row in rows)
        finding.add(
            WARNING,
            f"{len(rows)} beat processes are running ({where}): every periodic task is sent more than once",
            "Stop all but one beat process.",
        )
    return finding


# Without these the portal still runs, degraded.
cache = _readiness_component("cache", WARNING)
dashboard = _readiness_component("channel_layer", WARNING)
storage = _readiness_component("disk", WARNING)


def collection(ctx: Context) -> Finding:
    """Collectors fresh on every host, retention on time, series count below the cap (monitoring.diagnosis)."""
    from monitoring import diagnosis as monitoring_diagnosis

    finding = Finding()
    if not ctx.passed("database"):
        finding.add(WARNING, "cannot check collection: the database is unreachable", "Fix the database first.")
        return finding
    for level, issue, action in monitoring_diagnosis.collection_problems():
        finding.add(level, issue, action)
    return finding


def alerting(ctx: Context) -> Finding:
    """Evaluator on time, its lease not stuck, rules that evaluate (alerts.diagnosis)."""
    from alerts import diagnosis as alerts_diagnosis

    return _findings(ctx, "alerting", alerts_diagnosis.alerting_problems)


def delivery(ctx: Context) -> Finding:
    """Deliveries not stuck, channels not failing or flagged (alerts.delivery_checks)."""
    from alerts import delivery_checks

    return _findings(ctx, "delivery", delivery_checks.delivery_problems)


def _findings(ctx: Context, what: str, problems: Callable[[], list[tuple[str, str, str]]]) -> Finding:
    finding = Finding()
    if not ctx.passed("database"):
        finding.add(WARNING, f"cannot check {what}: the database is unreachable", "Fix the database first.")
        return finding
    for level, issue, action in problems():
        finding.add(level, issue, action)
    return finding


@dataclass(frozen=True)
class Component:
    name: str
    check: Callable[[Context], Finding]


#: Every component diagnose reports on, in the order it prints them.
COMPONENTS: list[Component] = [
    Component("database", database),
    Component("broker", broker),
    Component("workers", workers),
    Component("scheduler", scheduler),
    Component("collection", collection),
    Component("alerting", alerting),
    Component("delivery", delivery),
    Component("cache", cache),
    Component("dashboard", dashboard),
    Component("storage", storage),
]


# --- the report -------------------------------------------------------------------


@dataclass
class Report:
    components: dict[str, Finding]

    @property
    def status(self) -> str:
        """Return the worst status of any component."""
        return max((f.status for f in self.components.values()), key=_RANK.__getitem__, default=OK)

    @property
    def critical(self) -> list[str]:
        return [name for name, finding in self.components.items() if finding.status == CRITICAL]

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "components": {n: f.as_dict() for n, f in self.components.items()}}


def diagnose(components: list[Component] | None = None, context: Context | None = None) -> Report:
    """Run every component check and return the report; a check that raises is a finding."""
    ctx = context or Context()
    findings: dict[str, Finding] = {}
    for component in COMPONENTS if components is None else components:
        try:
            findings[component.name] = component.check(ctx)
        except Exception as exc:
            logger.debug("diagnose: the %s check raised", component.name, exc_info=True)
            finding = Finding()
            finding.add(
                WARNING,
                f"could not be checked ({type(exc).__name__})",
                "Run diagnose with OPSPORTAL_LOG_LEVEL=debug and read the log on stderr.",
            )
            findings[component.name] = finding
    return Report(findings)


def render_text(report: Report) -> str:
    """Return the report for a terminal: one line per component, each issue with its action."""
    width = max((len(name) for name in report.components), default=0)
    lines = [f"OpsPortal diagnosis: {report.status.upper()}"]
    for name, finding in report.components.items():
        lines.append(f"{name.ljust(width)}  {finding.status.upper()}")
        for issue, action in zip(finding.issues, finding.recommendations, strict=True):
            lines.append(f"{'':{width}}    - {issue}")
            lines.append(f"{'':{width}}      action: {action}")
    return "\n".join(lines)
