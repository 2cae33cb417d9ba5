# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared helpers for tools/dev/*.sh. Source it; do not execute it.
#
# Environment knobs (all optional):
#   KILN_DEV_STATE      state dir (default /var/lib/kiln-dev)
#   KILN_REGISTRY_PORT  local registry port (default 5000, bound to 127.0.0.1)
#   KILN_DEBIAN_MIRROR  mirror for debootstrap (default http://deb.debian.org/debian)

STATE="${KILN_DEV_STATE:-/var/lib/kiln-dev}"
REGISTRY_PORT="${KILN_REGISTRY_PORT:-5000}"
REGISTRY_HOST="127.0.0.1:${REGISTRY_PORT}"
REGISTRY_USER="kiln"
REGISTRY_DIR="${STATE}/registry"
REGISTRY_PASSWORD_FILE="${REGISTRY_DIR}/password"
DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[dev] %s\n' "$*" >&2; }
die() { printf '[dev] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ "$(id -u)" -eq 0 ]] || die "$(basename "$0") must run as root (apt, dockerd, debootstrap)"
}

ensure_state() { mkdir -p "$STATE"; }

# poll_until TIMEOUT_S INTERVAL_S DESCRIPTION CMD...  -> 0 once CMD succeeds, 1 on timeout.
poll_until() {
  local timeout="$1" interval="$2" what="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for ${what}"
      return 1
    fi
    sleep "$interval"
  done
}

# Docker client selection.
# /usr/local/bin/docker (CLI v28) shadows Debian's /usr/bin/docker (20.10). Checked on
# this machine: v28 negotiates the API down to 1.41 and works against dockerd 20.10
# (`docker build` falls back to the legacy builder with a DEPRECATED notice since buildx
# is not installed). So we use whatever `docker` is on PATH, and only fall back to
# /usr/bin/docker if the PATH client cannot talk to the daemon.
DOCKER="${KILN_DOCKER:-}"
pick_docker() {
  [[ -n "$DOCKER" ]] && return 0
  local c
  for c in "$(command -v docker || true)" /usr/bin/docker; do
    [[ -n "$c" && -x "$c" ]] || continue
    if "$c" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
      DOCKER="$c"
      [[ "$c" == /usr/bin/docker && "$(command -v docker)" != /usr/bin/docker ]] &&
        log "note: $(command -v docker) cannot talk to the daemon; using /usr/bin/docker"
      return 0
    fi
  done
  return 1
}

docker_up() {
  local c
  for c in "$(command -v docker || true)" /usr/bin/docker; do
    [[ -n "$c" && -x "$c" ]] && "$c" info >/dev/null 2>&1 && return 0
  done
  return 1
}

# HTTP status of the registry's /v2/ endpoint ("000" if nothing answers).
registry_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${REGISTRY_HOST}/v2/" 2>/dev/null || true
}
