"""The load the benchmark puts on the pipeline: orders through the service layer and through the
HTTP API (closed loop for throughput, open loop at a fixed rate for latency and lag), a synthetic
outbox backlog written in bulk, and the commit-to-view latency probe."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PRODUCTS = 50
CUSTOMERS = 200
# Synthetic backlog orders get ids far above the real ones, so both never collide.
BACKLOG_ID_BASE = 100_000_000


@dataclass
class Catalogue:
    user_ids: list[int]
    product_ids: list[int]
    # The credentials orders are posted with: POST /api/orders needs a staff caller holding
    # orders.add_order (README, "Who may call the API").
    api_headers: dict[str, str] = field(default_factory=dict)

    def body(self, n: int) -> dict[str, object]:
        # One line per order, spread over many products: the benchmark measures the pipeline, not
        # contention on one inventory row.
        return {
            "user_id": self.user_ids[n % len(self.user_ids)],
            "items": [{"product_id": self.product_ids[n % len(self.product_ids)], "quantity": 1}],
            "payment_method": "CARD",
        }


def catalogue_create(tag: str) -> Catalogue:
    from decimal import Decimal

    from orders.services import customer_create, product_create

    products = [
        product_create(sku=f"BENCH-{tag}-{i}", name=f"Bench {i}", price=Decimal("9.99"), stock=10**9).pk
        for i in range(PRODUCTS)
    ]
    users = [
        customer_create(email=f"bench-{tag}-{i}@example.com", name=f"Bench {i}").pk for i in range(CUSTOMERS)
    ]
    return Catalogue(users, products, {"Authorization": f"Bearer {api_token_create(tag)}"})


def api_token_create(tag: str) -> str:
    """A token of a staff user who may add orders and nothing else, as the documented way gives
    one (manage.py create_admin_token)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from orders.services import admin_api_token_issue

    user = get_user_model().objects.create_user(username=f"bench-{tag}", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="orders", codename="add_order"))
    return admin_api_token_issue(user=user)


def service_order_create(catalogue: Catalogue, n: int) -> None:
    """The n-th order of the catalogue, through the service layer (what POST /api/orders calls)."""
    from orders.services import OrderLine, order_create

    body = catalogue.body(n)
    order_create(
        user_id=int(body["user_id"]),  # type: ignore[call-overload]
        lines=[OrderLine(product_id=int(i["product_id"]), quantity=1) for i in body["items"]],  # type: ignore[attr-defined]
        payment_method="CARD",
    )


def service_orders(catalogue: Catalogue, count: int) -> float:
    """Creates `count` orders through the service layer in one thread; returns orders/s."""
    started = time.perf_counter()
    for n in range(count):
        service_order_create(catalogue, n)
    return count / (time.perf_counter() - started)


