"""The stage result's status: one meaning per value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from airflow_agent_provider.contracts import StageResult


class TestStageStatus:
    @pytest.mark.parametrize(
        ("stage", "status", "passed"),
        [
            pytest.param("load", "success", True, id="work-done"),
            pytest.param("validate", "pass", True, id="checks-passed"),
            pytest.param("validate", "fail", False, id="checks-failed"),
        ],
    )
    def test_a_result_read_back_from_xcom_says_whether_the_stage_passed(
        self, stage: str, status: str, passed: bool
    ) -> None:
        assert StageResult.from_xcom({"stage": stage, "status": status}).passed is passed

    @pytest.mark.parametrize("status", ["error", "skipped", "ok"])
    def test_a_status_without_a_meaning_is_refused(self, status: str) -> None:
        with pytest.raises(ValidationError, match="status"):
            StageResult.from_xcom({"stage": "load", "status": status})
