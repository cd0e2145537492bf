"""The status page's WebSocket: staff only, refusals as close codes the page understands."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

#: Close codes the page treats as final (it stops reconnecting).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class StatusConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept first, then close: closing before accept becomes an HTTP 403 that
        # browsers report as 1006, and the page could not tell why.
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not (user.is_active and user.is_staff):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": "snapshot", "sections": {}})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Drop empty and binary frames, which the JSON consumer would raise on (closing the socket)."""
        if not text_data:
            return
        await super().receive(text_data=text_data, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients have nothing to say yet; frames are ignored."""

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None
