#!/bin/sh
# Grafana's read-only ClickHouse account: SELECT on the analytics database and on system.parts
# (the rows-per-table panel). readonly = 2 still lets the plugin set per-query settings.
# Run by the ClickHouse image on its first start (mounted into /docker-entrypoint-initdb.d), with
# the container's environment: the admin account (CLICKHOUSE_USER / CLICKHOUSE_PASSWORD) and
# CLICKHOUSE_GRAFANA_PASSWORD, both from the compose stack's .env. Only the Grafana password's
# SHA-256 reaches the server, so that password is in no SQL text, query log or process argument.
set -eu

: "${CLICKHOUSE_GRAFANA_PASSWORD:?CLICKHOUSE_GRAFANA_PASSWORD is not set}"
grafana_password_sha256=$(printf '%s' "$CLICKHOUSE_GRAFANA_PASSWORD" | sha256sum | cut -d' ' -f1)

clickhouse client --host 127.0.0.1 --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" \
    --multiquery <<SQL
CREATE USER IF NOT EXISTS grafana IDENTIFIED WITH sha256_hash BY '${grafana_password_sha256}' SETTINGS readonly = 2;
ALTER USER grafana IDENTIFIED WITH sha256_hash BY '${grafana_password_sha256}';
GRANT SELECT ON ${CLICKHOUSE_DB}.* TO grafana;
GRANT SELECT ON system.parts TO grafana;
SQL
