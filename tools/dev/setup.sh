#!/usr/bin/env bash
# One-shot dev environment: packages, dockerd, local registry, python base image.
# Idempotent; a second run only checks and takes a few seconds.
set -euo pipefail
# shellcheck source=tools/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start=$SECONDS
for step in install-deps start-dockerd start-registry make-base-image; do
  t0=$SECONDS
  bash "$DEV_DIR/$step.sh"
  log "$step: $((SECONDS - t0))s"
done

log "setup complete in $((SECONDS - start))s"
log "registry URL:  ${REGISTRY_HOST}  (http://${REGISTRY_HOST}/v2/)"
log "registry user: ${REGISTRY_USER}"
log "password file: ${REGISTRY_PASSWORD_FILE}"
