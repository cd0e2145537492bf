"""The portal's database: up, ``SELECT 1`` latency, connections, size (PostgreSQL and SQLite)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import psutil
from django.db import DatabaseError, connections, transaction

from monitoring.collectors.base import Collector, Scope, register
from monitoring.storage import Reading

logger = logging.getLogger(__name__)

#: Milliseconds the size and connection queries may run on PostgreSQL.
STATEMENT_TIMEOUT_MS = 5000


def sqlite_connections(path: str) -> int:
    """Return how many open handles the portal's processes on this host hold on the SQLite file.

    Every SQLite connection opens the file once, so the handles are the connections.
    SQLite is a single-host setup, so this host's liveness rows name every process.
    """
    from monitoring.collectors.process import portal_pids

    target = os.path.realpath(path)
    pids = {os.getpid()} | {pid for rows in portal_pids().values() for pid, _ in rows}
    count = 0
    for pid in pids:
        try:
            count += sum(1 for f in psutil.Process(pid).open_files() if f.path == target)
        except psutil.Error:
            continue
    return count


def sqlite_size(path: str) -> int:
    """Return the bytes of the database file plus its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += Path(path + suffix).stat().st_size
        except OSError:
            continue
    return total


@register
class DatabaseCollector(Collector):
    name = "database"
    scope = Scope.CLUSTER
    description = "database up, SELECT 1 latency, active connections and size"

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        conn = connections["default"]
        try:
            conn.ensure_connection()
            with conn.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute("SELECT 1")
                cursor.fetchone()
                latency_ms = (time.perf_counter() - started) * 1000
        except DatabaseError as error:
            logger.warning("database collector: database unreachable: %s", type(error).__name__)
            return [self.gauge("db_up", 0)]
        readings = [self.gauge("db_up", 1), self.gauge("db_query_latency_ms", latency_ms)]
        try:
            if conn.vendor == "postgresql":
                readings += self._postgresql()
            elif conn.vendor == "sqlite":
                path = str(conn.settings_dict["NAME"])
                readings += [
                    self.gauge("db_connections_active", sqlite_connections(path)),
                    self.gauge("db_size_bytes", sqlite_size(path)),
                ]
        except DatabaseError as error:
            logger.warning("database collector: size or connections unavailable: %s", error)
        return readings

    def _postgresql(self) -> list[Reading]:
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(STATEMENT_TIMEOUT_MS)])
            # numbackends: sessions connected to this database, what max_connections limits.
            cursor.execute(
                "SELECT numbackends, pg_database_size(current_database()) "
                "FROM pg_stat_database WHERE datname = current_database()"
            )
            row = cursor.fetchone()
        if row is None:
            return []
        return [self.gauge("db_connections_active", row[0]), self.gauge("db_size_bytes", row[1])]
