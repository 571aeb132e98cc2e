#!/usr/bin/env bash
# `make demo`: run the reference DAG on the embedded default for a healthy day and for a failing day.
#
# SQLite metadata DB in .airflow/, sample sources in var/sample/ (an events SQLite file, a users JSON
# API served on 127.0.0.1, a campaigns CSV; 2026-11-12 carries broken rows), a SQLite warehouse in
# var/warehouse.db, staging in .staging/. Claude is played by FakeClaude, an offline stand-in for the
# Claude API on 127.0.0.1 whose answers are scripted in scripts/demo_claude_script.json: no credentials,
# no network. The healthy day makes no model call although Claude is reachable; the failing day gets a
# diagnosis and a route (quarantine). Safe to run again: loads upsert, so the warehouse ends the same.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VENV:-.venv}/bin
# `airflow dags test D` with the DAG's data-interval timetable takes D as the moment the run happens,
# so it processes the data interval that ends at D: the day before D. The reports say which interval.
HEALTHY_DAY=${DEMO_DAY:-2026-11-10}  # processes 2026-11-09 (interval 2026-11-09 to 2026-11-10)
BAD_DAY=2026-11-12                   # the day sample_data.py breaks ...
BAD_RUN=2026-11-13                   # ... and the run that processes it (interval 2026-11-12 to 2026-11-13)
SAMPLE=$ROOT/var/sample
WAREHOUSE=$ROOT/var/warehouse.db
FAKE_CLAUDE="FakeClaude (offline stand-in for the Claude API)"

export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/.airflow}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AGENT_PROVIDER_HOME=$ROOT
export AGENT_PROVIDER_STAGING_ROOT=${AGENT_PROVIDER_STAGING_ROOT:-$ROOT/.staging}
mkdir -p "$AIRFLOW_HOME" var/reports
rm -f var/reports/daily_user_engagement__*.json

PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT

# start_server NAME PORT_FILE COMMAND...: run COMMAND in the background and wait for its port file.
start_server() {
    local name=$1 port_file=$2
    shift 2
    rm -f "$port_file"
    "$@" >"$ROOT/var/$name.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 100); do [ -s "$port_file" ] && return 0; sleep 0.1; done
    echo "$name did not start; see var/$name.log" >&2
    exit 1
}

# run_day LOGICAL_DATE: airflow dags test, then print the run's stage table; REPORT is its report file.
run_day() {
    local day=$1 log=$ROOT/var/demo-dags-test-$1.log
    echo "==> airflow dags test daily_user_engagement $day (log: ${log#"$ROOT/"})"
    "$BIN/airflow" dags test daily_user_engagement "$day" >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
    REPORT=$(ls -t var/reports/daily_user_engagement__*.json 2>/dev/null | head -1 || true)
    [ -n "$REPORT" ] && [ "$REPORT" != "${PREVIOUS:-}" ] || { echo "no pipeline report was written; see $log" >&2; exit 1; }
    PREVIOUS=$REPORT
    "$BIN/python" - "$REPORT" <<'EOF'
import json, sys

doc = json.load(open(sys.argv[1]))
print(f"    data interval processed: {doc['data_interval_start']} to {doc['data_interval_end']} (end excluded)")
print(f"    {'task':<22} {'stage':<10} {'status':<16} {'rows':>8} {'issues':>6} {'seconds':>8}")
for s in doc["stages"].values():
    rows = "" if s["rows"] is None else s["rows"]
    secs = "" if s["duration_s"] is None else f"{s['duration_s']:.2f}"
    print(f"    {s['task_id']:<22} {s['stage']:<10} {s['status']:<16} {rows:>8} {s['issues']:>6} {secs:>8}")
for error in doc["errors"]:
    print(f"    error: {error}")
EOF
}

echo "==> Airflow metadata DB (SQLite in $AIRFLOW_HOME)"
"$BIN/airflow" db migrate >"$ROOT/var/demo-db-migrate.log" 2>&1 || { tail -20 "$ROOT/var/demo-db-migrate.log"; exit 1; }

echo "==> Sample sources in $SAMPLE (deterministic; $BAD_DAY has broken event rows)"
"$BIN/python" scripts/sample_data.py --out "$SAMPLE" --start 2026-11-01 --days 14 --bad-day "$BAD_DAY" >/dev/null

