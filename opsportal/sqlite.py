"""SQLite in WAL mode, set on every new connection with a retry.

The journal mode is stored in the database file, so once a file is in WAL mode the
``PRAGMA journal_mode=WAL`` each connection runs is a no-op. Switching a brand-new
file needs an exclusive lock that SQLite does not wait for: several threads or
processes opening it at once (readiness checks, a worker and beat starting together)
would fail with "database is locked". Hence not an ``init_command`` but a
``connection_created`` receiver that retries.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

ATTEMPTS = 50


def set_wal(execute: Any, *, attempts: int = ATTEMPTS) -> None:
    """Run ``PRAGMA journal_mode=WAL`` through ``execute``, retrying while the file is locked."""
    for attempt in range(attempts):
        try:
            execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: WAL for every SQLite connection Django opens."""
    if connection.vendor == "sqlite":
        set_wal(connection.connection.execute)
