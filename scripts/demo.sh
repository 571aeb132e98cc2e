#!/usr/bin/env bash
# `make demo`: run the reference DAG once, for a fixed day, on the embedded default.
#
# SQLite metadata DB in .airflow/, sample sources in var/sample/ (an events SQLite file, a users JSON
# API served on 127.0.0.1, a campaigns CSV), a SQLite warehouse in var/warehouse.db, staging in
# .staging/. No Claude credentials needed: a healthy day makes no model call. Safe to run again:
# the load upserts by (user_id, date), so the warehouse ends the same.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VENV:-.venv}/bin
DAY=${DEMO_DAY:-2026-11-10}
SAMPLE=$ROOT/var/sample
WAREHOUSE=$ROOT/var/warehouse.db

export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/.airflow}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AGENT_PROVIDER_HOME=$ROOT
export AGENT_PROVIDER_STAGING_ROOT=${AGENT_PROVIDER_STAGING_ROOT:-$ROOT/.staging}
mkdir -p "$AIRFLOW_HOME" var/reports
rm -f var/reports/daily_user_engagement__*.json

echo "==> Airflow metadata DB (SQLite in $AIRFLOW_HOME)"
"$BIN/airflow" db migrate >"$ROOT/var/demo-db-migrate.log" 2>&1 || { tail -20 "$ROOT/var/demo-db-migrate.log"; exit 1; }

echo "==> Sample sources in $SAMPLE"
[ -f "$SAMPLE/events.db" ] || "$BIN/python" scripts/sample_data.py --out "$SAMPLE" --start 2026-11-01 --days 14 >/dev/null

echo "==> Users API on 127.0.0.1"
PORT_FILE=$ROOT/var/users_api.port
rm -f "$PORT_FILE"
"$BIN/python" scripts/demo_http_server.py --data "$SAMPLE/users.json" --port-file "$PORT_FILE" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
[ -s "$PORT_FILE" ] || { echo "the users API did not start" >&2; exit 1; }

export AIRFLOW_CONN_AGENT_SOURCES_DB="sqlite:///$SAMPLE/events.db"
export AIRFLOW_CONN_AGENT_USERS_API="{\"conn_type\": \"http\", \"host\": \"127.0.0.1\", \"port\": $(cat "$PORT_FILE")}"
export AIRFLOW_CONN_AGENT_WAREHOUSE="sqlite:///$WAREHOUSE"

echo "==> airflow dags test daily_user_engagement $DAY (log: var/demo-dags-test.log)"
"$BIN/airflow" dags test daily_user_engagement "$DAY" >"$ROOT/var/demo-dags-test.log" 2>&1 \
    || { tail -40 "$ROOT/var/demo-dags-test.log"; exit 1; }

REPORT=$(ls -t var/reports/daily_user_engagement__*.json 2>/dev/null | head -1 || true)
[ -n "$REPORT" ] || { echo "no pipeline report was written; see var/demo-dags-test.log" >&2; exit 1; }

echo "==> Pipeline report ($REPORT)"
"$BIN/python" - "$REPORT" "$WAREHOUSE" <<'EOF'
import json, sqlite3, sys

doc = json.load(open(sys.argv[1]))
print(f"run {doc['run_id']}: {doc['status']}, rows loaded {doc['rows_loaded']}, "
      f"model calls {doc['usage']['model_calls']}, cost ${doc['usage']['cost_usd']:.4f}")
print(f"  {'task':<22} {'stage':<10} {'status':<16} {'rows':>8} {'issues':>6} {'seconds':>8}")
for s in doc["stages"].values():
    rows = "" if s["rows"] is None else s["rows"]
    secs = "" if s["duration_s"] is None else f"{s['duration_s']:.2f}"
    print(f"  {s['task_id']:<22} {s['stage']:<10} {s['status']:<16} {rows:>8} {s['issues']:>6} {secs:>8}")
for error in doc["errors"]:
    print(f"  error: {error}")
con = sqlite3.connect(sys.argv[2])
total, days = con.execute("SELECT count(*), count(DISTINCT date) FROM user_engagement_daily").fetchone()
flagged = con.execute("SELECT count(*) FROM user_engagement_daily WHERE is_anomaly").fetchone()[0]
print(f"==> Warehouse {sys.argv[2]}: user_engagement_daily has {total} rows over {days} day(s), {flagged} flagged")
sys.exit(0 if doc["status"] == "success" else 1)
EOF
