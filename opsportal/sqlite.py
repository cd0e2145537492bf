"""SQLite set-up that must happen once per database file, not once per connection."""

from __future__ import annotations

import sqlite3
import time


def ensure_wal(path: str, *, attempts: int = 50) -> None:
    """Switch the database file at ``path`` to WAL journaling (creating the file if needed).

    The mode is stored in the file, so later ``PRAGMA journal_mode=WAL`` statements in
    each connection's init command are no-ops. Switching needs an exclusive lock that
    SQLite does not wait for: several threads or processes opening a brand-new file at
    once would otherwise fail with "database is locked". Retried here, once, early.
    """
    for attempt in range(attempts):
        try:
            with sqlite3.connect(path, timeout=20) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.close()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
