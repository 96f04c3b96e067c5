"""Configuration from environment variables, written once for the Django settings, the consumers,
the operations scripts and the benchmarks: typed readers that refuse a malformed value with the
variable's name, and the defaults of the local stack (`scripts/services.sh start` on 127.0.0.1),
so a fresh checkout runs without any configuration. README's "Configuration" lists every variable.

Django-free, so a consumer process reads its settings without loading Django.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent

# The local stack's addresses and names.
KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
DATABASE_URL = "mysql://ecommerce:ecommerce@127.0.0.1:3306/ecommerce"
CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
ORDER_EVENTS_TOPIC = "order.events"
ANALYTICS_TOPIC = "orders_analytics"
DLQ_SUFFIX = ".dlq"
CLICKHOUSE_DATABASE = "analytics"
# The sink's tables sync every inserted part to disk before the insert returns (README "Durability").
CLICKHOUSE_FSYNC_AFTER_INSERT = True

Env = Mapping[str, str]


class SettingsError(ValueError):
    """An environment variable holds a value the project cannot use."""


def _raw(env: Env | None, name: str) -> str:
    return (os.environ if env is None else env).get(name, "").strip()


def env_str(name: str, default: str, env: Env | None = None) -> str:
    """The variable's value, or `default` when it is unset or empty."""
    return _raw(env, name) or default


def env_int(name: str, default: int, env: Env | None = None, *, minimum: int | None = None) -> int:
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, env: Env | None = None, *, positive: bool = False) -> float:
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if positive and not value > 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def env_bool(name: str, default: bool, env: Env | None = None) -> bool:
    raw = _raw(env, name)
    if not raw:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_list(name: str, default: str, env: Env | None = None) -> list[str]:
    """A comma-separated list, items stripped, empty items dropped."""
    return [item.strip() for item in env_str(name, default, env).split(",") if item.strip()]


def var_dir(env: Env | None = None) -> Path:
    """Where the local stack keeps its data and logs (VAR_DIR, default var/ in the checkout)."""
    return Path(env_str("VAR_DIR", str(REPO_DIR / "var"), env))


def kafka_bootstrap_servers(env: Env | None = None) -> list[str]:
    return env_list("KAFKA_BOOTSTRAP_SERVERS", KAFKA_BOOTSTRAP_SERVERS, env)


def clickhouse_url(env: Env | None = None) -> str:
    """http(s)://user:password@host:port for a ClickHouse server, or chdb:///path for chDB."""
    return env_str("CLICKHOUSE_URL", f"chdb://{var_dir(env) / 'chdb'}", env)


def clickhouse_fsync_after_insert(env: Env | None = None) -> bool:
    """Whether the schema migration makes the sink's tables fsync each insert (off only for
    throwaway benchmarks: a host crash can then lose rows whose Kafka offsets were committed)."""
    return env_bool("CLICKHOUSE_FSYNC_AFTER_INSERT", CLICKHOUSE_FSYNC_AFTER_INSERT, env)
