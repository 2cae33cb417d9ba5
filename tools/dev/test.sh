#!/usr/bin/env bash
# The test command (README): sets up the real components (apt packages, dockerd, the registry, the
# local Python base image), builds, and runs every test suite with CTest: unit, integration and e2e
# (real binaries, real dockerd, registry and git). Under CI=true a missing Docker engine fails the
# e2e suite instead of skipping it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$DEV_DIR/../.." && pwd)"
BUILD_DIR="${KILN_BUILD_DIR:-$ROOT/build}"
need_root
bash "$DEV_DIR/setup.sh"
bash "$DEV_DIR/build.sh"
export KILN_REGISTRY="${REGISTRY_HOST}"
export KILN_REGISTRY_USER="${REGISTRY_USER}"
export KILN_REGISTRY_PASSWORD_FILE="${REGISTRY_PASSWORD_FILE}"
export KILN_SOURCE_DIR="$ROOT"
export KILN_BIN_DIR="$BUILD_DIR"
log "running tests"
cd "$BUILD_DIR"
ctest --output-on-failure -j2 --timeout 600 "$@"
