"""What scripts/check_pipeline.py and scripts/deletion_flow.py share: where each stage lives (from
the environment, so the same checks run against the local pipeline and the compose stack), an HTTP
client for the API, counts per stage, and a bounded wait with a visible progress line.

Environment: API_URL (default http://127.0.0.1:$WEB_PORT), CLICKHOUSE_URL (default: the chDB gateway
at http://127.0.0.1:$CLICKHOUSE_HTTP_PORT with its credential from $VAR_DIR), CLICKHOUSE_DATABASE,
DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, the topic and consumer-group variables of consumers/settings.py,
ADMIN_TOKEN and ADMIN_ID.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import environment
from consumers.kafka_compat import forget_group_coordinator
from consumers.kafka_io import retrying
from environment.local_secret import ensure_local_secret_key, secret_key_file
from warehouse.client import redacted
from warehouse.gateway_credential import CredentialError, local_gateway_url


class StageFailed(Exception):
    """A stage of the pipeline does not hold what the stage before it handed over."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


def failed_stage_of(exc: Exception) -> StageFailed:
    """An infrastructure error raised while probing, named after the stage whose service raised it,
    so a script fails with `FAIL at stage clickhouse: …` instead of a traceback."""
    if isinstance(exc, StageFailed):
        return exc
    module = type(exc).__module__
    if module.startswith("clickhouse_connect"):
        stage = "clickhouse"
    elif module.startswith("kafka"):
        stage = "kafka"
    elif module.startswith(("django.db", "MySQLdb")):
        stage = "mysql"
    else:
        stage = "pipeline"
    return StageFailed(stage, f"{type(exc).__name__}: {exc}")


def run_script(check: Callable[[], None]) -> int:
    """Runs a check script's body; exit status 1 with the failing stage on any failure."""
    try:
        setup_django()
        check()
    except Exception as exc:
        failed = failed_stage_of(exc)
        print(f"FAIL at stage {failed.stage}: {failed.message}", file=sys.stderr)
        return 1
    return 0


def setup_django() -> None:
    """The scripts read MySQL through the project's own models (DATABASE_URL decides which)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings.base")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        # The local stack's key, which the settings read outside debug (a check never serves HTTP).
        ensure_local_secret_key(secret_key_file())
    import django

    django.setup()


def api_url() -> str:
    return os.environ.get("API_URL", "") or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '') or '8000'}"


def clickhouse_url() -> str:
    """CLICKHOUSE_URL, or else the local chDB gateway with its credential from VAR_DIR."""
    url = os.environ.get("CLICKHOUSE_URL", "")
    if not url:
        try:
            port = environment.env_int("CLICKHOUSE_HTTP_PORT", 8123, minimum=1)
            return local_gateway_url(port)
        except (environment.SettingsError, CredentialError, OSError) as exc:
            raise StageFailed("configuration", f"cannot use the chDB gateway's credential: {exc}") from exc
    if not url.startswith("http"):
        # chdb:// would try to open the directory the running gateway owns.
        raise StageFailed(
            "configuration", f"CLICKHOUSE_URL must be the HTTP address of ClickHouse, got {url!r}"
        )
    return url


class Api:
    """A tiny JSON client: the scripts need nothing beyond the standard library for HTTP."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **self.headers, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise StageFailed("API", f"{method} {path} answered {exc.code}: {detail}") from exc
        except OSError as exc:
            raise StageFailed("API", f"{method} {path} at {self.base_url} failed: {exc}") from exc


# The model permissions the checks' API calls need (README, "Who may call the API"): they add
# products, customers and orders, change order statuses and delete orders; they read back nothing
# through the API.
CHECK_PERMISSIONS = (
    "orders.add_product",
    "orders.add_customer",
    "orders.add_order",
    "orders.change_order",
    "orders.delete_order",
)


