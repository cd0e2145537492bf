"""The status page's WebSocket: staff only, refusals as close codes the page understands.

On connect a staff client gets a ``snapshot`` (every section of the page), then
``metrics``, ``alert`` and ``heartbeat`` messages from the live bus (:mod:`opsportal.live`),
at most one frame a second (several kinds within one second arrive as one ``batch``
frame holding those messages). The client may send ``{"type": "resync"}`` to get a fresh
snapshot (at most one per :attr:`StatusConsumer.resync_seconds`); anything else it sends
is ignored. The session is checked again every :attr:`StatusConsumer.session_check_seconds`
and at logout: a session that ended closes the socket with 4401, a user who lost staff
status with 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from opsportal import live

logger = logging.getLogger(__name__)

#: Close codes the page treats as final (it stops reconnecting).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def refusal(user: Any) -> int | None:
    """Return the close code ``user`` gets, or None when staff may watch."""
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if not (user.is_active and user.is_staff):
        return CLOSE_FORBIDDEN
    return None


def session_refusal(session_key: str | None) -> int | None:
    """Load the session afresh and return the close code its user would get now.

    The same checks as a new request: the session exists and has not expired, the
    user exists, and the session's auth hash still matches (a password change ends it).
    """
    if not session_key:
        return CLOSE_UNAUTHENTICATED
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return refusal(get_user(SimpleNamespace(session=store)))  # type: ignore[arg-type]


class StatusConsumer(AsyncJsonWebsocketConsumer):
    session_check_seconds = 30.0
    resync_seconds = 5.0

    feed: live.Feed | None = None
    _watch: asyncio.Task[None] | None = None
    _last_resync = -float("inf")

    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept first, then close: closing before accept becomes an HTTP 403 that
        # browsers report as 1006, and the page could not tell why.
        await self.accept()
        code = refusal(user)
        if code is not None:
            await self.close(code=code)
            return
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.feed = live.Feed(self._send_frame, session=live.session_fingerprint(self.session_key))
        # Registered before the snapshot is read: whatever commits after that read
        # arrives as an event (perhaps also in the snapshot; applying it twice is harmless).
        poller = await live.attach(self.feed)
        await self._send_frame(await poller.snapshot_text())
        self.feed.start()
        self._watch = asyncio.get_running_loop().create_task(self._watch_session())

    async def _send_frame(self, text: str) -> None:
        """The one way frames leave: text encoded by :func:`opsportal.live.encode`."""
        await self.send(text_data=text)

    async def _watch_session(self) -> None:
        """Close with 4401/4403 when the session ends or the user loses access."""
        assert self.feed is not None
        ended = self.feed.session_ended
        # Staggered, so a thousand clients that connected together do not check together.
        delay = self.session_check_seconds * random.uniform(0.5, 1.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), delay)
            delay = self.session_check_seconds
            if ended.is_set():
                code: int | None = CLOSE_UNAUTHENTICATED
            else:
                try:
                    code = await database_sync_to_async(session_refusal)(self.session_key)
                except Exception:
                    logger.warning("status socket: session check failed; keeping the socket", exc_info=True)
                    continue
            if code is not None:
                await self._stop_feed()
                await self.close(code=code)
                return

    async def _stop_feed(self) -> None:
        if self.feed is not None:
            await self.feed.stop()

    async def disconnect(self, code: int) -> None:
        await self._stop_feed()
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
