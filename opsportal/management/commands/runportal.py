"""``python manage.py runportal``: the whole portal with one command.

Migrate and seed run first, in a subprocess (the supervisor stays small); then three
children are supervised: the ASGI server (HTTP + WebSocket), a Celery worker and
Celery beat in its own process (not ``worker -B``, whose beat can die unnoticed).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from opsportal.celery import worker_queues
from opsportal.env import redact_url
from opsportal.supervisor import Child, Supervisor

logger = logging.getLogger("opsportal.runportal")


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError(value)
    return port


class Command(BaseCommand):
    help = "Run the portal: migrate, then supervise the ASGI server, a Celery worker and Celery beat."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address the web server binds (default 127.0.0.1).")
        parser.add_argument("--port", type=_port, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument(
            "--concurrency", type=int, default=4, help="Threads of the Celery worker (default 4; threads pool)."
        )

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        self.preflight(host, port)
        self.prepare()
        python = sys.executable
        level = settings.LOG_LEVEL.lower()
        children = [
            Child("web", [python, "-m", "daphne", "-b", host, "-p", str(port), "opsportal.asgi:application"]),
            Child(
                "worker",
                [
                    python, "-m", "celery", "-A", "opsportal", "worker",
                    "-P", "threads", "-c", str(max(1, concurrency)),
                    "-n", f"opsportal@{settings.HOSTNAME}",
                    "-Q", ",".join(worker_queues()),
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "-l", level,
                ],
            ),
            Child("beat", [python, "-m", "celery", "-A", "opsportal", "beat", "-l", level]),
        ]  # fmt: skip
        url = f"http://{'localhost' if host in {'0.0.0.0', '::'} else host}:{port}/"  # noqa: S104
        announced = False
        started = time.monotonic()

        def announce_when_ready() -> None:
            nonlocal announced
            if announced or not self._answers(url + "healthz"):
                return
            announced = True
            self.stdout.write(f"OpsPortal is running at {url}")
            self.stdout.flush()
            self.stderr.write(f"web answered after {time.monotonic() - started:.1f} s; press Ctrl-C to stop.")
            if not self._has_superuser():
                self.stderr.write(
                    "No admin account yet: create one with `python manage.py createsuperuser`, "
                    f"then log in at {url}admin/"
                )

        env = dict(os.environ, DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "opsportal.settings"))
        env["OPSPORTAL_DATA_DIR"] = str(settings.DATA_DIR)
        status = Supervisor(children).run(env, on_tick=announce_when_ready)
        if status:
            raise CommandError("a portal process died; all processes were stopped (see the log above)", returncode=1)
        self.stderr.write("OpsPortal stopped.")

    # --- steps -----------------------------------------------------------------
    def preflight(self, host: str, port: int) -> None:
        """Refuse to start anything if the port is taken or a service is unreachable."""
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = f"port {port} on {host} is in use; stop what uses it or pass --port"
                raise CommandError(message, returncode=2) from None
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}", returncode=2) from None
        try:
            connection.ensure_connection()
        except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable"
            db_name = settings.DATABASES["default"]["NAME"]
            where = redact_url(settings.DATABASE_URL) if settings.DATABASE_URL else db_name
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"DATABASE_URL: cannot connect to {where}: {first_line}", returncode=2) from None
        finally:
            connection.close()
        if settings.REDIS_URL:
            import redis

            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
                client.ping()
                client.close()
            except Exception as exc:  # noqa: BLE001
                raise CommandError(
                    f"REDIS_URL: cannot connect to {redact_url(settings.REDIS_URL)}: {type(exc).__name__}",
                    returncode=2,
                ) from None

    def prepare(self) -> None:
        """Migrate (which seeds defaults) in a subprocess, so this process stays small."""
        self.stderr.write("Preparing the database (migrate and seed)...")
        result = subprocess.run(
            [sys.executable, os.path.join(settings.BASE_DIR, "manage.py"), "migrate", "--noinput", "-v", "0"],
            stdout=sys.stderr,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            message = "migrate failed; nothing was started (see the error above)"
            raise CommandError(message, returncode=result.returncode)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _has_superuser() -> bool:
        from django.contrib.auth import get_user_model

        try:
            return bool(get_user_model().objects.filter(is_superuser=True).exists())
        finally:
            connection.close()
