#!/usr/bin/env bash
# Make sure a Docker daemon answers. Starts Debian's dockerd (20.10) in the background
# if none does. Log: $STATE/dockerd.log, pidfile: $STATE/dockerd.pid.
set -euo pipefail
# shellcheck source=tools/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TIMEOUT=60

if docker_up; then
  pick_docker || die "docker info answers but no docker client can query the version"
  log "dockerd: already running (server $("$DOCKER" version --format '{{.Server.Version}}'), client $DOCKER $("$DOCKER" version --format '{{.Client.Version}}'))"
  exit 0
fi

need_root
ensure_state
[[ -x /usr/sbin/dockerd ]] || die "/usr/sbin/dockerd not found; run tools/dev/install-deps.sh"

PIDFILE="$STATE/dockerd.pid"
pid=""
for f in "$PIDFILE" /var/run/docker.pid; do
  if [[ -s "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; then pid="$(cat "$f")"; break; fi
done

if [[ -n "$pid" ]]; then
  log "dockerd: pid $pid exists but is not answering yet; waiting"
else
  log "dockerd: starting /usr/sbin/dockerd (log $STATE/dockerd.log)"
  setsid nohup /usr/sbin/dockerd --pidfile "$PIDFILE" \
    >>"$STATE/dockerd.log" 2>&1 </dev/null &
fi

if ! poll_until "$TIMEOUT" 1 "docker info" docker_up; then
  tail -n 20 "$STATE/dockerd.log" >&2 || true
  die "dockerd did not become ready within ${TIMEOUT}s (see $STATE/dockerd.log)"
fi
pick_docker || die "dockerd answers docker info but no client can query the version"
log "dockerd: ready (server $("$DOCKER" version --format '{{.Server.Version}}'), client $DOCKER $("$DOCKER" version --format '{{.Client.Version}}'))"
