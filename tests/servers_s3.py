"""Session fixture for a real S3 server: moto's server on a free 127.0.0.1 port.

moto runs in its own process (``python -m moto.server``, the ``moto[server]`` extra), so its
CPU is not charged to the tests' event loop. It keeps everything in memory; tests isolate
themselves with a bucket of their own, which is faster than a ``/moto-api/reset``. moto accepts
any credentials (it does not check SigV4 signatures) but refuses unsigned requests.
Readiness is ``GET /moto-api/`` answering, polled, never slept on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .servers import HOST, free_port, http_ready, run_server

if TYPE_CHECKING:
    from flytestore.stores.s3 import S3Settings, S3Store

__all__ = ["s3_server"]


@dataclass(frozen=True)
class MotoS3:
    """What a client needs to reach the moto server (test-only credentials)."""

    endpoint: str
    access_key_id: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def settings(self, **changes: Any) -> S3Settings:
        """Client settings for this server (path-style addressing, as moto needs)."""
        from flytestore.stores.s3 import S3Settings

        base: dict[str, Any] = {
            "region": self.region,
            "endpoint_url": self.endpoint,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_key,
            "addressing_style": "path",
        }
        return S3Settings(**{**base, **changes})

    def stow_config(self, **extra: str) -> dict[str, str]:
        """Flyte ``stow.config`` settings for this server."""
        return {
            "auth_type": "accesskey",
            "access_key_id": self.access_key_id,
            "secret_key": self.secret_key,
            "region": self.region,
            "endpoint": self.endpoint,
            "disable_ssl": "true",
            **extra,
        }


def _moto_missing() -> str | None:
    for module in ("moto.server", "flask", "flask_cors"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ImportError:
            return module
    return None


@contextlib.contextmanager
def start_moto() -> Iterator[MotoS3]:
    """Run moto's S3 server on a free loopback port until the block exits (the fixture and
    ``benchmarks/suite.py``)."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    with run_server(argv, http_ready(f"http://{HOST}:{port}/moto-api/"), port=port) as server:
        yield MotoS3(server.endpoint)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    missing = _moto_missing()
    if missing is not None:
        pytest.skip(f"moto's S3 server is not installed (no {missing}): pip install 'moto[server]'")
    with start_moto() as server:
        yield server


async def drop_bucket(store: S3Store, bucket: str) -> None:
    """Abort leftover uploads, delete every object, delete the bucket (best effort, for teardown)."""
    client = store.api.client
    with contextlib.suppress(Exception):
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                await client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        await client.delete_bucket(Bucket=bucket)
