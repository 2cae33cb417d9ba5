#!/bin/sh
# ApplicationStart: pull the image this revision was built into and run it.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/image.env"            # IMAGE=<registry>/flask-app:<commit>, VERSION=<commit>
port="${APP_PORT:-8080}"
name="flask-app-$port"
docker pull -q "$IMAGE"
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" -p "127.0.0.1:$port:5000" -e "APP_VERSION=$VERSION" "$IMAGE" >/dev/null
echo "started $name from $IMAGE on 127.0.0.1:$port"
