"""The live bus: one typed publish helper, and a poller in each web process that fans events out.

Writing: :func:`publish` stores a :class:`~opsportal.models.LiveEvent` row. Callers
(the receivers in :mod:`opsportal.live_wiring`) run inside the transaction of the change
they announce, so an event commits, or rolls back, with its change.

Reading: each ASGI process runs one :class:`Poller` on its event loop, started at the
first WebSocket connection (Daphne sends no lifespan events, and ``AppConfig.ready()``
runs in management commands too). Every :data:`POLL_SECONDS` it reads the rows it has
not seen, in its own thread with its own database connection (never on the event
loop), and offers each one to the :class:`Feed` of every client connected to *this*
process. Every :data:`SESSION_CHECK_SECONDS` it also re-checks the sessions of all its
clients in one go, and a logout anywhere ends that session's sockets at the next poll. Each process fans out to its
own clients only, so every browser gets every event once, whatever the number of web
processes. The poller stops when its last client leaves.

Why rows for every deployment (SQLite or PostgreSQL, with or without Redis): the same
path works on embedded defaults with no Redis, survives a web process restart without
losing what was committed meanwhile (the new process starts from the table), needs no
channel-layer capacity tuning, and is the one path the tests exercise. channels-redis
would save one indexed query per process every 100 ms; that is not worth a second
delivery path with its own failure modes.

Ordering: on SQLite, writers are serialised (``IMMEDIATE`` transactions), so ids commit
in order and "ids above the last one seen" is exact. On PostgreSQL, ids come from a
sequence at insert time and a transaction that started earlier may commit later, so the
poller also re-reads the ids of the last :data:`REREAD_SECONDS` and skips those it has
already delivered. A transaction that stays open longer than that window loses its live
event; the next snapshot (reconnect, or the client's resync) shows the state anyway.

Per client: at most one frame a second, leading edge (the first event after a quiet
second goes at once; what arrives within the second is merged into the next frame),
through a bounded queue; a client whose queue overflows gets a fresh snapshot instead
of the backlog, and never holds up the poller or other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, overload

from channels.db import database_sync_to_async
from django.db import connection, connections
from django.db.models import Max, Q
from django.utils import timezone

from opsportal.models import LiveEvent

logger = logging.getLogger(__name__)

#: How often each web process reads new events (DESIGN: at most 250 ms).
POLL_SECONDS = 0.1
#: PostgreSQL only: how far back the poller re-reads ids that may have committed late.
REREAD_SECONDS = 10.0
#: Events read per poll at most; the rest come on the next poll.
BATCH = 500
#: Events older than this are pruned (periodic task ``opsportal.prune_live_events``).
KEEP_SECONDS = 300
#: A cached snapshot is reused by clients connecting within this many seconds, if no
#: event was delivered since it was built.
SNAPSHOT_TTL = 2.0
#: How often each web process re-checks the sessions of its clients (all at once).
SESSION_CHECK_SECONDS = 30.0
#: The close code of a client whose session was logged out (the page's "logged out").
SESSION_ENDED_CODE = 4401


# --- payloads -------------------------------------------------------------------------


class SeriesValue(TypedDict):
    """One series as a tile shows it."""

    id: int
    name: str
    host: str
    labels: dict[str, str]
    value: float | None
    display: str
    at: str | None
    status: str
    status_since: str | None


class MetricsPayload(TypedDict):
    """Latest values of the series one ``record()`` call (or status evaluation) touched."""

    at: str
    series: list[SeriesValue]
    #: Worst status of all series; present when statuses changed.
    overall: NotRequired[str]


class AlertItem(TypedDict):
    id: int
    name: str
    labels: dict[str, str]
    severity: str
    #: pending, firing, acknowledged, resolved; "deleted" when the row was removed.
    state: str
    value: float | None
    summary: str
    active_since: str | None
    runbook: str
    runbook_url: str
    url: str


class AlertPayload(TypedDict):
    at: str
    alerts: list[AlertItem]


class HeartbeatItem(TypedDict):
    id: int
    name: str
    status: str
    last_ping_at: str | None


class HeartbeatPayload(TypedDict):
    at: str
    heartbeats: list[HeartbeatItem]


class SnapshotPayload(TypedDict):
    """Everything the page shows, by section (see :mod:`opsportal.sections`)."""

    at: str
    sections: dict[str, Any]


class SessionEndedPayload(TypedDict):
    """A logout: web processes close that session's sockets (never sent to a browser)."""

    session: str


