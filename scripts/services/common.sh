# Shared helpers for the local service scripts (sourced, not executed).
# Every service keeps its data under $VAR_DIR/<service> and its log under $VAR_DIR/log.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR_DIR="${VAR_DIR:-$REPO_ROOT/var}"
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"
mkdir -p "$LOG_DIR" "$RUN_DIR"

say() { printf '[%s] %s\n' "${SERVICE:-services}" "$*"; }
die() { printf '[%s] ERROR: %s\n' "${SERVICE:-services}" "$*" >&2; exit 1; }

# pid_alive PIDFILE -> 0 when the pidfile names a live process.
pid_alive() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# port_open HOST PORT -> 0 when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION LOGFILE COMMAND... -> polls COMMAND until it succeeds.
wait_until() {
  local timeout=$1 what=$2 log=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      say "gave up waiting for $what after ${timeout}s; last lines of $log:"
      tail -n 20 "$log" >&2 2>/dev/null || true
      die "$what did not become ready (log: $log)"
    fi
    sleep 0.3
  done
}

# stop_pidfile PIDFILE NAME [TIMEOUT] -> TERM, wait, then KILL; removes the pidfile.
stop_pidfile() {
  local pidfile=$1 name=$2 timeout=${3:-30} pid
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    say "$name is not running"
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "$name (pid $pid) ignored TERM for ${timeout}s; killing"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  say "$name stopped"
}

# need_cmd CMD HINT -> fails with a hint when CMD is missing.
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found; $2"; }
