"""The incremental analytics views: `view_state` (warehouse/schema.sql), kept by the sink in O(batch).

For every batch the maintainer reads the state each order of the batch was last counted in and the
cells the batch touches, retracts the counted state, adds the new one, and writes the new value of
every touched cell, the orders' new counted states and the partitions' progress in one insert: one
part, visible all at once or not at all.

Exactly once, without fencing and without a deduplication window. A cell belongs to one Kafka
partition of orders_analytics (the topic is routed by user id, so a user's cells are in one
partition too) and every row written for a partition has the version (offset after the write's last
record) * VERSION_STEP; the highest version of a cell wins. A write skips the records below its
partition's progress, and every write is computed from a consistent state (its reads all see the
same progress, or it reads again). Then the winning row of every cell is exact at its partition's
progress, whatever writes land and in whatever order:
- a batch redelivered with other boundaries: its applied records are below the progress, skipped;
- a crash after the insert and before the commit: the same;
- a crash between the orders_analytics insert and this one: the batch is read again and applied;
- a member kicked from the group that still finishes a write: its write was computed from an older
  state, so its version is no higher than the new owner's for every cell both touch, and a cell
  only it touched is one no later record changed.
An order's state also carries its version, and a record no newer than it is skipped: a replay, or
the records after a rebuild's snapshot, count nothing twice. A rebuild writes a new epoch of the
whole state (`rebuild`); writes wait while it runs and write again in it when one started during
theirs, so a write computed before it never mixes with its rows. The progress is per (partition,
topic), a new topic's versions starting above everything its partition had.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
from kafka.partitioner.default import murmur2

from contract.rows import AnalyticsRow
from warehouse.client import SYNC_INSERT_SETTINGS, ClickHouseClient, check_identifier

log = logging.getLogger(__name__)

VERSION_STEP = 1024
NOT_REVENUE = frozenset({"CANCELLED", "REFUNDED"})
EPOCH = date(1970, 1, 1)
ZERO = Decimal("0.00")
# A write reads again when another write moved its partitions on while it was reading, or when a
# rebuild started while it was writing.
MAX_READS = 10
# How long a write waits for a running rebuild before it fails (and the sink retries it).
REBUILD_WAIT_SECONDS = 60.0
RUNNING, COMPLETE, ABANDONED = 0, 1, 2
CELL_KINDS = ("daily", "hourly", "status", "user", "product", "day_user")
MEMBER_KINDS = ("user_order", "product_line")
DAY_KINDS = ("daily", "hourly", "day_user")

STATE_COLUMNS = (
    "epoch", "kind", "partition", "k1", "k2", "ks", "version", "is_deleted", "orders", "paying", "amount",
    "items", "units", "uniq", "t1", "t2", "m", "s1", "s2", "user_id", "status", "l_product",
    "l_quantity", "l_total", "l_sku", "l_name",
)  # fmt: skip
_SELECT = ", ".join(STATE_COLUMNS)

Key = tuple[str, int, int, int, str]  # kind, partition, k1, k2, ks
Progress = dict[tuple[int, str], tuple[int, int]]  # (partition, topic) → (version, base)


def partition_of(user_id: int, partitions: int) -> int:
    """The partition of orders_analytics an order of `user_id` is routed to: Kafka's default
    partitioner on the user id's text (ClickHouse's kafkaMurmurHash computes the same)."""
    return int((murmur2(str(user_id).encode()) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True)
class Delivered:
    """An analytics row with where it was read from. Without an offset (a direct write, as in
    tests and benchmarks) the row is appended after its partition's progress."""

    row: AnalyticsRow
    partition: int = 0
    offset: int | None = None
    topic: str = ""


class Line(NamedTuple):
    product_id: int
    quantity: int
    total: Decimal
    sku: str
    name: str


class Counted(NamedTuple):
    """The part of an order's state the views count."""

    order_id: int
    version: int
    user_id: int
    email: str
    created_at: datetime
    status: str
    amount: Decimal
    items_count: int
    lines: tuple[Line, ...]

    @property
    def paying(self) -> bool:
        return self.status not in NOT_REVENUE

    @property
    def day(self) -> int:
        return (self.created_at.date() - EPOCH).days

    @property
    def hour(self) -> int:
        return int(self.created_at.timestamp()) // 3600 * 3600


def counted_of(row: AnalyticsRow) -> Counted:
    assert row.created_at is not None and row.user_id is not None and row.total_amount is not None
    return Counted(
        order_id=row.order_id,
        version=row.version,
        user_id=row.user_id,
        email=row.user_email or "",
        created_at=row.created_at.astimezone(UTC),
        status=str(row.status),
        amount=Decimal(row.total_amount),
        items_count=row.items_count or 0,
        lines=tuple(
            Line(item.product_id, item.quantity, Decimal(item.line_total), item.sku, item.product_name)
            for item in row.items or ()
        ),
    )


