def get_provider_info():
    return {"package-name": "airflow-agent-provider", "name": "Agent ETL", "description": "x"}