echo "==> Users API on 127.0.0.1"
start_server users_api var/users_api.port \
    "$BIN/python" scripts/demo_http_server.py --data "$SAMPLE/users.json" --port-file var/users_api.port

echo "==> $FAKE_CLAUDE on 127.0.0.1, answers scripted in scripts/demo_claude_script.json"
start_server fake_claude var/fake_claude.port "$BIN/python" -m airflow_agent_provider.testing.fake_claude \
    --port 0 --port-file var/fake_claude.port --script scripts/demo_claude_script.json --api-key demo-fake-key

export AIRFLOW_CONN_AGENT_SOURCES_DB="sqlite:///$SAMPLE/events.db"
export AIRFLOW_CONN_AGENT_USERS_API="{\"conn_type\": \"http\", \"host\": \"127.0.0.1\", \"port\": $(cat var/users_api.port)}"
export AIRFLOW_CONN_AGENT_WAREHOUSE="sqlite:///$WAREHOUSE"
export AIRFLOW_CONN_ANTHROPIC_DEFAULT="{\"conn_type\": \"anthropic\", \"host\": \"http://127.0.0.1:$(cat var/fake_claude.port)\", \"password\": \"demo-fake-key\"}"

echo "==> Healthy day (Claude reachable, but nothing needs judgment)"
run_day "$HEALTHY_DAY"
HEALTHY_REPORT=$REPORT
echo "==> Failing day $BAD_DAY: Claude is asked to diagnose and route"
run_day "$BAD_RUN"
BAD_REPORT=$REPORT

echo "==> The two runs side by side"
"$BIN/python" - "$HEALTHY_REPORT" "$BAD_REPORT" "$WAREHOUSE" "$FAKE_CLAUDE" <<'EOF'
import json, sqlite3, sys
import textwrap

healthy, bad = (json.load(open(path)) for path in sys.argv[1:3])
warehouse, fake = sys.argv[3], sys.argv[4]


def facts(doc):
    decision = doc["decisions"][0]
    usage = doc["usage"]
    quarantine = doc["stages"].get("quarantine", {}).get("output", {}).get("metrics", {})
    if decision["fallback_used"]:
        source = f"the fallback ({decision['fallback_reason']})"
    elif decision["model"]:
        source = f"{decision['model']} via FakeClaude, confidence {decision['confidence']:.2f}"
    else:
        source = "no model call: every validation passed"
    tokens_in = usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
    return {
        "data interval": f"{doc['data_interval_start'][:10]} to {doc['data_interval_end'][:10]}",
        "run status": doc["status"],
        "route taken": decision["route"],
        "decided by": source,
        "model calls": str(usage["model_calls"]),
        "tokens in / out": f"{tokens_in} / {usage['output_tokens']}",
        "cost": f"${usage['cost_usd']:.4f}",
        "rows loaded": str(doc["rows_loaded"]),
        "rows quarantined": str(quarantine.get("rows_quarantined", 0)),
    }, decision["rationale"]


(left, left_why), (right, right_why) = facts(healthy), facts(bad)
print(f"    {'':<18} {'healthy day':<50} {'failing day'}")
for key in left:
    print(f"    {key:<18} {left[key][:50]:<50} {right[key][:50]}")
for label, why in (("healthy day", left_why), ("failing day", right_why)):
    print(textwrap.fill(f"rationale, {label}: {why}", 110, initial_indent="    ", subsequent_indent="      "))
print(f"    (the failing day's Claude was {fake}: scripted answers, no network, no real key)")

con = sqlite3.connect(warehouse)
total, days = con.execute("SELECT count(*), count(DISTINCT date) FROM user_engagement_daily").fetchone()
flagged = con.execute("SELECT count(*) FROM user_engagement_daily WHERE is_anomaly").fetchone()[0]
kept = con.execute("SELECT count(*) FROM events_quarantine").fetchone()[0]
print(f"==> Warehouse {warehouse}: user_engagement_daily has {total} rows over {days} day(s), {flagged} flagged; "
      f"events_quarantine holds {kept} rows for review")
ok = healthy["status"] == "success" and healthy["usage"]["model_calls"] == 0 and bad["rows_loaded"] > 0
sys.exit(0 if ok and bad["decisions"][0]["route"] == "quarantine" else 1)
EOF
