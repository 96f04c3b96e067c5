"""The database URL as a Django DATABASES entry. The typed readers of every other variable, and the
local defaults, are the project's one source of configuration: the `environment` package."""

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
