#!/usr/bin/env bash
# Local Apache Kafka cluster in KRaft mode, without Docker and without the Kafka tarball:
# Maven fetches the broker jars from Maven Central (scripts/services/kafka/pom.xml, cached
# in ~/.m2) and every node runs as a plain `java ... kafka.Kafka server.properties`.
#
#   kafka.sh install   fetch the pinned Kafka jars into $VAR_DIR/kafka/lib (idempotent)
#   kafka.sh start     start KAFKA_NODES (3 or 1) combined broker+controller nodes and wait
#                      until every broker is registered and unfenced (idempotent)
#   kafka.sh stop      stop every node, strays included (idempotent)
#   kafka.sh status    one line per node; exit 0 when all expected nodes run, else 3
#   kafka.sh reset     stop, then delete the node data (keeps the jar cache)
#   kafka.sh stop-node N  stop node N only (a broker failure drill; `start` brings it back)
#   kafka.sh kill-node N  kill node N with SIGKILL: a crash, without the controlled shutdown, so
#                      the cluster's metadata lists it until the controller fences it
#
# Node n (1..3): client listener PLAINTEXT://127.0.0.1:1909(1+n) (19092, 19093, 19094),
# controller listener 127.0.0.1:2909(2+n) (29093, 29094, 29095), data in
# $VAR_DIR/kafka/node<n>/data, log in $LOG_DIR/kafka-<n>.log, pid in $RUN_DIR/kafka-<n>.pid.
#
# Environment:
#   KAFKA_NODES          3 or 1 (2 is refused: it has no fault tolerance). Unset: the count
#                        the existing data was formatted for, else 3. Switching needs `reset`.
#   KAFKA_START_TIMEOUT  seconds `start` waits for the cluster (default 90).
#   KAFKA_HEAP_OPTS      JVM heap flags per node (default -Xms256m -Xmx512m).
#   KAFKA_JVM_OPTS       other JVM flags per node (default: G1 as Kafka sets it, C1-only JIT).
#   JAVA_HOME            JDK to use (default: java/javac on PATH); Java 17+ is required.
#   KAFKA_PORT_BASE      node n listens for clients on KAFKA_PORT_BASE+n (default 19091).
#   KAFKA_CONTROLLER_PORT_BASE  node n's controller port is this + n (default 29092).
#   With VAR_DIR and these two, a second, private cluster (e.g. one that a test stops) runs
#   beside the default one without touching it.
SERVICE=kafka
# shellcheck source=scripts/services/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

# Keep in step with <kafka.version> in kafka/pom.xml.
KAFKA_VERSION=4.3.1
MAX_NODES=3
HOST=127.0.0.1

KAFKA_DIR="$VAR_DIR/kafka"
LIB_DIR="$KAFKA_DIR/lib"
TOOLS_DIR="$KAFKA_DIR/tools"
POM="$REPO_ROOT/scripts/services/kafka/pom.xml"
LOG4J_CONF="$REPO_ROOT/scripts/services/kafka/log4j2.xml"
VERSION_MARKER="$LIB_DIR/.installed"    # "<kafka version> <sha256 of pom.xml>"
CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
NODES_FILE="$KAFKA_DIR/cluster.nodes"   # node count the data dirs were formatted for
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
# Kafka's own GC flags (kafka-run-class.sh) plus C1-only JIT: on a 2-core machine three
# brokers starting together are CPU-bound, and skipping C2 halves their start-up CPU
# (cold 3-node start ~9 s instead of ~15 s). Steady-state throughput is lower, which a local
# test cluster does not notice; set KAFKA_JVM_OPTS to drop it (e.g. for benchmarks).
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:TieredStopAtLevel=1}"

if [ -n "${JAVA_HOME:-}" ]; then
  JAVA="$JAVA_HOME/bin/java"; JAVAC="$JAVA_HOME/bin/javac"
else
  JAVA=java; JAVAC=javac
fi

PORT_BASE="${KAFKA_PORT_BASE:-19091}"
CONTROLLER_PORT_BASE="${KAFKA_CONTROLLER_PORT_BASE:-29092}"
client_port() { echo $((PORT_BASE + $1)); }
controller_port() { echo $((CONTROLLER_PORT_BASE + $1)); }
node_dir() { echo "$KAFKA_DIR/node$1"; }
node_props() { echo "$KAFKA_DIR/node$1/server.properties"; }
node_log() { echo "$LOG_DIR/kafka-$1.log"; }
node_pidfile() { echo "$RUN_DIR/kafka-$1.pid"; }

