# Read by Airflow's provider discovery through the ``apache_airflow_provider`` entry point.
# One dict literal and no imports: a broken provider info breaks every Airflow process.
# Options registered here are read in airflow_agent_provider/settings.py. Their "default" stays None
# because Airflow would answer a registered default before the environment variables an option
# falls back to; each description names the value used when nothing is set.


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-agent-provider",
        "name": "Agent ETL",
        "description": (
            "ETL stages (extract, validate, transform, load) as Airflow operators that thread the pipeline's "
            "state through XCom, with Claude deciding the remediation route when data goes wrong."
        ),
        "integrations": [
            {
                "integration-name": "Agent ETL",
                "external-doc-url": "https://github.com/airflow-agent-provider/airflow-agent-provider#readme",
                "tags": ["ai", "etl"],
            }
        ],
        "operators": [
            {
                "integration-name": "Agent ETL",
                "python-modules": [
                    "airflow_agent_provider.operators.extract",
                    "airflow_agent_provider.operators.validate",
                    "airflow_agent_provider.operators.transform",
                    "airflow_agent_provider.operators.load",
                    "airflow_agent_provider.operators.report",
                    "airflow_agent_provider.operators.branch",
                    "airflow_agent_provider.operators.remediate",
                    "airflow_agent_provider.operators.quarantine",
                ],
            }
        ],
        "notifications": ["airflow_agent_provider.notifiers.StageFailureNotifier"],
        "config": {
            "agent_provider": {
                "description": "Settings of the airflow-agent-provider operators.",
                "options": {
                    "staging_root": {
                        "description": (
                            "Where stages write staged Parquet data: a local folder or an object-storage URI "
                            "(s3://<conn_id>@<bucket>/<prefix>, credentials from that Airflow connection) that "
                            "every worker can reach. Empty means $AGENT_PROVIDER_STAGING_ROOT, else "
                            "$AIRFLOW_HOME/staging. An operator's staging_root argument wins over this setting."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/airflow-staging",
                        "default": None,
                    },
                    "staging_retention": {
                        "description": (
                            "What becomes of a run's staged data: delete_on_success removes it once the run "
                            "succeeds with no failed task (a failed run keeps it for debugging); keep never "
                            "removes anything."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "keep",
                        "default": "delete_on_success",
                    },
                    "plans_folder": {
                        "description": (
                            "Where SQL written by Claude from a transformation's description is kept as "
                            "reviewable plan files. Empty means $AGENT_PROVIDER_HOME/plans, else "
                            "$AIRFLOW_HOME/plans. An operator's plans_folder argument wins over this setting."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/dags/plans",
                        "default": None,
                    },
                    "duckdb_memory": {
                        "description": (
                            "DuckDB's memory limit in a task for extract, validate, load and fixes; beyond it "
                            "DuckDB spills to duckdb_spill_folder. Empty means $AGENT_PROVIDER_DUCKDB_MEMORY, "
                            "else 1GB."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "4GB",
                        "default": None,
                    },
                    "transform_duckdb_memory": {
                        "description": (
                            "DuckDB's memory limit of a transform's isolated database. Empty means "
                            "$AGENT_PROVIDER_DUCKDB_MEMORY, else 512MB."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "2GB",
                        "default": None,
                    },
                    "duckdb_spill_folder": {
                        "description": (
                            "Where DuckDB writes what does not fit in its memory limit. Empty means "
                            "agent_provider_duckdb in the temp directory ($TMPDIR)."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/mnt/scratch/duckdb",
                        "default": None,
                    },
                },
            }
        },
    }
