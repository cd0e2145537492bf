"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu's stock ``_put`` writes the message file in place, so a reader can pick up a
half-written file; one torn file then makes the worker exit (kombu#1551). Here:

* a message is written to a temp file and ``os.replace``d into the queue folder,
  so readers only ever see whole files;
* a reader claims a file by renaming it into its own folder (atomic on one
  filesystem), and a file it cannot decode is moved aside to ``bad/`` and skipped;
* reply and broadcast messages of remote control (``*.pidbox``) that nobody
  collected are pruned after a while, so a dead worker's mailbox does not grow.

The folders live under ``<data dir>/broker/``. Messages carry ids, never payloads.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

#: Seconds after which an uncollected remote-control message is pruned.
PIDBOX_MAX_AGE = 120.0
#: Seconds between two prune passes of one process.
PRUNE_EVERY = 30.0
#: Longest single wait for a message (see Transport.drain_events).
MAX_DRAIN_SECONDS = 0.5


class Channel(filesystem.Channel):
    _last_prune = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        folders = (self.data_folder_in, self.data_folder_out, self.control_folder, self.tmp_folder, self.bad_folder)
        for folder in folders:
            Path(folder).mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return Path(self.data_folder_in).parent

    @property
    def tmp_folder(self) -> Path:
        return self.root / "tmp"

    @property
    def bad_folder(self) -> Path:
        return self.root / "bad"

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Nanoseconds of the system-wide monotonic clock: two messages put within the
        # same millisecond still sort (and so are read) in the order they were put.
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        tmp = self.tmp_folder / f"{name}.part"
        try:
            with open(tmp, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(tmp, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add a message to queue {queue!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        self._maybe_prune()
        suffix = f".{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != suffix[1:]:
                continue
            claimed = self.tmp_folder / f"{filename}.{os.getpid()}.claimed"
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except OSError:
                continue  # another consumer took it first
            try:
                payload = claimed.read_bytes()
                message = loads(bytes_to_str(payload))
            except (OSError, ValueError, UnicodeDecodeError):
                logger.warning("broker: skipped an undecodable message file %s", filename)
                try:
                    os.replace(claimed, self.bad_folder / filename)
                except OSError:
                    claimed.unlink(missing_ok=True)
                continue
            claimed.unlink(missing_ok=True)
            return message
        raise Empty()

    def _maybe_prune(self) -> None:
        now = time.time()
        if now - Channel._last_prune < PRUNE_EVERY:
            return
        Channel._last_prune = now
        prune_orphans(Path(self.data_folder_in), self.tmp_folder, now=now)


def prune_orphans(queue_folder: Path, tmp_folder: Path, *, now: float | None = None) -> int:
    """Delete uncollected remote-control messages and abandoned temp files; return how many."""
    now = time.time() if now is None else now
    removed = 0
    candidates = [(p, PIDBOX_MAX_AGE) for p in queue_folder.glob("*.pidbox.msg")]
    candidates += [(p, 3600.0) for p in tmp_folder.glob("*")]
    for path, max_age in candidates:
        try:
            if now - path.stat().st_mtime > max_age:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


class Transport(filesystem.Transport):
    Channel = Channel

    #: Declared exchanges and bindings, one record per broker folder. kombu keeps one
    #: per process for every filesystem connection, so a second connection to another
    #: folder believed its queues already bound and its messages went nowhere.
    _states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        folder = os.path.abspath(client.transport_options.get("control_folder", "control"))
        self.state = self._states.setdefault(folder, virtual.BrokerState())

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Wait up to ``timeout`` for a message, in slices that notice a worker's shutdown.

        Celery's synchronous loop drains with a 2 s timeout and runs one more drain
        after a shutdown request, so a warm shutdown took ~4 s. Waiting in slices of
        ``MAX_DRAIN_SECONDS`` and giving up once the worker is stopping makes SIGTERM
        take effect within about a second, while every other caller (a control-plane
        ping collecting replies, for one) still waits its whole ``timeout``.
        """
        if timeout is None or timeout <= 0:
            return super().drain_events(connection, timeout=timeout, **kwargs)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                slice_ = max(0.01, min(remaining, MAX_DRAIN_SECONDS))
                return super().drain_events(connection, timeout=slice_, **kwargs)
            except TimeoutError:  # what kombu raises as socket.timeout
                if deadline - time.monotonic() <= 0 or _worker_stopping():
                    raise


def _worker_stopping() -> bool:
    """Return True once this process is a Celery worker asked to shut down."""
    from celery.worker import state

    return state.should_stop is not None or state.should_terminate is not None
