"""The command copies between backends in one invocation: local -> S3 -> GCS -> Redis -> local,
with an S3 primary and GCS and Redis reached through the config's ``schemes`` and ``redis``
sections (moto, fake-gcs-server and redis-server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_run import S3Bucket, flytestore, s3_bucket, s3_config, tree
from .servers_redis import RedisServer
from .servers_s3 import MotoS3

pytest.importorskip("gcloud.aio.storage")


@pytest.fixture
def bucket(s3_server: MotoS3) -> Iterator[S3Bucket]:
    yield from s3_bucket(s3_server)


@pytest.fixture
def gcs_bucket(gcs_server: str) -> str:
    from flytestore.stores.gcs import GCSStore

    name = f"cli-{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        async with GCSStore(container=name, endpoint=gcs_server):
            pass  # opening creates it (the command itself never creates a bucket)

    asyncio.run(make())
    return name


def test_copies_between_backends_in_one_invocation(
    tmp_path: Path, s3_server: MotoS3, bucket: S3Bucket, gcs_server: str, gcs_bucket: str, redis_server: RedisServer
) -> None:
    files = tree(tmp_path / "data", 50)
    config = s3_config(
        s3_server,
        tmp_path / "storage.yaml",
        bucket.name,
        schemes={"gs": {"kind": "google", "config": {"endpoint": gcs_server, "project_id": "test"}}},
        redis={"addr": redis_server.addr},
    )
    run_id = uuid.uuid4().hex[:8]
    hops = [
        ("data", f"s3://{bucket.name}/{run_id}"),
        (f"s3://{bucket.name}/{run_id}", f"gs://{gcs_bucket}/{run_id}"),
        (f"gs://{gcs_bucket}/{run_id}", f"redis://{redis_server.addr}/{run_id}"),
        (f"redis://{redis_server.addr}/{run_id}", "back"),
    ]
    for src, dst in hops:
        run = flytestore("--config", str(config), "cp", "-r", src, dst, cwd=tmp_path)
        assert run.code == 0, run
        assert "50 copied" in run.out, run
    back = tmp_path / "back"
    assert {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()} == files

    # A second sync along the same hops has nothing to do.
    for src, dst in hops[:2]:
        run = flytestore("--config", str(config), "sync", src, dst, cwd=tmp_path)
        assert run.code == 0, run
        assert "0 copied" in run.out, run

    # A missing GCS bucket is named, never created.
    run = flytestore("--config", str(config), "cp", "-r", "data", f"gs://{gcs_bucket}-missing/x", cwd=tmp_path)
    assert run.code == 3, run
    assert f"{gcs_bucket}-missing" in run.err
