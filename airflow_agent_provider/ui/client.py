"""Airflow's REST API (``/api/v2``) as the signed-in user, called in-process through the API server's app.

The caller's ``Authorization`` header and session cookie are passed on unchanged, so each read is
authorized by Airflow exactly as if the browser had made it; nothing here opens the metadata database.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import quote

MAX_CONCURRENT = 8
PAGE_LIMIT = 100  # [api] maximum_page_limit's default


class ApiError(Exception):
    """A REST call that did not answer 200: its status and Airflow's detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def q(value: str) -> str:
    return quote(value, safe="")


class AirflowApi:
    """``GET`` on Airflow's REST API with the caller's credentials; ``app`` is Airflow's API app (ASGI)."""

    def __init__(self, app: Any, credentials: Mapping[str, str]) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://airflow-api", headers=dict(credentials)
        )
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.calls = 0

    async def __aenter__(self) -> AirflowApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        async with self._slots:
            response = await self._client.get(f"/api/v2{path}", params=params)
            self.calls += 1
        if response.status_code != 200:
            try:
                detail = str(response.json().get("detail"))
            except ValueError:
                detail = response.text[:300]
            raise ApiError(response.status_code, detail)
        return response.json()

    async def get_or_none(self, path: str, **params: Any) -> Any:
        """Like :meth:`get`, None on 404 (an XCom a task did not push)."""
        try:
            return await self.get(path, **params)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def xcom_value(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        path = f"/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{q(task_id)}/xcomEntries/{q(key)}"
        body = await self.get_or_none(path, map_index=map_index)
        return None if body is None else body.get("value")


class FinishedRuns:
    """What finished runs left behind (their report documents), kept in memory: it no longer changes.

    Keyed by DAG, run and the run's ``end_date``, so a cleared and re-run run is read again. Served only
    after Airflow has authorized the caller to read that DAG's runs and XComs (the routes' dependencies).
    """

    def __init__(self, size: int = 1000) -> None:
        self._size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        if key in self._values:
            self._values.move_to_end(key)
            return True, self._values[key]
        return False, None

    def put(self, key: Hashable, value: Any) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._size:
            self._values.popitem(last=False)


def credentials_of(headers: Mapping[str, str], cookies: Mapping[str, str], cookie_name: str) -> dict[str, str]:
    """The request's bearer token and UI session cookie, to present again on the calls it causes."""
    passed = {}
    if headers.get("authorization"):
        passed["authorization"] = headers["authorization"]
    if cookies.get(cookie_name):
        passed["cookie"] = f"{cookie_name}={cookies[cookie_name]}"
    return passed
