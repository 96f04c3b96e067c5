#!/usr/bin/env bash
# Redis (Debian package), the Celery broker, under $VAR_DIR/redis on 127.0.0.1:$REDIS_PORT.
# Usage: redis.sh install|start|stop|status
SERVICE=redis
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${REDIS_PORT:-6379}"
DATA="$VAR_DIR/redis"
PIDFILE="$RUN_DIR/redis.pid"
LOG="$LOG_DIR/redis.log"

install() {
  if command -v redis-server >/dev/null 2>&1; then
    say "already installed: $(redis-server --version | head -n1)"
    return 0
  fi
  say "installing redis-server from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

start() {
  need_cmd redis-server "run: scripts/services.sh install"
  if pid_alive "$PIDFILE"; then
    say "already running (pid $(cat "$PIDFILE"), port $PORT)"
    return 0
  fi
  if port_open 127.0.0.1 "$PORT"; then
    die "port $PORT is taken by another process (another Redis?); stop it or set REDIS_PORT"
  fi
  mkdir -p "$DATA"
  local started=$SECONDS
  redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DATA" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$LOG" --appendonly yes >>"$LOG" 2>&1 \
    || die "redis-server failed to start (log: $LOG)"
  wait_until 20 "Redis on port $PORT" "$LOG" redis-cli -h 127.0.0.1 -p "$PORT" ping
  say "ready on 127.0.0.1:$PORT in $((SECONDS - started))s (log $LOG)"
}

stop() { stop_pidfile "$PIDFILE" "Redis" 20; }

status() {
  if pid_alive "$PIDFILE"; then
    say "running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
  else
    say "stopped"
    return 3
  fi
}

case "${1:-}" in
  install|start|stop|status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
