"""Settings for every environment, read from environment variables with working local defaults.

The defaults match the local stack that `scripts/services.sh start` brings up on 127.0.0.1, so a
fresh checkout runs without any configuration. README.md lists every variable.
"""

from pathlib import Path

import environment
from backend.settings.env import database_from_url
from environment import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = environment.var_dir()

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-development-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Listed so that /api/docs loads Swagger UI from django-ninja's own static files: without it
    # django-ninja renders a page that fetches them from a public CDN, which is blank offline.
    "ninja",
    "orders",
    "outbox",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves Django admin's CSS/JS from gunicorn too, where runserver's static view is absent.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", environment.DATABASE_URL))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Requests larger than this are refused with 400 before any JSON parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# No collectstatic step is needed: WhiteNoise finds the files in the installed apps (Django
# admin's, and django-ninja's Swagger UI for /api/docs), under gunicorn and in the image alike. Set
# DJANGO_STATIC_ROOT to serve a collected tree instead.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", "") or None
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"kafka": {"level": "WARNING"}},
}

# --- Kafka -------------------------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = environment.kafka_bootstrap_servers()
ORDER_EVENTS_TOPIC = env_str("ORDER_EVENTS_TOPIC", environment.ORDER_EVENTS_TOPIC)
ANALYTICS_TOPIC = env_str("ANALYTICS_TOPIC", environment.ANALYTICS_TOPIC)
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3)

# --- ClickHouse --------------------------------------------------------------------------------
# http(s)://user:password@host:port for a ClickHouse server, or chdb:///path for in-process chDB.
CLICKHOUSE_URL = environment.clickhouse_url()
CLICKHOUSE_DATABASE = env_str("CLICKHOUSE_DATABASE", environment.CLICKHOUSE_DATABASE)

# --- Celery and the outbox relay ---------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", environment.CELERY_BROKER_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

OUTBOX_RELAY_INTERVAL = env_float("OUTBOX_RELAY_INTERVAL", 5.0)
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 1000)
# A relay run drains batches until the outbox is empty or this many seconds are spent.
OUTBOX_RELAY_TIME_BUDGET = env_float("OUTBOX_RELAY_TIME_BUDGET", 4.0)
# How long a claimed row stays reserved for its relay; a relay that dies leaves its rows to be
# claimed again after this. Keep it well above the producer's delivery timeout.
OUTBOX_LEASE_SECONDS = env_float("OUTBOX_LEASE_SECONDS", 60.0)
# A partition found unavailable (e.g. fewer in-sync replicas than min.insync.replicas) gets no
# sends, and its events wait uncharged, until a probe (one of its events, sent alone) is
# acknowledged: the first probe this many seconds after the failure, each further one twice as
# long after the last failed, up to the maximum.
OUTBOX_PARTITION_RECHECK_SECONDS = env_float("OUTBOX_PARTITION_RECHECK_SECONDS", 5.0, positive=True)
OUTBOX_PARTITION_RECHECK_MAX_SECONDS = env_float("OUTBOX_PARTITION_RECHECK_MAX_SECONDS", 60.0, positive=True)
# A batch claim slower than this makes the relay refresh the outbox table's statistics (ANALYZE
# TABLE, at most every 5 minutes per process): the claim's plan depends on them.
OUTBOX_SLOW_CLAIM_SECONDS = env_float("OUTBOX_SLOW_CLAIM_SECONDS", 1.0)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10)
OUTBOX_RETRY_BASE_SECONDS = env_float("OUTBOX_RETRY_BASE_SECONDS", 1.0)
OUTBOX_RETRY_MAX_SECONDS = env_float("OUTBOX_RETRY_MAX_SECONDS", 300.0)
OUTBOX_RETENTION_HOURS = env_float("OUTBOX_RETENTION_HOURS", 72.0)
OUTBOX_RETENTION_INTERVAL = env_float("OUTBOX_RETENTION_INTERVAL", 3600.0)
# Kick the relay when a transaction that wrote outbox events commits (beat stays the safety net).
OUTBOX_KICK_ON_COMMIT = env_bool("OUTBOX_KICK_ON_COMMIT", True)
# Relay state shared between processes: the kick debounce key and the relay counters.
OUTBOX_REDIS_URL = env_str("OUTBOX_REDIS_URL", CELERY_BROKER_URL)
# Seconds the producer may spend on one record (retries included) before it counts as failed.
KAFKA_PRODUCER_DELIVERY_TIMEOUT = env_float("KAFKA_PRODUCER_DELIVERY_TIMEOUT", 30.0)
# Fault injection for tests: exit the relay process after Kafka acked a batch, before marking it.
OUTBOX_FAULT_EXIT_AFTER_PRODUCE = env_bool("OUTBOX_FAULT_EXIT_AFTER_PRODUCE", False)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")

CELERY_BEAT_SCHEDULE = {
    "outbox-relay": {
        "task": "outbox.tasks.relay_outbox",
        "schedule": OUTBOX_RELAY_INTERVAL,
        # A tick that waited longer than one interval in the queue is superseded by the next one.
        "options": {"expires": OUTBOX_RELAY_INTERVAL},
    },
    "outbox-purge-published": {
        "task": "outbox.tasks.purge_published_outbox",
        "schedule": OUTBOX_RETENTION_INTERVAL,
        "options": {"expires": OUTBOX_RETENTION_INTERVAL},
    },
}