def admin_headers() -> dict[str, str]:
    """Admin credentials: ADMIN_TOKEN and ADMIN_ID from the environment (e.g. against the compose
    stack), or else a staff user `pipeline-check` with a fresh token, created through the database
    the scripts can reach (the local pipeline)."""
    token, admin_id = os.environ.get("ADMIN_TOKEN", ""), os.environ.get("ADMIN_ID", "")
    if not token or not admin_id:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission

        from orders.services import admin_api_token_issue

        user, _ = get_user_model().objects.get_or_create(
            username="pipeline-check", defaults={"is_staff": True, "is_active": True}
        )
        # Only what the checks do through the API, as for any other staff user.
        codenames = [name.split(".")[1] for name in CHECK_PERMISSIONS]
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="orders", codename__in=codenames)
        )
        token, admin_id = admin_api_token_issue(user=user), str(user.pk)
    return {"Authorization": f"Bearer {token}", "X-Admin-Id": admin_id}


def clickhouse() -> Any:
    from warehouse.client import connect

    try:
        return connect(clickhouse_url())
    except Exception as exc:
        raise StageFailed("ClickHouse", f"cannot connect to {redacted(clickhouse_url())}: {exc}") from exc


def clickhouse_database() -> str:
    return environment.env_str("CLICKHOUSE_DATABASE", environment.CLICKHOUSE_DATABASE)


def id_list(ids: Iterable[int]) -> str:
    return ",".join(str(int(i)) for i in ids) or "0"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# --- Kafka ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicState:
    topic: str
    end_offset: int  # summed over partitions
    group: str
    lag: int  # summed over partitions; a partition the group never committed counts from 0


def kafka_state(admin: Any, topic: str, group: str) -> TopicState:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    described = retrying(f"describing topic {topic}", lambda: admin.describe_topics([topic]))
    partitions = [
        TopicPartition(topic, p["partition_index"])
        for description in described
        for p in description["partitions"]
    ]
    if not partitions:
        raise StageFailed("Kafka", f"topic {topic} does not exist")
    ends = retrying(
        f"reading the end offsets of {topic}",
        lambda: admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions}),
    )
    end = {(tp.topic, tp.partition): value.offset for tp, value in ends.items()}
    committed_raw = retrying(
        f"reading the offsets group {group} committed",
        lambda: admin.list_group_offsets({group: None}),
        on_retry=lambda _: forget_group_coordinator(admin, group),
    ).get(group, {})
    committed = {(tp.topic, tp.partition): m.offset for tp, m in committed_raw.items() if m.offset >= 0}
    lag = sum(offset - committed.get(key, 0) for key, offset in end.items())
    return TopicState(topic, sum(end.values()), group, lag)


def kafka_admin() -> Any:
    from kafka import KafkaAdminClient

    from consumers.settings import ConsumerSettings

    servers = ConsumerSettings.from_env().kafka_bootstrap_servers
    try:
        return KafkaAdminClient(
            bootstrap_servers=servers, client_id="pipeline-check", request_timeout_ms=10_000
        )
    except Exception as exc:
        raise StageFailed("Kafka", f"not reachable at {','.join(servers)}: {exc}") from exc


# --- waiting -------------------------------------------------------------------------------------


def wait_for(
    what: str,
    probe: Callable[[], tuple[bool, str]],
    timeout: float,
    on_timeout: Callable[[], StageFailed],
    interval: float = 0.5,
) -> float:
    """Polls `probe` until it reports done, drawing one progress line; returns the seconds waited.
    On a terminal the line is redrawn in place, elsewhere (CI logs) printed every few seconds."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    last_print = 0.0
    while True:
        done, progress = probe()
        waited = time.monotonic() - started
        line = f"  waiting for {what}: {progress} ({waited:.1f}s / {timeout:.0f}s)"
        if tty:
            sys.stdout.write("\r" + line.ljust(110)[:110])
            sys.stdout.flush()
        elif done or waited - last_print >= 5:
            print(line, flush=True)
            last_print = waited
        if done:
            if tty:
                sys.stdout.write("\n")
            return waited
        if waited > timeout:
            if tty:
                sys.stdout.write("\n")
            raise on_timeout()
        time.sleep(interval)
