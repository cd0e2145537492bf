"""Keys generated once into ``<data dir>/secrets/`` when the environment gives none.

Every process sharing the data folder (web, worker, beat, commands) must end up with
the same key, so the file is created with ``O_EXCL``: the first process writes it,
the others read what it wrote.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)


def new_fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def read_or_create(folder: Path, name: str, make: Callable[[], str]) -> str:
    """Return the key stored in ``folder/name``, creating it (mode 0600) if absent."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    for _ in range(50):
        try:
            value = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            value = ""
        if value:
            return value
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(make() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() fails if another process won the race; its key is then the one.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        time.sleep(0.01)
    # link() publishes a complete file, so an empty one is not a race in progress.
    raise OSError(f"{path} is empty; remove it to generate a new key")