Kind = Literal["snapshot", "metrics", "alert", "heartbeat"]
PublishedKind = Literal["metrics", "alert", "heartbeat", "session_ended"]
#: Kinds the poller hands to clients; ``session_ended`` is for the processes themselves.
CLIENT_KINDS = frozenset({"metrics", "alert", "heartbeat"})


@overload
def publish(kind: Literal["metrics"], payload: MetricsPayload) -> int: ...
@overload
def publish(kind: Literal["alert"], payload: AlertPayload) -> int: ...
@overload
def publish(kind: Literal["heartbeat"], payload: HeartbeatPayload) -> int: ...
@overload
def publish(kind: Literal["session_ended"], payload: SessionEndedPayload) -> int: ...
def publish(kind: PublishedKind, payload: Any) -> int:
    """Store one live event for every web process to deliver; return its id.

    Call it inside the transaction of the change it announces.
    """
    if kind not in CLIENT_KINDS and kind != "session_ended":
        raise ValueError(f"unknown live event kind {kind!r}")
    return LiveEvent.objects.create(kind=kind, payload=payload).pk


def encode(kind: Kind | Literal["batch"], payload: Any) -> str:
    """Return the WebSocket frame for ``payload``: a JSON object whose ``type`` is ``kind``."""
    return json.dumps({"type": kind, **payload}, separators=(",", ":"), allow_nan=False)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def session_fingerprint(session_key: str | None) -> str:
    """Return what live events carry instead of a session key (which would log someone in)."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:32]


def prune(now: dt.datetime | None = None, keep_seconds: int = KEEP_SECONDS) -> int:
    """Delete events older than ``keep_seconds``; return how many."""
    now = now or timezone.now()
    deleted, _ = LiveEvent.objects.filter(created_at__lt=now - dt.timedelta(seconds=keep_seconds)).delete()
    return deleted


# --- reading ---------------------------------------------------------------------------


@dataclass
class Event:
    id: int
    kind: str
    payload: dict[str, Any]
    _text: str | None = None

    @property
    def text(self) -> str:
        """The frame of this event alone, encoded once for all the clients that get it."""
        if self._text is None:
            self._text = encode(self.kind, self.payload)  # type: ignore[arg-type]
        return self._text


def reread_window() -> float:
    """Return the re-read window for this database: none where ids commit in order."""
    return 0.0 if connection.vendor == "sqlite" else REREAD_SECONDS


def read_start(window: float) -> tuple[int, dict[int, dt.datetime]]:
    """Return the cursor a new poller starts from and the ids of its window (already past)."""
    last = LiveEvent.objects.aggregate(m=Max("id"))["m"] or 0
    seen: dict[int, dt.datetime] = {}
    if window:
        horizon = timezone.now() - dt.timedelta(seconds=window)
        seen = dict(LiveEvent.objects.filter(created_at__gte=horizon, id__lte=last).values_list("id", "created_at"))
    return last, seen


def read_new(
    cursor: int, seen: dict[int, dt.datetime], window: float, limit: int | None = None
) -> list[tuple[int, str, Any, dt.datetime]]:
    """Return up to ``limit`` events not delivered yet, oldest id first.

    Without a window: ids above ``cursor``, one query. With one: ids above ``cursor`` or
    created within ``window`` seconds, minus ``seen``; payloads are read only for the
    new ids, so a quiet poll is one small index read.
    """
    limit = limit or BATCH
    fields = ("id", "kind", "payload", "created_at")
    if not window:
        return list(LiveEvent.objects.filter(id__gt=cursor).order_by("id").values_list(*fields)[:limit])
    horizon = timezone.now() - dt.timedelta(seconds=window)
    candidates = LiveEvent.objects.filter(Q(id__gt=cursor) | Q(created_at__gte=horizon)).values_list("id", flat=True)
    new = sorted(i for i in candidates if i not in seen)[:limit]
    if not new:
        return []
    return list(LiveEvent.objects.filter(id__in=new).order_by("id").values_list(*fields))


class Poller:
    """This process's reader of live events and its list of connected clients."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, window: float | None = None) -> None:
        self.loop = loop
        self.clients: set[Feed] = set()
        self.cursor = 0
        self.seen: dict[int, dt.datetime] = {}
        self.window = window
        #: Counts delivered events; a cached snapshot is valid while it has not moved.
        self.version = 0
        self.stopped = False
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._snapshot: tuple[int, float, str] | None = None
        self._snapshot_lock = asyncio.Lock()
        self.snapshot_builder: Callable[[], SnapshotPayload] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="opsportal-live")

    async def ready(self) -> None:
        """Start the poller if needed and return once it knows where to read from."""
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name="opsportal-live-poller")
        await self._started.wait()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the poller's own thread, off the event loop.

        One thread keeps one database connection for the poller's life: with
        ``CONN_MAX_AGE=0``, ``database_sync_to_async`` would open and close one every
        poll. After an error the connection is closed, and the next call opens a new one.
        """
        return await self.loop.run_in_executor(self._executor, _call_closing_on_error, fn, args)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    if self.window is None:
                        self.window = await self._db(reread_window)
                    self.cursor, self.seen = await self._db(read_start, self.window)
                    break
                except Exception:
                    logger.warning("live events: cannot read the event table yet; retrying", exc_info=True)
                    await asyncio.sleep(1.0)
            self._started.set()
            next_check = time.monotonic() + SESSION_CHECK_SECONDS
            while self.clients:
                try:
                    rows = await self._db(read_new, self.cursor, self.seen, self.window or 0.0)
                except Exception:
                    logger.warning("live events: poll failed; retrying", exc_info=True)
                    rows = []
                    await asyncio.sleep(1.0)
                self.dispatch(rows)
                if time.monotonic() >= next_check:
                    await self.check_sessions()
                    next_check = time.monotonic() + SESSION_CHECK_SECONDS
                if len(rows) < BATCH:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            self.stopped = True
            self._executor.submit(connections.close_all)
            self._executor.shutdown(wait=False)

    async def check_sessions(self) -> None:
        """Close (4401/4403) the clients whose session ended or whose user lost access."""
        from opsportal.socket_auth import check_sessions

        feeds = list(self.clients)
        try:
            codes = await self._db(check_sessions, {feed.session_key for feed in feeds})
        except Exception:
            logger.warning("live events: session check failed; keeping the sockets", exc_info=True)
            return
        for feed in feeds:
            code = codes.get(feed.session_key)
            if code is not None:
                feed.end_session(code)

    def dispatch(self, rows: list[tuple[int, str, Any, dt.datetime]]) -> None:
        """Offer each new event to every client of this process (never blocks)."""
        for event_id, kind, payload, created_at in rows:
            self.cursor = max(self.cursor, event_id)
            if self.window:
                self.seen[event_id] = created_at
            self.version += 1
            if kind == "session_ended":
                for feed in list(self.clients):
                    if feed.session == payload.get("session"):
                        feed.end_session(SESSION_ENDED_CODE)
                continue
            if kind not in CLIENT_KINDS:
                continue
            event = Event(event_id, kind, payload)
            for feed in list(self.clients):
                feed.offer(event)
        if self.window and self.seen:
            horizon = timezone.now() - dt.timedelta(seconds=self.window * 2)
            for event_id in [i for i, at in self.seen.items() if at < horizon]:
                del self.seen[event_id]

    async def snapshot_text(self) -> str:
        """Return a snapshot frame, shared by clients connecting at the same moment.

        Reused only while no event was delivered since its build began: a client
        registers before asking, so whatever committed after the build's read reaches
        it as an event.
        """
        cached = self._snapshot
        if cached and cached[0] == self.version and time.monotonic() - cached[1] < SNAPSHOT_TTL:
            return cached[2]
        async with self._snapshot_lock:
            cached = self._snapshot
            if cached and cached[0] == self.version and time.monotonic() - cached[1] < SNAPSHOT_TTL:
                return cached[2]
            version = self.version
            builder = self.snapshot_builder or _default_builder()
            text = encode("snapshot", await database_sync_to_async(builder)())
            self._snapshot = (version, time.monotonic(), text)
            return text


def _call_closing_on_error(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        return fn(*args)
    except Exception:
        connections.close_all()
        raise


def _default_builder() -> Callable[[], SnapshotPayload]:
    from opsportal.sections import build_snapshot

    return build_snapshot


_poller: Poller | None = None


async def attach(feed: Feed) -> Poller:
    """Register ``feed`` with this process's poller (starting it) and return the poller."""
    global _poller
    loop = asyncio.get_running_loop()
    poller = _poller
    if poller is None or poller.loop is not loop or poller.stopped:
        poller = _poller = Poller(loop)
    poller.clients.add(feed)
    feed.poller = poller
    await poller.ready()
    return poller


