"""The database URL as a Django DATABASES entry, and the rules for the secret key and allowed hosts
outside debug. The typed readers of every other variable, and the local defaults, are the project's
one source of configuration: the `environment` package."""

from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured


def database_from_url(url: str) -> dict[str, object]:
    """Turn mysql://user:password@host:port/name?charset=utf8mb4 into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"mysql", "mariadb"}:
        raise ImproperlyConfigured(f"DATABASE_URL must start with mysql:// or mariadb://, got {url!r}")
    name = parsed.path.lstrip("/")
    if not name:
        raise ImproperlyConfigured(f"DATABASE_URL names no database: {url!r}")
    options: dict[str, object] = {"charset": "utf8mb4"}
    for key, values in parse_qs(parsed.query).items():
        options[key] = values[-1]
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 3306),
        "OPTIONS": options,
        # Short-lived connections are re-used by a worker thread for this many seconds.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


# The key the settings used to fall back to: known to anyone who read the source, so never accepted
# as a real one.
INSECURE_DEVELOPMENT_KEY = "insecure-local-development-key-change-me-in-production"
# Django's own bar for a key that `check --deploy` accepts: at least 50 characters, 5 distinct.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5
LOCAL_ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def secret_key(configured: str, *, local: str | None, debug: bool) -> str:
    """DJANGO_SECRET_KEY when set; else the local stack's key from var/ (see
    environment/local_secret.py); else, only with DEBUG on, the development key.

    A key that is set must be a real one: not the development key, and as long and varied as
    Django's deployment check asks, so a guessable key never signs sessions and tokens."""
    if debug:
        return configured or local or INSECURE_DEVELOPMENT_KEY
    if configured:
        if configured == INSECURE_DEVELOPMENT_KEY or configured.startswith("django-insecure-"):
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is the project's published development key: set a random one"
            )
        if len(configured) < MIN_SECRET_KEY_LENGTH or len(set(configured)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
            raise ImproperlyConfigured(
                f"DJANGO_SECRET_KEY is too weak: it needs at least {MIN_SECRET_KEY_LENGTH} characters, "
                f"{MIN_SECRET_KEY_UNIQUE_CHARACTERS} of them distinct (python -c 'import secrets; "
                "print(secrets.token_urlsafe(50))')"
            )
        return configured
    if local is not None:
        return local
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is off: set a random key of at least "
        f"{MIN_SECRET_KEY_LENGTH} characters (on the local stack, make migrate creates one in var/)"
    )


def allowed_hosts(configured: list[str], *, local_stack: bool, debug: bool) -> list[str]:
    """DJANGO_ALLOWED_HOSTS when set; the loopback names on the local stack or in debug; else the
    server refuses to start rather than answer every request with 400."""
    if configured:
        return configured
    if local_stack or debug:
        return LOCAL_ALLOWED_HOSTS
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is not set and DJANGO_DEBUG is off: list the host names this server "
        "answers to, comma-separated (e.g. shop.example.com)"
    )
