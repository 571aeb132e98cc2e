# The Airflow image with airflow-agent-provider installed (used by docker-compose.yaml).
#
#   docker build -t airflow-agent-provider:3.3.2 .
#
# Python 3.11: constraints.txt (the repository's tested dependency set) is resolved for 3.11.
# `apache-airflow==${AIRFLOW_VERSION}` is pinned so pip never up- or downgrades Airflow itself.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

COPY --chown=airflow:0 pyproject.toml README.md constraints.txt /opt/agent-provider/
COPY --chown=airflow:0 airflow_agent_provider /opt/agent-provider/airflow_agent_provider

# AIRFLOW_VERSION is set by the base image; the install runs as the image's `airflow` user.
RUN pip install --no-cache-dir \
        --constraint /opt/agent-provider/constraints.txt \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "/opt/agent-provider[celery]" \
    && airflow providers get airflow-agent-provider
