"""Settings for every environment, read from environment variables with working local defaults.

The defaults match the local stack that `scripts/services.sh start` brings up on 127.0.0.1, so a
fresh checkout runs without any configuration once `make migrate` created its secret key in var/.
Anywhere else, outside debug, a server needs DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS and expects
HTTPS in front of it. README.md lists every variable.
"""

from pathlib import Path

import environment
from backend.settings.env import allowed_hosts, database_from_url, secret_key
from consumers.kafka_logging import logging_config
from environment import env_bool, env_float, env_int, env_list, env_str
from environment.local_secret import read_local_secret_key, secret_key_file

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = environment.var_dir()

DEBUG = env_bool("DJANGO_DEBUG", False)
# Outside debug a server starts only with a real key and its host names: from the environment in a
# deployment, or on the local stack from the key `make migrate` and the supervisor keep in var/
# (then only the loopback names are served, over plain HTTP).
_LOCAL_SECRET_KEY = read_local_secret_key(secret_key_file(VAR_DIR))
_CONFIGURED_SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
LOCAL_STACK = not _CONFIGURED_SECRET_KEY and _LOCAL_SECRET_KEY is not None
SECRET_KEY = secret_key(_CONFIGURED_SECRET_KEY, local=_LOCAL_SECRET_KEY, debug=DEBUG)
ALLOWED_HOSTS = allowed_hosts(env_list("DJANGO_ALLOWED_HOSTS", ""), local_stack=LOCAL_STACK, debug=DEBUG)

# Served over HTTPS by a TLS-terminating proxy that sets X-Forwarded-Proto, unless in debug, on the
# local stack or DJANGO_HTTPS=0 (a plain-HTTP run, e.g. the compose stack on 127.0.0.1).
HTTPS = env_bool("DJANGO_HTTPS", not (DEBUG or LOCAL_STACK))
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Probes and the Prometheus scrape come from inside the network, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

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

# /readyz reuses its last result for this long: a flood of probes costs one check per interval.
READYZ_CACHE_SECONDS = env_float("READYZ_CACHE_SECONDS", 2.0)

# --- Kafka -------------------------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = environment.kafka_bootstrap_servers()
ORDER_EVENTS_TOPIC = env_str("ORDER_EVENTS_TOPIC", environment.ORDER_EVENTS_TOPIC)
ANALYTICS_TOPIC = env_str("ANALYTICS_TOPIC", environment.ANALYTICS_TOPIC)
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3)

# Plain lines on the console; one Kafka broker down is one warning, not an error per reconnect.
LOGGING = logging_config(brokers=len(KAFKA_BOOTSTRAP_SERVERS), level=env_str("LOG_LEVEL", "INFO"))

# --- ClickHouse --------------------------------------------------------------------------------
# http(s)://user:password@host:port for a ClickHouse server, or chdb:///path for in-process chDB.
CLICKHOUSE_URL = environment.clickhouse_url()
CLICKHOUSE_DATABASE = env_str("CLICKHOUSE_DATABASE", environment.CLICKHOUSE_DATABASE)
# Whether `manage.py clickhouse_migrate` makes the sink's tables fsync every insert (README "Durability").
CLICKHOUSE_FSYNC_AFTER_INSERT = environment.clickhouse_fsync_after_insert()

# --- Celery and the outbox relay ---------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", environment.CELERY_BROKER_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

OUTBOX_RELAY_INTERVAL = env_float("OUTBOX_RELAY_INTERVAL", 5.0)
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 5000)
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
# A kicked run that relays once more for the commits that came in meanwhile waits this long first,
# so that under a stream of commits each claim carries several (outbox/kick.py).
OUTBOX_KICK_LINGER_SECONDS = env_float("OUTBOX_KICK_LINGER_SECONDS", 0.05)
# Relay state shared between processes: the kick debounce key and the relay counters.
OUTBOX_REDIS_URL = env_str("OUTBOX_REDIS_URL", CELERY_BROKER_URL)
# Seconds the producer may spend on one record (retries included) before it counts as failed.
KAFKA_PRODUCER_DELIVERY_TIMEOUT = env_float("KAFKA_PRODUCER_DELIVERY_TIMEOUT", 30.0)
# Fault injection for tests: exit the relay process after Kafka acked a batch, before marking it.
OUTBOX_FAULT_EXIT_AFTER_PRODUCE = env_bool("OUTBOX_FAULT_EXIT_AFTER_PRODUCE", False)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# /metrics counts pending and parked events exactly up to this many, and estimates beyond: each
# scrape then reads a bounded part of the outbox index, however large the backlog.
OUTBOX_METRICS_COUNT_LIMIT = env_int("OUTBOX_METRICS_COUNT_LIMIT", 10_000, minimum=1)

# The freshness watermark's checks (analytics/freshness.py; `manage.py pipeline_watermark`, a
# process of its own, not a Celery task): seconds between checks, and the most one check may wait.
PIPELINE_WATERMARK_INTERVAL = env_float("PIPELINE_WATERMARK_INTERVAL", 1.0, positive=True)
PIPELINE_WATERMARK_TIMEOUT = env_float("PIPELINE_WATERMARK_TIMEOUT", 3.0, positive=True)

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