def backlog_insert(count: int, chunk: int = 50_000) -> None:
    """Writes `count` pending OrderCreated events in bulk, each for an order of its own, with the
    payload of a real order (so the transformer and the sink do their full work)."""
    from django.db import connection, transaction

    from outbox.models import OutboxEvent

    template = OutboxEvent.objects.filter(event_type="OrderCreated").order_by("id").first()
    if template is None:
        raise RuntimeError("the backlog needs one real OrderCreated event as its template")
    payload = json.dumps(template.payload)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(CAST(aggregate_id AS UNSIGNED)), 0) FROM outbox")
        start = max(BACKLOG_ID_BASE, int(cursor.fetchone()[0])) + 1
    done = 0
    while done < count:
        size = min(chunk, count - done)
        first = start + done
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO outbox (event_id, event_type, aggregate_type, aggregate_id,
                        aggregate_version, schema_version, occurred_at, payload, status, attempts,
                        last_error, locked_by, created_at)
                    SELECT UUID(), 'OrderCreated', 'order', CAST(%s + seq AS CHAR), 1, 1, UTC_TIMESTAMP(6),
                        JSON_SET(%s, '$.order_id', %s + seq), 'pending', 0, '', '', UTC_TIMESTAMP(6)
                    FROM seq_0_to_{size - 1}""",
                [first, payload, first],
            )
        done += size
    # Written in seconds into a table that held a few hundred rows, the backlog leaves statistics
    # sampled mid-insert that can send the claim's NOT EXISTS down the wrong index: the relay
    # would notice its slow claims and resample them itself (outbox.relay), but only after the
    # first one, seconds long. Resampled here, the drain measures the relay, not that stall.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE outbox")
        cursor.fetchall()


def outbox_counts() -> dict[str, int]:
    from django.db.models import Count

    from outbox.models import OutboxEvent

    return {r["status"]: r["n"] for r in OutboxEvent.objects.values("status").annotate(n=Count("id"))}


# --- HTTP --------------------------------------------------------------------------------------


def post_order(base_url: str, catalogue: Catalogue, n: int) -> int:
    """POSTs the n-th order of the catalogue with the catalogue's credentials."""
    request = urllib.request.Request(
        f"{base_url}/api/orders",
        data=json.dumps(catalogue.body(n)).encode(),
        headers={"Content-Type": "application/json", **catalogue.api_headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["order_id"])


@dataclass
class HttpResult:
    orders: int
    seconds: float
    errors: int
    latencies_ms: list[float]
    # order id -> monotonic time its response arrived (the order had committed by then)
    committed_at: dict[int, float] = field(default_factory=dict)
    # open loop only: requests not sent because the web role was behind when the period ended
    dropped: int = 0

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0


def http_closed_loop(base_url: str, catalogue: Catalogue, count: int, threads: int) -> HttpResult:
    """As fast as `threads` clients can go: throughput of the web role."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(n: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            post_order(base_url, catalogue, n)
        except Exception:
            with lock:
                errors += 1
            return
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    return HttpResult(len(latencies), time.perf_counter() - started, errors, latencies)


def http_open_loop(
    base_url: str,
    catalogue: Catalogue,
    rate: float,
    seconds: float,
    threads: int,
    on_commit: object = None,
) -> HttpResult:
    """Orders at a fixed arrival rate (requests are scheduled, not waited for): the load a shop puts
    on the pipeline. `on_commit(order_id, t)` is called for each committed order."""
    committed: dict[int, float] = {}
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    total = int(rate * seconds)
    started = time.monotonic()
    # A request still queued when the period is over is dropped, not sent late: a web role slower
    # than `rate` shows as a lower achieved rate instead of stretching the run without bound.
    cutoff = started + seconds + 1.0
    dropped = 0

    def one(n: int, due: float) -> None:
        nonlocal errors, dropped
        if time.monotonic() > cutoff:
            with lock:
                dropped += 1
            return
        try:
            order_id = post_order(base_url, catalogue, n)
        except Exception:
            with lock:
                errors += 1
            return
        now = time.monotonic()
        with lock:
            committed[order_id] = now
            latencies.append((now - due) * 1000)
        if callable(on_commit):
            on_commit(order_id, now)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for n in range(total):
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, n, due)
    elapsed = min(time.monotonic(), cutoff) - started
    return HttpResult(len(committed), elapsed, errors, latencies, committed, dropped)


class VisibilityProbe:
    """Polls the incremental views' state (what the dashboards' `*_mv` views add up) for the orders
    committed so far and records when each one is first counted there: the sink writes an order's
    counted state and every cell it changes in one insert, so that is when the dashboards show it.
    Resolution: `interval` plus one query."""

    def __init__(self, clickhouse_url: str, database: str, interval: float = 0.1) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=clickhouse_url)
        self._database = database
        self._interval = interval
        self._waiting: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.latencies_ms: list[float] = []
        self.query_ms: list[float] = []

    def committed(self, order_id: int, at: float) -> None:
        with self._lock:
            self._waiting[order_id] = at

    def start(self) -> None:
        self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting)

    def stop(self, drain_timeout: float) -> int:
        """Waits until every committed order is visible (or the timeout); returns how many never
        appeared."""
        deadline = time.monotonic() + drain_timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=10)
        return self.pending()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ids = list(self._waiting)
            if ids:
                started = time.perf_counter()
                rows = self._client.query(
                    f"SELECT DISTINCT k1 FROM {self._database}.view_state "
                    f"WHERE epoch = (SELECT max(epoch) FROM {self._database}.view_epochs WHERE status = 1) "
                    f"AND kind = 'order' AND orders > 0 AND k1 IN ({','.join(map(str, ids))})"
                ).result_rows
                now = time.monotonic()
                self.query_ms.append((time.perf_counter() - started) * 1000)
                with self._lock:
                    for (order_id,) in rows:
                        at = self._waiting.pop(int(order_id), None)
                        if at is not None:
                            self.latencies_ms.append((now - at) * 1000)
            self._stop.wait(self._interval)
