"""A brand-new SQLite file opened by many connections at once must not fail with "locked"."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import connection

from opsportal.sqlite import set_wal


def test_many_first_connections_to_a_new_database_all_succeed_in_wal_mode(tmp_path):
    failures: list[str] = []
    for trial in range(10):
        path = str(tmp_path / f"db{trial}.sqlite3")

        def open_it(path: str = path) -> None:
            try:
                conn = sqlite3.connect(path, timeout=20)
                set_wal(conn.execute)
                conn.close()
            except sqlite3.Error as error:
                failures.append(repr(error))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert failures == []


def test_django_connections_use_wal(db):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no journal mode")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