def detach(feed: Feed) -> None:
    if feed.poller is not None:
        feed.poller.clients.discard(feed)


def current_poller() -> Poller | None:
    return _poller


# --- one client ------------------------------------------------------------------------


@dataclass
class Pending:
    """What a client has not been sent yet, merged by identity (latest wins).

    Merging happens only when there are several events: the common case, one event
    after a quiet second, costs each client an append and sends the shared frame.
    """

    events: list[Event] = field(default_factory=list)
    series: dict[int, Any] = field(default_factory=dict)
    overall: str | None = None
    alerts: dict[int, Any] = field(default_factory=dict)
    heartbeats: dict[int, Any] = field(default_factory=dict)
    at: str = ""
    _merged: int = 0

    def add(self, event: Event) -> None:
        self.events.append(event)

    def _merge(self) -> None:
        for event in self.events[self._merged :]:
            payload = event.payload
            self.at = max(self.at, payload.get("at") or "")
            if event.kind == "metrics":
                self.series.update((s["id"], s) for s in payload.get("series", ()))
                if payload.get("overall"):
                    self.overall = payload["overall"]
            elif event.kind == "alert":
                self.alerts.update((a["id"], a) for a in payload.get("alerts", ()))
            elif event.kind == "heartbeat":
                self.heartbeats.update((h["id"], h) for h in payload.get("heartbeats", ()))
        self._merged = len(self.events)

    @property
    def size(self) -> int:
        """Distinct items merged so far (0 for a lone event, which is sent as it is)."""
        if len(self.events) < 2:
            return 0
        self._merge()
        return len(self.series) + len(self.alerts) + len(self.heartbeats)

    def frame(self) -> str:
        """Return one frame for everything pending: the event itself when there is one."""
        if len(self.events) == 1:
            return self.events[0].text
        self._merge()
        messages: list[dict[str, Any]] = []
        if self.series or self.overall:
            metrics: dict[str, Any] = {"type": "metrics", "at": self.at, "series": list(self.series.values())}
            if self.overall:
                metrics["overall"] = self.overall
            messages.append(metrics)
        if self.alerts:
            messages.append({"type": "alert", "at": self.at, "alerts": list(self.alerts.values())})
        if self.heartbeats:
            messages.append({"type": "heartbeat", "at": self.at, "heartbeats": list(self.heartbeats.values())})
        if len(messages) == 1:
            return json.dumps(messages[0], separators=(",", ":"))
        # Several kinds within one second still make one frame per second.
        return encode("batch", {"at": self.at, "messages": messages})


