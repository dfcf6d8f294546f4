"""Django settings: every value comes from the environment (django-environ) with a safe embedded default."""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from csp.constants import UNSAFE_INLINE as CSP_UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-" + "x" * 50 if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    # The admin registers its ModelAdmins when the URLconf loads (byok_platform/urls.py), so a process that
    # only serves /v1 never imports them.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "axes",
    "csp",
    "tenants",
    "llm",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.CurrentTenantMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the 'try again in N minutes' page
]

ROOT_URLCONF = "byok_platform.urls"
WSGI_APPLICATION = "byok_platform.wsgi.application"
ASGI_APPLICATION = "byok_platform.asgi.application"

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
                "tenants.context_processors.tenant",
                "billing.context_processors.notifications",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if "postgresql" in DATABASES["default"]["ENGINE"]:  # a partitioned database fails a connect, never hangs it
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=3)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="byok"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "byok"}}

# --- Celery ------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One worker process with threads: its tasks wait on I/O (upstream calls, PostgreSQL, Redis), so threads serve them
# as well as forked children, in a third of the memory. `prefork` stays available (and tested).
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=4)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth ----------------------------------------------------------------------------
AUTH_USER_MODEL = "tenants.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "landing"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
INVITE_MAX_AGE_DAYS = env.int("INVITE_MAX_AGE_DAYS", default=7)
# Throttling (django-axes): log-in failures per account and per client address; sign-up, password reset and
# invitation acceptance count their attempts too (tenants/throttle.py). The address is REMOTE_ADDR: behind a
# proxy, let uvicorn set it from X-Forwarded-For (--forwarded-allow-ips).
AUTHENTICATION_BACKENDS = ["tenants.throttle.ThrottleBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = "tenants.throttle.lockout_parameters"
AXES_USERNAME_CALLABLE = "tenants.throttle.throttle_username"
AXES_USERNAME_FORM_FIELD = "username"  # the log-in form's e-mail field
AXES_LOCKOUT_CALLABLE = "tenants.throttle.lockout_response"
AXES_RESET_ON_SUCCESS = (
    False  # a log-in to one account must not wipe the address's count of failures on others
)
AXES_DISABLE_ACCESS_LOG = True  # successful log-ins are in the audit trail already; keep only failures
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- E-mail ---------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="BYOK Platform <noreply@localhost>")

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api_auth.ApiKeyAuthentication",
        "tenants.api_auth.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsTenantMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "tenants.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BYOK Platform tenant API",
    "DESCRIPTION": "Configure models, credentials, routes, keys, agents, caps and read usage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # vendored Swagger UI (drf-spectacular-sidecar), no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Secrets at rest --------------------------------------------------------------------
# Newest key first; older keys still decrypt, `rotate_encryption_key` re-encrypts under the first.
CRYPTOGRAPHY_KEYS = env.list("CRYPTOGRAPHY_KEYS", default=[SECRET_KEY])
CRYPTOGRAPHY_KEY = CRYPTOGRAPHY_KEYS[0]