# ---------------------------------------------------------------------------- helpers

need_java() {
  need_cmd "$JAVA" "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
  local major
  major=$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  if ! [ "${major%%.*}" -ge 17 ] 2>/dev/null; then
    die "Kafka $KAFKA_VERSION brokers need Java 17+, but $JAVA is Java ${major:-?}"
  fi
}

pom_sha() { sha256sum "$POM" | cut -d' ' -f1; }

installed() {
  [ -f "$VERSION_MARKER" ] && [ "$(cat "$VERSION_MARKER")" = "$KAFKA_VERSION $(pom_sha)" ] \
    && [ -f "$LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]
}

# PIDs of node n's live JVM(s), found by command line: the server.properties path is unique
# to this checkout, so this also finds a node whose pidfile was lost, and it never trusts a
# pidfile whose pid was reused or is a zombie not yet reaped (kill -0 succeeds on those).
node_pids() {
  local props
  props=$(node_props "$1")
  ps -eo pid=,stat=,args= | awk -v want="kafka.Kafka $props" \
    '$2 !~ /^Z/ && $3 ~ /(^|\/)java$/ && index($0, want) { print $1 }'
}

node_pid() { node_pids "$1" | head -n 1; }

# pid_live PID -> 0 when PID runs and is not a zombie. Used right after a launch, while the
# command line may still read `setsid nohup java ...` and node_pids cannot match it yet.
pid_live() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

node_running() { [ -n "$(node_pid "$1")" ]; }

# Node count: explicit KAFKA_NODES wins; otherwise reuse what the data was formatted for.
wanted_nodes() {
  local n="${KAFKA_NODES:-}"
  if [ -z "$n" ]; then
    if [ -f "$NODES_FILE" ]; then n=$(cat "$NODES_FILE"); else n=$MAX_NODES; fi
  fi
  case "$n" in
    1|3) echo "$n" ;;
    *) die "KAFKA_NODES must be 1 or 3 (got '$n')" ;;
  esac
}

log_tail() {
  local log
  log=$(node_log "$1")
  say "last lines of $log:"
  tail -n 30 "$log" >&2 2>/dev/null || true
}

# Tiny AdminClient program used by `start` to decide that the cluster is usable: it polls
# until `expected` brokers are registered and unfenced and the metadata quorum has a leader.
# Compiled once against the installed jars (needs javac) into $TOOLS_DIR.
READY_SRC='import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.Node;

public class KafkaReady {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        int expected = Integer.parseInt(args[1]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[2]) * 1000L;
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        String state = "no answer yet";
        try (Admin admin = Admin.create(p)) {
            while (System.currentTimeMillis() < deadline) {
                try {
                    // Only registered, unfenced brokers are listed.
                    Collection<Node> nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
                    QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get(5, TimeUnit.SECONDS);
                    StringBuilder ids = new StringBuilder();
                    nodes.stream().map(Node::id).sorted().forEach(id -> ids.append(ids.length() > 0 ? "," : "").append(id));
                    state = "brokers=" + ids + " quorum_leader=" + quorum.leaderId();
                    if (nodes.size() >= expected && quorum.leaderId() >= 0) {
                        System.out.println(state);
                        return;
                    }
                } catch (Exception e) {
                    state = "not ready: " + e.getClass().getSimpleName() + ": " + e.getMessage();
                }
                Thread.sleep(300);
            }
        }
        System.out.println(state);
        System.exit(1);
    }
}
'