@dataclass
class Cell:
    orders: int = 0
    paying: int = 0
    amount: Decimal = ZERO
    items: int = 0
    units: int = 0
    uniq: int = 0
    t1: datetime | None = None
    t2: datetime | None = None
    m: int = 0
    s1: str = ""
    s2: str = ""
    counted: Counted | None = None  # 'order' rows

    def add(self, sign: int, orders: int = 0, paying: int = 0, amount: Decimal = ZERO,
            items: int = 0, units: int = 0) -> None:  # fmt: skip
        self.orders += sign * orders
        self.paying += sign * paying
        self.amount += sign * amount
        self.items += sign * items
        self.units += sign * units


def _cell_of(values: list[Any]) -> Cell:
    """A cell from a row of view_state read as JSON (STATE_COLUMNS, in order)."""
    (_, kind, _, k1, _, _, _, _, orders, paying, amount, items, units, uniq, t1, t2, m, s1, s2, user_id,
     status, l_product, l_quantity, l_total, l_sku, l_name) = values  # fmt: skip
    cell = Cell(orders, paying, Decimal(amount), items, units, uniq, _moment(t1), _moment(t2), m, s1, s2)
    if kind == "order" and orders > 0:
        assert cell.t1 is not None
        cell.counted = Counted(
            order_id=k1, version=m, user_id=user_id, email=s1, created_at=cell.t1, status=status,
            amount=cell.amount, items_count=items,
            lines=tuple(
                Line(p, q, Decimal(t), sku, name)
                for p, q, t, sku, name in zip(l_product, l_quantity, l_total, l_sku, l_name, strict=True)
            ),
        )  # fmt: skip
    return cell


# Integers as JSON numbers (64-bit ones are quoted by default), decimals as strings (exact).
_JSON_OUTPUT = {"output_format_json_quote_64bit_integers": 0, "output_format_json_quote_decimals": 1}
_rows_decoder = msgspec.json.Decoder(list[list[Any]])
_M = STATE_COLUMNS.index("m")


