"""A real S3 API on loopback for the object-store staging tests: moto's server, started and stopped by pid.

``moto_server`` runs in its own process group on a free 127.0.0.1 port; :class:`MotoS3` stops that
group (SIGTERM, then SIGKILL) also when a test fails. The server checks credentials like S3 does
(moto's IAM enforcement, on after the first few unauthenticated calls that create its users):
``stager`` may do anything in S3, ``outsider`` has valid keys but no permission. The Airflow
``aws`` connection points at the server through ``endpoint_url`` in its extra and carries the
stager's keys, so credentials come from the connection and never from the environment (the
tests' conftest removes ``AWS_*`` variables).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.process._procs import HOST, VENV_BIN, Proc, free_port, wait_until

REGION = "us-east-1"
STAGING_CONN_ID = "s3_staging"
_S3_ANYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
_UNAUTHENTICATED_CALLS = 5  # the IAM calls of _create_users; every later request must be signed by a known key


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@dataclass
class MotoS3:
    """One ``moto_server`` process, how to reach it, and the keys of its two users."""

    proc: Proc
    endpoint: str
    stager: Keys = Keys("", "")
    outsider: Keys = Keys("", "")

    @classmethod
    def start(cls, log_dir: Path) -> MotoS3:
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "INITIAL_NO_AUTH_ACTION_COUNT": str(_UNAUTHENTICATED_CALLS)}
        proc = Proc("moto_server", [str(VENV_BIN / "moto_server"), "-H", HOST, "-p", str(port)], env, log_dir)
        server = cls(proc, f"http://{HOST}:{port}")
        try:
            wait_until(server.ready, 60, "moto_server to answer")
            server.stager, server.outsider = server._create_users()
        except BaseException:
            server.stop()
            raise
        return server

    def _create_users(self) -> tuple[Keys, Keys]:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            region_name=REGION,
        )
        iam.create_user(UserName="stager")
        iam.put_user_policy(UserName="stager", PolicyName="s3", PolicyDocument=json.dumps(_S3_ANYTHING))
        iam.create_user(UserName="outsider")
        keys = [iam.create_access_key(UserName=user)["AccessKey"] for user in ("stager", "outsider")]
        return Keys(keys[0]["AccessKeyId"], keys[0]["SecretAccessKey"]), Keys(
            keys[1]["AccessKeyId"], keys[1]["SecretAccessKey"]
        )

    def ready(self) -> bool:
        import urllib.error
        import urllib.request

        if not self.proc.alive():
            raise RuntimeError(f"moto_server exited:\n{self.proc.tail()}")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.proc.stop(grace=10)
        assert not self.proc.group_alive(), "moto_server's process group outlived its stop"

    def connection(self, keys: Keys | None = None) -> dict[str, Any]:
        """An ``aws`` connection to this server (JSON of ``AIRFLOW_CONN_*``) with the stager's keys by default."""
        keys = keys or self.stager
        return {
            "conn_type": "aws",
            "login": keys.access_key,
            "password": keys.secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
        }

    def client(self) -> Any:
        """A boto3 S3 client with the stager's keys (for arranging and inspecting buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.stager.access_key,
            aws_secret_access_key=self.stager.secret_key,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"staging-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """``moto_server`` on a free loopback port for the whole session; stopped by its pid."""
    server = MotoS3.start(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class S3Staging:
    """A fresh bucket behind the ``s3_staging`` connection, and the staging root that names both."""

    server: MotoS3
    bucket: str
    conn_id: str = STAGING_CONN_ID
    prefix: str = "airflow-staging"

    @property
    def root(self) -> str:
        return f"s3://{self.conn_id}@{self.bucket}/{self.prefix}"

    def object_keys(self) -> list[str]:
        return self.server.keys(self.bucket, self.prefix)


@pytest.fixture
def s3_staging(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> S3Staging:
    """A new bucket and the ``s3_staging`` aws connection (as ``AIRFLOW_CONN_S3_STAGING``) pointing at moto."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{STAGING_CONN_ID.upper()}", json.dumps(moto_s3.connection()))
    return S3Staging(moto_s3, moto_s3.new_bucket())
