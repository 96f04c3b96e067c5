#!/usr/bin/env bash
# A local Kafka Connect worker running Debezium's MySQL connector with its outbox event router: the
# change-data-capture relay (kafka-connect/debezium-outbox.json), the alternative to our polling
# relay. Like the brokers it runs from jars Maven fetches from Maven Central
# (scripts/services/connect/pom.xml), as `java ... ConnectStandalone worker.properties connector.json`.
# Nothing starts it but the tests and the benchmark that measure it; they stop it again.
#
#   connect.sh install   fetch the pinned jars into $VAR_DIR/connect/lib (idempotent)
#   connect.sh start     start the worker and wait until the connector's task runs (idempotent)
#   connect.sh stop      stop the worker (idempotent)
#   connect.sh status    exit 0 when the worker runs, else 3
#   connect.sh reset     stop, then forget what was read (the offsets: the next start snapshots)
#
# The worker's REST API listens on 127.0.0.1:$CONNECT_PORT with HTTP basic authentication (user
# `connect`, a random password created in $CONNECT_DIR/rest.password, mode 600).
#
# Environment:
#   CONNECT_DIR            the worker's files (default $VAR_DIR/connect): a second directory is a
#                          second, separate worker (give it its own CONNECT_PORT)
#   CONNECT_PORT           REST port (default 18083)
#   CONNECT_START_TIMEOUT  seconds `start` waits for the connector's task (default 90)
#   CONNECT_HEAP_OPTS      JVM heap flags (default -Xms256m -Xmx768m)
#   KAFKA_BOOTSTRAP_SERVERS  the brokers (default the local cluster's three)
#   ORDER_EVENTS_TOPIC     the topic the events go to (default order.events; it must exist)
#   DEBEZIUM_DATABASE      the database whose outbox table is read (default ecommerce); the CDC
#                          account must be granted it first: mariadb.sh grant-cdc DATABASE
#   DEBEZIUM_SNAPSHOT_MODE initial (default: the rows already in the table first, then the binary
#                          log) or no_data (only what is committed from now on)
#   DEBEZIUM_SERVER_ID     the replica id the connector uses towards MariaDB (default 5401)
#   MARIADB_PORT, MARIADB_CDC_USER, MARIADB_CDC_PASSWORD  as in mariadb.sh
SERVICE=connect
# shellcheck source=scripts/services/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

# Keep in step with scripts/services/connect/pom.xml.
CONNECT_VERSION=3.9.1
DEBEZIUM_VERSION=2.6.2.Final

POM="$REPO_ROOT/scripts/services/connect/pom.xml"
CONNECTOR_JSON="$REPO_ROOT/kafka-connect/debezium-outbox.json"
LIB_DIR="$VAR_DIR/connect/lib"   # shared by every CONNECT_DIR
VERSION_MARKER="$LIB_DIR/.installed"
CONNECT_DIR="${CONNECT_DIR:-$VAR_DIR/connect}"
PORT="${CONNECT_PORT:-18083}"
START_TIMEOUT="${CONNECT_START_TIMEOUT:-90}"
HEAP_OPTS="${CONNECT_HEAP_OPTS:--Xms256m -Xmx768m}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094}"
WORKER_PROPS="$CONNECT_DIR/worker.properties"
LOG="$LOG_DIR/connect-$(basename "$CONNECT_DIR").log"
CONNECTOR=outbox-relay-debezium
TOPIC="${ORDER_EVENTS_TOPIC:-order.events}"

