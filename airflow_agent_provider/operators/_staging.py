"""Object-store staging roots opened the Airflow way, for the engines.

``s3://<conn_id>@<bucket>/<prefix>`` (and ``gs://``, ``abfs://`` ... where the provider is
installed) is resolved through Airflow's ``ObjectStoragePath``: the connection's credentials, never
the environment's. Opening checks what a first write would otherwise stumble on — the connection
exists, the bucket exists, the credentials are accepted — and fails with a
:class:`~airflow_agent_provider.engines.staging.StagingError` naming the staging root and the
cause (never a secret). The engines receive the opened :class:`StagingArea` by mount.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_agent_provider.engines.staging import StagingError
from airflow_agent_provider.engines.staging import area as staging_area
from airflow_agent_provider.engines.staging.area import StagingArea
from airflow_agent_provider.engines.staging.paths import is_local


def ensure_open(root: str) -> None:
    """Open and mount an object-store staging root unless it is local or already open in this process."""
    if not is_local(root) and staging_area.mounted_area(root.rstrip("/")) is None:
        staging_area.mount(open_area(root))


def open_area(root: str) -> StagingArea:
    """The staging area of an object-store root: its connection's filesystem, checked to work.

    :param root: ``<protocol>://<conn_id>@<bucket>/<prefix>``.
    :raises StagingError: no connection named, the connection is not defined, no filesystem for the
        protocol, the bucket is missing, or the credentials are refused.
    """
    from airflow.sdk import ObjectStoragePath

    root = root.rstrip("/")
    conn_id, bucket = _conn_and_bucket(root)
    _require_connection(root, conn_id)
    path = ObjectStoragePath(root)
    try:
        fs = path.fs
    except Exception as err:  # a missing provider or a bad connection: any error of the provider's get_fs
        raise StagingError(f"staging root {root}: no filesystem for it ({type(err).__name__}: {err})") from err
    _check_bucket(root, fs, conn_id, bucket)
    return StagingArea(root=root, fs=fs, path=str(path.path).rstrip("/"))


def opener(uri: str) -> StagingArea:
    """The area of a staged dataset's URI: the configured root when it holds the URI, else its bucket."""
    from airflow_agent_provider import settings

    configured = settings.staging_root().rstrip("/")
    if uri.rstrip("/").startswith(configured + "/"):
        return open_area(configured)
    parts = urlsplit(uri)
    return open_area(f"{parts.scheme}://{parts.netloc}")


def _conn_and_bucket(root: str) -> tuple[str, str]:
    parts = urlsplit(root)
    conn_id, has_conn, bucket = parts.netloc.rpartition("@")
    if not has_conn or not conn_id:
        raise StagingError(
            f"staging root {root}: names no Airflow connection; write {parts.scheme}://<conn_id>@{bucket or '<bucket>'}"
            f"{parts.path} so the credentials come from a connection, never from the worker's environment"
        )
    if not bucket:
        raise StagingError(f"staging root {root}: names no bucket")
    return conn_id, bucket


def _require_connection(root: str, conn_id: str) -> None:
    """Fail on an unknown connection: the provider's hook would fall back to the environment's credentials."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as err:
        raise StagingError(f"staging root {root}: connection {conn_id!r} is not defined") from err


def _check_bucket(root: str, fs: Any, conn_id: str, bucket: str) -> None:
    try:
        fs.info(bucket)
    except FileNotFoundError as err:
        raise StagingError(f"staging root {root}: bucket {bucket!r} does not exist") from err
    except PermissionError as err:
        raise StagingError(
            f"staging root {root}: connection {conn_id!r} was refused access to bucket {bucket!r} ({err})"
        ) from err
