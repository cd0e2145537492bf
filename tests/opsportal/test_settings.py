"""Settings come from the environment; a bad value stops start-up with one clear line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from opsportal.env import EnvError, env_bool, env_choice, env_hostname, env_int, env_list, env_url

REPO = Path(__file__).resolve().parents[2]

#: Variables the test run itself may carry (the plugin's data dir, the services tier's URLs).
_PORTAL_VARS = ("DATABASE_URL", "REDIS_URL", "EMAIL_URL", "DJANGO_SETTINGS_MODULE")


def portal_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Return a clean environment for a portal subprocess with its own data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSPORTAL_") and k not in _PORTAL_VARS}
    env["OPSPORTAL_DATA_DIR"] = str(data_dir)
    env.update(overrides)
    return env


def run_portal(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


_PRINT_SETTINGS = (
    "import json; from django.conf import settings; "
    "print(json.dumps({'SECRET_KEY': settings.SECRET_KEY, 'FERNET_KEYS': settings.FERNET_KEYS, "
    "'DEBUG': settings.DEBUG, 'ALLOWED_HOSTS': settings.ALLOWED_HOSTS}))"
)


def read_settings(env: dict[str, str]) -> dict[str, object]:
    """Start a fresh process on ``env`` and return a few of its settings."""
    result = run_portal(["-c", _PRINT_SETTINGS], {**env, "DJANGO_SETTINGS_MODULE": "opsportal.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- bad values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [
        ("OPSPORTAL_DEBUG", "maybe", "1/0/true/false/yes/no/on/off"),
        ("OPSPORTAL_HTTPS", "sometimes", "1/0/true/false/yes/no/on/off"),
        ("OPSPORTAL_LOG_FORMAT", "xml", "json|console"),
        ("OPSPORTAL_LOG_LEVEL", "loud", "debug|info|warning|error|critical"),
        ("DATABASE_URL", "mysql://x", "postgres"),
        ("REDIS_URL", "http://x", "redis"),
        ("EMAIL_URL", "ftp://mail.example.com", "smtp"),
        ("OPSPORTAL_DEADMAN_URL", "ftp://hc.example.com/ping", "http"),
        ("OPSPORTAL_FERNET_KEYS", "notakey", "Fernet keys"),
        ("OPSPORTAL_HOSTNAME", "bad host", "letters, digits"),
        ("OPSPORTAL_LOG_FILE_MAX_BYTES", "abc", "whole number"),
        ("OPSPORTAL_LOG_FILE_BACKUPS", "-1", "whole number >= 0"),
        ("OPSPORTAL_SECRET_KEY", "short", "at least 32 characters"),
    ],
)
def test_bad_value_stops_startup_with_one_line_naming_the_variable(tmp_path, name, value, accepts):
    result = run_portal(["manage.py", "check"], portal_env(tmp_path / "data", **{name: value}))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert accepts in lines[0]
    assert result.stdout == ""


def test_unwritable_data_folder_stops_startup_with_one_line(tmp_path):
    # Tests run as root, who may write anywhere: a folder below a regular file can never exist.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = run_portal(["manage.py", "check"], portal_env(blocker / "sub"))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPSPORTAL_DATA_DIR" in lines[0]
    assert "not writable" in lines[0]
    assert "Traceback" not in result.stderr


def test_unwritable_log_file_folder_stops_startup_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = run_portal(
        ["manage.py", "check"], portal_env(tmp_path / "data", OPSPORTAL_LOG_FILE=str(blocker / "portal.log"))
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPSPORTAL_LOG_FILE" in lines[0]


def test_empty_generated_key_file_stops_startup_with_one_line(tmp_path):
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "secret_key").write_text("")

    result = run_portal(["manage.py", "check"], portal_env(data))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPSPORTAL_SECRET_KEY" in lines[0]
    assert "secret_key is empty" in lines[0]


def test_corrupt_generated_fernet_key_file_is_named_in_the_error(tmp_path):
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "fernet_keys").write_text("not-a-fernet-key\n")

    result = run_portal(["manage.py", "check"], portal_env(data))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPSPORTAL_FERNET_KEYS" in lines[0]
    assert str(data / "secrets" / "fernet_keys") in lines[0]


def test_asgi_server_refuses_bad_value_with_one_line(tmp_path):
    """``daphne opsportal.asgi:application`` imports this module first."""
    result = run_portal(["-c", "import opsportal.asgi"], portal_env(tmp_path / "data", OPSPORTAL_DEBUG="maybe"))

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "opsportal: configuration error: OPSPORTAL_DEBUG: expected one of 1/0/true/false/yes/no/on/off, got 'maybe'"
    ]


# --- typed readers ----------------------------------------------------------------


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " yes "])
def test_env_bool_accepts_true_words_in_any_case(word):
    assert env_bool("FLAG", False, environ={"FLAG": word}) is True


@pytest.mark.parametrize("word", ["0", "false", "FALSE", "no", "No", "off", "OFF"])
def test_env_bool_accepts_false_words_in_any_case(word):
    assert env_bool("FLAG", True, environ={"FLAG": word}) is False


@pytest.mark.parametrize("word", ["maybe", "2", "y", "n", "enabled", "truee", "-1"])
def test_env_bool_rejects_anything_else_instead_of_reading_false(word):
    with pytest.raises(EnvError) as error:
        env_bool("FLAG", False, environ={"FLAG": word})
    assert str(error.value).startswith("FLAG: ")
    assert "1/0/true/false/yes/no/on/off" in str(error.value)


@pytest.mark.parametrize("environ", [{}, {"FLAG": ""}, {"FLAG": "   "}])
def test_env_bool_unset_or_blank_is_the_default(environ):
    assert env_bool("FLAG", False, environ=environ) is False
    assert env_bool("FLAG", True, environ=environ) is True


def test_env_list_is_comma_separated_with_blanks_dropped():
    assert env_list("HOSTS", environ={"HOSTS": "a.example, b.example,,c.example "}) == [
        "a.example",
        "b.example",
        "c.example",
    ]
    assert env_list("HOSTS", ["localhost"], environ={}) == ["localhost"]
    assert env_list("HOSTS", environ={"HOSTS": "one"}) == ["one"]


def test_env_int_names_bounds():
    assert env_int("N", 5, environ={"N": "7"}) == 7
    assert env_int("N", 5, environ={}) == 5
    with pytest.raises(EnvError, match="N: expected a whole number >= 10"):
        env_int("N", 5, minimum=10, environ={"N": "3"})
    with pytest.raises(EnvError, match="N: expected a whole number <= 9"):
        env_int("N", 5, maximum=9, environ={"N": "30"})


def test_env_choice_is_case_insensitive_and_names_the_choices():
    assert env_choice("FMT", ("json", "console"), "console", environ={"FMT": "JSON"}) == "json"
    with pytest.raises(EnvError, match=r"FMT: expected one of json\|console"):
        env_choice("FMT", ("json", "console"), "console", environ={"FMT": "xml"})


def test_env_url_checks_scheme_and_host():
    assert env_url("U", ("redis",), environ={"U": "redis://cache:6379/0"}) == "redis://cache:6379/0"
    with pytest.raises(EnvError, match="U: expected a URL with scheme redis"):
        env_url("U", ("redis",), environ={"U": "http://cache"})
    with pytest.raises(EnvError, match="U: expected a URL with a host name"):
        env_url("U", ("redis",), environ={"U": "redis://"})
    with pytest.raises(EnvError, match="U: expected a URL"):
        env_url("U", ("redis",), environ={"U": "redis://cache:port/0"})


def test_env_hostname_refuses_what_cannot_name_a_queue():
    assert env_hostname("H", "web-1", environ={}) == "web-1"
    for bad in ("bad host", "-leading", "x" * 64, "a/b"):
        with pytest.raises(EnvError):
            env_hostname("H", "web-1", environ={"H": bad})


# --- what a started process ends up with ---------------------------------------------


def test_debug_is_off_unless_asked_and_lists_are_comma_separated(tmp_path):
    unset = read_settings(portal_env(tmp_path / "data"))
    asked = read_settings(
        portal_env(tmp_path / "data", OPSPORTAL_DEBUG="Yes", OPSPORTAL_ALLOWED_HOSTS="ops.example.com, status.example")
    )

    assert unset["DEBUG"] is False
    assert asked["DEBUG"] is True
    assert asked["ALLOWED_HOSTS"] == ["ops.example.com", "status.example"]


def test_generated_keys_are_private_and_shared_by_every_process(tmp_path):
    data = tmp_path / "data"
    env = portal_env(data)
    # Several processes start at once on an empty folder: exactly one key must win.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PRINT_SETTINGS],
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": "opsportal.settings"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    later = read_settings(env)

    secret_file = data / "secrets" / "secret_key"
    fernet_file = data / "secrets" / "fernet_keys"
    for path in (secret_file, fernet_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secrets").stat().st_mode) & 0o077 == 0
    secret = secret_file.read_text().strip()
    fernet = fernet_file.read_text().strip()
    assert len(secret) >= 50
    Fernet(fernet)  # a usable key
    for seen in [*outputs, later]:
        assert seen["SECRET_KEY"] == secret
        assert seen["FERNET_KEYS"] == [fernet]
    assert not [p.name for p in (data / "secrets").iterdir() if p.name not in {"secret_key", "fernet_keys"}]


def test_explicit_keys_are_used_and_nothing_is_generated(tmp_path):
    data = tmp_path / "data"
    key = Fernet.generate_key().decode()
    other = Fernet.generate_key().decode()
    secret = "s" * 20 + "-explicit-secret-key-0123456789-abcdef"

    seen = read_settings(portal_env(data, OPSPORTAL_SECRET_KEY=secret, OPSPORTAL_FERNET_KEYS=f"{key}, {other}"))

    assert seen["SECRET_KEY"] == secret
    assert seen["FERNET_KEYS"] == [key, other]
    assert not (data / "secrets").exists()


def test_production_values_pass_the_deploy_check(tmp_path):
    env = portal_env(
        tmp_path / "data",
        OPSPORTAL_HTTPS="1",
        OPSPORTAL_SECRET_KEY="k7Qp-2xZr9Lm4Vt8Hc1Nb6Yd3Fs0Jw5Ge7Ua2Ro9Ti4Pe1Ky8Md6Wq3Zx0Cv",
        OPSPORTAL_FERNET_KEYS=Fernet.generate_key().decode(),
        OPSPORTAL_ALLOWED_HOSTS="ops.example.com",
        OPSPORTAL_DEBUG="0",
    )

    result = run_portal(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr
