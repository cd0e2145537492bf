"""The Celery broker and the channel layer: up, and the round trip of one message."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings

from monitoring.collectors.base import Collector, Scope, register
from monitoring.storage import Reading

logger = logging.getLogger(__name__)

#: Seconds one round trip may take before the dependency counts as down.
TIMEOUT_SECONDS = 5.0


def broker_round_trip(timeout: float = TIMEOUT_SECONDS) -> float:
    """Put one message on a private queue of this host and take it back; return milliseconds.

    The queue is named after the host, so concurrent probes from several hosts never
    take each other's message; a message left behind by an earlier timed-out probe is
    drained and ignored.
    """
    from celery import current_app

    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=math.ceil(timeout))
        queue = conn.SimpleQueue(f"opsportal.broker-probe.{settings.HOSTNAME}", no_ack=True, serializer="json")
        try:
            started = time.perf_counter()
            queue.put({"token": token})
            while time.monotonic() < deadline:
                try:
                    message = queue.get_nowait()
                except queue.Empty:
                    time.sleep(0.005)
                    continue
                if message.payload.get("token") == token:
                    return (time.perf_counter() - started) * 1000
            raise TimeoutError(f"the probe message did not come back within {timeout:g} s")
        finally:
            queue.close()


def channel_layer_round_trip(timeout: float = TIMEOUT_SECONDS) -> float | None:
    """Send one message to a fresh channel and receive it; return milliseconds (None: no layer)."""
    from channels.layers import channel_layers

    if not getattr(settings, "CHANNEL_LAYERS", None):
        return None
    # A private instance: its connections are ours to close, whatever the process does with its own.
    layer: Any = channel_layers.make_backend("default")

    async def round_trip() -> float:
        try:
            channel = await layer.new_channel()
            started = time.perf_counter()
            await layer.send(channel, {"type": "opsportal.probe"})
            await layer.receive(channel)
            return (time.perf_counter() - started) * 1000
        finally:
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    async def bounded() -> float:
        return await asyncio.wait_for(round_trip(), timeout)

    return float(async_to_sync(bounded)())


@register
class BrokerCollector(Collector):
    name = "broker"
    scope = Scope.CLUSTER
    description = "broker and channel layer up, and the round trip of one message through each"

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        readings: list[Reading] = []
        try:
            readings += [self.gauge("broker_up", 1), self.gauge("broker_latency_ms", broker_round_trip())]
        except Exception as error:  # noqa: BLE001 - any failure of the broker means "down"
            logger.warning("broker collector: broker round trip failed: %s: %s", type(error).__name__, error)
            readings = [self.gauge("broker_up", 0)]
        try:
            latency = channel_layer_round_trip()
        except Exception as error:  # noqa: BLE001 - any failure of the layer means "down"
            logger.warning("broker collector: channel layer round trip failed: %s: %s", type(error).__name__, error)
            readings.append(self.gauge("channel_layer_up", 0))
        else:
            if latency is not None:
                readings += [self.gauge("channel_layer_up", 1), self.gauge("channel_layer_latency_ms", latency)]
        return readings
