"""The status page's WebSocket: staff only, refusals as close codes the page understands.

On connect a staff client gets a ``snapshot`` (every section of the page), then
``metrics``, ``alert`` and ``heartbeat`` messages from the live bus (:mod:`opsportal.live`),
at most one frame a second (several kinds within one second arrive as one ``batch``
frame holding those messages). The client may send ``{"type": "resync"}`` to get a fresh
snapshot (at most one per :attr:`StatusConsumer.resync_seconds`); anything else it sends
is ignored. The web process re-checks every client's session every
:data:`opsportal.live.SESSION_CHECK_SECONDS`, and a logout anywhere is seen at the next
poll: a session that ended closes the socket with 4401, a user who lost staff status
with 4403. A client that connects more than :attr:`ConnectLimiter.limit` times a minute
is accepted and closed at once with 4429 (its page backs off and tries later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from opsportal import live
from opsportal.socket_auth import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, refusal

__all__ = ["CLOSE_FORBIDDEN", "CLOSE_TOO_MANY_CONNECTS", "CLOSE_UNAUTHENTICATED", "StatusConsumer"]

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY_CONNECTS = 4429


class ConnectLimiter:
    """Connects per client (address + session) in a sliding minute, per web process.

    Bounded: past ``max_clients`` tracked clients the oldest entries are dropped.
    """

    limit = 120
    window = 60.0
    max_clients = 10_000

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and now - hits[0] > self.window:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits  # re-inserted last: dict order is recency
        while len(self._hits) > self.max_clients:
            self._hits.pop(next(iter(self._hits)))
        return allowed


connect_limiter = ConnectLimiter()


def client_key(scope: dict[str, Any]) -> str:
    address = (scope.get("client") or ("?", 0))[0]
    session = scope.get("session")
    return f"{address}/{getattr(session, 'session_key', None) or '-'}"


class StatusConsumer(AsyncJsonWebsocketConsumer):
    resync_seconds = 5.0

    feed: live.Feed | None = None
    _watch: asyncio.Task[None] | None = None
    _last_resync = -float("inf")

    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept first, then close: closing before accept becomes an HTTP 403 that
        # browsers report as 1006, and the page could not tell why.
        await self.accept()
        if not connect_limiter.allow(client_key(self.scope)):
            await self.close(code=CLOSE_TOO_MANY_CONNECTS)
            return
        code = refusal(user)
        if code is not None:
            await self.close(code=code)
            return
        session = self.scope.get("session")
        self.feed = live.Feed(self._send_frame, session_key=getattr(session, "session_key", None))
        # Registered before the snapshot is read: whatever commits after that read
        # arrives as an event (perhaps also in the snapshot; applying it twice is harmless).
        poller = await live.attach(self.feed)
        await self._send_frame(await poller.snapshot_text())
        self.feed.start()
        self._watch = asyncio.get_running_loop().create_task(self._close_when_session_ends(self.feed))

    async def _send_frame(self, text: str) -> None:
        """The one way frames leave: text encoded by :func:`opsportal.live.encode`."""
        await self.send(text_data=text)

    async def _close_when_session_ends(self, feed: live.Feed) -> None:
        """Close with 4401/4403 once the poller finds the session ended or the user lost access."""
        await feed.session_ended.wait()
        await feed.stop()
        await self.close(code=feed.close_code or CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Drop empty and binary frames, which the JSON consumer would raise on (closing the socket)."""
        if not text_data or len(text_data) > 4096:
            return
        await super().receive(text_data=text_data, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Answer ``{"type": "resync"}`` with a fresh snapshot (rate-limited); ignore the rest."""
        if not isinstance(content, dict) or content.get("type") != "resync" or self.feed is None:
            return
        now = time.monotonic()
        if now - self._last_resync >= self.resync_seconds:
            self._last_resync = now
            self.feed.request_snapshot()

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None
