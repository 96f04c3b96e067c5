-- Grafana's read-only ClickHouse account: SELECT on the analytics database and on system.parts
-- (the rows-per-table panel). readonly = 2 still lets the plugin set per-query settings.
-- Run by the ClickHouse image on its first start (mounted into /docker-entrypoint-initdb.d).
CREATE USER IF NOT EXISTS grafana IDENTIFIED WITH sha256_password BY 'grafana123' SETTINGS readonly = 2;
GRANT SELECT ON analytics.* TO grafana;
GRANT SELECT ON system.parts TO grafana;