build_ready_tool() {
  local src="$TOOLS_DIR/KafkaReady.java"
  if [ -f "$TOOLS_DIR/KafkaReady.class" ] && [ -f "$src" ] && [ "$(cat "$src")" = "$READY_SRC" ]; then
    return 0
  fi
  need_cmd "$JAVAC" "the readiness check needs a JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  mkdir -p "$TOOLS_DIR"
  rm -f "$TOOLS_DIR"/*.class
  printf '%s' "$READY_SRC" >"$src"
  "$JAVAC" -nowarn -cp "$LIB_DIR/*" -d "$TOOLS_DIR" "$src" || die "could not compile $src"
}

# ---------------------------------------------------------------------------- install

cmd_install() {
  need_java
  if installed; then
    say "Kafka $KAFKA_VERSION already installed in $LIB_DIR (skipping)"
    build_ready_tool
    return 0
  fi
  local n
  for n in $(seq 1 "$MAX_NODES"); do
    if node_running "$n"; then die "node $n is running on the jars about to be replaced; run: $0 stop"; fi
  done
  need_cmd mvn "install Maven (Debian: apt-get install maven)"
  say "fetching Kafka $KAFKA_VERSION jars with Maven (cache: ~/.m2) ..."
  # Copy into a fresh directory and swap it in, so a failed or older install never leaves
  # a mix of versions on the classpath.
  local tmp="$KAFKA_DIR/lib.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$KAFKA_DIR"
  local mvn_log="$LOG_DIR/kafka-install.log"
  if ! mvn -B -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$mvn_log" >&2
    die "Maven could not fetch the Kafka jars (full output: $mvn_log)"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] \
    || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing: is KAFKA_VERSION in step with $POM?"; }
  printf '%s %s\n' "$KAFKA_VERSION" "$(pom_sha)" >"$tmp/.installed"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  rm -rf "$TOOLS_DIR"
  build_ready_tool
  say "installed Kafka $KAFKA_VERSION ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars) in $LIB_DIR"
}

# ---------------------------------------------------------------------------- start

write_props() {
  local n=$1 nodes=$2 rf isr voters="" i
  if [ "$nodes" -ge 3 ]; then rf=3; isr=2; else rf=1; isr=1; fi
  for i in $(seq 1 "$nodes"); do
    voters+="${voters:+,}$i@$HOST:$(controller_port "$i")"
  done
  mkdir -p "$(node_dir "$n")/data"
  cat >"$(node_props "$n")" <<EOF
# Generated by scripts/services/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$n
# Static controller quorum: every node is a voter.
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(client_port "$n"),CONTROLLER://$HOST:$(controller_port "$n")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$(node_dir "$n")/data

num.partitions=3
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Fewer internal partitions than the default 50: the first consumer group / transaction on a
# fresh cluster then comes up in a moment instead of seconds.
offsets.topic.num.partitions=6
transaction.state.log.num.partitions=6
# Consumers in tests join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
}

# Formats node n's data dir once. Skips the JVM entirely when meta.properties is already
# there (restarts), after checking it belongs to this cluster.
format_node() {
  local n=$1 cid=$2 data meta have out
  data="$(node_dir "$n")/data"
  meta="$data/meta.properties"
  if [ -f "$meta" ]; then
    have=$(sed -n 's/^cluster\.id=//p' "$meta")
    [ "$have" = "$cid" ] || die "node $n data ($data) belongs to cluster '$have', not '$cid'; run: $0 reset"
    return 0
  fi
  if ! out=$("$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB_DIR/*" \
      kafka.tools.StorageTool format -t "$cid" -c "$(node_props "$n")" --ignore-formatted 2>&1); then
    printf '%s\n' "$out" >&2
    die "formatting node $n storage failed"
  fi
}

launch_node() {
  local n=$1 log pidfile
  log=$(node_log "$n")
  pidfile=$(node_pidfile "$n")
  # Keep one previous log around; a fresh file per run makes the failure tail meaningful.
  if [ -f "$log" ]; then mv -f "$log" "$log.1"; fi
  # setsid: own session, so the node survives the calling shell and a Ctrl-C in it.
  # shellcheck disable=SC2086  # HEAP_OPTS and JVM_OPTS are lists of flags
  setsid nohup "$JAVA" $HEAP_OPTS $JVM_OPTS -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$LIB_DIR/*" kafka.Kafka "$(node_props "$n")" \
    </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
}

# start_failed MESSAGE NODE... -> stops the nodes this start launched (so a retry starts
# from a clean slate and no half cluster holds the ports), then dies with MESSAGE.
start_failed() {
  local msg=$1 n pid pidfile; shift
  for n in "$@"; do
    for pid in $(node_pids "$n"); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for n in "$@"; do
    pidfile=$(node_pidfile "$n")
    for pid in $(node_pids "$n"); do echo "$pid" >"$pidfile"; stop_pidfile "$pidfile" "node $n" 10 >/dev/null; done
    rm -f "$pidfile"
  done
  die "$msg"
}

cmd_start() {
  local t0=$SECONDS nodes n pid cid missing=() bootstrap=""
  nodes=$(wanted_nodes)

  if [ -f "$NODES_FILE" ] && [ "$(cat "$NODES_FILE")" != "$nodes" ]; then
    die "the data in $KAFKA_DIR was formatted for a $(cat "$NODES_FILE")-node cluster, not $nodes. To switch, drop the data: $0 reset (or: $0 stop && rm -rf '$KAFKA_DIR'/node* '$CLUSTER_ID_FILE' '$NODES_FILE')"
  fi
  # Nodes above the wanted count must not be running (they would try to join).
  for n in $(seq $((nodes + 1)) "$MAX_NODES"); do
    if node_running "$n"; then die "node $n is running but KAFKA_NODES=$nodes; run: $0 stop"; fi
  done

  for n in $(seq 1 "$nodes"); do
    pid=$(node_pid "$n")
    if [ -n "$pid" ]; then
      echo "$pid" >"$(node_pidfile "$n")"   # adopt a node whose pidfile was lost
    else
      missing+=("$n")
    fi
    bootstrap+="${bootstrap:+,}$HOST:$(client_port "$n")"
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "all $nodes node(s) already running (bootstrap: $bootstrap)"
    return 0
  fi

  need_java
  installed || cmd_install
  build_ready_tool
  for n in "${missing[@]}"; do
    if port_open "$HOST" "$(client_port "$n")" || port_open "$HOST" "$(controller_port "$n")"; then
      die "port $(client_port "$n") or $(controller_port "$n") (node $n) is taken by another process"
    fi
  done

  # One cluster id for all nodes, kept so restarts reuse the formatted data.
  if [ ! -s "$CLUSTER_ID_FILE" ]; then
    if compgen -G "$KAFKA_DIR/node*/data/meta.properties" >/dev/null; then
      die "$CLUSTER_ID_FILE is missing but formatted node data exists; run: $0 reset"
    fi
    # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding; a leading
    # '-' would look like a CLI option, so draw again in that case.
    cid=-
    while [ "${cid:0:1}" = "-" ]; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    echo "$cid" >"$CLUSTER_ID_FILE"
    echo "$nodes" >"$NODES_FILE"
  fi
  cid=$(cat "$CLUSTER_ID_FILE")
  [ -f "$NODES_FILE" ] || echo "$nodes" >"$NODES_FILE"

  for n in $(seq 1 "$nodes"); do write_props "$n" "$nodes"; done
  # Format the new nodes in parallel: each format is a JVM start of a second or two.
  local fpids=()
  for n in "${missing[@]}"; do
    format_node "$n" "$cid" & fpids+=($!)
  done
  for pid in "${fpids[@]}"; do wait "$pid" || die "storage format failed (see above)"; done

  say "starting node(s) ${missing[*]} of $nodes (Kafka $KAFKA_VERSION, cluster $cid)"
  for n in "${missing[@]}"; do launch_node "$n"; done

  # Ready = every node alive with its ports open, and every broker registered and unfenced.
  local deadline=$((t0 + START_TIMEOUT)) all_open
  while :; do
    all_open=1
    for n in $(seq 1 "$nodes"); do
      if ! pid_live "$(cat "$(node_pidfile "$n")" 2>/dev/null)"; then
        log_tail "$n"
        start_failed "node $n (port $(client_port "$n")) exited during start-up; log: $(node_log "$n")" "${missing[@]}"
      fi
      port_open "$HOST" "$(client_port "$n")" && port_open "$HOST" "$(controller_port "$n")" || all_open=0
    done
    if [ "$all_open" = 1 ]; then break; fi
    if [ $SECONDS -ge "$deadline" ]; then
      for n in $(seq 1 "$nodes"); do
        if ! port_open "$HOST" "$(client_port "$n")"; then
          say "node $n is not listening on $(client_port "$n")"
          log_tail "$n"
        fi
      done
      start_failed "Kafka did not open its ports within ${START_TIMEOUT}s" "${missing[@]}"
    fi
    sleep 0.3
  done

  local left=$((deadline - SECONDS)) state
  [ "$left" -ge 5 ] || left=5
  if ! state=$("$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=ERROR \
      -cp "$TOOLS_DIR:$LIB_DIR/*" KafkaReady "$bootstrap" "$nodes" "$left" 2>/dev/null); then
    say "cluster not usable after ${START_TIMEOUT}s: ${state:-no answer}"
    local ids
    ids=$(printf '%s' "$state" | sed -n 's/^brokers=\([0-9,]*\) .*/\1/p')
    for n in $(seq 1 "$nodes"); do
      # Show the logs of the nodes that did not register (all of them if none answered).
      if [[ ",$ids," != *",$n,"* ]]; then
        say "node $n did not register as a broker"
        log_tail "$n"
      fi
    done
    start_failed "Kafka start failed (logs: $LOG_DIR/kafka-<n>.log)" "${missing[@]}"
  fi
  say "ready in $((SECONDS - t0))s: $nodes node(s), $state, bootstrap: $bootstrap"
}

# ---------------------------------------------------------------------------- stop / status

cmd_stop() {
  local n pid pidfile voters majority alive deadline quorum_lost=0 grace was_up=()
  # TERM every node at once, so each can hand its partitions over while the others still
  # form a controller quorum.
  for n in $(seq 1 "$MAX_NODES"); do
    for pid in $(node_pids "$n"); do
      kill -TERM "$pid" 2>/dev/null || true
      was_up+=("$n")
    done
  done
  if [ ${#was_up[@]} -eq 0 ]; then
    rm -f "$RUN_DIR"/kafka-*.pid
    say "not running"
    return 0
  fi
  # A broker's controlled shutdown must be committed by a majority of the controller voters.
  # Once fewer than a majority of the nodes are still alive, the remaining ones cannot
  # finish it and may wait out Kafka's 5-minute shutdown timeout. They get a grace that
  # covers the Raft client's own 5 s resign timeout (the usual case: they then exit cleanly)
  # and are killed after it (their logs are recovered on the next start).
  voters=$(cat "$NODES_FILE" 2>/dev/null || echo "$MAX_NODES")
  majority=$((voters / 2 + 1))
  deadline=$((SECONDS + 30))
  while [ $SECONDS -lt "$deadline" ]; do
    alive=0
    for n in $(seq 1 "$MAX_NODES"); do
      if [ -n "$(node_pids "$n")" ]; then alive=$((alive + 1)); fi
    done
    if [ "$alive" -eq 0 ]; then break; fi
    if [ "$voters" -gt 1 ] && [ "$alive" -lt "$majority" ]; then quorum_lost=1; break; fi
    sleep 0.2
  done
  if [ "$quorum_lost" = 1 ]; then grace=10; else grace=$((deadline - SECONDS)); fi
  [ "$grace" -ge 1 ] || grace=1
  for n in $(seq 1 "$MAX_NODES"); do
    pidfile=$(node_pidfile "$n")
    for pid in $(node_pids "$n"); do
      if [ "$quorum_lost" = 1 ]; then
        say "node $n: last one up, no controller quorum left; waiting up to ${grace}s before killing it"
      fi
      echo "$pid" >"$pidfile"
      stop_pidfile "$pidfile" "node $n" "$grace"
    done
    rm -f "$pidfile"
  done
  say "stopped node(s) ${was_up[*]}"
}

cmd_status() {
  local nodes n pid up=0 state
  nodes=$(wanted_nodes)
  for n in $(seq 1 "$MAX_NODES"); do
    pid=$(node_pid "$n")
    if [ -n "$pid" ]; then
      state=running
      port_open "$HOST" "$(client_port "$n")" || state="running (port not open yet)"
      if [ "$n" -le "$nodes" ]; then up=$((up + 1)); fi
    elif [ "$n" -le "$nodes" ]; then
      state=stopped
    else
      continue   # not part of this cluster and not running: nothing to report
    fi
    say "node $n: $state pid=${pid:--} port=$(client_port "$n") controller=$(controller_port "$n")"
  done
  if [ "$up" -eq "$nodes" ]; then return 0; fi
  return 3
}

cmd_stop_node() {
  local n=${1:-} pid pidfile
  case "$n" in
    1|2|3) ;;
    *) die "usage: $0 stop-node 1|2|3" ;;
  esac
  pidfile=$(node_pidfile "$n")
  pid=$(node_pid "$n")
  if [ -z "$pid" ]; then
    rm -f "$pidfile"
    say "node $n is not running"
    return 0
  fi
  # The other nodes keep the controller quorum, so the controlled shutdown completes.
  echo "$pid" >"$pidfile"
  stop_pidfile "$pidfile" "node $n" 30
}

cmd_kill_node() {
  local n=${1:-} pid deadline
  case "$n" in
    1|2|3) ;;
    *) die "usage: $0 kill-node 1|2|3" ;;
  esac
  for pid in $(node_pids "$n"); do kill -KILL "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + 10))
  while node_running "$n"; do
    [ $SECONDS -lt "$deadline" ] || die "node $n still runs 10s after SIGKILL"
    sleep 0.1
  done
  rm -f "$(node_pidfile "$n")"
  say "node $n killed"
}

cmd_reset() {
  cmd_stop
  rm -rf "$KAFKA_DIR"/node* "$CLUSTER_ID_FILE" "$NODES_FILE"
  say "deleted the node data in $KAFKA_DIR (the jar cache in $LIB_DIR stays)"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  stop-node) cmd_stop_node "${2:-}" ;;
  kill-node) cmd_kill_node "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|status|reset|stop-node N|kill-node N" >&2; exit 2 ;;
esac
