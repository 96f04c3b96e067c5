"""How many times the ClickHouse engine syncs files and directories to disk while the sink writes
one batch (an order and a delete, so both of its tables get an insert), after `python -m consumers
migrate` applied the schema with the settings of the environment:

    CLICKHOUSE_URL=chdb:///dir python -m tests.warehouse.fsync_probe   # {"FileSync": n, "DirectorySync": m}

It runs in a process of its own: the counters are the engine's, one engine per process, so no other
test's writes count."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumers.__main__ import main as consumers_main
from consumers.settings import ConsumerSettings
from consumers.sink import ClickHouseWriter
from contract.events import OrderItem
from contract.rows import AnalyticsRow
from warehouse.client import ClickHouseClient, connect, query_rows

SYNC_EVENTS = ("FileSync", "DirectorySync")


def sync_counts(client: ClickHouseClient) -> dict[str, int]:
    names = ", ".join(f"'{name}'" for name in SYNC_EVENTS)
    counted = dict(query_rows(client, f"SELECT event, value FROM system.events WHERE event IN ({names})"))
    return {name: int(counted.get(name, 0)) for name in SYNC_EVENTS}


def batch() -> list[AnalyticsRow]:
    now = datetime.now(UTC)
    item = OrderItem(
        product_id=1, sku="SKU-1", product_name="Mug", quantity=2, unit_price="4.50", line_total="9.00"
    )
    created = AnalyticsRow(
        schema_version=1, order_id=1, user_id=1, user_email="a@example.com", order_date=now.date(),
        total_amount="9.00", items_count=2, status="PENDING", payment_method="CARD",
        payment_status="PENDING", created_at=now, version=1, event_type="OrderCreated",
        deleted_at=None, is_deleted=False, items=[item],
    )  # fmt: skip
    deleted = AnalyticsRow(
        **{**{f: getattr(created, f) for f in created.__struct_fields__}, "order_id": 2, "version": 2,
           "event_type": "OrderDeleted", "deleted_at": now, "is_deleted": True},
    )  # fmt: skip
    return [created, deleted]


def main() -> None:
    if consumers_main(["migrate"]) != 0:
        raise SystemExit("the migration failed")
    settings = ConsumerSettings.from_env()
    client = connect(settings.clickhouse_url)
    before = sync_counts(client)
    rejected = ClickHouseWriter(client, settings.clickhouse_database).write(batch())
    after = sync_counts(client)
    if rejected:
        raise SystemExit(f"the batch was refused: {rejected}")
    print(json.dumps({name: after[name] - before[name] for name in SYNC_EVENTS}))


if __name__ == "__main__":
    main()
