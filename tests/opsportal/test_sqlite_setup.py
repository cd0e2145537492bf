"""A brand-new SQLite file opened by many threads at once must not fail with "locked"."""

from __future__ import annotations

import sqlite3
import threading

from opsportal.sqlite import ensure_wal


def test_many_first_connections_to_a_new_database_all_succeed_in_wal_mode(tmp_path):
    failures: list[str] = []
    for trial in range(10):
        path = str(tmp_path / f"db{trial}.sqlite3")

        def open_it(path: str = path) -> None:
            try:
                ensure_wal(path)
            except sqlite3.Error as error:
                failures.append(repr(error))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert failures == []
