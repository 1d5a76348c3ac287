"""Herald settings: one module, driven by the environment.

Embedded default (nothing set): SQLite under var/, a secret key generated once
and kept under var/, tasks run in-process. Production: set DATABASE_URL,
SECRET_KEY, ALLOWED_HOSTS and CELERY_BROKER_URL (see docs/operations.md).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HERALD_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
# HERALD_PRODUCTION=1 turns every "convenient default" into a hard requirement.
PRODUCTION = env_bool("HERALD_PRODUCTION")


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when HERALD_PRODUCTION=1.")
    # Development: generate once and keep it, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# The key of the keyed hashes that privacy suppression lists and audits keep instead of
# identifiers (customers.privacy.hashing); never rotate it: rotation forgets the list.
HERALD_PRIVACY_KEY = os.environ.get("HERALD_PRIVACY_KEY", "")
# How long a privacy export can be downloaded before the document is deleted.
HERALD_PRIVACY_EXPORT_DAYS = int(os.environ.get("HERALD_PRIVACY_EXPORT_DAYS", "7"))
# How long a customer merge can be undone (customers.identity); older merge records are
# pruned by the periodic job `identity.merges_prune`.
HERALD_MERGE_UNDO_DAYS = int(os.environ.get("HERALD_MERGE_UNDO_DAYS", "30"))
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver"
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "project.apps.HeraldAdminConfig",  # django.contrib.admin with the Herald site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "project.audit",
    "project.idempotency",
    "customers",
    "events_app",
    "automation",
]

MIDDLEWARE = [
    # First: every log line of the request, other middleware's included, names it.
    "project.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # project.browser_only: the stock middleware, skipped on the API's paths.
    "project.browser_only.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "project.browser_only.CsrfViewMiddleware",
    "project.browser_only.AuthenticationMiddleware",
    "project.browser_only.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.csp.PageCSPMiddleware",
    "project.audit.middleware.AuditActorMiddleware",
    "project.api.ratelimit.RateLimitHeadersMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

if os.environ.get("HERALD_READ_REPLICA_URL"):
    # Marks admin change lists and API list GETs as reads the replica may serve.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("axes.middleware.AxesMiddleware"),
        "project.dbrouters.ReplicaReadsMiddleware",
    )

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

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

# Database: DATABASE_URL=postgres://user@host:5432/name, or unset for the
# embedded SQLite file. CONN_MAX_AGE keeps connections between requests.
_default_sqlite = f"sqlite:///{VAR_DIR / 'herald.sqlite3'}"
if PRODUCTION and not os.environ.get("DATABASE_URL"):
    raise ImproperlyConfigured("DATABASE_URL must be set when HERALD_PRODUCTION=1.")
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", _default_sqlite),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets the in-process worker thread read while a request writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if IS_POSTGRES:
    # The stock backend plus a health check that polls the socket instead of
    # sending SELECT 1 on every request (project/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "project.postgresql"
    # Django turns psycopg's prepared statements off (for transaction-mode
    # poolers such as old PgBouncer). Its own queries use client-side binding and
    # are never prepared either way; only the ingestion statements that run on a
    # server-binding psycopg cursor (events_app/ingest_pg.py, the reference read
    # in events_app/ingestion.py) are, after this many uses on a connection:
    # planning them was a third of a single POST's database CPU. Set
    # DB_PREPARE_THRESHOLD=off behind a pooler that cannot keep prepared statements.
    _prepare = os.environ.get("DB_PREPARE_THRESHOLD", "5")
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if _prepare.lower() == "off" else int(_prepare)
    )
    # Django's psycopg connection pool (needs the psycopg_pool package): each process
    # keeps at most this many connections and a request waits up to the timeout for a
    # free one, then answers 503 (project/api/overload.py). A pool replaces persistent
    # connections (CONN_MAX_AGE must be 0). 0 = no pool.
    HERALD_DB_POOL_MAX_SIZE = int(os.environ.get("HERALD_DB_POOL_MAX_SIZE", "0"))
    if HERALD_DB_POOL_MAX_SIZE > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": min(
                int(os.environ.get("HERALD_DB_POOL_MIN_SIZE", "1")), HERALD_DB_POOL_MAX_SIZE
            ),
            "max_size": HERALD_DB_POOL_MAX_SIZE,
            "timeout": float(os.environ.get("HERALD_DB_POOL_TIMEOUT", "5")),
        }

# Optional read replica (docs/operations.md, "Topology"): a PostgreSQL streaming replica
# of DATABASE_URL. Admin change lists and API list GETs read from it; writes, reads in a
# transaction, reads after a write and the access tables stay on the primary
# (project/dbrouters.py). Same options as the primary; in tests, a mirror of it.
HERALD_READ_REPLICA_URL = os.environ.get("HERALD_READ_REPLICA_URL", "")
if HERALD_READ_REPLICA_URL:
    if not IS_POSTGRES:
        raise ImproperlyConfigured("HERALD_READ_REPLICA_URL needs DATABASE_URL on PostgreSQL.")
    _replica = dj_database_url.parse(HERALD_READ_REPLICA_URL)
    DATABASES["replica"] = {
        **DATABASES["default"],
        "NAME": _replica.get("NAME", ""),
        "USER": _replica.get("USER", ""),
        "PASSWORD": _replica.get("PASSWORD", ""),
        "HOST": _replica.get("HOST", ""),
        "PORT": _replica.get("PORT", ""),
        "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
        "TEST": {"MIRROR": "default"},
    }
    DATABASE_ROUTERS = ["project.dbrouters.ReadReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out login before any password is checked.
# Only the admin's logins go through Django's authentication; API keys do not
# (events_app.api.auth), so the lockout never touches the API.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Herald's own admin, docs and front-page styles (the apps keep theirs in <app>/static/).
STATICFILES_DIRS = [BASE_DIR / "project" / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without collectstatic (embedded default) whitenoise serves from the finders.
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Security: strict in production, relaxed for the embedded default on http://127.0.0.1.
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Load balancers health-check and Prometheus scrapes over plain HTTP too.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Request body cap for the whole app; the batch endpoint enforces its own
# smaller limit from the bytes on the wire (see events_app.api).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# How long a worker process trusts an API key it has looked up (seconds; 0 = ask
# the database on every request). Bounds how long a revoked key keeps working in
# the other processes (revoking drops it at once in its own), so it may not exceed
# one second. See docs/operations.md, "API keys".
API_KEY_CACHE_SECONDS = float(os.environ.get("HERALD_API_KEY_CACHE_SECONDS", "1"))
if not 0 <= API_KEY_CACHE_SECONDS <= 1:
    raise ImproperlyConfigured(
        "HERALD_API_KEY_CACHE_SECONDS must be between 0 and 1: a revoked key must stop "
        "working in every process within a second."
    )

# Rate limits (docs/operations.md, "Rate limits"): requests per API client per window,
# ingestion (POST /events, /events/batch) and everything else counted apart; an API
# client's own budgets (admin) override these. Failed authentications are counted per
# source address. 0 turns a limit off.
# How long events and their property records are kept (PostgreSQL): an ISO 8601
# duration such as P13M; whole months past it are dropped by the scheduler's
# partition job (docs/operations.md, "Event partitions and retention"). Empty: forever.
HERALD_EVENT_RETENTION = os.environ.get("HERALD_EVENT_RETENTION", "")

HERALD_RATE_LIMIT_WINDOW_SECONDS = int(os.environ.get("HERALD_RATE_LIMIT_WINDOW_SECONDS", "60"))
HERALD_RATE_LIMIT_INGEST = int(os.environ.get("HERALD_RATE_LIMIT_INGEST", "6000"))
HERALD_RATE_LIMIT_API = int(os.environ.get("HERALD_RATE_LIMIT_API", "1200"))
HERALD_RATE_LIMIT_AUTH_FAILURES = int(os.environ.get("HERALD_RATE_LIMIT_AUTH_FAILURES", "30"))
# Where the counters live: a Redis shared by every process (by default the broker's, when
# that is Redis); "db" or no Redis at all = the database.
_broker_url = os.environ.get("CELERY_BROKER_URL", "")
HERALD_RATE_LIMIT_REDIS_URL = os.environ.get(
    "HERALD_RATE_LIMIT_REDIS_URL",
    _broker_url if _broker_url.startswith(("redis://", "rediss://", "unix://")) else "",
)
if HERALD_RATE_LIMIT_REDIS_URL == "db":
    HERALD_RATE_LIMIT_REDIS_URL = ""
# Proxies in front of Herald that append to X-Forwarded-For: a client's address (rate
# limits of failed authentication, admin login throttling) is the entry this many places
# from the right. 0 = the TCP peer (REMOTE_ADDR): a client could write any
# X-Forwarded-For it likes, so it is only read when the proxies are known.
HERALD_TRUSTED_PROXY_COUNT = int(os.environ.get("HERALD_TRUSTED_PROXY_COUNT", "0"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "events_app.api.auth.ApiKeyBasicAuthentication",
        "events_app.api.auth.ApiKeyBearerAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["events_app.api.auth.HasApiScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "project.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "iso-8601",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": (
        "Events, customers, workflows and webhooks. Every response body is "
        '`{"data": …}`; every error is `{"error", "message", "statusCode", "details"}`.'
    ),
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Docstrings of our base classes (StrictAPIView, StrictSerializer) are not API docs.
    "GET_LIB_DOC_EXCLUDES": "project.api.schema.lib_doc_excludes",
    # Several models have a `status`; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "automation.webhooks.models.Delivery.Status",
        "ScheduleStatusEnum": "automation.schedules.models.Schedule.Status",
        "WorkflowRunStatusEnum": "automation.workflows.models.WorkflowRun.Status",
        "PrivacyRequestTypeEnum": "customers.privacy.models.PrivacyRequest.Type",
        # Its name before privacy requests brought a second `type` enum.
        "TypeEnum": "events_app.models.PropertyDefinition.ValueType",
        "PrivacyRequestStatusEnum": "customers.privacy.models.PrivacyRequest.Status",
        "SimulationStatusEnum": "automation.workflows.simulation.models.Status",
    },
}

# Background work. No broker configured = the embedded default: tasks run
# in-process (see project/celery.py and docs/operations.md).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = int(os.environ.get("CELERY_WORKER_PREFETCH_MULTIPLIER", "1"))
# A publish that cannot reach the broker fails at once (no connection retries, a short
# connect timeout): an API request must not wait for a broker that is down. The rows are
# the source of truth and the periodic jobs send what a lost message left behind.
HERALD_BROKER_CONNECT_TIMEOUT = float(os.environ.get("HERALD_BROKER_CONNECT_TIMEOUT", "0.5"))
# After a failed publish, nothing is published for this long (project.background's
# circuit breaker): requests skip the broker, the periodic jobs claim the work.
HERALD_BROKER_RETRY_SECONDS = float(os.environ.get("HERALD_BROKER_RETRY_SECONDS", "5"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": 3600,
    "max_retries": 0,
    "socket_connect_timeout": HERALD_BROKER_CONNECT_TIMEOUT,
}
# Several Herald deployments (or test runs) on one Redis database: every key the broker
# creates (queues, bindings, unacked messages) starts with this prefix. Empty = none.
HERALD_BROKER_KEY_PREFIX = os.environ.get("HERALD_BROKER_KEY_PREFIX", "")
if HERALD_BROKER_KEY_PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = HERALD_BROKER_KEY_PREFIX
CELERY_BROKER_CONNECTION_TIMEOUT = HERALD_BROKER_CONNECT_TIMEOUT
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TASK_IGNORE_RESULT = True
# The queue tasks are sent to when no route names one (project/celery.py routes
# deliveries, evaluation and schedule ticks to their own queues; the other periodic jobs
# come here). Workers consume it by default.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TIMEZONE = "UTC"

# Log lines (docs/operations.md, "Logs"): "json" = one JSON object per line (timestamp,
# level, logger, message, request_id), for log collectors; "text" = one readable line.
# Both name the request (or the task of a request) they were written for.
HERALD_LOG_FORMAT = os.environ.get("HERALD_LOG_FORMAT", "json" if PRODUCTION else "text")
if HERALD_LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("HERALD_LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "project.logs.RequestIdFilter"}},
    "formatters": {
        "text": {"()": "project.logs.TextFormatter"},
        "json": {"()": "project.logs.json_formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": HERALD_LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "project.api.schema.msgspec_components",
    "project.api.schema.complete_operations",
]

# ---------------------------------------------------------------- Background work and delivery
# (docs/operations.md, "Webhook deliveries" and "Running the processes")
# The embedded default (SQLite, no broker, not production) may call loopback receivers;
# project/wsgi.py says so when the app starts. Anything else must list networks explicitly.
EMBEDDED_DEFAULT = not PRODUCTION and not CELERY_BROKER_URL and not IS_POSTGRES
HERALD_OUTBOUND_ALLOWED_NETWORKS = env_list(
    "HERALD_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128" if EMBEDDED_DEFAULT else ""
)
# When set, every outbound call (webhooks, schedule callbacks, workflow webhooks, pings)
# goes to these networks only, on top of the guard: staging, tests and fuzzed instances
# set it to loopback so nothing can leave the machine. Empty = no restriction.
HERALD_OUTBOUND_ONLY_NETWORKS = env_list("HERALD_OUTBOUND_ONLY_NETWORKS")
for _cidr in HERALD_OUTBOUND_ONLY_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"HERALD_OUTBOUND_ONLY_NETWORKS: {_exc}") from None
# Celery's Django fixup closes the worker's database connection around every task unless
# this is set; reconnecting (a PostgreSQL backend fork) cost more than a delivery does.
# The connection is still closed every 2 x this many tasks, and health-checked on reuse.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
# A PEM file of CA certificates outbound https calls trust in addition to the system's
# (a private CA of a company network); empty = the system's trust store only.
HERALD_OUTBOUND_CA_BUNDLE = os.environ.get("HERALD_OUTBOUND_CA_BUNDLE", "")
# Wall-clock deadline of one outbound HTTP call and the most response bytes read.
HERALD_OUTBOUND_TIMEOUT = float(os.environ.get("HERALD_OUTBOUND_TIMEOUT", "15"))
HERALD_OUTBOUND_MAX_RESPONSE_BYTES = int(
    os.environ.get("HERALD_OUTBOUND_MAX_RESPONSE_BYTES", str(64 * 1024))
)
# Seconds a claimed attempt may outlive its deadline before another worker may retry it
# (a SIGKILLed worker's delivery is picked up again after timeout + margin).
HERALD_DELIVERY_CLAIM_MARGIN = float(os.environ.get("HERALD_DELIVERY_CLAIM_MARGIN", "30"))
# At most this many attempts in flight per endpoint, so a slow endpoint cannot take
# every worker thread; further due deliveries of it wait a moment in the database.
HERALD_DELIVERY_ENDPOINT_CONCURRENCY = int(
    os.environ.get("HERALD_DELIVERY_ENDPOINT_CONCURRENCY", "16")
)
# Rows the dispatcher claims per tick (it loops in chunks of this size).
HERALD_DELIVERY_DISPATCH_CHUNK = int(os.environ.get("HERALD_DELIVERY_DISPATCH_CHUNK", "500"))
# Embedded default: period of the in-process ticker and threads sending deliveries.
HERALD_EMBEDDED_TICK_SECONDS = float(os.environ.get("HERALD_EMBEDDED_TICK_SECONDS", "1"))
HERALD_EMBEDDED_WORKER_THREADS = int(os.environ.get("HERALD_EMBEDDED_WORKER_THREADS", "8"))

# ---------------------------------------------------------------- Scheduled callbacks
# (docs/automation.md, "Scheduled callbacks")
# Shortest allowed gap between two runs of one schedule; 1 allows every-second schedules
# (development and tests).
HERALD_SCHEDULE_MIN_INTERVAL_SECONDS = int(
    os.environ.get("HERALD_SCHEDULE_MIN_INTERVAL_SECONDS", "60")
)
# Schedules the scheduler claims per transaction (it loops in chunks of this size).
HERALD_SCHEDULE_CLAIM_CHUNK = int(os.environ.get("HERALD_SCHEDULE_CLAIM_CHUNK", "5000"))
# Callbacks of one chunk up to this many are handed to send tasks at once; a bigger burst
# is left to the delivery dispatcher (next tick), so a scheduler never publishes 10k messages.
HERALD_SCHEDULE_ENQUEUE_MAX = int(os.environ.get("HERALD_SCHEDULE_ENQUEUE_MAX", "200"))

# ---------------------------------------------------------------- Workflows
# (documented in docs/automation.md, "## Workflows")
# A chain of emit_event actions stops at this depth (the loop guard).
HERALD_AUTOMATION_MAX_DEPTH = int(os.environ.get("HERALD_AUTOMATION_MAX_DEPTH", "5"))
# Events still unevaluated, and runs no worker advanced, this long after their time
# are picked up again by the periodic workflows.tick job (lost message, killed worker).
HERALD_AUTOMATION_GRACE_SECONDS = float(os.environ.get("HERALD_AUTOMATION_GRACE_SECONDS", "60"))
# Events one claim of due work takes (evaluation and delivery fan-out, automation.due),
# and rows the periodic job hands on per tick.
HERALD_AUTOMATION_BATCH_SIZE = int(os.environ.get("HERALD_AUTOMATION_BATCH_SIZE", "500"))
HERALD_AUTOMATION_DISPATCH_CHUNK = int(os.environ.get("HERALD_AUTOMATION_DISPATCH_CHUNK", "1000"))
# At most this many claimers drain a backlog of due events at once (automation.due: a
# full claim asks for a helper); 1 = one claimer at a time.
HERALD_AUTOMATION_CLAIMERS = int(os.environ.get("HERALD_AUTOMATION_CLAIMERS", "4"))

# ---------------------------------------------------------------- Segments
# (docs/automation.md, "Segments"): customers evaluated per transaction (refresh and
# build), and due time-based checks the sweep takes per tick.
HERALD_SEGMENT_BATCH_SIZE = int(os.environ.get("HERALD_SEGMENT_BATCH_SIZE", "1000"))
HERALD_SEGMENT_SWEEP_CHUNK = int(os.environ.get("HERALD_SEGMENT_SWEEP_CHUNK", "5000"))

# ---------------------------------------------------------------- Admin login throttling
# (docs/operations.md, "Admin logins"; django-axes records every attempt and lockout)
# After this many failed logins for one username from one address, that pair is locked
# out for the cool-off (minutes); a successful login resets the count.
AXES_FAILURE_LIMIT = int(os.environ.get("HERALD_ADMIN_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(
    minutes=float(os.environ.get("HERALD_ADMIN_LOGIN_COOLOFF_MINUTES", "15"))
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# One answer to "which address did this come from" (HERALD_TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "project.api.ratelimit.client_address"

# ---------------------------------------------------------------- Metrics
# (docs/operations.md, "Monitoring") GET /metrics answers loopback clients, and any
# client sending `Authorization: Bearer <HERALD_METRICS_TOKEN>` (empty = loopback only).
HERALD_METRICS_TOKEN = os.environ.get("HERALD_METRICS_TOKEN", "")
if HERALD_METRICS_TOKEN and len(HERALD_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("HERALD_METRICS_TOKEN must be at least 32 characters long.")
# Off behind a reverse proxy on the same machine that Herald cannot tell apart from a
# local client (HERALD_TRUSTED_PROXY_COUNT = 0): then only the token opens /metrics.
HERALD_METRICS_ALLOW_LOOPBACK = env_bool("HERALD_METRICS_ALLOW_LOOPBACK", True)
# Backlog counts stop here (the age of the oldest item stays exact): a scrape's cost
# is bounded whatever the backlog.
HERALD_METRICS_COUNT_CAP = int(os.environ.get("HERALD_METRICS_COUNT_CAP", "100000"))
# herald_deliveries_completed counts the deliveries finished within this many seconds.
HERALD_METRICS_WINDOW_SECONDS = int(os.environ.get("HERALD_METRICS_WINDOW_SECONDS", "60"))

# ---------------------------------------------------------------- Content-Security-Policy
# (django-csp; docs/operations.md, "Content-Security-Policy") Every page's scripts and
# styles are files served by Herald itself: no inline script or style, no other origin.
# The API docs use drf-spectacular's split Swagger view for the same reason. Swagger UI
# draws icons as data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [CSP_SELF],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF],
        "img-src": [CSP_SELF, "data:"],
        "font-src": [CSP_SELF],
        "connect-src": [CSP_SELF],
        "object-src": [CSP_NONE],
        "base-uri": [CSP_NONE],
        "form-action": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
    }
}
