#!/usr/bin/env bash
# Deletes orders through DELETE /admin/orders/{id} (X-Admin-Id + Bearer token) on a running
# pipeline and checks deleted_at in MySQL, the OrderDeleted event in Kafka, is_deleted = 1 in
# ClickHouse and the orders' absence from every view. Exits non-zero naming the stage that fails.
#
# Usage: scripts/test-deletion-flow.sh [--orders N] [--timeout SECONDS]
# Configuration by environment (API_URL, CLICKHOUSE_URL, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS,
# ADMIN_TOKEN/ADMIN_ID, ...): see scripts/pipeline_checks.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    echo "test-deletion-flow: $PY not found; run make python first" >&2
    exit 2
fi
exec "$PY" -m scripts.deletion_flow "$@"
