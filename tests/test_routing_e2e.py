"""Scheme routing end to end: a DataStore whose primary is a cloud store (S3 on moto, GCS on
fake-gcs-server) with ``redis://`` references routed to a real Redis, as in Flyte's routing tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from google.protobuf import struct_pb2
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, NotFoundError, Scope

from .servers_redis import RedisServer
from .servers_s3 import MotoS3

MiB = 1024 * 1024


def s3_config(server: MotoS3, bucket: str, redis: RedisServer) -> Config:
    return Config.from_dict(
        {
            "type": "s3",
            "container": bucket,
            "stow": {
                "kind": "s3",
                "config": {
                    "auth_type": "accesskey",
                    "access_key_id": server.access_key_id,
                    "secret_key": server.secret_key,
                    "region": server.region,
                    "endpoint": server.endpoint,
                    "disable_ssl": "true",
                },
            },
            "redis": {"addr": f"127.0.0.1:{redis.port}"},
            "limits": {"maxDownloadMBs": 64, "copySplitThresholdMBs": 16},
        }
    )


def gcs_config(endpoint: str, bucket: str, redis: RedisServer) -> Config:
    return Config.from_dict(
        {
            "type": "stow",
            "container": bucket,
            "stow": {"kind": "google", "config": {"endpoint": endpoint, "project_id": "test"}},
            "redis": {"addr": f"127.0.0.1:{redis.port}"},
            "limits": {"maxDownloadMBs": 64, "copySplitThresholdMBs": 16},
        }
    )


@pytest.fixture(params=["s3", "gcs"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[DataStore]:
    bucket = f"route-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        pytest.importorskip("aiobotocore")
        config = s3_config(request.getfixturevalue("s3_server"), bucket, redis_server)
    else:
        pytest.importorskip("gcloud.aio.storage")
        config = gcs_config(request.getfixturevalue("gcs_server"), bucket, redis_server)
    async with DataStore(config, scope=Scope("flyte:storage", registry=CollectorRegistry())) as ds:
        yield ds


async def test_redis_references_route_to_redis_and_the_rest_to_the_primary(store: DataStore) -> None:
    run = uuid.uuid4().hex[:8]
    base = store.base_container
    assert base.split()[0] in ("s3", "gs")
    blob = store.construct_reference(base, "runs", run, "blob.bin")
    meta = store.construct_reference(f"redis://{store.config.redis.addr}", "runs", run, "m.pb")

    await store.write_raw(blob, b"large payload" * 1000)
    msg = struct_pb2.Struct()
    msg.update({"run": run})
    await store.write_protobuf(meta, msg)

    assert await store.read_bytes(blob) == b"large payload" * 1000
    assert (await store.read_protobuf(meta, struct_pb2.Struct()))["run"] == run
    # Each object lives only where its scheme says.
    primary = await store.router.backend_for(blob)
    redis = await store.router.backend_for(meta)
    assert primary is not redis
    assert (await redis.head(meta)).exists
    with pytest.raises(NotFoundError):
        await redis.read_raw(meta.replace("m.pb", "blob.bin"))


async def test_copy_across_schemes_both_ways(store: DataStore) -> None:
    run = uuid.uuid4().hex[:8]
    host = store.config.redis.addr
    src = store.construct_reference(store.base_container, "cross", run, "a")
    in_redis = store.construct_reference(f"redis://{host}", "cross", run, "a")
    back = store.construct_reference(store.base_container, "cross", run, "b")
    await store.write_raw(src, b"travelling bytes")
    await store.copy_raw(src, in_redis)
    await store.copy_raw(in_redis, back)
    assert await store.read_bytes(in_redis) == b"travelling bytes"
    assert await store.read_bytes(back) == b"travelling bytes"
    refs = [e.ref async for e in store.list(store.construct_reference(f"redis://{host}", "cross", run))]
    assert refs == [in_redis]
    await store.delete(in_redis)
    assert not (await store.head(in_redis)).exists


async def test_large_copies_out_of_an_object_store_read_parallel_ranges(
    store: DataStore, redis_server: RedisServer
) -> None:
    """20 MiB from the cloud primary into Redis: one whole read serving the first 8 MiB part and
    two ranged reads for the rest, byte-identical; the other way round (Redis has no cheap
    ranges) is one plain streamed copy."""
    data = os.urandom(20 * MiB)
    src = store.construct_reference(store.base_container, "large", "src.bin")
    dst = store.construct_reference(f"redis://{store.config.redis.addr}", "large", uuid.uuid4().hex)
    await store.write_raw(src, data)
    registry = store.scope.registry
    before = registry.get_sample_value("flyte:storage:read_open_ms_count") or 0
    meta = await store.copy_raw(src, dst)
    assert meta.size == len(data)
    assert registry.get_sample_value("flyte:storage:read_open_ms_count") == before + 3
    back = store.construct_reference(store.base_container, "large", "back.bin")
    await store.copy_raw(dst, back)
    stream = await store.read_raw(back)
    assert await stream.read() == data
