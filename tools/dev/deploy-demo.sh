#!/usr/bin/env bash
# The sample pipeline, push to deployed on three hosts (README "Deployments and pipelines"). Run after
# tools/dev/main-job.sh, whose farm (coordinator, build agents, registry, /srv/git/flask-app.git with
# its webhook hook) it reuses:
#   starts three more kiln-agents labelled role=web, each with its own work dir, deployment root and
#   APP_PORT (8081, 8082, 8083): three "hosts";
#   creates the application, applies examples/flask-app/deployment-group.yaml (OneAtATime, with
#   auto-rollback) and examples/flask-app/pipeline.yaml (Source → Build → Approve → Deploy);
#   pushes a commit: the webhook starts a pipeline execution; approves it when it waits;
#   waits for the execution and checks that http://127.0.0.1:808{1,2,3}/version answers the commit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$DEV_DIR/../.." && pwd)"
BUILD_DIR="${KILN_BUILD_DIR:-$ROOT/build}"
FARM="$STATE/farm"
GRPC=127.0.0.1:7070
KILN="$BUILD_DIR/tools/cli/kiln"
export KILN_COORDINATOR="$GRPC"
need_root
[[ -s "$FARM/pids/coordinator.pid" ]] && kill -0 "$(cat "$FARM/pids/coordinator.pid")" 2>/dev/null ||
  die "no farm is running: run tools/dev/main-job.sh first"
WORK="$FARM/flask-app-work"
[[ -d "$WORK/.git" ]] || die "$WORK is missing: run tools/dev/main-job.sh first"

for i in 1 2 3; do
  pidfile="$FARM/pids/web-$i.pid"
  if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
  log "starting web host $i (APP_PORT=808$i)"
  APP_PORT="808$i" "$BUILD_DIR/agent/kiln-agent" --coordinator "$GRPC" --work-dir "$FARM/web-$i" \
    --slots 1 --labels "role=web,docker=true" >"$FARM/logs/web-$i.log" 2>&1 &
  echo $! >"$pidfile"
done
poll_until 30 0.2 "three web hosts" bash -c "[[ \$('$KILN' agent list | grep 'role=web' | grep -c ' yes ') -ge 3 ]]" ||
  die "web agents did not connect; see $FARM/logs/web-*.log"

"$KILN" deploy app create flask-app 2>/dev/null || true
"$KILN" deploy group apply -f "$ROOT/examples/flask-app/deployment-group.yaml"
"$KILN" pipeline apply -f "$ROOT/examples/flask-app/pipeline.yaml"

log "pushing a change: the webhook starts the pipeline"
date -u +%s%N >"$WORK/.deploy-demo"
git -C "$WORK" -c user.name="Kiln Dev" -c user.email=dev@kiln.invalid add -A
git -C "$WORK" -c user.name="Kiln Dev" -c user.email=dev@kiln.invalid commit -q -m "Deploy demo"
git -C "$WORK" push origin main 2>&1 | sed 's/^/  /'
SHA="$(git -C "$WORK" rev-parse HEAD)"

# The newest execution's id and, when it waits for approval, "waiting".
state() {
  "$KILN" pipeline get flask-app --json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
ex = (doc.get("executions") or [{}])[0]
waiting = any(a.get("status") == "Waiting" for s in ex.get("stages", []) for a in s.get("actions", []))
print(ex.get("id", ""), ex.get("status", ""), ex.get("sourceCommit", ""), "waiting" if waiting else "-")'
}
poll_until 300 1 "the pipeline to wait for approval" bash -c "$(declare -f state); KILN='$KILN'; state | grep -q ' waiting\$'" ||
  { "$KILN" pipeline get flask-app; die "the pipeline did not reach its approval"; }
read -r EXECUTION _ COMMIT _ < <(state)
[[ "$COMMIT" == "$SHA" ]] || die "the newest execution carries $COMMIT, not the pushed $SHA"
log "approving execution $EXECUTION"
"$KILN" pipeline approve flask-app --execution "$EXECUTION" --stage Approve --action Approve --summary "deploy demo"
poll_until 600 1 "the execution to finish" bash -c "$(declare -f state); KILN='$KILN'; state | grep -Eq ' (Succeeded|Failed|Stopped|Superseded) '" ||
  die "the execution did not finish"
"$KILN" pipeline get flask-app --limit 1
read -r _ STATUS _ _ < <(state)
[[ "$STATUS" == "Succeeded" ]] || die "the pipeline execution ended $STATUS"
for port in 8081 8082 8083; do
  got="$(curl -fsS "http://127.0.0.1:$port/version" || true)"
  [[ "$got" == "$SHA" ]] || die "127.0.0.1:$port answers '$got', expected $SHA"
  log "127.0.0.1:$port answers $got"
done
log "deploy demo OK: commit $SHA is deployed on three hosts"
