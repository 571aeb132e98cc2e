#!/usr/bin/env bash
# `make ui`: Airflow 3 on http://127.0.0.1:8080 with the reference DAG, its sample sources and
# connections, login admin/admin (a local-only default). Ctrl-C stops every process it started.
#
# Components: api-server (UI + REST + Execution API), scheduler (LocalExecutor), dag-processor,
# triggerer, each in its own process group, logs in $AIRFLOW_HOME/logs/ui/, pids in
# $AIRFLOW_HOME/run/. Plus the demo users API on a free loopback port. See docs/operating.md.
set -euo pipefail

AAP_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$AAP_ROOT"
# shellcheck source=scripts/airflow_env.sh
source scripts/airflow_env.sh

LOGS=$AIRFLOW_HOME/logs/ui
RUN=$AIRFLOW_HOME/run
mkdir -p "$AIRFLOW_HOME" "$LOGS" "$RUN" "$AGENT_UI_VAR" "$AIRFLOW_VAR_AGENT_REPORTS_DIR" "$AGENT_PROVIDER_STAGING_ROOT"
PIDS=()

say() { printf '==> %s\n' "$*"; }

stop_all() {
  trap - INT TERM EXIT
  [ "${#PIDS[@]}" -eq 0 ] && return 0
  say "stopping ${#PIDS[@]} process group(s)"
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 60); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -f "$RUN"/*.pid "$RUN/ui.ready"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# start NAME CMD...: run CMD in a new session (its own process group), log to $LOGS/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  PIDS+=("$!")
  echo "$!" >"$RUN/$name.pid"
}

seed_password() {
  python - "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" "$AIRFLOW_UI_USER" "$AIRFLOW_UI_PASSWORD" <<'EOF'
import json, os, sys
path, user, password = sys.argv[1:]
users = json.load(open(path)) if os.path.exists(path) else {}
users[user] = password
with open(path, "w") as fh:
    json.dump(users, fh)
EOF
}

sample_data() {  # sources for the last N days, so a run for "yesterday" (or a backfill) finds events
  local dir=$AIRFLOW_VAR_AGENT_SAMPLE_DIR start
  start=$(date -u -d "$AGENT_UI_SAMPLE_DAYS days ago" +%F)
  if [ "$(cat "$dir/.window" 2>/dev/null)" != "$start" ]; then
    say "sample sources in $dir ($start .. today)"
    python scripts/sample_data.py --out "$dir" --start "$start" --days "$((AGENT_UI_SAMPLE_DAYS + 1))" >/dev/null
    echo "$start" >"$dir/.window"
  fi
}

users_api() {
  local port_file=$RUN/users_api.port
  rm -f "$port_file"
  start users-api python scripts/demo_http_server.py --data "$AIRFLOW_VAR_AGENT_SAMPLE_DIR/users.json" \
    --port-file "$port_file"
  for _ in $(seq 1 100); do [ -s "$port_file" ] && break; sleep 0.1; done
  [ -s "$port_file" ] || { echo "the users API did not start; see $LOGS/users-api.log" >&2; exit 1; }
  export AIRFLOW_CONN_AGENT_USERS_API="{\"conn_type\": \"http\", \"host\": \"127.0.0.1\", \"port\": $(cat "$port_file")}"
}

wait_healthy() {
  local url=http://127.0.0.1:$AIRFLOW_UI_PORT/api/v2/monitor/health
  for _ in $(seq 1 180); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a component exited early; see $LOGS/" >&2; tail -20 "$LOGS"/*.log >&2; exit 1; }
    done
    sleep 1
  done
  echo "the API server did not answer on $url; see $LOGS/api-server.log" >&2
  exit 1
}

if curl -fsS -o /dev/null "http://127.0.0.1:$AIRFLOW_UI_PORT/" 2>/dev/null; then
  echo "port $AIRFLOW_UI_PORT is already in use; set AIRFLOW_UI_PORT=<free port>" >&2
  exit 1
fi

say "metadata DB in $AIRFLOW_HOME (log: $LOGS/db-migrate.log)"
airflow db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -20 "$LOGS/db-migrate.log" >&2; exit 1; }
seed_password
sample_data
users_api

say "starting api-server, scheduler, dag-processor, triggerer (logs: $LOGS/)"
start api-server airflow api-server --host 127.0.0.1 --port "$AIRFLOW_UI_PORT"
start scheduler airflow scheduler --skip-serve-logs
start dag-processor airflow dag-processor
start triggerer airflow triggerer --skip-serve-logs
wait_healthy

cat <<EOF

  Airflow UI   http://127.0.0.1:$AIRFLOW_UI_PORT   (login: $AIRFLOW_UI_USER / $AIRFLOW_UI_PASSWORD — local only)
  DAGs folder  $AIRFLOW__CORE__DAGS_FOLDER
  Warehouse    $AIRFLOW_CONN_AGENT_WAREHOUSE
  Reports      $AIRFLOW_VAR_AGENT_REPORTS_DIR
  Logs         $LOGS/

  Trigger daily_user_engagement from the UI (see docs/operating.md). Ctrl-C stops everything.

EOF
echo "ready" >"$RUN/ui.ready"

# Run until Ctrl-C or until a component dies (then stop the others and fail).
set +e
wait -n "${PIDS[@]}"
status=$?
echo "a component exited (status $status); stopping the others. Logs: $LOGS/" >&2
exit 1