def _moment(text: str | None) -> datetime | None:
    """A DateTime64(6, 'UTC') as ClickHouse writes it in JSON."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


class ViewStateError(RuntimeError):
    """The state cannot be applied: a count would go negative, the reads never settled, or a
    rebuild runs too long."""


class RebuildRunning(ViewStateError):
    """Another rebuild started the same epoch."""


@dataclass(frozen=True)
class Epochs:
    current: int  # the latest complete epoch, what the views read (0: none yet)
    running: int  # the latest running epoch above it, or 0


def read_epochs(client: ClickHouseClient, database: str) -> Epochs:
    rows = client.query(f"SELECT epoch, max(status) FROM {database}.view_epochs GROUP BY epoch").result_rows
    statuses = {int(epoch): int(status) for epoch, status in rows}
    current = max((e for e, st in statuses.items() if st == COMPLETE), default=0)
    running = max((e for e, st in statuses.items() if st == RUNNING and e > current), default=0)
    return Epochs(current, running)


@dataclass
class Plan:
    """What one write inserts: the new value of every key it touches (None: the key goes)."""

    epoch: int
    rows: dict[Key, Cell | None] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)  # partition → version of its rows
    applied: int = 0  # records that changed what the views count

    def line_values(self) -> list[list[Any]]:
        """The rows of the write, in STATE_COLUMNS order, as msgspec encodes them (moments in RFC
        3339, decimals as text)."""
        epoch, versions = self.epoch, self.versions
        lines = []
        for (kind, partition, k1, k2, ks), cell in self.rows.items():
            head = [epoch, kind, partition, k1, k2, ks, versions[partition]]
            if cell is None:
                lines.append(head + _GONE)
                continue
            counted = cell.counted
            values = [
                *head, 0, cell.orders, cell.paying, cell.amount, cell.items, cell.units, cell.uniq, cell.t1,
                cell.t2, cell.m, cell.s1, cell.s2,
            ]  # fmt: skip
            if counted is None:
                values += _NOT_AN_ORDER
            else:
                lines_of = counted.lines
                values += [
                    counted.user_id, counted.status, [line.product_id for line in lines_of],
                    [line.quantity for line in lines_of], [line.total for line in lines_of],
                    [line.sku for line in lines_of], [line.name for line in lines_of],
                ]  # fmt: skip
            lines.append(values)
        return lines


# What a row past its key's end (is_deleted) holds after the head; what a cell that is not an
# order's holds after its own values.
_GONE = [1, 0, 0, ZERO, 0, 0, 0, None, None, 0, "", "", 0, "", [], [], [], [], []]
_NOT_AN_ORDER = [0, "", [], [], [], [], []]
# msgspec writes a moment as RFC 3339 ("...T...Z"), which ClickHouse reads with best_effort.
_INSERT_SETTINGS = dict(SYNC_INSERT_SETTINGS, date_time_input_format="best_effort")


_encoder = msgspec.json.Encoder()


class ViewMaintainer:
    """Applies delivered analytics rows to `view_state`; safe to call again after any failure."""

    def __init__(self, client: ClickHouseClient, database: str) -> None:
        self._client = client
        self._database = check_identifier(database)

    def apply(self, items: Sequence[Delivered]) -> int:
        """Applies the items; returns how many changed what the views count."""
        if not items:
            return 0
        for _ in range(MAX_READS):
            epoch = self.wait_for_epoch()
            plan = self.prepare(items, epoch)
            if plan is None:
                continue
            self.commit(plan)
            # A rebuild that started before this write landed may not count it: write it again in
            # the rebuild's epoch (what the rebuild counted, it skips; a late write to the old epoch
            # is read by nobody).
            if read_epochs(self._client, self._database) == Epochs(epoch, 0):
                return plan.applied
        raise ViewStateError(f"the view state kept moving on while {len(items)} rows were read")

    def wait_for_epoch(self, timeout: float = REBUILD_WAIT_SECONDS) -> int:
        """The epoch to write in, once no rebuild is running."""
        deadline = time.monotonic() + timeout
        while True:
            epochs = read_epochs(self._client, self._database)
            if not epochs.running and epochs.current:
                return epochs.current
            if time.monotonic() > deadline:
                if not epochs.current:
                    raise ViewStateError(
                        f"{self._database}.view_epochs has no complete epoch: run "
                        "`python -m consumers reconcile --rebuild`"
                    )
                raise ViewStateError(
                    f"view rebuild of epoch {epochs.running} still running after {timeout:.0f} s; if "
                    "its process is gone, run `python -m consumers reconcile --rebuild` again"
                )
            time.sleep(0.1)

    def commit(self, plan: Plan) -> None:
        if not plan.rows:
            return
        # One msgspec call for the whole write: rows separated by commas, which ClickHouse's
        # JSON*EachRow formats accept.
        body = _encoder.encode(plan.line_values())[1:-1]
        # One block, so one part: the write is seen whole or not at all.
        settings = dict(_INSERT_SETTINGS, max_insert_block_size=len(plan.rows) + 1)
        self._client.raw_insert(
            f"{self._database}.view_state", STATE_COLUMNS, body, settings=settings, fmt="JSONCompactEachRow"
        )

    # --- reading -----------------------------------------------------------------------------------

    def _read(self, epoch: int, conditions: list[str]) -> tuple[dict[Key, tuple[int, Cell | None]], Progress]:
        """The winning row of every key of `epoch` matching any condition, and the progress of every
        (partition, topic) read. ClickHouse keeps each key's highest version (LIMIT 1 BY), and the
        rows come back as JSON, which msgspec decodes in one call."""
        sql = (
            f"SELECT {_SELECT} FROM {self._database}.view_state "
            f"WHERE epoch = {int(epoch)} AND ({' OR '.join(conditions)}) "
            "ORDER BY version DESC LIMIT 1 BY kind, partition, k1, k2, ks"
        )
        body = self._client.raw_query(sql, fmt="JSONCompactEachRow", settings=_JSON_OUTPUT)
        cells: dict[Key, tuple[int, Cell | None]] = {}
        progress: Progress = {}
        for values in _rows_decoder.decode(b"[" + b",".join(body.splitlines()) + b"]"):
            kind, partition, k1, k2, ks, version = values[1:7]
            if kind == "progress":
                progress[(k1, ks)] = (version, values[_M])
                continue
            cells[(kind, partition, k1, k2, ks)] = (version, None if values[7] else _cell_of(values))
        return cells, progress

    def _progress_condition(self, partitions: Iterable[int]) -> str:
        return f"(kind = 'progress' AND k1 IN ({id_list(partitions)}))"

    # --- planning ----------------------------------------------------------------------------------

    def prepare(self, items: Sequence[Delivered], epoch: int) -> Plan | None:
        """The write for `items`, computed from one consistent state; None when another write moved
        a partition on between the reads (the caller reads again)."""
        by_partition: dict[int, list[Delivered]] = defaultdict(list)
        for item in items:
            by_partition[item.partition].append(item)
        partitions = sorted(by_partition)
        order_terms = [
            f"(kind = 'order' AND partition = {p} AND "
            f"{_id_condition('k1', {i.row.order_id for i in by_partition[p]})})"
            for p in partitions
        ]
        base, progress = self._read(epoch, [self._progress_condition(partitions), *order_terms])
        plan = Plan(epoch)
        states: dict[Key, Cell | None] = {key: cell for key, (_, cell) in base.items()}
        changes: list[tuple[int, int, Counted]] = []  # (sign, partition, counted)
        for p in partitions:
            at = _position(progress, p, _topic_of(p, by_partition[p]))
            _plan_orders(plan, p, by_partition[p], at, states, changes)
        if not changes:
            return plan

        cells, members, retracted = _deltas(changes)
        # A paying order's day_user counter comes with its daily cell, whose distinct count follows it.
        base_cells, again = self._read(epoch, [self._progress_condition(partitions), *_key_conditions(cells)])
        if _moved(progress, again):
            return None
        new_cells = _new_cells(cells, base_cells)
        lookups = self._extremes(new_cells, base_cells, members, retracted)
        if lookups:
            found, again = self._read(
                epoch, [self._progress_condition(partitions), *_member_conditions(lookups)]
            )
            if _moved(progress, again):
                return None
            self._recompute_extremes(new_cells, members, lookups, found)

        for key, cell in new_cells.items():
            if min(cell.orders, cell.paying, cell.items, cell.units, cell.uniq) < 0 or cell.amount < 0:
                raise ViewStateError(f"{key} would go negative: {cell}")
            plan.rows[key] = cell if cell.orders > 0 else None
        for key, values in members.items():
            plan.rows[key] = values
        return plan

    def _extremes(
        self,
        new_cells: dict[Key, Cell],
        base: dict[Key, tuple[int, Cell | None]],
        members: dict[Key, Cell | None],
        retracted: dict[Key, Cell],
    ) -> set[tuple[str, int, int]]:
        """Sets each touched user's and product's extremes from the members the batch adds; returns
        the cells whose extreme member left or changed: those need their members read."""
        lookups: set[tuple[str, int, int]] = set()
        by_owner: dict[tuple[str, int, int], list[Key]] = defaultdict(list)
        for key in members:
            by_owner[("user" if key[0] == "user_order" else "product", key[1], key[2])].append(key)
        for (owner, p, k1), changed in by_owner.items():
            cell = new_cells.get((owner, p, k1, 0, ""))
            if cell is None or cell.orders <= 0:
                continue
            before = base.get((owner, p, k1, 0, ""), (0, None))[1]
            if before is not None and any(
                _held_extreme(owner, before, key[3], retracted[key])
                for key in changed
                if key in retracted and members[key] != retracted[key]
            ):
                lookups.add((owner, p, k1))
                continue
            for key in changed:
                member = members[key]
                if member is not None:
                    _widen(owner, cell, key[3], member)
        return lookups

    def _recompute_extremes(self, new_cells: dict[Key, Cell], members: dict[Key, Cell | None],
                            lookups: set[tuple[str, int, int]],
                            found: dict[Key, tuple[int, Cell | None]]) -> None:  # fmt: skip
        current: dict[Key, Cell | None] = {key: cell for key, (_, cell) in found.items()}
        current.update((key, value) for key, value in members.items())
        by_owner: dict[tuple[str, int, int], list[tuple[int, Cell]]] = defaultdict(list)
        for (kind, p, k1, k2, _), member in current.items():
            if member is not None:
                by_owner[("user" if kind == "user_order" else "product", p, k1)].append((k2, member))
        for owner, p, k1 in lookups:
            cell = new_cells[(owner, p, k1, 0, "")]
            cell.t1 = cell.t2 = None
            cell.m, cell.s1, cell.s2 = 0, "", ""
            for order_id, member in by_owner[(owner, p, k1)]:
                _widen(owner, cell, order_id, member)


class Position(NamedTuple):
    topic: str
    done: int  # the offset of the next record not applied
    base: int  # the version below the topic's first write


def _topic_of(p: int, items: list[Delivered]) -> str:
    topics = {item.topic for item in items}
    if len(topics) > 1:
        raise ValueError(f"partition {p} of several topics in one write: {sorted(topics)}")
    return topics.pop()


def _position(progress: Progress, p: int, topic: str) -> Position:
    """Where partition `p` of `topic` stands. A topic the state has not seen (the analytics topic
    recreated, or another one) starts at offset 0 with its versions above every version written
    for the partition before, so its writes win over the old topic's and a record is skipped only
    by its order's version, never by an offset of another topic."""
    if (p, topic) in progress:
        version, base = progress[(p, topic)]
        return Position(topic, (version - base) // VERSION_STEP, base)
    return Position(topic, 0, max((v for (q, _), (v, _) in progress.items() if q == p), default=0))


def _plan_orders(plan: Plan, p: int, items: list[Delivered], at: Position, states: dict[Key, Cell | None],
                 changes: list[tuple[int, int, Counted]]) -> None:  # fmt: skip
    """The new counted state of every order of partition `p`'s items not applied yet, into the
    plan, with the retractions and additions it makes."""
    done = at.done
    last: int | None = None
    for index, item in enumerate(items):
        offset = done + index if item.offset is None else item.offset
        if offset < done:
            continue  # applied by an earlier write
        last = offset if last is None else max(last, offset)
        row = item.row
        key: Key = ("order", p, row.order_id, 0, "")
        current = states.get(key)
        if current is not None and (current.orders == 0 or row.version <= current.m):
            continue  # deleted for good, or not newer than what is counted
        if current is not None and current.counted is not None:
            changes.append((-1, p, current.counted))
        if row.is_deleted:
            states[key] = Cell(orders=0, m=row.version)
        else:
            counted = counted_of(row)
            changes.append((1, p, counted))
            states[key] = Cell(orders=1, amount=counted.amount, items=counted.items_count,
                               t1=counted.created_at, m=row.version, s1=counted.email,
                               counted=counted)  # fmt: skip
        plan.rows[key] = states[key]
        plan.applied += 1
    if last is not None:
        plan.versions[p] = at.base + (last + 1) * VERSION_STEP
        plan.rows[("progress", p, p, 0, at.topic)] = Cell(m=at.base)


def _new_cells(cells: dict[Key, Cell], base: dict[Key, tuple[int, Cell | None]]) -> dict[Key, Cell]:
    """Every touched cell's value after the net changes `cells`, with the daily distinct counts."""
    new_cells: dict[Key, Cell] = {}

    def cell_at(key: Key) -> Cell:
        if key not in new_cells:
            found = base.get(key, (0, None))[1]
            new_cells[key] = Cell(**{f: getattr(found, f) for f in _CELL_FIELDS}) if found else Cell()
        return new_cells[key]

    for key, delta in cells.items():
        cell_at(key).add(1, delta.orders, delta.paying, delta.amount, delta.items, delta.units)
    # The distinct customers of a day change when a (day, user) counter leaves or reaches zero.
    for key in [k for k in new_cells if k[0] == "day_user"]:
        before = base.get(key, (0, None))[1]
        was = before is not None and before.orders > 0
        now = new_cells[key].orders > 0
        if was != now:
            cell_at(("daily", key[1], key[2], 0, "")).uniq += 1 if now else -1
    return new_cells


_CELL_FIELDS = ("orders", "paying", "amount", "items", "units", "uniq", "t1", "t2", "m", "s1", "s2")


def _held_extreme(owner: str, before: Cell, order_id: int, was: Cell) -> bool:
    """Whether the member `was` of `order_id` held one of the cell's extremes before the batch: the
    user's earliest order (t1) or latest one (t2, m: the order whose email the view shows), the
    product's latest order (m)."""
    if order_id == before.m:
        return True
    return owner == "user" and was.t1 == before.t1


def _widen(owner: str, cell: Cell, order_id: int, member: Cell) -> None:
    """Takes one present member into the cell's extremes."""
    if owner == "user":
        assert member.t1 is not None
        if cell.t1 is None or member.t1 < cell.t1:
            cell.t1 = member.t1
        if cell.t2 is None or (member.t1, order_id) > (cell.t2, cell.m):
            cell.t2, cell.m, cell.s1 = member.t1, order_id, member.s1
    elif order_id > cell.m:
        cell.m, cell.s1, cell.s2 = order_id, member.s1, member.s2


def _deltas(
    changes: list[tuple[int, int, Counted]],
) -> tuple[dict[Key, Cell], dict[Key, Cell | None], dict[Key, Cell]]:
    """The net change of every cell; the final state of every member the changes touch; and, for
    the members that were there before, their state then (the first retraction's)."""
    cells: dict[Key, Cell] = defaultdict(Cell)
    members: dict[Key, Cell | None] = {}
    retracted: dict[Key, Cell] = {}

    def member(key: Key, sign: int, value: Cell) -> None:
        if sign < 0 and key not in members:
            retracted[key] = value
        members[key] = value if sign > 0 else None

    for sign, p, order in changes:
        paying = order.paying
        amount = order.amount if sign > 0 else -order.amount
        cell = cells[("status", p, 0, 0, order.status)]
        cell.orders += sign
        cell.amount += amount
        cell = cells[("user", p, order.user_id, 0, "")]
        cell.orders += sign
        if paying:
            cell.paying += sign
            cell.amount += amount
        member(
            ("user_order", p, order.user_id, order.order_id, ""),
            sign,
            Cell(t1=order.created_at, s1=order.email),
        )
        if not paying:
            continue
        items = sign * order.items_count
        for kind, k1 in (("daily", order.day), ("hourly", order.hour)):
            cell = cells[(kind, p, k1, 0, "")]
            cell.orders += sign
            cell.amount += amount
            cell.items += items
        cells[("day_user", p, order.day, order.user_id, "")].orders += sign
        by_product: dict[int, list[Line]] = defaultdict(list)
        for line in order.lines:
            by_product[line.product_id].append(line)
        for product_id, lines in by_product.items():
            cell = cells[("product", p, product_id, 0, "")]
            cell.orders += sign
            cell.units += sign * sum(line.quantity for line in lines)
            total = sum((line.total for line in lines), ZERO)
            cell.amount += total if sign > 0 else -total
            member(
                ("product_line", p, product_id, order.order_id, ""),
                sign,
                Cell(s1=lines[-1].sku, s2=lines[-1].name),
            )
    return dict(cells), members, retracted


def _moved(before: Progress, after: Progress) -> bool:
    return any(version > before.get(key, (0, 0))[0] for key, (version, _) in after.items())


def id_list(values: Iterable[int]) -> str:
    """The distinct integers as the text of an SQL list (`NULL` for none, which matches nothing)."""
    return ",".join(str(int(v)) for v in sorted(set(values))) or "NULL"


def _id_condition(column: str, ids: Iterable[int]) -> str:
    """Membership in a set: ClickHouse hashes the list once and uses it on the primary key (a long
    OR of ranges is evaluated term by term for every row read, seconds for a batch's thousands)."""
    return f"{column} IN ({id_list(ids)})"


def _key_conditions(keys: Iterable[Key]) -> list[str]:
    grouped: dict[tuple[str, int], set[Any]] = defaultdict(set)
    for kind, p, k1, k2, ks in keys:
        grouped[(kind, p)].add(ks if kind == "status" else (k1, k2) if kind == "day_user" else k1)
    terms = []
    for (kind, p), values in sorted(grouped.items()):
        if kind == "status":
            listed = ",".join(
                "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in sorted(values)
            )
            terms.append(f"(kind = 'status' AND partition = {p} AND ks IN ({listed}))")
        elif kind == "day_user":
            # A day at a time: a list of users is one hashed set on the key's last column, where a
            # list of (day, user) pairs is compared as tuples, twice as slow.
            users_of: dict[int, set[int]] = defaultdict(set)
            for day, user in values:
                users_of[day].add(user)
            terms.extend(
                f"(kind = 'day_user' AND partition = {p} AND k1 = {int(day)} AND k2 IN ({id_list(users)}))"
                for day, users in sorted(users_of.items())
            )
        else:
            terms.append(f"(kind = '{kind}' AND partition = {p} AND ({_id_condition('k1', values)}))")
    return terms


def _member_conditions(lookups: set[tuple[str, int, int]]) -> list[str]:
    grouped: dict[tuple[str, int], set[int]] = defaultdict(set)
    for owner, p, k1 in lookups:
        grouped[("user_order" if owner == "user" else "product_line", p)].add(k1)
    return [
        f"(kind = '{kind}' AND partition = {p} AND k1 IN ({id_list(ids)}))"
        for (kind, p), ids in sorted(grouped.items())
    ]


# --- rebuild and reconcile -------------------------------------------------------------------------

PAYING = "status NOT IN ('CANCELLED', 'REFUNDED')"
DAY_NUMBER = "toUInt64(dateDiff('day', toDate('1970-01-01'), order_date))"
HOUR = "toUInt64(toUnixTimestamp(toStartOfHour(created_at)))"
# What every kind is rebuilt from: (kind, columns of view_state, SELECT over the orders of the
# rebuild's snapshot (SNAPSHOT_COLUMNS), what follows the FROM).
_REBUILD: tuple[tuple[str, str, str, str], ...] = (
    ("order",
     "k1, orders, amount, items, t1, m, s1, user_id, status, l_product, l_quantity, l_total, l_sku, l_name",
     "order_id, 1, total_amount, items_count, created_at, version, user_email, user_id, status, "
     "item_product_ids, item_quantities, item_line_totals, item_skus, item_names", ""),
    ("daily", "k1, orders, amount, items, uniq",
     f"{DAY_NUMBER} AS day, count(), sum(total_amount), sum(items_count), uniqExact(user_id)",
     f"WHERE {PAYING} GROUP BY partition, day"),
    ("hourly", "k1, orders, amount, items",
     f"{HOUR} AS hour, count(), sum(total_amount), sum(items_count)",
     f"WHERE {PAYING} GROUP BY partition, hour"),
    ("status", "ks, orders, amount", "status AS s, count(), sum(total_amount)", "GROUP BY partition, s"),
    ("user", "k1, orders, paying, amount, t1, t2, m, s1",
     f"user_id AS u, count(), countIf({PAYING}), sumIf(total_amount, {PAYING}), min(created_at), "
     "max(created_at), argMax(order_id, (created_at, order_id)), argMax(user_email, (created_at, order_id))",
     "GROUP BY partition, u"),
    ("day_user", "k1, k2, orders", f"{DAY_NUMBER} AS day, user_id AS u, count()",
     f"WHERE {PAYING} GROUP BY partition, day, u"),
    ("user_order", "k1, k2, t1, s1", "user_id, order_id, created_at, user_email", ""),
    ("product", "k1, orders, units, amount, m, s1, s2",
     "product_id, uniqExact(order_id), sum(quantity), sum(line_total), max(order_id), argMax(sku, order_id), "
     "argMax(product_name, order_id)", f"{{lines}} WHERE {PAYING} GROUP BY partition, product_id"),
    ("product_line", "k1, k2, s1, s2", "product_id, order_id, anyLast(sku), anyLast(product_name)",
     f"{{lines}} WHERE {PAYING} GROUP BY partition, product_id, order_id"),
)  # fmt: skip
_LINES = """ARRAY JOIN item_product_ids AS product_id, item_skus AS sku, item_names AS product_name,
    item_quantities AS quantity, item_line_totals AS line_total"""
SNAPSHOT_COLUMNS = (
    "partition UInt32, order_id UInt64, version UInt64, user_id UInt64, user_email String, "
    "created_at DateTime64(6, 'UTC'), order_date Date, status String, total_amount Decimal(38, 2), "
    "items_count Int64, item_product_ids Array(UInt64), item_quantities Array(UInt32), "
    "item_line_totals Array(Decimal(18, 2)), item_skus Array(String), item_names Array(String)"
)

_SNAPSHOT_NAMES = tuple(column.split()[0] for column in SNAPSHOT_COLUMNS.split(", ") if column[0].isalpha())


def rebuild(
    client: ClickHouseClient, database: str, partitions: int, days: tuple[date, date] | None = None
) -> int:
    """Writes the view state again, in a new epoch, and returns it. Without `days` every kind is
    recomputed from orders_analytics (its active orders); with `days` = (first, last), the daily,
    hourly and distinct-customer cells of those days are recomputed from the order states the views
    count, and the rest is carried over. The pipeline keeps running: sink writes wait while the
    rebuild runs and then write again in the new epoch, where what the rebuild counted is skipped
    (below the partition's progress, or not newer than the order's counted version)."""
    database = check_identifier(database)
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if days is not None and days[0] > days[1]:
        raise ValueError(f"the first day {days[0]} is after the last {days[1]}")
    rows = client.query(f"SELECT max(epoch) FROM {database}.view_epochs").result_rows
    old = read_epochs(client, database).current
    new = int(rows[0][0] or 0) + 1
    token = uuid.uuid4().hex
    _mark(client, database, new, RUNNING, token)
    others = client.query(
        f"SELECT count() FROM {database}.view_epochs WHERE epoch = {new} AND token != '{token}'"
    ).result_rows
    if int(others[0][0]):
        _mark(client, database, new, ABANDONED, token)
        raise RebuildRunning(f"another rebuild started epoch {new} at the same time; try again")
    scratch = f"{database}.view_rebuild_{new}"
    settings = dict(SYNC_INSERT_SETTINGS)
    try:
        if days is None:
            _snapshot_table(client, database, old, new, scratch, partitions, settings)
        else:
            _snapshot_state(client, database, old, new, scratch, days, settings)
        kinds = DAY_KINDS if days else tuple(kind for kind, *_ in _REBUILD)
        for kind, columns, select, tail in _REBUILD:
            if kind in kinds:
                client.command(
                    f"INSERT INTO {database}.view_state (epoch, kind, partition, version, {columns}) "
                    f"SELECT {new}, '{kind}', partition, 0, {select} FROM {scratch} "
                    f"{tail.format(lines=_LINES)}",
                    settings=settings,
                )
        _mark(client, database, new, COMPLETE, token)
    except BaseException:
        _mark(client, database, new, ABANDONED, token)
        raise
    finally:
        client.command(f"DROP TABLE IF EXISTS {scratch} SYNC")
    _drop_epochs_below(client, database, new)
    return new


def _snapshot_table(client: ClickHouseClient, database: str, old: int, new: int, scratch: str,
                    partitions: int, settings: dict[str, Any]) -> None:  # fmt: skip
    """The progress of the old epoch, then (after it, so every record below the progress is in
    it) the active orders of orders_analytics in one read; the orders the old epoch knows that are
    not active go as deleted for good."""
    client.command(
        f"INSERT INTO {database}.view_state (epoch, kind, partition, k1, ks, version, m) "
        f"SELECT {new}, 'progress', k1, k1, ks, max(version), argMax(m, version) FROM {database}.view_state "
        f"WHERE epoch = {int(old)} AND kind = 'progress' GROUP BY k1, ks",
        settings=settings,
    )
    route = f"kafkaMurmurHash(toString(user_id)) % {int(partitions)}"
    names = ", ".join(_SNAPSHOT_NAMES[1:])
    client.command(f"DROP TABLE IF EXISTS {scratch} SYNC")
    client.command(
        f"CREATE TABLE {scratch} ({SNAPSHOT_COLUMNS}) ENGINE = MergeTree ORDER BY order_id "
        f"AS SELECT {route} AS partition, {names} FROM {database}.active_orders"
    )
    client.command(
        f"INSERT INTO {database}.view_state (epoch, kind, partition, k1, version, orders, m) "
        f"SELECT {new}, 'order', partition, k1, 0, 0, m FROM {database}.view_state FINAL "
        f"WHERE epoch = {int(old)} AND kind = 'order' AND k1 NOT IN (SELECT order_id FROM {scratch})",
        settings=settings,
    )


def _snapshot_state(client: ClickHouseClient, database: str, old: int, new: int, scratch: str,
                    days: tuple[date, date], settings: dict[str, Any]) -> None:  # fmt: skip
    """The old epoch carried over in one read, but for the day cells of `days`; then the counted
    orders of those days, what their cells are recomputed from."""
    first, last = ((day - EPOCH).days for day in days)
    in_days = (
        f"(kind IN ('daily', 'day_user') AND k1 BETWEEN {first} AND {last}) "
        f"OR (kind = 'hourly' AND k1 BETWEEN {first * 86400} AND {last * 86400 + 86399})"
    )
    columns = ", ".join(c for c in STATE_COLUMNS if c != "epoch")
    client.command(
        f"INSERT INTO {database}.view_state (epoch, {columns}) SELECT {new}, {columns} "
        f"FROM {database}.view_state FINAL WHERE epoch = {int(old)} AND NOT ({in_days})",
        settings=settings,
    )
    client.command(f"DROP TABLE IF EXISTS {scratch} SYNC")
    client.command(
        f"CREATE TABLE {scratch} ({SNAPSHOT_COLUMNS}) ENGINE = MergeTree ORDER BY order_id AS "
        f"SELECT partition, k1 AS order_id, m AS version, user_id, s1 AS user_email, "
        f"assumeNotNull(t1) AS created_at, toDate(created_at) AS order_date, status, amount AS total_amount, "
        f"items AS items_count, l_product AS item_product_ids, l_quantity AS item_quantities, "
        f"l_total AS item_line_totals, l_sku AS item_skus, l_name AS item_names "
        f"FROM {database}.view_state FINAL "
        f"WHERE epoch = {new} AND kind = 'order' AND orders > 0 "
        f"AND toDate(t1) BETWEEN toDate('{days[0].isoformat()}') AND toDate('{days[1].isoformat()}')"
    )


def _mark(client: ClickHouseClient, database: str, epoch: int, status: int, token: str) -> None:
    client.command(
        f"INSERT INTO {database}.view_epochs (epoch, status, token) "
        f"VALUES ({int(epoch)}, {int(status)}, '{token}')",
        settings=dict(SYNC_INSERT_SETTINGS),
    )


def _drop_epochs_below(client: ClickHouseClient, database: str, epoch: int) -> None:
    """The rows of older epochs, which nobody reads any more (a write that lands in one later is
    dropped by the next rebuild)."""
    found = client.query(
        f"SELECT DISTINCT partition FROM system.parts WHERE database = '{database}' "
        f"AND table = 'view_state' AND active AND toUInt32OrZero(partition) < {int(epoch)}"
    ).result_rows
    for (partition,) in found:
        client.command(f"ALTER TABLE {database}.view_state DROP PARTITION {int(partition)}")


def needs_build(client: ClickHouseClient, database: str) -> bool:
    """Whether the view state has no epoch at all: a database migrated before the incremental
    views. The sink then builds it from orders_analytics before it writes."""
    database = check_identifier(database)
    rows = client.query(f"SELECT count() FROM {database}.view_epochs").result_rows
    return int(rows[0][0]) == 0


RECONCILED_VIEWS = ("daily_sales", "hourly_sales", "order_status", "user_analytics", "top_products")


def differences(client: ClickHouseClient, database: str, limit: int = 5) -> list[str]:
    """Every row where an incremental view (`*_mv`) and its live view (`*_live`) disagree, as text;
    empty when they are equal."""
    database = check_identifier(database)
    problems = []
    for view in RECONCILED_VIEWS:
        mv, live = f"{database}.{view}_mv", f"{database}.{view}_live"
        for name, first, second in (("only in", mv, live), ("missing from", live, mv)):
            rows = client.query(
                f"SELECT * FROM (SELECT * FROM {first} EXCEPT SELECT * FROM {second}) LIMIT {int(limit) + 1}"
            ).result_rows
            for row in rows[:limit]:
                problems.append(f"{view}: {name} {view}_mv: {tuple(row)}")
            if len(rows) > limit:
                problems.append(f"{view}: more rows {name} {view}_mv")
    return problems
