"""The checks behind scripts/test-deletion-flow.sh: deletes are honoured by every stage.

Creates a customer, a product and `--orders` orders of its own through the API and waits until
ClickHouse has them, then deletes them through `DELETE /admin/orders/{id}` (Bearer token and
X-Admin-Id; see pipeline_checks.admin_headers) and checks, each with a bounded wait:

    MySQL       deleted_at is set and deleted_by is the admin
    Kafka       an OrderDeleted event keyed by the order id on order.events
    ClickHouse  the order's latest row has is_deleted = 1
    views       the orders are absent from active_orders; their customer and product are absent
                from user_analytics_mv and top_products_mv; the global views match MySQL
                (skipped with --run-only)

Exit 0 when every check holds, 1 naming the stage that does not, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from consumers.kafka_io import retrying
from consumers.settings import ConsumerSettings
from scripts.check_pipeline import Run, Stages
from scripts.pipeline_checks import (
    Api,
    StageFailed,
    admin_headers,
    api_url,
    clickhouse,
    clickhouse_database,
    id_list,
    run_script,
    wait_for,
)


@dataclass(frozen=True)
class Orders:
    """The orders this check creates and deletes, with the one customer and product they share."""

    user_id: int
    product_id: int
    ids: list[int]


def create_orders(api: Api, count: int) -> Orders:
    tag = uuid.uuid4().hex[:8]
    product_in = {"sku": f"DF-{tag}", "name": "Deletion check", "price": "12.00", "stock": 1000}
    product = api.call("POST", "/api/products", product_in)
    customer = api.call("POST", "/api/users", {"email": f"df-{tag}@example.com", "name": "Deletion check"})
    order_in = {"user_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    orders = [api.call("POST", "/api/orders", order_in) for _ in range(count)]
    return Orders(int(customer["id"]), int(product["id"]), [int(o["order_id"]) for o in orders])


def end_offsets(consumer: KafkaConsumer, topic: str) -> dict[Any, int]:
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        raise StageFailed("Kafka", f"topic {topic} does not exist")
    return dict(retrying(f"reading the end offsets of {topic}", lambda: consumer.end_offsets(partitions)))


def deleted_events(consumer: KafkaConsumer, start: dict[Any, int], order_ids: set[int]) -> set[int]:
    """Order ids with an OrderDeleted event on the topic after `start`, read up to its end now."""
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    end = retrying("reading the end offsets of the events topic", lambda: consumer.end_offsets(list(start)))
    found: set[int] = set()
    while any(consumer.position(tp) < end[tp] for tp in start):
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                event = json.loads(record.value)
                key = int(record.key.decode()) if record.key else -1
                if event.get("event_type") == "OrderDeleted" and key in order_ids:
                    found.add(key)
    return found


def wait_until_in_views(client: Any, db: str, orders: Orders, timeout: float) -> None:
    """The views must show the orders first, or their absence later would prove nothing."""
    user_id, product_id, order_ids = orders.user_id, orders.product_id, orders.ids

    def in_clickhouse() -> tuple[bool, str]:
        n, users, products = client.query(
            f"SELECT (SELECT count() FROM {db}.active_orders WHERE order_id IN ({id_list(order_ids)})), "
            f"(SELECT orders_count FROM {db}.user_analytics_mv WHERE user_id = {user_id}), "
            f"(SELECT orders_count FROM {db}.top_products_mv WHERE product_id = {product_id})"
        ).result_rows[0]
        done = int(n) == int(users or 0) == int(products or 0) == len(order_ids)
        return done, f"{n}/{len(order_ids)} orders in ClickHouse, {users or 0} in user and product views"

    wait_for(
        "the orders to reach ClickHouse and its views",
        in_clickhouse,
        timeout,
        lambda: StageFailed("pipeline", "the new orders never reached ClickHouse (run make test-pipeline)"),
    )


def delete_orders(api: Api, order_ids: list[int]) -> None:
    for order_id in order_ids:
        deleted = api.call("DELETE", f"/admin/orders/{order_id}")
        if not deleted.get("deleted_at"):
            raise StageFailed("API", f"DELETE /admin/orders/{order_id} answered without deleted_at")
    print(f"API: deleted {len(order_ids)} orders as admin {int(api.headers['X-Admin-Id'])}")


def check_mysql(order_ids: list[int], admin_id: int) -> None:
    # Django's models load only once run_script has set Django up.
    from orders.models import Order

    rows = list(Order.objects.filter(id__in=order_ids).values_list("id", "deleted_at", "deleted_by"))
    bad = [oid for oid, at, by in rows if at is None or by != admin_id]
    if len(rows) != len(order_ids) or bad:
        raise StageFailed("MySQL", f"orders {bad or order_ids} lack deleted_at or deleted_by={admin_id}")
    print(f"MySQL: {len(rows)} orders have deleted_at and deleted_by={admin_id}")


def wait_for_deleted_events(
    consumer: KafkaConsumer, topic: str, start: dict[Any, int], order_ids: list[int], timeout: float
) -> None:
    seen: set[int] = set()

    def in_kafka() -> tuple[bool, str]:
        seen.update(deleted_events(consumer, start, set(order_ids)))
        return len(seen) == len(order_ids), f"{len(seen)}/{len(order_ids)} OrderDeleted events"

    wait_for(
        f"OrderDeleted on {topic}",
        in_kafka,
        timeout,
        lambda: StageFailed(
            "Kafka", f"no OrderDeleted event for orders {sorted(set(order_ids) - seen)} (outbox relay)"
        ),
    )


def wait_until_flagged(client: Any, db: str, order_ids: list[int], timeout: float) -> None:
    def flagged() -> tuple[bool, str]:
        sql = (
            f"SELECT order_id, argMax(is_deleted, version) FROM {db}.orders_analytics "
            f"WHERE order_id IN ({id_list(order_ids)}) GROUP BY order_id"
        )
        n = sum(1 for _, is_deleted in client.query(sql).result_rows if int(is_deleted) == 1)
        return n == len(order_ids), f"{n}/{len(order_ids)} rows with is_deleted = 1"

    wait_for(
        "is_deleted = 1 in ClickHouse",
        flagged,
        timeout,
        lambda: StageFailed("ClickHouse", "deleted orders not flagged is_deleted = 1 (transformer or sink)"),
    )


def wait_until_absent(client: Any, db: str, orders: Orders, stages: Stages, timeout: float) -> None:
    user_id, product_id, order_ids = orders.user_id, orders.product_id, orders.ids
    problems: list[str] = []

    def absent() -> tuple[bool, str]:
        problems[:] = []
        active = int(
            client.query(
                f"SELECT count() FROM {db}.active_orders WHERE order_id IN ({id_list(order_ids)})"
            ).result_rows[0][0]
        )
        if active:
            problems.append(f"{active} deleted orders still in active_orders")
        for view, column, value in (
            ("user_analytics_mv", "user_id", user_id),
            ("top_products_mv", "product_id", product_id),
        ):
            n = int(
                client.query(f"SELECT count() FROM {db}.{view} WHERE {column} = {value}").result_rows[0][0]
            )
            if n:
                problems.append(f"{view} still has {column} {value}")
        problems.extend(stages.views_mismatch())
        return not problems, "views match" if not problems else f"{len(problems)} views differ"

    wait_for(
        "the orders to leave every view",
        absent,
        timeout,
        lambda: StageFailed("ClickHouse views", "; ".join(problems)),
    )


def check(args: argparse.Namespace) -> None:
    # Every call as the admin: orders and customers are personal data, served to staff only.
    api = Api(api_url(), admin_headers())
    admin_id = int(api.headers["X-Admin-Id"])
    orders = create_orders(api, args.orders)
    print(f"API: created orders {orders.ids} of customer {orders.user_id}, product {orders.product_id}")
    client, db = clickhouse(), clickhouse_database()
    wait_until_in_views(client, db, orders, args.timeout)

    settings = ConsumerSettings.from_env()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    try:
        # Read before the deletes, so the events they cause are the ones after this point.
        start = end_offsets(consumer, settings.order_events_topic)
        delete_orders(api, orders.ids)
        check_mysql(orders.ids, admin_id)
        wait_for_deleted_events(consumer, settings.order_events_topic, start, orders.ids, args.timeout)
    finally:
        consumer.close()

    wait_until_flagged(client, db, orders.ids, args.timeout)
    run = Run(
        tag="deletion", user_ids=[orders.user_id], product_ids=[orders.product_id], order_ids=orders.ids
    )
    wait_until_absent(client, db, orders, Stages(run, whole_database=not args.run_only), args.timeout)
    print(
        "PASS: deleted orders have deleted_at in MySQL, OrderDeleted in Kafka, is_deleted = 1 in "
        "ClickHouse and are absent from every view"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/test-deletion-flow.sh", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--orders", type=int, default=3, help="orders to create and delete (default 3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per stage (default 60)")
    parser.add_argument(
        "--run-only",
        action="store_true",
        help="skip comparing the global views with all of MySQL "
        "(see python -m scripts.check_pipeline --help)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.orders <= 100:
        parser.error("--orders must be between 1 and 100")
    return run_script(lambda: check(args))


if __name__ == "__main__":
    sys.exit(main())
