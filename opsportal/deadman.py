"""Who watches the watcher: ping ``OPSPORTAL_DEADMAN_URL`` from a periodic task.

The ping is a task that beat schedules, the broker carries and a worker runs, so it
stops when any of the three stops — and the outside service (Healthchecks, Uptime
Kuma, a cron monitor) notices the silence and tells someone else.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0


def ping(url: str | None = None, *, timeout: float = TIMEOUT_SECONDS) -> str:
    """GET the dead-man URL once; return a short outcome (the URL itself is never logged)."""
    url = settings.DEADMAN_URL if url is None else url
    if not url:
        return "no OPSPORTAL_DEADMAN_URL set"
    where = urlsplit(url).hostname or "?"
    agent = {"User-Agent": f"OpsPortal deadman ({settings.HOSTNAME})"}
    request = urllib.request.Request(url, headers=agent)  # noqa: S310 - env-validated http(s) URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator-set http(s) URL
            status = response.status
    except urllib.error.HTTPError as error:
        logger.warning("dead-man ping to %s answered HTTP %s", where, error.code)
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        logger.warning("dead-man ping to %s failed: %s", where, type(error).__name__)
        return f"failed: {type(error).__name__}"
    return f"HTTP {status}"
