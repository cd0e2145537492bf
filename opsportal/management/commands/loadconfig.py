"""``python manage.py loadconfig FILE.yaml``: provision thresholds (and later sections) from YAML."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from opsportal import provisioning


class Command(BaseCommand):
    help = (
        "Load a provisioning YAML file. The whole file is validated first (every error is printed with its "
        "path, e.g. thresholds[1].critical); only a valid file is applied, in one transaction. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE.yaml", help="The file to load; - reads standard input.")
        parser.add_argument(
            "--check", action="store_true", help="Only validate the file; change nothing, print nothing on success."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            document = provisioning.parse(provisioning.read_file(path, stdin=sys.stdin))
            if options["check"]:
                errors, _ = provisioning.validate(document)
                if errors:
                    raise provisioning.ConfigError(errors)
                self.stderr.write(f"{path}: valid")
                return
            result = provisioning.load(document)
        except provisioning.ConfigError as error:
            for line in error.errors:
                self.stderr.write(line)
            count = len(error.errors)
            raise CommandError(
                f"{path}: {count} error{'s' if count != 1 else ''}; nothing was changed", returncode=1
            ) from None
        for line in result.warnings:
            self.stderr.write(f"warning: {line}")
        for line in result.summary_lines():
            self.stdout.write(line)
