"""A small asyncio WebSocket client (RFC 6455), for the live tests and bench/fanout.py.

Written here rather than taken from autobahn: the test process already runs
autobahn on Twisted (channels' testing imports Daphne), and txaio allows one framework
per process. It speaks just what the status socket needs: text frames, ping/pong,
close codes, and a refused handshake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import time
from typing import Any

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class HandshakeRefused(ConnectionError):
    """The server answered the upgrade with something other than 101."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """Return a masked client frame."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class LiveClient:
    """One WebSocket: messages as (receive time, decoded JSON), and the close code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.messages: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.close_code: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.opened = True
        #: (bytes to look for, future of the receive time) for :meth:`watch`.
        self._watches: list[tuple[bytes, asyncio.Future[float]]] = []
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        cookie: str = "",
        origin: str | None = None,
        path: str = "/ws/status/",
        host: str = "127.0.0.1",
        decode: bool = True,
    ) -> LiveClient:
        """Connect; raise :class:`HandshakeRefused` when the server refuses the upgrade."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=2**24), 10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin or f'http://{host}:{port}'}",
        ]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            writer.close()
            raise HandshakeRefused("connection closed during the handshake") from error
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            writer.close()
            raise HandshakeRefused(status.decode(errors="replace"))
        client = cls(reader, writer)
        client.decode = decode
        return client

    decode = True

    async def _read(self) -> None:
        code: int | None = 1006
        parts: list[bytes] = []
        try:
            while True:
                b1, b2 = await self.reader.readexactly(2)
                opcode, length = b1 & 0x0F, b2 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                mask = await self.reader.readexactly(4) if b2 & 0x80 else b""
                payload = await self.reader.readexactly(length)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if opcode == PING:
                    self.writer.write(_frame(PONG, payload))
                elif opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    with contextlib.suppress(ConnectionError):
                        self.writer.write(_frame(CLOSE, payload[:2]))
                    break
                elif opcode in (TEXT, BINARY, CONTINUATION):
                    parts.append(payload)
                    if b1 & 0x80:
                        data = b"".join(parts)
                        parts = []
                        at = time.perf_counter()
                        if self._watches:
                            self._resolve_watches(data, at)
                        self.messages.put_nowait((at, json.loads(data) if self.decode else data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not self.close_code.done():
                self.close_code.set_result(code)
            self.writer.close()

    def watch(self, needle: bytes) -> asyncio.Future[float]:
        """Return a future of the time the first frame containing ``needle`` arrives.

        Cheaper than reading every message (bench/fanout.py watches a thousand clients).
        """
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._watches.append((needle, future))
        return future

    def _resolve_watches(self, data: bytes, at: float) -> None:
        remaining = []
        for needle, future in self._watches:
            if needle in data:
                if not future.done():
                    future.set_result(at)
            else:
                remaining.append((needle, future))
        self._watches = remaining

    async def next(self, timeout: float = 5.0) -> Any:
        return (await asyncio.wait_for(self.messages.get(), timeout))[1]

    async def next_timed(self, timeout: float = 5.0) -> tuple[float, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    def send(self, obj: Any) -> None:
        self.writer.write(_frame(TEXT, json.dumps(obj).encode()))

    def close(self) -> None:
        if not self.close_code.done():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.write(_frame(CLOSE, struct.pack("!H", 1000)))
            self.writer.close()
        self._task.cancel()
