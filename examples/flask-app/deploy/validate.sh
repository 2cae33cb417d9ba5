#!/bin/sh
# ValidateService: the app must answer with this revision's version within 30 s.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/image.env"
port="${APP_PORT:-8080}"
# A revision may mark hosts where validation must fail (used by the rollback test): deploy/fail-on
# lists ports, one per line.
if [ -f "$here/fail-on" ] && grep -qx "$port" "$here/fail-on"; then
  echo "validation refused on port $port (deploy/fail-on)" >&2
  exit 1
fi
i=0
while [ "$i" -lt 60 ]; do
  if got="$(curl -fsS "http://127.0.0.1:$port/version" 2>/dev/null)" && [ "$got" = "$VERSION" ]; then
    echo "127.0.0.1:$port answers version $got"
    exit 0
  fi
  i=$((i + 1))
  sleep 0.5
done
echo "127.0.0.1:$port did not answer version $VERSION" >&2
exit 1
