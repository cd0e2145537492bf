"""A small asyncio WebSocket client over autobahn (installed with daphne), for tests and bench."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol


class _Protocol(WebSocketClientProtocol):
    client: LiveClient

    def onOpen(self) -> None:
        self.client._opened.set()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.client._received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.client._closed(code)


class LiveClient:
    """One WebSocket: messages as (receive time, decoded JSON), and the close code."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.close_code: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._opened = asyncio.Event()
        self.protocol: _Protocol | None = None

    def _received(self, payload: bytes) -> None:
        self.messages.put_nowait((time.perf_counter(), json.loads(payload)))

    def _closed(self, code: int | None) -> None:
        self._opened.set()
        if not self.close_code.done():
            self.close_code.set_result(code)

    @classmethod
    async def open(
        cls, port: int, *, cookie: str = "", origin: str | None = None, path: str = "/ws/status/"
    ) -> LiveClient:
        client = cls()
        url = f"ws://127.0.0.1:{port}{path}"
        headers = {"Cookie": cookie} if cookie else {}
        factory = WebSocketClientFactory(url, origin=origin or f"http://127.0.0.1:{port}", headers=headers)

        def build() -> _Protocol:
            protocol = _Protocol()
            protocol.factory = factory
            protocol.client = client
            client.protocol = protocol
            return protocol

        await asyncio.get_running_loop().create_connection(build, "127.0.0.1", port)
        await asyncio.wait_for(client._opened.wait(), 10)
        return client

    async def next(self, timeout: float = 5.0) -> Any:
        return (await asyncio.wait_for(self.messages.get(), timeout))[1]

    async def next_timed(self, timeout: float = 5.0) -> tuple[float, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    def close(self) -> None:
        if self.protocol is not None and not self.close_code.done():
            self.protocol.sendClose(1000)
            if self.protocol.transport is not None:
                self.protocol.transport.close()
