"""How long a run's staged data stays: the retention policy and the removal of a run's folders.

Every dataset of a run is staged under ``<root>/<dag>/<run>/`` (see ``staging.stage_uri``), so a
run's staged data is removed by removing that folder, local or in object storage, under every
root its tasks staged to. Airflow-free: the listener in ``airflow_agent_provider.listeners``
decides when and which run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import Literal, cast, get_args

from airflow_agent_provider.engines.staging import area as staging_area
from airflow_agent_provider.engines.staging.paths import StagingError, is_local, local_path, safe_segment

Retention = Literal["delete_on_success", "keep"]
RETENTIONS: tuple[str, ...] = get_args(Retention)
DEFAULT_RETENTION: Retention = "delete_on_success"


def parse_retention(value: str | None) -> Retention:
    """``staging_retention`` as set: ``delete_on_success`` (the default when empty) or ``keep``."""
    text = (value or DEFAULT_RETENTION).strip().lower()
    if text not in RETENTIONS:
        raise ValueError(f"staging_retention must be one of {', '.join(RETENTIONS)}, got {value!r}")
    return cast(Retention, text)


def run_folder(root: str, dag_id: str, run_id: str) -> str:
    """The folder under ``root`` that holds every dataset a run staged there."""
    return f"{root.rstrip('/')}/{safe_segment(dag_id)}/{safe_segment(run_id)}"


def run_folders(dag_id: str, run_id: str, *, roots: Iterable[str] = (), uris: Iterable[str] = ()) -> list[str]:
    """The run's folders under ``roots`` and under whatever roots its datasets' ``uris`` were staged to."""
    marker = f"/{safe_segment(dag_id)}/{safe_segment(run_id)}/"
    found = {run_folder(root, dag_id, run_id) for root in roots}
    uris = list(uris)
    for uri in uris:
        at = uri.rfind(marker)
        if at >= 0:
            found.add(uri[: at + len(marker) - 1])
    from airflow_agent_provider.engines import warehouse_staging  # warehouse-native staging: the run's tables

    found.update(warehouse_staging.run_table_patterns(dag_id, run_id, uris))
    return sorted(found)


def remove(folder: str) -> bool:
    """Remove a staged folder and everything in it; whether anything was there.

    A warehouse pattern (``postgres://<conn_id>/<schema>.aap_<run>_*``) drops the run's staging tables.
    """
    from airflow_agent_provider.engines import warehouse_staging

    if warehouse_staging.is_table_uri(folder):
        return bool(warehouse_staging.drop_tables_matching(folder))
    if is_local(folder):
        path = local_path(folder)
        existed = os.path.isdir(path)
        shutil.rmtree(path, ignore_errors=True)
        return existed
    area = staging_area.area_for(folder)
    path = area.fs_path(folder)
    try:
        area.fs.invalidate_cache(path)
        if not area.fs.exists(path):
            return False
        area.fs.rm(path, recursive=True)
    except OSError as err:
        raise StagingError(f"could not remove staged data at {folder}: {err}") from err
    return True
