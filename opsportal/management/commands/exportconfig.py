"""``python manage.py exportconfig [FILE]``: write the provisioning YAML that ``loadconfig`` reads back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from opsportal import provisioning


class Command(BaseCommand):
    help = (
        "Export thresholds (and the other provisioned objects) as YAML, to FILE or, without FILE, alone on "
        "standard output. Secrets are placeholders unless --include-secrets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", metavar="FILE", help="Write here instead of standard output.")
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help="Export secrets in clear text (the file is then created readable by its owner only).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            text = provisioning.export_text(include_secrets=options["include_secrets"])
        except DatabaseError as error:
            raise CommandError(f"cannot read the configuration from the database ({error})", returncode=1) from None
        target = options["file"]
        if not target or target == "-":
            self.stdout.write(text, ending="")
            return
        try:
            _write_atomically(Path(target), text, private=options["include_secrets"])
        except OSError as error:
            raise CommandError(f"{target}: cannot write the file ({error.strerror or error})", returncode=1) from None
        self.stderr.write(f"wrote {target}")


def _write_atomically(path: Path, text: str, *, private: bool) -> None:
    """Replace ``path`` with ``text`` in one step, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
