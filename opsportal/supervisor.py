"""A small process supervisor for ``runportal``.

It starts each child in its own session (so a terminal's Ctrl-C reaches only the
supervisor, which then stops the children in order) with a parent-death signal (so
a supervisor killed with SIGKILL does not leave orphans). If any child exits, the
others are stopped and the supervisor reports failure; SIGINT/SIGTERM stop
everything and report success.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            list(self.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,  # a command's result alone on stdout: children only log
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


class Supervisor:
    def __init__(self, children: Sequence[Child], *, stop_timeout: float = 10.0, tick: float = 0.2) -> None:
        self.children = list(children)
        self.stop_timeout = stop_timeout
        self.tick = tick
        self._stop_signal: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def run(self, env: dict[str, str], on_tick: Callable[[], None] | None = None) -> int:
        """Start the children and watch them; return the exit status for the command."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                child.start(env)
                logger.info("started %s (pid %s)", child.name, child.pid)
            failed: Child | None = None
            while self._stop_signal is None and failed is None:
                failed = next((c for c in self.children if c.poll() is not None), None)
                if failed is None:
                    if on_tick is not None:
                        on_tick()
                    time.sleep(self.tick)
            if failed is not None:
                logger.error(
                    "%s exited with status %s; stopping the other processes", failed.name, failed.poll()
                )
            else:
                logger.info("received %s; stopping", signal.Signals(self._stop_signal or signal.SIGTERM).name)
            self.stop_all()
            return 1 if failed is not None else 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop_all(self) -> None:
        """SIGTERM every child's process group, then SIGKILL whatever outlives the timeout."""
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and any(c.poll() is None for c in self.children):
            time.sleep(0.1)
        for child in self.children:
            if child.poll() is None:
                logger.warning("%s did not stop within %.0f s; killing it", child.name, self.stop_timeout)
                child.signal_group(signal.SIGKILL)
                if child.process is not None:
                    child.process.wait(timeout=5)
