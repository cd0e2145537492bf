"""Optional rotating file output, in the format chosen by OPSPORTAL_LOG_FORMAT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_logging(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(OPSPORTAL_DATA_DIR=str(tmp_path / "data"), **env)
    code = "import logging\nfor i in range(400): logging.getLogger('opsportal.test').warning('line %d ' + 'x' * 40, i)"
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_log_file_rotates_at_the_configured_size_and_keeps_the_configured_count(tmp_path):
    log_file = tmp_path / "portal.log"
    result = run_logging(
        tmp_path,
        OPSPORTAL_LOG_FILE=str(log_file),
        OPSPORTAL_LOG_FILE_MAX_BYTES="4096",
        OPSPORTAL_LOG_FILE_BACKUPS="2",
        OPSPORTAL_LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.glob("portal.log*"))
    assert files == ["portal.log", "portal.log.1", "portal.log.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.glob("portal.log*"))
    last = json.loads(log_file.read_text().strip().splitlines()[-1])
    assert last["message"].startswith("line 399 ") and last["level"] == "WARNING"
    # The file is in addition to stderr, not instead of it.
    assert "line 399" in result.stderr


def test_without_a_log_file_nothing_is_written_to_disk(tmp_path):
    result = run_logging(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "line 0" in result.stderr
    assert not list(tmp_path.glob("*.log*"))
