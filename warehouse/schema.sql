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

-- The contract views dashboards read: refreshable materialized views that recompute their live
-- view in full every 5 seconds and swap the result in atomically. Never wrong by more than one
-- refresh (at most ~5 s plus the refresh time behind the table), never drifting, no manual rebuild,
-- and a query reads a small precomputed table.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.daily_sales_mv
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY order_date
AS SELECT * FROM {database}.daily_sales_live;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.hourly_sales_mv
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY hour
AS SELECT * FROM {database}.hourly_sales_live;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.order_status_mv
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY status
AS SELECT * FROM {database}.order_status_live;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.user_analytics_mv
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY user_id
AS SELECT * FROM {database}.user_analytics_live;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.top_products_mv
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY product_id
AS SELECT * FROM {database}.top_products_live;

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

-- How current the dashboards' views are: a refresh reads the table as it was when the refresh
-- started, so the views hold every change committed before the watermark of the latest check that
-- finished before the oldest of their last successful refreshes. One row, or none while a view has
-- never refreshed or no check preceded its refresh. `refreshed_at` has whole seconds: rounding
-- down only makes the answer older, never too new.
CREATE OR REPLACE VIEW {database}.dashboard_freshness AS
WITH (
    SELECT if(count() = 5 AND countIf(last_success_time IS NULL) = 0, min(last_success_time), NULL)
    FROM system.view_refreshes
    WHERE database = '{database}'
      AND view IN ('daily_sales_mv', 'hourly_sales_mv', 'order_status_mv', 'user_analytics_mv',
                   'top_products_mv')
) AS refreshed_at
SELECT
    watermark AS as_of,
    checked_at,
    refreshed_at
FROM {database}.pipeline_watermark
WHERE refreshed_at IS NOT NULL AND checked_at <= refreshed_at
ORDER BY checked_at DESC
LIMIT 1;
