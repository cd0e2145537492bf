"""OpsPortal settings, read from the environment (see README "Configuration").

Every variable goes through a typed reader in :mod:`opsportal.env`; a bad value
raises ``EnvError`` whose one-line message names the variable and what it accepts.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import environ

from opsportal.env import (
    LOG_LEVELS,
    EnvError,
    env_bool,
    env_choice,
    env_hostname,
    env_int,
    env_list,
    env_str,
    env_url,
)
from opsportal.keyfiles import new_fernet_key, new_secret_key, read_or_create

BASE_DIR = Path(__file__).resolve().parent.parent

# --- data folder -------------------------------------------------------------
DATA_DIR = Path(env_str("OPSPORTAL_DATA_DIR", str(BASE_DIR / "var"))).expanduser().resolve()
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _probe = DATA_DIR / f".write-test-{os.getpid()}"
    _probe.write_text("ok")
    _probe.unlink()
except OSError as exc:
    raise EnvError("OPSPORTAL_DATA_DIR", f"folder {str(DATA_DIR)!r} is not writable ({exc.strerror})") from None
SECRETS_DIR = DATA_DIR / "secrets"


def _generated_key(variable: str, filename: str, make: Callable[[], str]) -> str:
    """Return the key kept in ``SECRETS_DIR/filename`` for an unset ``variable``."""
    try:
        return read_or_create(SECRETS_DIR, filename, make)
    except (OSError, UnicodeError) as exc:
        raise EnvError(variable, f"unset, and the generated key file cannot be used: {exc}") from None


# --- core ---------------------------------------------------------------------
DEBUG = env_bool("OPSPORTAL_DEBUG", False)
HTTPS = env_bool("OPSPORTAL_HTTPS", False)
SECRET_KEY = env_str("OPSPORTAL_SECRET_KEY") or _generated_key("OPSPORTAL_SECRET_KEY", "secret_key", new_secret_key)
if len(SECRET_KEY) < 32:
    raise EnvError("OPSPORTAL_SECRET_KEY", "expected at least 32 characters")
FERNET_KEYS = env_list("OPSPORTAL_FERNET_KEYS") or [
    _generated_key("OPSPORTAL_FERNET_KEYS", "fernet_keys", new_fernet_key)
]
try:
    from cryptography.fernet import Fernet

    for _key in FERNET_KEYS:
        Fernet(_key)
except ValueError:
    _where = "" if env_list("OPSPORTAL_FERNET_KEYS") else f" (read from {str(SECRETS_DIR / 'fernet_keys')!r})"
    raise EnvError(
        "OPSPORTAL_FERNET_KEYS",
        f"expected comma-separated Fernet keys (32 url-safe base64-encoded bytes each){_where}",
    ) from None

ALLOWED_HOSTS = env_list("OPSPORTAL_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
HOSTNAME = env_hostname("OPSPORTAL_HOSTNAME", (socket.gethostname() or "localhost").split(".")[0][:63])
METRICS_TOKEN = env_str("OPSPORTAL_METRICS_TOKEN")
DEADMAN_URL = env_url("OPSPORTAL_DEADMAN_URL", ("http", "https"))
#: Where operators reach the portal; makes links in notifications absolute.
OPSPORTAL_BASE_URL = env_url("OPSPORTAL_BASE_URL", ("http", "https"))
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "pgsql", "sqlite"))
EMAIL_URL = env_url(
    "EMAIL_URL", ("smtp", "smtps", "smtp+tls", "smtp+ssl", "consolemail", "filemail", "memorymail", "dummymail")
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "django_htmx",
    "axes",
    "opsportal",
    "monitoring",
    "alerts",
    "backups",
    "audit",
]

MIDDLEWARE = [
    # First, so every response (static files, HTTPS redirects too) carries the id.
    "opsportal.middleware.RequestIdMiddleware",
    "monitoring.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "opsportal.middleware.StaffOnlyMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "opsportal.urls"
ASGI_APPLICATION = "opsportal.asgi.application"
WSGI_APPLICATION = None
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "status"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------
if DATABASE_URL and not DATABASE_URL.startswith("sqlite"):
    try:
        _db = environ.Env.db_url_config(DATABASE_URL)
    except Exception:  # noqa: BLE001 - django-environ raises several kinds
        raise EnvError("DATABASE_URL", "expected postgresql://user@host:port/name or sqlite:////path") from None
    _db["ENGINE"] = "django.db.backends.postgresql"
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # PostgreSQL's JIT spends up to a second compiling the rollup and range queries
    # that run in tens of milliseconds; the portal's queries never profit from it.
    _db["OPTIONS"].setdefault("options", "-c jit=off")
    _db["CONN_MAX_AGE"] = 0
    _db["CONN_HEALTH_CHECKS"] = True
    if not _db.get("NAME"):
        raise EnvError("DATABASE_URL", "expected a database name in the path (postgresql://host/name)")
else:
    _sqlite_path = DATABASE_URL.removeprefix("sqlite:///") if DATABASE_URL else str(DATA_DIR / "opsportal.sqlite3")
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _sqlite_path,
        "OPTIONS": {
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait on
            # the busy timeout instead of failing with "database is locked" mid-way.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            # WAL is set by opsportal.sqlite on each new connection (with a retry).
            "init_command": "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        },
        # A file, not the in-memory shared cache, which locks whole tables.
        "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache, channel layer, broker -------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "opsportal",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "opsportal"},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = REDIS_URL or "filesystem://localhost/"
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
    }
else:
    CELERY_BROKER_TRANSPORT = "opsportal.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Tasks are kicks: the database row is the truth and periodic sweeps re-kick work
# that is due, so a message lost with a dying worker loses nothing. acks_late is
# therefore off by default and turned on per task where a redelivery is cheaper
# than waiting for the next sweep.
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "opsportal.beat:DatabaseScheduler"
# Empty on purpose: the database scheduler would overwrite operators' edits on every
# beat start. Default periodic tasks are seeded by a post_migrate handler instead.
CELERY_BEAT_SCHEDULE: dict[str, object] = {}
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
DJANGO_CELERY_BEAT_TZ_AWARE = True

# Cardinality guard: new series beyond this many are refused (existing ones keep recording).
MONITORING_MAX_SERIES = env_int("OPSPORTAL_MAX_SERIES", 20_000, minimum=100)

# How often beat and workers write their liveness row, and when a row is stale.
LIVENESS_INTERVAL_SECONDS = 5
LIVENESS_STALE_SECONDS = 30

# --- email ------------------------------------------------------------------------
if EMAIL_URL:
    try:
        globals().update(environ.Env.email_url_config(EMAIL_URL))
    except Exception:  # noqa: BLE001
        raise EnvError("EMAIL_URL", "expected smtp://user:password@host:port (or smtps://, consolemail://)") from None
    EMAIL_TIMEOUT = 10
else:
    # No mail server configured: messages are written to files an operator can read.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "mail")
    EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("OPSPORTAL_FROM_EMAIL", "opsportal@localhost")

# --- i18n, static ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app and project folders, so `runportal` needs no
# collectstatic step; production may still run collectstatic into STATIC_ROOT.
WHITENOISE_USE_FINDERS = True

# --- security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = [f"https://{h}" for h in ALLOWED_HOSTS if h not in {"*", ""} and not h.startswith(".")]

AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- logging ----------------------------------------------------------------------
LOG_FORMAT = env_choice("OPSPORTAL_LOG_FORMAT", ("json", "console"), "console")
LOG_LEVEL = env_choice("OPSPORTAL_LOG_LEVEL", LOG_LEVELS, "info").upper()
LOG_FILE = env_str("OPSPORTAL_LOG_FILE")
LOG_FILE_MAX_BYTES = env_int("OPSPORTAL_LOG_FILE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
LOG_FILE_BACKUPS = env_int("OPSPORTAL_LOG_FILE_BACKUPS", 5, minimum=0, maximum=1000)
if LOG_FILE:
    _log_parent = Path(LOG_FILE).expanduser().resolve().parent
    if not _log_parent.is_dir() or not os.access(_log_parent, os.W_OK):
        raise EnvError("OPSPORTAL_LOG_FILE", f"folder {str(_log_parent)!r} does not exist or is not writable")

_handlers: dict[str, dict[str, object]] = {
    "stderr": {
        "class": "logging.StreamHandler",
        "stream": sys.stderr,
        "formatter": LOG_FORMAT,
        "filters": ["context"],
    }
}
if LOG_FILE:
    _handlers["file"] = {
        "class": "logging.handlers.RotatingFileHandler",
        "filename": LOG_FILE,
        "maxBytes": LOG_FILE_MAX_BYTES,
        "backupCount": LOG_FILE_BACKUPS,
        "formatter": LOG_FORMAT,
        "filters": ["context"],
        "encoding": "utf-8",
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "opsportal.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
        "console": {
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(context)s] %(message)s",
        },
    },
    "handlers": _handlers,
    "root": {"handlers": list(_handlers), "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "DEBUG"},
        "axes": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "DEBUG"},
    },
}
