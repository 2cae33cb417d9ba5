#!/bin/sh
# ApplicationStop: runs the PREVIOUS successful revision's copy of this script (CodeDeploy rule).
set -eu
name="flask-app-${APP_PORT:-8080}"
if docker container inspect "$name" >/dev/null 2>&1; then
  docker rm -f "$name" >/dev/null
  echo "stopped $name"
else
  echo "$name is not running"
fi
