#!/usr/bin/env bash
# Local services without Docker: MariaDB, Redis and a KRaft Kafka cluster, data and logs under var/.
# Usage: scripts/services.sh install|start|stop|status|restart [mariadb] [redis] [kafka]
# KAFKA_NODES=1 starts a one-node Kafka cluster for quick local runs (default: 3 nodes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
action="${1:-}"; shift || true
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(mariadb redis kafka)

run_all() {
  local verb=$1 rc=0 s
  for s in "${services[@]}"; do
    case "$s" in
      mariadb|redis|kafka) bash "$here/services/$s.sh" "$verb" || rc=$? ;;
      *) echo "unknown service: $s (expected mariadb, redis or kafka)" >&2; exit 2 ;;
    esac
    # A failed start stops the sequence: later services may depend on it.
    if [ "$verb" = start ] && [ $rc -ne 0 ]; then return $rc; fi
  done
  return $rc
}

case "$action" in
  install|status) run_all "$action" ;;
  start)
    started=$SECONDS
    run_all start
    echo "[services] all started in $((SECONDS - started))s"
    ;;
  stop)
    # Stop in reverse order of start.
    reversed=(); for ((i=${#services[@]}-1; i>=0; i--)); do reversed+=("${services[i]}"); done
    services=("${reversed[@]}")
    run_all stop
    ;;
  restart) "$0" stop "${services[@]}"; "$0" start "${services[@]}" ;;
  *) echo "usage: $0 install|start|stop|status|restart [mariadb] [redis] [kafka]" >&2; exit 2 ;;
esac
