#!/usr/bin/env bash
# Stops the local farm started by tools/dev/main-job.sh (only the processes it started, by PID).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FARM="$STATE/farm"
for pidfile in "$FARM"/pids/*.pid; do
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" && log "stopped $(basename "$pidfile" .pid) (pid $pid)"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
done
