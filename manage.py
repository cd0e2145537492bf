#!/usr/bin/env python
"""Django's command-line utility for OpsPortal."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    from django.core.management import execute_from_command_line

    from opsportal.env import EnvError, exit_on_env_error

    try:
        execute_from_command_line(sys.argv)
    except EnvError as error:
        exit_on_env_error(error)


if __name__ == "__main__":
    main()