# --- LLM routing, caps and billing ------------------------------------------------------
PLATFORM_MANAGED_LLM_ENABLED = env.bool("PLATFORM_MANAGED_LLM_ENABLED", default=True)
ALLOW_PRIVATE_ENDPOINTS = env.bool("ALLOW_PRIVATE_ENDPOINTS", default=DEBUG)
# OpenRouter's consent page for "Connect OpenRouter" (OAuth PKCE); the key exchange is <OPENROUTER_BASE_URL>/auth/keys
OPENROUTER_AUTH_URL = env.str("OPENROUTER_AUTH_URL", default="https://openrouter.ai/auth")
TCU_USD = env.float("TCU_USD", default=0.00001)
# Responses API answers stored with `store: true` (the default) are kept this many days; 0 keeps none
RESPONSES_RETENTION_DAYS = env.int("RESPONSES_RETENTION_DAYS", default=30)
SPEND_ALERT_TCU_WARN = env.int("SPEND_ALERT_TCU_WARN", default=200_000)
SPEND_ALERT_TCU_HARD = env.int("SPEND_ALERT_TCU_HARD", default=300_000)
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
LLM_FIRST_BYTE_TIMEOUT = env.float("LLM_FIRST_BYTE_TIMEOUT", default=60.0)
LLM_IDLE_TIMEOUT = env.float("LLM_IDLE_TIMEOUT", default=30.0)
# Upstream transport: aiohttp (HTTP/1.1, the least CPU per call) or, with UPSTREAM_HTTP2, httpx's own with HTTP/2
# negotiated by ALPN (many concurrent streams to one provider share one TLS connection).
UPSTREAM_HTTP2 = env.bool("UPSTREAM_HTTP2", default=False)
UPSTREAM_CA_BUNDLE = env.str(
    "UPSTREAM_CA_BUNDLE", default=""
)  # PEM of extra CAs (a company proxy, an internal CA)
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=1000)  # per worker process
CIRCUIT_BREAKER_FAILURES = env.int("CIRCUIT_BREAKER_FAILURES", default=5)
CIRCUIT_BREAKER_COOLDOWN = env.int("CIRCUIT_BREAKER_COOLDOWN", default=30)
USAGE_DRAIN_INTERVAL = env.float("USAGE_DRAIN_INTERVAL", default=0.5)
# Who moves queued usage events into PostgreSQL every USAGE_DRAIN_INTERVAL seconds: the Celery worker (a thread
# beside its tasks), the web processes, or both. With Redis the worker does, so the web processes carry neither
# the ORM's insert path nor a database connection for it; embedded (no REDIS_URL) the queue lives in the web
# process, which must drain it. Beat's task drains every 5 s in any case.
USAGE_DRAINERS = env.list("USAGE_DRAINERS", default=["worker"] if REDIS_URL else ["web"])
if not set(USAGE_DRAINERS) <= {"web", "worker"} or not USAGE_DRAINERS:
    raise ImproperlyConfigured(f"USAGE_DRAINERS: web, worker or both, not {','.join(USAGE_DRAINERS)!r}")
if not REDIS_URL and "web" not in USAGE_DRAINERS:
    raise ImproperlyConfigured(
        "USAGE_DRAINERS must include web without REDIS_URL: the queue is in the web process"
    )
# Trust core: what one tenant can send or one provider can answer is bounded (see README, operating notes).
GATEWAY_SYNC_THREADS = env.int(
    "GATEWAY_SYNC_THREADS", default=16
)  # the gateway's own pool for cold-path work
GATEWAY_MAX_N = env.int("GATEWAY_MAX_N", default=16)  # the most completions one request may ask for
UPSTREAM_MAX_BODY_BYTES = env.int("UPSTREAM_MAX_BODY_BYTES", default=32 * 1024 * 1024)
UPSTREAM_MAX_SSE_LINE_BYTES = env.int("UPSTREAM_MAX_SSE_LINE_BYTES", default=4 * 1024 * 1024)
DEFAULT_MAX_OUTPUT_TOKENS = env.int("DEFAULT_MAX_OUTPUT_TOKENS", default=16_384)  # reserved when nothing says
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=1.0)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=2.0)
USAGE_CLAIM_IDLE_MS = env.int(
    "USAGE_CLAIM_IDLE_MS", default=30_000
)  # a drainer's batch older than this is taken over

STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")

METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])

# --- Production hardening (active whenever DEBUG is off) ---------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts and style sheets only from our own static files (no inline script,
# no eval), nothing framed or plugged in. Style attributes stay allowed (style-src-attr): they cannot run code, and
# the templates use them for one-off layout. /api/docs/ (Swagger UI, vendored by drf-spectacular-sidecar) adds
# 'unsafe-inline' styles for itself (byok_platform/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [CSP_SELF],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF],
        "style-src-attr": [CSP_UNSAFE_INLINE],
        "img-src": [CSP_SELF, "data:"],
        "font-src": [CSP_SELF],
        "connect-src": [CSP_SELF],
        "object-src": [CSP_NONE],
        "base-uri": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
    },
}

# --- Logging: structured, and every record passes the secret-redaction filter -------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "byok_platform.logging.RedactSecretsFilter"}},
    "formatters": {
        "json": {"()": "byok_platform.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
