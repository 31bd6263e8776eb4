"""Settings for the Durable site, configured from the environment (12-factor).

DATABASE_URL selects the database (default: SQLite in WAL mode next to manage.py);
DURABLE_* variables tune the engine.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = _env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

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
    "django_htmx.middleware.HtmxMiddleware",
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
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
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

# --- Durable engine ------------------------------------------------------------------
# Largest serialised params, step result, event payload or output, in bytes.
DURABLE_MAX_PAYLOAD_BYTES = int(os.environ.get("DURABLE_MAX_PAYLOAD_BYTES", 1024 * 1024))
# How often the timer in each worker looks for due sleepers, retries, timeouts and
# abandoned runs (seconds).
DURABLE_TIMER_INTERVAL = float(os.environ.get("DURABLE_TIMER_INTERVAL", 0.2))
# A run's claim on an instance outlives the running step's timeout by this much; a run
# whose claim has expired is considered abandoned (its worker died) and is run again.
DURABLE_LEASE_GRACE_SECONDS = float(os.environ.get("DURABLE_LEASE_GRACE_SECONDS", 30))
# A run that has been executing steps this long hands the instance back to the queue
# after the current step, so one instance cannot hog a worker (seconds).
DURABLE_RUN_SLICE_SECONDS = float(os.environ.get("DURABLE_RUN_SLICE_SECONDS", 300))

# django-q2 only delivers work: the engine's own tables decide what runs, so a task
# delivered twice is harmless and tasks are never retried by django-q2 itself.
Q_CLUSTER = {
    "name": "durable",
    "orm": "default",
    "workers": int(os.environ.get("DURABLE_WORKERS", 2 if USING_SQLITE else 4)),
    # A task runs until its instance suspends; the longest step timeout must fit in it.
    "timeout": int(os.environ.get("DURABLE_TASK_TIMEOUT", 3600)),
    "retry": int(os.environ.get("DURABLE_TASK_TIMEOUT", 3600)) + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    # Successes are not stored: our tables record every run. (A positive limit makes
    # django-q2 lock and load all stored successes on every task: a bottleneck.)
    "save_limit": -1,
    "poll": float(os.environ.get("DURABLE_POLL", 0.5 if USING_SQLITE else 0.2)),
    "guard_cycle": 0.5,
    "recycle": 500,
    "label": "Task queue (django-q2)",
}
