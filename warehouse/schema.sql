-- The one ClickHouse schema of the analytics pipeline, applied idempotently by
-- `python -m consumers migrate` (or `manage.py clickhouse_migrate`) to a ClickHouse server and to
-- chDB alike. `{database}` is replaced by the loader with the configured database name.
-- Statements are separated by a semicolon at the end of a line.

CREATE DATABASE IF NOT EXISTS {database};

-- One row per order version, written by the sink from the transformer's analytics rows.
-- ReplacingMergeTree keeps the highest `version` per order_id (a per-order counter, never a clock,
-- so redelivery and replay cannot make an older state win) and drops the order under FINAL when
-- that latest row has is_deleted = 1. ORDER BY holds only immutable columns.
-- TTL: a soft-deleted order is physically removed at the first merge 7 days after deleted_at.
-- A delete row carries no customer, money, status or lines (docs/events.md, "The delete row"):
-- its row here holds those columns' empty values.
-- PARTITION BY an immutable column keeps every version of an order in one partition.
CREATE TABLE IF NOT EXISTS {database}.orders_analytics
(
    order_id       UInt64,
    user_id        UInt64,
    user_email     String,
    order_date     Date,
    total_amount   Decimal(18, 2),
    items_count    UInt32,
    status         LowCardinality(String),
    payment_method LowCardinality(String),
    payment_status LowCardinality(String),
    created_at     DateTime64(6, 'UTC'),
    version        UInt64,
    event_type     LowCardinality(String),
    deleted_at     Nullable(DateTime64(6, 'UTC')),
    is_deleted     UInt8,
    -- The snapshot's order lines, kept in the order row itself so product analytics follow the
    -- order's current version, deletes and TTL without a join.
    item_product_ids  Array(UInt64),
    item_skus         Array(String),
    item_names        Array(String),
    item_quantities   Array(UInt32),
    item_line_totals  Array(Decimal(18, 2))
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(order_date)
ORDER BY order_id
TTL toDateTime(assumeNotNull(deleted_at)) + INTERVAL 7 DAY DELETE WHERE is_deleted = 1
-- Parts an hour old are merged even when the merge scheduler would not pick them, so a delete row
-- replaces the older versions of its order long before TTL removes the delete row itself (a TTL
-- merge of the delete row's part alone would leave an older version behind: see the purge in
-- consumers/sink.py for the cases this cannot cover).
SETTINGS min_age_to_force_merge_seconds = 3600;

-- Deleted order ids, without personal data and without TTL. The sink records a delete here and
-- drops later-arriving older versions of a deleted order; the views exclude these ids too. Together
-- this stops a deleted order from coming back once TTL has removed its rows (replays, redelivery,
-- or a TTL merge that removes the delete row while an older version survives in another part).
CREATE TABLE IF NOT EXISTS {database}.order_tombstones
(
    order_id   UInt64,
    deleted_at DateTime64(6, 'UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY order_id;

-- Durability of the two tables the sink writes. The sink commits a batch's Kafka offsets once its
-- insert returned, so the insert must not return before its part is on disk: fsync_after_insert
-- syncs the part's files, fsync_part_directory the directory entries of the part and of its rename
-- into place. `{fsync}` is 1 unless CLICKHOUSE_FSYNC_AFTER_INSERT is off (throwaway benchmarks).
-- A merged part is not synced; ClickHouse keeps the parts it replaced for old_parts_lifetime seconds
-- so that after a crash a merged part that never reached the disk is replaced by them again. The
-- server's default, 480 s, outlasts the kernel's writeback (30 s) even under load; chDB's default is
-- 0 (the replaced parts go at the next cleanup, about 30 s), so it is set here. As ALTERs, these
-- also bring a database created before them up to date, and running them again changes nothing.
ALTER TABLE {database}.orders_analytics
    MODIFY SETTING fsync_after_insert = {fsync}, fsync_part_directory = {fsync}, old_parts_lifetime = 480;

ALTER TABLE {database}.order_tombstones
    MODIFY SETTING fsync_after_insert = {fsync}, fsync_part_directory = {fsync}, old_parts_lifetime = 480;

-- The current state of every active order: the base of every view. A plain view over FINAL is
-- computed at query time, so it is exact with zero staleness (an incremental materialized view
-- could not retract an order that a later version updates or deletes).
CREATE OR REPLACE VIEW {database}.active_orders AS
SELECT *
FROM {database}.orders_analytics FINAL
WHERE is_deleted = 0
  AND order_id NOT IN (SELECT order_id FROM {database}.order_tombstones);

-- Live views (`*_live`): exact at query time, zero staleness, cost grows with the table.
-- Revenue counts only orders that are neither cancelled nor refunded; order_status shows all.
CREATE OR REPLACE VIEW {database}.daily_sales_live AS
SELECT
    order_date,
    count() AS orders_count,
    sum(total_amount) AS revenue,
    sum(items_count) AS items_sold,
    uniqExact(user_id) AS unique_customers
FROM {database}.active_orders
WHERE status NOT IN ('CANCELLED', 'REFUNDED')
GROUP BY order_date;

CREATE OR REPLACE VIEW {database}.hourly_sales_live AS
SELECT
    toStartOfHour(created_at) AS hour,
    count() AS orders_count,
    sum(total_amount) AS revenue,
    sum(items_count) AS items_sold
FROM {database}.active_orders
WHERE status NOT IN ('CANCELLED', 'REFUNDED')
GROUP BY hour;

CREATE OR REPLACE VIEW {database}.order_status_live AS
SELECT
    status,
    count() AS orders_count,
    sum(total_amount) AS total_amount
FROM {database}.active_orders
GROUP BY status;

CREATE OR REPLACE VIEW {database}.user_analytics_live AS
SELECT
    user_id,
    argMax(user_email, (created_at, order_id)) AS user_email,
    count() AS orders_count,
    countIf(status NOT IN ('CANCELLED', 'REFUNDED')) AS paying_orders_count,
    sumIf(total_amount, status NOT IN ('CANCELLED', 'REFUNDED')) AS total_spent,
    min(created_at) AS first_order_at,
    max(created_at) AS last_order_at
FROM {database}.active_orders
GROUP BY user_id;

CREATE OR REPLACE VIEW {database}.top_products_live AS
SELECT
    product_id,
    argMax(sku, order_id) AS sku,
    argMax(product_name, order_id) AS product_name,
    sum(quantity) AS units_sold,
    sum(line_total) AS revenue,
    uniqExact(order_id) AS orders_count
FROM {database}.active_orders
ARRAY JOIN
    item_product_ids AS product_id,
    item_skus AS sku,
    item_names AS product_name,
    item_quantities AS quantity,
    item_line_totals AS line_total
WHERE status NOT IN ('CANCELLED', 'REFUNDED')
GROUP BY product_id;

-- The incremental state behind the contract views (README, "Incremental views"). The sink keeps it
-- (consumers/views.py): for every batch it reads the cells the batch touches and the state each
-- order was last counted in, retracts that state, adds the new one, and writes the new values of
-- every touched cell in ONE insert (one part, so all or nothing). Its upkeep grows with the batch,
-- not with the table.
--   kind: 'progress' (k1 = Kafka partition), 'order' (k1 = order_id; the state counted, below, or
--   orders = 0 once deleted), 'daily' (k1 = day number), 'hourly' (k1 = hour, Unix
--   seconds), 'status' (ks), 'user' (k1 = user_id), 'product' (k1 = product_id), 'day_user'
--   (k1 = day, k2 = user_id: the per-day distinct counter), and the members the extremes are
--   recomputed from when the order holding one leaves: 'user_order' (k1 = user_id, k2 = order_id)
--   and 'product_line' (k1 = product_id, k2 = order_id).
--   partition: the Kafka partition of orders_analytics the cell belongs to. Every cell has one
--   writer, the partition's owner, and the topic is routed by user id, so a user's cells, like an
--   order's, live in one partition; a view adds its partitions' cells.
--   version: (Kafka offset after the write's last record) * 1024. The row with the highest
--   version of a cell wins, so a write computed from an older state (a redelivered batch, a member
--   kicked from the group that still writes) can never overwrite a newer one.
--   epoch: the rebuild the row belongs to (view_epochs). A rebuild writes the whole state again in
--   a new epoch and the views read only the latest complete one, so a write computed before the
--   rebuild that lands after it is in an epoch nobody reads. Old epochs are dropped, a partition each.
CREATE TABLE IF NOT EXISTS {database}.view_state
(
    epoch      UInt32,
    kind       LowCardinality(String),
    partition  UInt32,
    k1         UInt64,
    k2         UInt64,
    ks         String,
    version    UInt64,
    is_deleted UInt8,
    orders     Int64,
    paying     Int64,
    amount     Decimal(38, 2),
    items      Int64,
    units      Int64,
    uniq       Int64,
    t1         Nullable(DateTime64(6, 'UTC')),
    t2         Nullable(DateTime64(6, 'UTC')),
    m          UInt64,
    s1         String,
    s2         String,
    -- An 'order' row's counted state, what its retraction subtracts (with t1 = created_at,
    -- s1 = user_email, amount = total_amount, items = items_count, m = the order's version).
    user_id    UInt64,
    status     LowCardinality(String),
    l_product  Array(UInt64),
    l_quantity Array(UInt32),
    l_total    Array(Decimal(18, 2)),
    l_sku      Array(String),
    l_name     Array(String)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY epoch
ORDER BY (epoch, kind, partition, k1, k2, ks);

ALTER TABLE {database}.view_state
    MODIFY SETTING fsync_after_insert = {fsync}, fsync_part_directory = {fsync}, old_parts_lifetime = 480;

-- The epochs of view_state: a rebuild adds its epoch with status 0 (running) and, once every row is
-- written, 1 (complete), or 2 (abandoned) when it fails. The sink does not write while a rebuild
-- runs and writes again in the new epoch once it completes. migrate() adds epoch 1 to a new database.
CREATE TABLE IF NOT EXISTS {database}.view_epochs
(
    epoch  UInt32,
    status UInt8,
    token  String,
    at     DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (epoch, status);

ALTER TABLE {database}.view_epochs
    MODIFY SETTING fsync_after_insert = {fsync}, fsync_part_directory = {fsync};

-- The contract views dashboards and the analytics API read: each adds up its cells over the
-- partitions. They read a few rows per group, never orders_analytics, and hold what the sink's
-- last write left: a change is in them as soon as its batch is committed.
CREATE OR REPLACE VIEW {database}.daily_sales_mv AS
SELECT
    toDate(k1) AS order_date,
    toUInt64(sum(orders)) AS orders_count,
    sum(amount) AS revenue,
    toUInt64(sum(items)) AS items_sold,
    toUInt64(sum(uniq)) AS unique_customers
FROM {database}.view_state FINAL
WHERE epoch = (SELECT max(epoch) FROM {database}.view_epochs WHERE status = 1)
  AND kind = 'daily'
GROUP BY order_date
HAVING orders_count > 0;

CREATE OR REPLACE VIEW {database}.hourly_sales_mv AS
SELECT
    toDateTime(k1, 'UTC') AS hour,
    toUInt64(sum(orders)) AS orders_count,
    sum(amount) AS revenue,
    toUInt64(sum(items)) AS items_sold
FROM {database}.view_state FINAL
WHERE epoch = (SELECT max(epoch) FROM {database}.view_epochs WHERE status = 1)
  AND kind = 'hourly'
GROUP BY hour
HAVING orders_count > 0;

CREATE OR REPLACE VIEW {database}.order_status_mv AS
SELECT
    CAST(ks, 'LowCardinality(String)') AS status,
    toUInt64(sum(orders)) AS orders_count,
    sum(amount) AS total_amount
FROM {database}.view_state FINAL
WHERE epoch = (SELECT max(epoch) FROM {database}.view_epochs WHERE status = 1)
  AND kind = 'status'
GROUP BY status
HAVING orders_count > 0;

-- One partition holds all of a user's cells, so these sums and extremes are over one cell.
CREATE OR REPLACE VIEW {database}.user_analytics_mv AS
SELECT
    k1 AS user_id,
    argMax(s1, (t2, m)) AS user_email,
    toUInt64(sum(orders)) AS orders_count,
    toUInt64(sum(paying)) AS paying_orders_count,
    sum(amount) AS total_spent,
    assumeNotNull(min(t1)) AS first_order_at,
    assumeNotNull(max(t2)) AS last_order_at
FROM {database}.view_state FINAL
WHERE epoch = (SELECT max(epoch) FROM {database}.view_epochs WHERE status = 1)
  AND kind = 'user'
GROUP BY user_id
HAVING orders_count > 0;

CREATE OR REPLACE VIEW {database}.top_products_mv AS
SELECT
    k1 AS product_id,
    argMax(s1, m) AS sku,
    argMax(s2, m) AS product_name,
    toUInt64(sum(units)) AS units_sold,
    sum(amount) AS revenue,
    toUInt64(sum(orders)) AS orders_count
FROM {database}.view_state FINAL
WHERE epoch = (SELECT max(epoch) FROM {database}.view_epochs WHERE status = 1)
  AND kind = 'product'
GROUP BY product_id
HAVING orders_count > 0;

-- The freshness watermark (README, "Freshness watermark"; consumers/watermark.py). Every check of
-- the pipeline's progress writes one row: `watermark` is a commit time such that every order change
-- committed before it was in orders_analytics when the check finished reading, at `checked_at`;
-- the bounds are each stage's part in it (NULL when nothing waited there). Kept for a day.
CREATE TABLE IF NOT EXISTS {database}.pipeline_watermark
(
    checked_at        DateTime64(6, 'UTC'),
    watermark         DateTime64(6, 'UTC'),
    outbox_bound      Nullable(DateTime64(6, 'UTC')),
    transformer_bound Nullable(DateTime64(6, 'UTC')),
    sink_bound        Nullable(DateTime64(6, 'UTC'))
)
ENGINE = MergeTree
ORDER BY checked_at
TTL toDateTime(checked_at) + INTERVAL 1 DAY;

-- How current the dashboards' views are: the sink updates them in the write that stores the rows
-- in orders_analytics, before it commits, so they hold what the latest check found committed: its
-- watermark. One row, or none before the first check.
CREATE OR REPLACE VIEW {database}.dashboard_freshness AS
SELECT
    watermark AS as_of,
    checked_at
FROM {database}.pipeline_watermark
ORDER BY checked_at DESC
LIMIT 1;
