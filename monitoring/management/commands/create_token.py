"""``python manage.py create_token NAME [--scope push]``: print a new API token, once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring import tokens
from monitoring.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token and print it alone on stdout. It is stored hashed: this is the only time it is shown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name saying who uses the token (e.g. nightly-etl).")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="SCOPE",
            help=f"What the token may do; repeat for several. Known: {', '.join(sorted(tokens.SCOPES))}. "
            "Default: push.",
        )
        parser.add_argument(
            "--expires-days", type=int, metavar="DAYS", help="Expire the token after this many days (default: never)."
        )
        parser.add_argument(
            "--rate-limit", type=int, metavar="N", help="Requests per minute allowed (0: no limit; default: 600)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes: list[str] = options["scopes"] or [ApiToken.Scope.PUSH]
        days: int | None = options["expires_days"]
        if days is not None and not 1 <= days <= 3660:
            raise CommandError("--expires-days must be between 1 and 3660")
        expires_at = timezone.now() + dt.timedelta(days=days) if days is not None else None
        try:
            token, plaintext = tokens.create(
                options["name"], scopes, expires_at=expires_at, rate_limit_per_minute=options["rate_limit"]
            )
        except tokens.TokenError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(
            f"Created token {token.name!r} (prefix {token.prefix}, scopes {', '.join(token.scopes)}). "
            "Store it now: it is not shown again."
        )
        self.stdout.write(plaintext)
