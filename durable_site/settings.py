"""Settings for the Durable site, configured from the environment (12-factor).

A production site unless DJANGO_DEBUG=1: DJANGO_SECRET_KEY must be set and HTTPS is
assumed (DJANGO_HTTPS=0 and the DJANGO_SECURE_COOKIES, DJANGO_SSL_REDIRECT and
DJANGO_HSTS_* switches relax it).
DATABASE_URL selects the database (default: SQLite in WAL mode next to manage.py);
DURABLE_* variables tune the engine. README.md, "Running in production", lists them all.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from workflows.conf import DEFAULTS as ENGINE_DEFAULTS
from workflows.conf import q_cluster

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_bool("DJANGO_DEBUG", False)

# Published in this repository: anyone could forge sessions and signed task payloads
# with it, so it is only ever the default of a development site.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not DEBUG and SECRET_KEY in {"", DEVELOPMENT_SECRET_KEY}:
    problem = "is the published development key" if SECRET_KEY else "is not set"
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY {problem}: set it to a long random string "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DJANGO_DEBUG=1 for development."
    )
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# A production site is served over HTTPS unless DJANGO_HTTPS=0 says it is not on purpose;
# each protection below can also be switched on its own.
HTTPS = _env_bool("DJANGO_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("DJANGO_SECURE_COOKIES", HTTPS)
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SSL_REDIRECT", HTTPS)
# Browsers remember HSTS for this long; a site moving to HTTPS for the first time may
# start lower (3600) and raise it once every page works over HTTPS.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_HSTS_PRELOAD", HTTPS)
# Behind a proxy that terminates TLS, Django sees plain HTTP; the proxy's header (for
# example X-Forwarded-Proto: https) tells it the browser used HTTPS. Only set this when
# the proxy always sets or strips that header, or a client could claim HTTPS itself.
if proxy_ssl_header := os.environ.get("DJANGO_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_ssl_header.upper().replace("-", "_"), "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "workflows",
    "approvals",
    # The site's own workflows (durable_site/workflows.py) are the demo workflows.
    "durable_site",
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
]

ROOT_URLCONF = "durable_site.urls"
WSGI_APPLICATION = "durable_site.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
USING_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if USING_SQLITE:
    # A web server and a cluster write at once: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no lock upgrades that deadlock), and the
    # busy timeout makes writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Keep connections open between tasks: django-q2's pusher, monitor and workers call
# close_old_connections() around every task, and with CONN_MAX_AGE 0 each one would
# reconnect (measured: connecting dominated the cluster's time on PostgreSQL).
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DURABLE_CONN_MAX_AGE", 300))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
# Absolute address of the site, for links in emails (approval requests).
DURABLE_BASE_URL = os.environ.get("DURABLE_BASE_URL", "http://127.0.0.1:8000")

EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "Durable <durable@localhost>")
# Read by the SMTP backend (DJANGO_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend).
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("DJANGO_EMAIL_USE_TLS", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Django's default sends a 500's traceback only by email to ADMINS when DEBUG is
        # off; on stderr gunicorn's and systemd's logs keep it.
        "django": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
        "workflows": {
            "handlers": ["console"],
            "level": os.environ.get("DURABLE_LOG_LEVEL", "INFO"),
        },
        # django-q2 logs every enqueued task at INFO; commands print only their answer.
        "django-q": {
            "handlers": ["console"],
            "level": os.environ.get("DJANGO_Q_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}

# The demo's payment provider (durable_site/workflows.py): the secret its "payments"
# webhook checks signatures with, and the broker of its queue. A development site has
# published ones; production sets its own in the environment (a webhook without a secret
# refuses every delivery; a consumer without a broker does not run).
if DEBUG:
    PAYMENTS_WEBHOOK_SECRET = os.environ.get("PAYMENTS_WEBHOOK_SECRET", "dev-payments-secret")
    # ... and the RabbitMQ its payments queue is on (qcluster consumes it).
    PAYMENTS_BROKER_URL = os.environ.get("PAYMENTS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")

# --- Durable engine ------------------------------------------------------------------
# workflows/conf.py holds every engine setting with its default and what it means;
# DURABLE_<NAME> in the environment overrides one (a number of seconds or bytes).
# (A yes/no one such as DURABLE_SCHEDULES: 0 is no, anything else yes.)
for _name, _default in ENGINE_DEFAULTS.items():
    if f"DURABLE_{_name}" in os.environ:
        _value = os.environ[f"DURABLE_{_name}"]
        globals()[f"DURABLE_{_name}"] = (
            _value != "0" if isinstance(_default, bool) else type(_default)(_value)
        )

# django-q2 delivers the engine's runs: workflows/conf.py's q_cluster() has the values it
# needs (ORM broker, one attempt, no stored successes, retry above timeout); the site
# tunes the rest from the environment.
_WORKERS = int(os.environ.get("DURABLE_WORKERS", 2 if USING_SQLITE else 4))
Q_CLUSTER = q_cluster(
    workers=_WORKERS,
    # A task runs until its instance suspends; the longest step timeout must fit in it.
    timeout=int(os.environ.get("DURABLE_TASK_TIMEOUT", 3600)),
    # How long an idle pusher waits before looking at the queue again. On PostgreSQL a
    # NOTIFY ends the wait at once (workflows/broker.py), so the poll only bounds a lost
    # one; SQLite has no such signal and looks often (a cheap read in WAL mode).
    poll=float(os.environ.get("DURABLE_POLL", 0.1 if USING_SQLITE else 1.0)),
)
