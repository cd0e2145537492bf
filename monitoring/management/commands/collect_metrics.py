"""``python manage.py collect_metrics``: run every collector once here and print what it read."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import collectors
from monitoring.storage import Reading


def format_labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def format_value(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


class Command(BaseCommand):
    help = (
        "Run every collector once in this process, record the readings and print them as a table "
        "(metric, labels, value) on stdout. Progress goes to stderr. Probes every enabled target, due or not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--collector",
            action="append",
            dest="names",
            choices=collectors.names(),
            metavar="NAME",
            help=f"Run only this collector; repeat for several. Known: {', '.join(collectors.names())}.",
        )
        parser.add_argument(
            "--no-store", action="store_true", help="Print the readings without recording them (targets still update)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"] or collectors.names()
        rows: list[tuple[str, str, str]] = []
        failed = []
        for name in names:
            try:
                result = collectors.run(name, store=not options["no_store"], only_due=False)
            except Exception as error:  # noqa: BLE001 - report and go on with the other collectors
                failed.append(name)
                self.stderr.write(f"{name}: failed: {type(error).__name__}: {error}")
                continue
            self.stderr.write(result.summary())
            rows += [self._row(reading) for reading in result.readings]
        self._table(rows)
        if failed:
            raise CommandError(f"{len(failed)} collector(s) failed: {', '.join(failed)}")

    @staticmethod
    def _row(reading: Reading) -> tuple[str, str, str]:
        labels = {"host": settings.HOSTNAME, **reading.labels}
        return reading.name, format_labels(labels), format_value(reading.value)

    def _table(self, rows: list[tuple[str, str, str]]) -> None:
        header = ("metric", "labels", "value")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            self.stdout.write(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}".rstrip())
