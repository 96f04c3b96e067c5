"""`manage.py analytics_reconcile`: the incremental views against their live views and MySQL,
differences reported with a non-zero exit, and rebuilds of all or some days that repair them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from consumers.sink import ClickHouseWriter
from consumers.transformer import transform
from consumers.views import read_epochs
from contract.events import decode_envelope
from orders.models import Order
from orders.services import (
    OrderLine,
    customer_create,
    order_create,
    order_soft_delete,
    order_status_change,
    product_create,
)
from outbox.envelope import envelope_of
from outbox.models import OutboxEvent
from tests.consumers.factories import kafka_value
from warehouse.schema import migrate

pytestmark = pytest.mark.django_db


@pytest.fixture
def database(clickhouse_client: Any, clickhouse_database: str) -> str:
    migrate(clickhouse_client, clickhouse_database, fsync_after_insert=False)
    return clickhouse_database


def deliver(client: Any, database: str, events: Any = None) -> None:
    """The outbox's events through the transformer and the sink's writer, as the pipeline would."""
    chosen = OutboxEvent.objects.order_by("id") if events is None else events
    rows = [transform(decode_envelope(kafka_value(envelope_of(event)))) for event in chosen]
    ClickHouseWriter(client, database).write(rows)


@pytest.fixture
def shop(clickhouse_client: Any, database: str) -> list[Order]:
    ann, bob = customer_create(email="ann@example.com"), customer_create(email="bob@example.com")
    tea = product_create(sku="TEA", name="Tea", price=Decimal("4.50"), stock=100)
    pot = product_create(sku="POT", name="Pot", price=Decimal("30.00"), stock=100)
    made = [
        order_create(
            user_id=ann.pk, lines=[OrderLine(tea.pk, 2), OrderLine(pot.pk, 1)], payment_method="CARD"
        ),
        order_create(user_id=ann.pk, lines=[OrderLine(tea.pk, 1)], payment_method="CARD"),
        order_create(user_id=bob.pk, lines=[OrderLine(pot.pk, 3)], payment_method="CARD"),
        order_create(user_id=bob.pk, lines=[OrderLine(tea.pk, 5)], payment_method="CARD"),
    ]
    order_status_change(order_id=made[0].pk, status="PAID")
    order_status_change(order_id=made[1].pk, status="CANCELLED")
    order_soft_delete(order_id=made[3].pk, deleted_by=1)
    deliver(clickhouse_client, database)
    return made


def reconcile(chdb_dir: Path, database: str, *options: str) -> str:
    out = StringIO()
    call_command(
        "analytics_reconcile", *options, url=f"chdb://{chdb_dir}", database=database, partitions=1,
        settle=0, stdout=out,
    )  # fmt: skip
    return out.getvalue()


def corrupt_today(client: Any, database: str) -> None:
    """A daily cell of today that counts one order too many, as a bug in the sink would leave."""
    epoch = read_epochs(client, database).current
    today = (datetime.now(UTC).date() - datetime(1970, 1, 1).date()).days
    client.command(
        f"INSERT INTO {database}.view_state "
        "(epoch, kind, partition, k1, version, orders, amount, items, uniq) "
        f"SELECT {epoch}, 'daily', partition, k1, version + 1, orders + 1, amount + 1, items, uniq "
        f"FROM {database}.view_state FINAL WHERE epoch = {epoch} AND kind = 'daily' AND k1 = {today}"
    )


def test_views_that_match_their_live_views_and_mysql_pass(
    chdb_dir: Path, clickhouse_client: Any, database: str, shop: list[Order]
) -> None:
    assert "matches their live views and MySQL" in reconcile(chdb_dir, database)
    rows = clickhouse_client.query(
        f"SELECT orders_count FROM {database}.order_status_mv ORDER BY status"
    ).result_rows
    assert sorted(int(n) for (n,) in rows) == [1, 1, 1]  # CANCELLED, PAID, PENDING; the deleted one gone


def test_a_wrong_cell_is_reported_with_a_non_zero_exit_and_a_rebuild_of_its_day_repairs_it(
    chdb_dir: Path, clickhouse_client: Any, database: str, shop: list[Order]
) -> None:
    corrupt_today(clickhouse_client, database)
    out = StringIO()
    with pytest.raises(CommandError, match="differences"):
        call_command("analytics_reconcile", url=f"chdb://{chdb_dir}", database=database, settle=0, stdout=out)
    report = out.getvalue()
    assert "live: daily_sales: only in daily_sales_mv" in report
    assert "mysql: daily_sales_mv:" in report

    today = datetime.now(UTC).date().isoformat()
    done = reconcile(chdb_dir, database, "--rebuild", "--from", today, "--to", today)
    assert f"rebuilt the days {today} to {today} from the counted orders" in done
    assert "matches their live views and MySQL" in done


def test_a_full_rebuild_repairs_every_view_and_keeps_the_deleted_order_out(
    chdb_dir: Path, clickhouse_client: Any, database: str, shop: list[Order]
) -> None:
    corrupt_today(clickhouse_client, database)
    before = read_epochs(clickhouse_client, database).current
    done = reconcile(chdb_dir, database, "--rebuild")
    assert f"as epoch {before + 1}" in done and "matches" in done
    # A replay of every event after the rebuild counts nothing twice and brings nothing back.
    deliver(clickhouse_client, database)
    assert "matches their live views and MySQL" in reconcile(chdb_dir, database)
    parts = clickhouse_client.query(
        f"SELECT DISTINCT partition FROM system.parts WHERE database = '{database}' "
        "AND table = 'view_state' AND active"
    ).result_rows
    assert parts == [(str(before + 1),)]  # the old epoch's rows are gone


def test_an_order_not_yet_in_clickhouse_is_a_difference_from_mysql_only(
    chdb_dir: Path, clickhouse_client: Any, database: str, shop: list[Order]
) -> None:
    seen = OutboxEvent.objects.count()
    order_status_change(order_id=shop[2].pk, status="PAID")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("analytics_reconcile", url=f"chdb://{chdb_dir}", database=database, settle=0, stdout=out)
    assert "mysql: order_status_mv: PAID" in out.getvalue()
    assert "live:" not in out.getvalue()
    deliver(clickhouse_client, database, OutboxEvent.objects.order_by("id")[seen:])
    assert "matches" in reconcile(chdb_dir, database)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--from", "2026-11-01", "--to", "2026-11-02"), "add --rebuild"),
        (("--rebuild", "--from", "2026-11-01"), "both --from and --to"),
        (("--rebuild", "--from", "2026-11-03", "--to", "2026-11-02"), "is after"),
    ],
)
def test_bad_options_are_refused_with_a_message(
    chdb_dir: Path, database: str, options: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        reconcile(chdb_dir, database, *options)


def test_a_date_that_is_not_one_is_refused(chdb_dir: Path, database: str) -> None:
    with pytest.raises(CommandError, match="not a date"):
        reconcile(chdb_dir, database, "--rebuild", "--from", "yesterday", "--to", "2026-11-02")


def test_orders_of_yesterday_are_compared_too(
    chdb_dir: Path, clickhouse_client: Any, database: str, shop: list[Order]
) -> None:
    Order.objects.filter(pk=shop[0].pk).update(created_at=datetime.now(UTC) - timedelta(days=1))
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("analytics_reconcile", url=f"chdb://{chdb_dir}", database=database, settle=0, stdout=out)
    assert "mysql: daily_sales_mv:" in out.getvalue()
