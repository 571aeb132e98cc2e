# Environment of the local Airflow that `make ui` starts (sourced by scripts/ui.sh; the process tests
# run ui.sh with some of these overridden). Every value is a default: a variable already set wins.
#
# Local-only defaults, not for a shared machine: SimpleAuthManager with admin/admin, everything bound
# to 127.0.0.1, SQLite metadata DB in $AIRFLOW_HOME, LocalExecutor with 4 task slots.
# shellcheck shell=bash

AAP_ROOT=${AAP_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export PATH="${VENV_BIN:-$AAP_ROOT/.venv/bin}:$PATH"   # `airflow` must be on PATH for its subprocesses

export AIRFLOW_HOME=${AIRFLOW_HOME:-$AAP_ROOT/.airflow}
# SQLite metadata by default; a CLI command (backfill create) waits up to 30 s for the scheduler's lock.
# Point it at PostgreSQL for heavier use: postgresql+psycopg2://user@127.0.0.1:5432/airflow
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db?timeout=30}
export AIRFLOW__CORE__DAGS_FOLDER=${AIRFLOW__CORE__DAGS_FOLDER:-$AAP_ROOT/dags}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4}
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}

# Login: SimpleAuthManager, user admin with role admin, password pre-seeded by ui.sh (local only).
export AIRFLOW__CORE__AUTH_MANAGER=${AIRFLOW__CORE__AUTH_MANAGER:-airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager}
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}
export AIRFLOW_UI_USER=${AIRFLOW_UI_USER:-admin}
export AIRFLOW_UI_PASSWORD=${AIRFLOW_UI_PASSWORD:-admin}

# API server (UI, REST, Execution API) on loopback; workers call it back through the same address.
export AIRFLOW_UI_PORT=${AIRFLOW_UI_PORT:-8080}
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$AIRFLOW_UI_PORT
export AIRFLOW__API__WORKERS=${AIRFLOW__API__WORKERS:-1}
export AIRFLOW__API__BASE_URL=${AIRFLOW__API__BASE_URL:-http://127.0.0.1:$AIRFLOW_UI_PORT}
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$AIRFLOW_UI_PORT/execution/}

# A snappy scheduler for a laptop: new DAG files show up within seconds.
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=${AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC:-2}
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-10}
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=${AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL:-10}

# The provider and the reference DAG's sources (sample data, users API, warehouse).
export AGENT_PROVIDER_HOME=${AGENT_PROVIDER_HOME:-$AAP_ROOT}
export AGENT_PROVIDER_STAGING_ROOT=${AGENT_PROVIDER_STAGING_ROOT:-$AAP_ROOT/.staging}
export AGENT_UI_VAR=${AGENT_UI_VAR:-$AAP_ROOT/var/ui}
export AGENT_UI_SAMPLE_DAYS=${AGENT_UI_SAMPLE_DAYS:-45}   # sample events for the last N days and today
export AIRFLOW_VAR_AGENT_SAMPLE_DIR=${AIRFLOW_VAR_AGENT_SAMPLE_DIR:-$AGENT_UI_VAR/sample}
export AIRFLOW_VAR_AGENT_REPORTS_DIR=${AIRFLOW_VAR_AGENT_REPORTS_DIR:-$AGENT_UI_VAR/reports}
export AIRFLOW_CONN_AGENT_SOURCES_DB=${AIRFLOW_CONN_AGENT_SOURCES_DB:-sqlite:///$AIRFLOW_VAR_AGENT_SAMPLE_DIR/events.db}
# SQLite has one writer: concurrent loads (backfills, parallel runs) wait up to 60 s for the lock.
export AIRFLOW_CONN_AGENT_WAREHOUSE=${AIRFLOW_CONN_AGENT_WAREHOUSE:-sqlite:///$AGENT_UI_VAR/warehouse.db?timeout=60}
# AIRFLOW_CONN_AGENT_USERS_API is set by ui.sh once the users API has its port.

# Failure alerts (optional): a Slack-compatible incoming-webhook URL turns on the reference DAG's
# StageFailureNotifier (it reads the connection id from the Variable agent_alert_webhook_conn_id).
if [ -n "${AGENT_ALERT_WEBHOOK_URL:-}" ]; then
  export AIRFLOW_CONN_AGENT_ALERTS_WEBHOOK="{\"conn_type\": \"http\", \"host\": \"$AGENT_ALERT_WEBHOOK_URL\"}"
  export AIRFLOW_VAR_AGENT_ALERT_WEBHOOK_CONN_ID=${AIRFLOW_VAR_AGENT_ALERT_WEBHOOK_CONN_ID:-agent_alerts_webhook}
fi
