"""The one secret scrubber, as errors, alerts and prompts use it."""

from __future__ import annotations

import pytest

from airflow_agent_provider.redaction import redact
from tests.agents.support import KEY, SECRET_DSN

DSN_REDACTED = "postgresql://***@warehouse.internal:5432/events"


class TestRedact:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(f"cannot reach {SECRET_DSN}", f"cannot reach {DSN_REDACTED}", id="dsn-userinfo"),
            pytest.param("http://user@host/x", "http://***@host/x", id="user-only"),
            pytest.param("postgresql://u:p@ss@db/dw", "postgresql://***@db/dw", id="at-in-password"),
            pytest.param("password=p4ss rest", "password=*** rest", id="password"),
            pytest.param("Authorization: Bearer-abc", "Authorization: ***", id="header"),
            pytest.param(f"token {KEY}", "token ***", id="api-key"),
            pytest.param("see s3://bucket/key.parquet now", "see s3://bucket/key.parquet now", id="uri-kept"),
            pytest.param("file at /opt/airflow/dags/x.py", "file at /opt/airflow/dags/x.py", id="path-kept"),
        ],
    )
    def test_an_error_or_alert_keeps_what_helps_and_loses_credentials(self, text: str, expected: str) -> None:
        assert redact(text) == expected

    def test_given_secrets_are_masked_wherever_they_appear(self) -> None:
        assert redact("login failed for hunter2 (hunter2)", ["hunter2", None, ""]) == "login failed for *** (***)"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(SECRET_DSN, "<uri>", id="dsn"),
            pytest.param("see s3://bucket/key.parquet now", "see <uri> now", id="s3"),
            pytest.param("file at /opt/airflow/dags/x.py", "file at <path>", id="path"),
            pytest.param("password=p4ss rest", "password=*** rest", id="password"),
            pytest.param(f"token {KEY}", "token ***", id="key"),
            pytest.param("12/05/2026 ok", "12/05/2026 ok", id="date-kept"),
        ],
    )
    def test_text_for_the_model_also_loses_uris_and_paths(self, text: str, expected: str) -> None:
        assert redact(text, for_model=True) == expected
