#!/usr/bin/env bash
# Install every Debian package Kiln needs to build, test and run its dev stack.
# Skips apt entirely when everything is already installed.
set -euo pipefail
# shellcheck source=tools/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
  # C++ toolchain and libraries
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libyaml-cpp-dev librocksdb-dev libgtest-dev libgmock-dev libssl-dev
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgit2-dev libre2-dev libarchive-dev libpugixml-dev
  # runtime / dev stack
  docker.io docker-registry apache2-utils debootstrap curl ca-certificates
  iproute2 iptables python3 python3-flask procps openssl unzip
)

missing=()
for p in "${PACKAGES[@]}"; do
  st="$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)"
  [[ "$st" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  log "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

need_root
log "install-deps: missing: ${missing[*]}"

# apt-get update only when the lists are missing or older than one day.
if ! find /var/lib/apt/lists -maxdepth 1 -name '*_InRelease' -mtime -1 2>/dev/null | grep -q .; then
  log "install-deps: apt-get update"
  apt-get update -q
fi

log "install-deps: apt-get install ${#missing[@]} package(s)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
log "install-deps: done"
