#!/usr/bin/env bash
# The main job (README): on a fresh Debian 12 machine, as root, sets up everything and runs a real build
# through a local farm:
#   apt packages, dockerd, the registry (127.0.0.1:5000, htpasswd auth), the local Python base image;
#   builds Kiln; starts kiln-coordinator and two kiln-agents on 127.0.0.1; creates the bare repository
#   /srv/git/flask-app.git with a post-receive hook that sends signed GitHub-style push webhooks;
#   stores the registry credentials and the webhook secret as parameters; applies
#   examples/flask-app/project.yaml; pushes the example app; follows the build the push triggered;
#   and checks over the registry's HTTP API that the image tagged with the pushed commit is there.
# The farm keeps running afterwards (tools/dev/stop-farm.sh stops it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$DEV_DIR/../.." && pwd)"
BUILD_DIR="${KILN_BUILD_DIR:-$ROOT/build}"
FARM="$STATE/farm"
REPO=/srv/git/flask-app.git
GRPC=127.0.0.1:7070
HTTP=127.0.0.1:7080
need_root

bash "$DEV_DIR/setup.sh"
bash "$DEV_DIR/build.sh"
KILN="$BUILD_DIR/tools/cli/kiln"
export KILN_COORDINATOR="$GRPC"

# A fresh farm each run (state of an earlier run is moved aside, never deleted blindly).
bash "$DEV_DIR/stop-farm.sh"
if [[ -d "$FARM" ]]; then mv "$FARM" "$FARM.old.$(date +%s)"; fi
mkdir -p "$FARM/pids" "$FARM/logs"

log "starting kiln-coordinator on $GRPC (gRPC) and $HTTP (HTTP)"
"$BUILD_DIR/coordinator/kiln-coordinator" --data-dir "$FARM/coordinator" --grpc-listen "$GRPC" \
  --http-listen "$HTTP" >"$FARM/logs/coordinator.log" 2>&1 &
echo $! >"$FARM/pids/coordinator.pid"
poll_until 30 0.2 "coordinator /healthz" curl -sf "http://$HTTP/healthz" || die "coordinator did not start; see $FARM/logs/coordinator.log"

for i in 1 2; do
  log "starting kiln-agent $i"
  "$BUILD_DIR/agent/kiln-agent" --coordinator "$GRPC" --work-dir "$FARM/agent-$i" --slots 1 \
    --labels "docker=true,role=builder" >"$FARM/logs/agent-$i.log" 2>&1 &
  echo $! >"$FARM/pids/agent-$i.pid"
done
poll_until 30 0.2 "two connected agents" bash -c "[[ \$('$KILN' agent list | grep -c ' yes ') -ge 2 ]]" ||
  die "agents did not connect; see $FARM/logs/agent-*.log"
"$KILN" agent list

log "parameters: registry credentials and webhook secret"
"$KILN" param put /flask-app/docker-credentials/username "$REGISTRY_USER" --overwrite
"$KILN" param put /flask-app/docker-credentials/password - --secure --overwrite <"$REGISTRY_PASSWORD_FILE"
"$KILN" param put /flask-app/docker-registry/url "$REGISTRY_HOST" --overwrite
SECRET_FILE="$FARM/webhook-secret"
(umask 077; openssl rand -hex 32 >"$SECRET_FILE")
"$KILN" param put /kiln/webhooks/flask-app - --secure --overwrite <"$SECRET_FILE"

log "bare repository $REPO with the webhook hook"
if [[ -d "$REPO" ]]; then mv "$REPO" "$REPO.old.$(date +%s)"; fi
mkdir -p "$(dirname "$REPO")"
git init -q --bare -b main "$REPO"
install -m 0755 "$DEV_DIR/git-webhook-hook" "$REPO/hooks/post-receive"
git -C "$REPO" config kiln.webhookUrl "http://$HTTP/webhooks/github"
git -C "$REPO" config kiln.webhookSecretFile "$SECRET_FILE"

"$KILN" project apply -f "$ROOT/examples/flask-app/project.yaml"

log "pushing examples/flask-app"
WORK="$FARM/flask-app-work"
rm -rf "$WORK"
cp -r "$ROOT/examples/flask-app" "$WORK"
git -C "$WORK" init -q -b main
git -C "$WORK" -c user.name="Kiln Dev" -c user.email=dev@kiln.invalid add -A
git -C "$WORK" -c user.name="Kiln Dev" -c user.email=dev@kiln.invalid commit -q -m "Flask example app"
git -C "$WORK" remote add origin "$REPO"
git -C "$WORK" push origin main 2>&1 | sed 's/^/  /'
SHA="$(git -C "$WORK" rev-parse HEAD)"

BUILD_ID="$("$KILN" build list flask-app | awk 'NR==2 {print $1}')"
[[ -n "$BUILD_ID" ]] || die "the push started no build (see the hook output above and $FARM/logs/coordinator.log)"
log "following build $BUILD_ID (commit $SHA)"
set +e
"$KILN" build logs "$BUILD_ID" --follow
RC=$?
set -e
"$KILN" build get "$BUILD_ID"
[[ $RC -eq 0 ]] || die "build $BUILD_ID did not succeed"

TAGS="$(curl -s -u "$REGISTRY_USER:$(cat "$REGISTRY_PASSWORD_FILE")" "http://$REGISTRY_HOST/v2/flask-app/tags/list")"
log "registry tags for flask-app: $TAGS"
grep -q "\"$SHA\"" <<<"$TAGS" || die "image flask-app:$SHA is not in the registry"
log "OK: $REGISTRY_HOST/flask-app:$SHA was built by Kiln from a git push and is in the registry."
log "The farm is still running (kiln build list; tools/dev/stop-farm.sh to stop it)."
