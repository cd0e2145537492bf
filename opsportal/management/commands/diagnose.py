"""``python manage.py diagnose [--json]``: the portal's self-check (see opsportal.diagnosis)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from opsportal import diagnosis


class Command(BaseCommand):
    help = (
        "Check the database, broker, workers, beat, cache, channel layer and disk; print each finding "
        "with a recommended action. Exits 1 when a component is critical."
    )
    # Diagnose must run when the installation is broken, so no system checks first.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"status", "components": {name: {"status", "issues", "recommendations"}}}.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = diagnosis.diagnose()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=False))
        else:
            self.stdout.write(diagnosis.render_text(report))
        if report.critical:
            raise CommandError(f"critical: {', '.join(report.critical)}", returncode=1)