if [ -n "${JAVA_HOME:-}" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

pom_sha() { sha256sum "$POM" | cut -d' ' -f1; }

installed() {
  [ -f "$VERSION_MARKER" ] && [ "$(cat "$VERSION_MARKER")" = "$CONNECT_VERSION $DEBEZIUM_VERSION $(pom_sha)" ]
}

cmd_install() {
  if installed; then
    say "Kafka Connect $CONNECT_VERSION with Debezium $DEBEZIUM_VERSION already installed (skipping)"
    return 0
  fi
  command -v mvn >/dev/null || die "install Maven (Debian: apt-get install maven)"
  local tmp="$LIB_DIR.tmp" mvn_log="$LOG_DIR/connect-install.log"
  rm -rf "$tmp"
  if ! mvn -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    die "Maven could not fetch the Kafka Connect and Debezium jars (full output: $mvn_log)"
  fi
  printf '%s %s %s\n' "$CONNECT_VERSION" "$DEBEZIUM_VERSION" "$(pom_sha)" >"$tmp/.installed"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  say "installed Kafka Connect $CONNECT_VERSION and Debezium $DEBEZIUM_VERSION ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars)"
}

# PIDs of this directory's worker, found by its command line (unique to CONNECT_DIR).
worker_pids() {
  ps -eo pid=,stat=,args= | awk -v want="ConnectStandalone $WORKER_PROPS" \
    '$2 !~ /^Z/ && $3 ~ /(^|\/)java$/ && index($0, want) { print $1 }'
}

password() { cat "$CONNECT_DIR/rest.password"; }

rest() { curl -fsS -u "connect:$(password)" "http://127.0.0.1:$PORT$1"; }

# The worker's files: properties, the REST users and the JAAS file naming them.
write_config() {
  mkdir -p "$CONNECT_DIR"
  if [ ! -s "$CONNECT_DIR/rest.password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$CONNECT_DIR/rest.password")
  fi
  (umask 077; printf 'connect: %s\n' "$(password)" >"$CONNECT_DIR/rest-users.properties")
  cat >"$CONNECT_DIR/jaas.conf" <<EOF
KafkaConnect {
  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required
  file="$CONNECT_DIR/rest-users.properties";
};
EOF
  cat >"$WORKER_PROPS" <<EOF
bootstrap.servers=$BOOTSTRAP
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
offset.storage.file.filename=$CONNECT_DIR/offsets.dat
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$PORT
rest.extension.classes=org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
plugin.discovery=only_scan
EOF
  cat >"$CONNECT_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.reflections=ERROR
EOF
}

task_running() {
  rest "/connectors/$CONNECTOR/status" 2>/dev/null | grep -q '"tasks":\[{"id":0,"state":"RUNNING"'
}

task_failed() {
  rest "/connectors/$CONNECTOR/status" 2>/dev/null | grep -q '"state":"FAILED"'
}

cmd_start() {
  installed || die "Kafka Connect is not installed; run: bash scripts/services/connect.sh install"
  if [ -n "$(worker_pids)" ]; then
    say "already running (pid $(worker_pids | head -n1), 127.0.0.1:$PORT)"
    return 0
  fi
  port_open 127.0.0.1 "$PORT" && die "port $PORT is taken; stop what listens there or set CONNECT_PORT"
  write_config
  local started=$SECONDS
  # The connector's settings come from the environment (${env:...} in the JSON), so the
  # password is in neither kafka-connect/ nor the REST API's answers.
  DEBEZIUM_ADAPTER="${DEBEZIUM_ADAPTER:-mariadb}" \
  DEBEZIUM_DATABASE_HOST=127.0.0.1 \
  DEBEZIUM_DATABASE_PORT="${MARIADB_PORT:-3306}" \
  DEBEZIUM_DATABASE_USER="${MARIADB_CDC_USER:-cdc}" \
  DEBEZIUM_DATABASE_PASSWORD="${MARIADB_CDC_PASSWORD:-cdc}" \
  DEBEZIUM_SERVER_ID="${DEBEZIUM_SERVER_ID:-5401}" \
  DEBEZIUM_DATABASE="${DEBEZIUM_DATABASE:-ecommerce}" \
  DEBEZIUM_BOOTSTRAP_SERVERS="$BOOTSTRAP" \
  DEBEZIUM_SCHEMA_HISTORY_TOPIC="_debezium_history.$(basename "$CONNECT_DIR").${DEBEZIUM_DATABASE:-ecommerce}" \
  DEBEZIUM_SNAPSHOT_MODE="${DEBEZIUM_SNAPSHOT_MODE:-initial}" \
  DEBEZIUM_TOPIC="$TOPIC" \
    setsid nohup "$JAVA" $HEAP_OPTS -XX:+UseG1GC \
      -Djava.security.auth.login.config="$CONNECT_DIR/jaas.conf" \
      -Dlog4j.configuration="file:$CONNECT_DIR/log4j.properties" \
      -cp "$LIB_DIR/*" org.apache.kafka.connect.cli.ConnectStandalone "$WORKER_PROPS" "$CONNECTOR_JSON" \
      >>"$LOG" 2>&1 </dev/null &
  local deadline=$((SECONDS + START_TIMEOUT))
  until task_running; do
    if [ -z "$(worker_pids)" ] && [ $((SECONDS - started)) -gt 5 ]; then
      tail -n 30 "$LOG" >&2
      die "the worker exited (log: $LOG)"
    fi
    if task_failed; then
      grep -m 3 -E 'ERROR|Caused by' "$LOG" >&2 || true
      cmd_stop >/dev/null
      die "the Debezium connector failed (log: $LOG)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$LOG" >&2
      cmd_stop >/dev/null
      die "the Debezium connector did not start within ${START_TIMEOUT}s (log: $LOG)"
    fi
    sleep 0.5
  done
  say "ready in $((SECONDS - started))s: $CONNECTOR reads ${DEBEZIUM_DATABASE:-ecommerce}.outbox into $TOPIC (REST 127.0.0.1:$PORT, log $LOG)"
}

cmd_stop() {
  local pids
  pids=$(worker_pids)
  if [ -z "$pids" ]; then
    say "not running"
    return 0
  fi
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while [ -n "$(worker_pids)" ]; do
    if [ $SECONDS -ge $deadline ]; then
      say "the worker ignored TERM for 30s; killing it"
      # shellcheck disable=SC2086
      kill -KILL $(worker_pids) 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  say "stopped"
}

cmd_status() {
  if [ -n "$(worker_pids)" ]; then
    say "running (pid $(worker_pids | head -n1), 127.0.0.1:$PORT)"
  else
    say "stopped"
    return 3
  fi
}

cmd_reset() {
  cmd_stop
  rm -f "$CONNECT_DIR/offsets.dat"
  say "offsets forgotten: the next start snapshots the outbox table again"
}

case "${1:-}" in
  install|start|stop|status|reset) "cmd_$1" ;;
  *) echo "usage: $0 install|start|stop|status|reset" >&2; exit 2 ;;
esac
