#!/usr/bin/env bash
# MariaDB (Debian package) as a private instance under $VAR_DIR/mariadb, on 127.0.0.1:$MARIADB_PORT.
# Usage: mariadb.sh install|start|stop|status|grant-cdc DATABASE
SERVICE=mariadb
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${MARIADB_PORT:-3306}"
DATA="$VAR_DIR/mariadb/data"
SOCKET="$RUN_DIR/mariadb.sock"
PIDFILE="$RUN_DIR/mariadb.pid"
LOG="$LOG_DIR/mariadb.log"
APP_DB="${MARIADB_DATABASE:-ecommerce}"
APP_USER="${MARIADB_USER:-ecommerce}"
APP_PASSWORD="${MARIADB_PASSWORD:-ecommerce}"
# 1 (MariaDB's default): every commit is on disk before the client hears of it, so an order and
# its outbox event survive a crash of the machine too. 2 trades the last second of commits on an OS
# crash for fewer fsyncs; only for throwaway data.
FLUSH_AT_COMMIT="${MARIADB_FLUSH_LOG_AT_TRX_COMMIT:-1}"
# Room for a 1,000,000-event outbox backlog (about 1.2 GB with its indexes) to stay in memory.
BUFFER_POOL="${MARIADB_BUFFER_POOL_SIZE:-1G}"
# The binary log in row format with full row images, as MySQL 8 (the compose stack's database) has
# it by default and change data capture (Debezium, kafka-connect/) needs it. 0 turns it off.
BINLOG="${MARIADB_BINLOG:-1}"
# Binary logs older than this go (a CDC reader stopped for longer must snapshot again).
BINLOG_EXPIRE_SECONDS="${MARIADB_BINLOG_EXPIRE_SECONDS:-86400}"
# The account change data capture reads with: the binary log and the outbox table, nothing else.
CDC_USER="${MARIADB_CDC_USER:-cdc}"
CDC_PASSWORD="${MARIADB_CDC_PASSWORD:-cdc}"

install() {
  if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
    say "already installed: $(/usr/sbin/mariadbd --version 2>/dev/null | head -n1)"
    return 0
  fi
  say "installing mariadb-server from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
}

client() { mariadb --protocol=socket --socket="$SOCKET" -uroot "$@"; }

start() {
  [ -x /usr/sbin/mariadbd ] || die "mariadbd not found; run: scripts/services.sh install"
  if pid_alive "$PIDFILE"; then
    say "already running (pid $(cat "$PIDFILE"), port $PORT)"
    return 0
  fi
  if port_open 127.0.0.1 "$PORT"; then
    die "port $PORT is taken by another process (another MySQL/MariaDB?); stop it or set MARIADB_PORT"
  fi
  mkdir -p "$DATA"
  if [ ! -d "$DATA/mysql" ]; then
    say "initialising data directory $DATA"
    mariadb-install-db --user=root --datadir="$DATA" --auth-root-authentication-method=socket \
      --skip-test-db >>"$LOG" 2>&1 || die "mariadb-install-db failed (log: $LOG)"
  fi
  local started=$SECONDS
  local binlog=()
  if [ "$BINLOG" = 1 ]; then
    # sync_binlog=1, MySQL 8's default (MariaDB's is 0): a commit is in the binary log on disk
    # before the client hears of it. Without it an OS crash can keep a commit in InnoDB and lose
    # it from the binary log, and a change data capture reader would never see that event.
    binlog=(--log-bin="$DATA/binlog" --binlog-format=ROW --binlog-row-image=FULL --server-id=1
      --sync-binlog=1 --binlog-expire-logs-seconds="$BINLOG_EXPIRE_SECONDS")
  fi
  # --user=root: the instance runs as whoever owns $VAR_DIR (root on our machines and CI).
  nohup /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DATA" --socket="$SOCKET" \
    --pid-file="$PIDFILE" --bind-address=127.0.0.1 --port="$PORT" --log-error="$LOG" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    --innodb-buffer-pool-size="$BUFFER_POOL" --innodb-flush-log-at-trx-commit="$FLUSH_AT_COMMIT" \
    --max-connections=500 "${binlog[@]}" \
    --skip-name-resolve >>"$LOG" 2>&1 &
  wait_until 60 "MariaDB on port $PORT" "$LOG" client -e "SELECT 1"
  client <<SQL || die "could not create database/user (log: $LOG)"
CREATE DATABASE IF NOT EXISTS \`$APP_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$APP_USER'@'127.0.0.1' IDENTIFIED BY '$APP_PASSWORD';
CREATE USER IF NOT EXISTS '$APP_USER'@'localhost' IDENTIFIED BY '$APP_PASSWORD';
GRANT ALL PRIVILEGES ON \`$APP_DB\`.* TO '$APP_USER'@'127.0.0.1', '$APP_USER'@'localhost';
-- pytest-django creates and drops one test_<db>_<run id> database per test run.
GRANT ALL PRIVILEGES ON \`test\\_$APP_DB%\`.* TO '$APP_USER'@'127.0.0.1', '$APP_USER'@'localhost';
-- Change data capture: replication and the outbox rows only (no snapshot locks: Debezium runs
-- with snapshot.locking.mode=none). The outbox table is granted once Django has created it.
CREATE USER IF NOT EXISTS '$CDC_USER'@'127.0.0.1' IDENTIFIED BY '$CDC_PASSWORD';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '$CDC_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
  say "ready on 127.0.0.1:$PORT in $((SECONDS - started))s (database $APP_DB, user $APP_USER; log $LOG)"
}

stop() { stop_pidfile "$PIDFILE" "MariaDB" 60; }

status() {
  if pid_alive "$PIDFILE"; then
    say "running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
  else
    say "stopped"
    return 3
  fi
}

# grant-cdc DATABASE: lets the CDC account read DATABASE's outbox table (which must exist: Django
# creates it), the one table Debezium's snapshot and its schema reads need.
grant_cdc() {
  local db=${1:?usage: $0 grant-cdc DATABASE}
  [[ $db =~ ^[A-Za-z0-9_]+$ ]] || die "not a database name: $db"
  client -e "GRANT SELECT ON \`$db\`.\`outbox\` TO '$CDC_USER'@'127.0.0.1'" \
    || die "could not grant $CDC_USER SELECT on $db.outbox (has Django migrated $db?)"
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  grant-cdc) grant_cdc "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|status|grant-cdc DATABASE" >&2; exit 2 ;;
esac
