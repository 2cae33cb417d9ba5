#!/usr/bin/env bash
# Configures and builds Kiln (Release with debug info) into ${KILN_BUILD_DIR:-build}.
#   tools/dev/build.sh [extra cmake args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$DEV_DIR/../.." && pwd)"
BUILD_DIR="${KILN_BUILD_DIR:-$ROOT/build}"
log "configuring $BUILD_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
log "building with $(nproc) jobs"
ninja -C "$BUILD_DIR" -j"$(nproc)"