_RESYNC = object()


class Feed:
    """One WebSocket client's outbox: bounded, at most one frame per ``min_interval``."""

    #: Events waiting for the sender beyond which the client is "behind". Above one
    #: poll's :data:`BATCH`, so a burst alone never drops a client that keeps up.
    max_queue = 2 * BATCH
    #: Distinct series, alerts and heartbeats merged into one frame at most.
    max_pending = 5000
    min_interval = 1.0

    def __init__(self, send: Callable[[str], Awaitable[None]], *, session_key: str | None = None) -> None:
        self.send = send
        #: The session's key stays in this process's memory; events carry its fingerprint.
        self.session_key = session_key
        self.session = session_fingerprint(session_key)
        #: Set with the close code when the session ended or the user lost access.
        self.close_code: int | None = None
        self.poller: Poller | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.max_queue)
        self.behind = False
        self.session_ended = asyncio.Event()
        self.frames_sent = 0
        self.snapshots_sent = 0
        self._task: asyncio.Task[None] | None = None

    def offer(self, event: Event) -> None:
        """Queue ``event``; on overflow drop the backlog and owe the client a snapshot."""
        if self.behind:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._fall_behind()

    def request_snapshot(self) -> None:
        try:
            self.queue.put_nowait(_RESYNC)
        except asyncio.QueueFull:
            self._fall_behind()

    def end_session(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        self.session_ended.set()

    def _fall_behind(self) -> None:
        self.behind = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_RESYNC)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        detach(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last_sent = -float("inf")
        while True:
            pending = Pending()
            resync = self._take(await self.queue.get(), pending)
            # Leading edge: nothing waits when the last frame is a second old; within
            # the second, whatever arrives is merged into the one frame that follows.
            while (wait := last_sent + self.min_interval - time.monotonic()) > 0:
                try:
                    resync |= self._take(await asyncio.wait_for(self.queue.get(), wait), pending)
                except TimeoutError:
                    break
            while not self.queue.empty():
                resync |= self._take(self.queue.get_nowait(), pending)
            if pending.size > self.max_pending:
                resync = True
            if resync or self.behind:
                self.behind = False
                assert self.poller is not None
                await self.send(await self.poller.snapshot_text())
                self.snapshots_sent += 1
            elif pending.events:
                await self.send(pending.frame())
            else:
                continue
            self.frames_sent += 1
            last_sent = time.monotonic()

    @staticmethod
    def _take(item: Any, pending: Pending) -> bool:
        """Merge ``item`` into ``pending``; return whether it asks for a snapshot."""
        if item is _RESYNC:
            return True
        pending.add(item)
        return False
