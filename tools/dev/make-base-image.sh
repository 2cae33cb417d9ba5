#!/usr/bin/env bash
# Build a local stand-in for the official python:3.11-slim image (Docker Hub is not
# reachable here): debootstrap a Debian bookworm minbase with python3, flask and pip,
# then `docker import` it as python:3.11-slim, python:3.11 and python:3.
# Flask is preinstalled so `pip install -r requirements.txt` (Flask, unpinned) is already
# satisfied and needs no network. The rootfs is kept in $STATE/rootfs and reused.
set -euo pipefail
# shellcheck source=tools/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE="python:3.11-slim"
ALIASES=(python:3.11 python:3)
MIRROR="${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS="$STATE/rootfs"
DONE_MARK="$STATE/rootfs.complete"

pick_docker || die "docker is not answering; run tools/dev/start-dockerd.sh"

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "base image: $IMAGE already present ($("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE" | cut -c1-19))"
  exit 0
fi

need_root
ensure_state
command -v debootstrap >/dev/null || die "debootstrap not found; run tools/dev/install-deps.sh"

# Unmount anything debootstrap may have left mounted inside the rootfs (e.g. after an
# interrupted run) before we delete it.
umount_rootfs() {
  local m
  { findmnt -rn -o TARGET || true; } | { grep -F "$ROOTFS/" || true; } | sort -r |
    while read -r m; do
      log "base image: unmounting leftover $m"
      umount -l "$m" || true
    done
}

if [[ -f "$DONE_MARK" && -x "$ROOTFS/usr/bin/python3" ]]; then
  log "base image: reusing complete rootfs $ROOTFS"
else
  if [[ -e "$ROOTFS" ]]; then
    log "base image: removing incomplete rootfs $ROOTFS"
    umount_rootfs
    rm -rf --one-file-system "$ROOTFS"
  fi
  log "base image: debootstrap bookworm minbase (+python3, flask, pip) from $MIRROR"
  t0=$SECONDS
  debootstrap --variant=minbase --include=python3,python3-flask,python3-pip \
    bookworm "$ROOTFS" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 || {
      tail -n 20 "$STATE/debootstrap.log" >&2
      umount_rootfs
      die "debootstrap failed (see $STATE/debootstrap.log)"
    }
  log "base image: debootstrap done in $((SECONDS - t0))s"

  # Like the official python images: pip may install into the system interpreter.
  rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sfn python3 "$ROOTFS/usr/bin/python"
  # Slim it down: apt caches and lists, docs, logs, host files copied by debootstrap.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
         "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log \
         "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
  : >"$ROOTFS/etc/resolv.conf"
  echo localhost >"$ROOTFS/etc/hostname"
  "$ROOTFS/usr/bin/python3" --version >/dev/null 2>&1 || true
  touch "$DONE_MARK"
fi

log "base image: importing rootfs as $IMAGE"
tar -C "$ROOTFS" --numeric-owner \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
  "$DOCKER" import \
    --message "kiln dev stand-in for $IMAGE (debootstrap bookworm minbase)" \
    --change 'CMD ["python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$IMAGE" >/dev/null
for a in "${ALIASES[@]}"; do "$DOCKER" tag "$IMAGE" "$a"; done

id="$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE")"
size="$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")"
log "base image: $IMAGE (+ ${ALIASES[*]}) id ${id} size $((size / 1024 / 1024)) MiB"
