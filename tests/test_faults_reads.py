"""Reads that lose their connection mid-body, against the real servers through a fault proxy.

Every read goes through a DataStore configured as a user would (Flyte YAML shape plus a
``retries`` section), with the object store's endpoint pointed at a ``FaultProxy``. The proxy cuts
the download after a given number of bytes (a reset or a clean close); the DataStore must resume
with a range read pinned to the first response's etag, return every byte exactly once, and
refuse to splice when the object changed in between.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, PreconditionFailedError, Scope, TransientError

from .faultproxy import Delay, FaultProxy, Reset, Truncate
from .servers_azure import AzuriteServer
from .servers_s3 import MotoS3

MiB = 1024 * 1024
SIZE = 6 * MiB + 123
RETRIES = {"max_attempts": 5, "base_delay": "10ms", "max_delay": "50ms", "total_timeout": "20s"}


@dataclass
class Target:
    """A DataStore whose object store is reached through ``proxy``, and one reaching it directly."""

    name: str
    proxy: FaultProxy
    config: Callable[[str, dict[str, object]], Config]  # (endpoint, retries) -> Config
    direct_endpoint: str
    base: str


def _s3(server: MotoS3, bucket: str) -> Callable[[str, dict[str, object]], Config]:
    def config(endpoint: str, retries: dict[str, object]) -> Config:
        settings = server.stow_config()
        settings["endpoint"] = endpoint
        return Config(
            type="stow",
            container=bucket,
            stow={"kind": "s3", "config": settings},
            limits={"max_download_mbs": 0},
            retries=retries,
        )

    return config


def _gcs(bucket: str) -> Callable[[str, dict[str, object]], Config]:
    def config(endpoint: str, retries: dict[str, object]) -> Config:
        return Config(
            type="stow",
            container=bucket,
            stow={"kind": "google", "config": {"endpoint": endpoint, "project_id": "test"}},
            limits={"max_download_mbs": 0},
            retries=retries,
        )

    return config


def _azure(server: AzuriteServer, container: str) -> Callable[[str, dict[str, object]], Config]:
    def config(endpoint: str, retries: dict[str, object]) -> Config:
        settings = {"account": server.account, "key": server.key, "endpoint": f"{endpoint}/{server.account}"}
        return Config(
            type="stow",
            container=container,
            stow={"kind": "azure", "config": settings},
            limits={"max_download_mbs": 0},
            retries=retries,
        )

    return config


@pytest.fixture(params=["s3", "gcs", "azure"])
def target(request: pytest.FixtureRequest) -> Target:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        server: MotoS3 = request.getfixturevalue("s3_server")
        proxy = request.getfixturevalue("s3_proxy")
        return Target("s3", proxy, _s3(server, name), server.endpoint, f"s3://{name}")
    if request.param == "gcs":
        endpoint: str = request.getfixturevalue("gcs_server")
        proxy = request.getfixturevalue("gcs_proxy")
        return Target("gcs", proxy, _gcs(name), endpoint, f"gs://{name}")
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    proxy = request.getfixturevalue("azure_proxy")
    return Target("azure", proxy, _azure(azurite, name), f"http://127.0.0.1:{azurite.port}", f"abfs://{name}")


@pytest.fixture
async def stores(target: Target) -> AsyncIterator[tuple[DataStore, DataStore]]:
    """(through the proxy, with retries; straight to the server, to set objects up)."""
    scope = Scope("flyte:storage", registry=CollectorRegistry())
    direct = DataStore(target.config(target.direct_endpoint, {"max_attempts": 1}), scope=scope)
    proxied = DataStore(target.config(target.proxy.endpoint, RETRIES), scope=Scope("p", registry=CollectorRegistry()))
    async with direct, proxied:
        yield proxied, direct


def arm(target: Target, fault: Reset | Truncate | Delay, times: int | None = 1) -> None:
    """Arm ``fault`` for the next connections, and drop the pooled ones so the next request opens one."""
    target.proxy.reset_connections()
    target.proxy.inject(fault, times=times)


def ref(target: Target, name: str) -> str:
    return f"{target.base}/{uuid.uuid4().hex[:8]}/{name}"


async def read_all(store: DataStore, reference: str, offset: int = 0, length: int | None = None) -> bytes:
    stream = await store.read_raw(reference, offset, length)
    async with stream:
        return await stream.read()


@pytest.mark.parametrize("fault", [Reset, Truncate])
async def test_a_download_cut_mid_body_resumes_and_returns_every_byte_once(
    target: Target, stores: tuple[DataStore, DataStore], fault: type[Reset] | type[Truncate]
) -> None:
    proxied, direct = stores
    data = os.urandom(SIZE)
    r = ref(target, "cut.bin")
    await direct.write_raw(r, data)
    before = target.proxy.stats.faults.get(fault.__name__, 0)
    arm(target, fault(after_bytes=2 * MiB + 17, direction="down"), times=2)
    got = await read_all(proxied, r)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert target.proxy.stats.faults.get(fault.__name__, 0) - before >= 1


async def test_a_ranged_download_cut_mid_body_resumes_within_its_range(
    target: Target, stores: tuple[DataStore, DataStore]
) -> None:
    proxied, direct = stores
    data = os.urandom(SIZE)
    r = ref(target, "range.bin")
    await direct.write_raw(r, data)
    arm(target, Reset(after_bytes=MiB, direction="down"))
    assert await read_all(proxied, r, offset=MiB + 5, length=4 * MiB) == data[MiB + 5 : 5 * MiB + 5]
    assert target.proxy.stats.faults.get("Reset", 0) == 1


async def test_an_object_replaced_before_the_resume_is_not_spliced(
    target: Target, stores: tuple[DataStore, DataStore]
) -> None:
    proxied, direct = stores
    r = ref(target, "replaced.bin")
    size = 17 * MiB  # larger than what the Azure store holds ahead (two 4 MiB ranges)
    await direct.write_raw(r, b"A" * size)
    arm(target, Reset(after_bytes=MiB, direction="down"))
    stream = await proxied.read_raw(r)
    got = bytearray()
    with pytest.raises(PreconditionFailedError, match=r"changed|ConditionNotMet"):
        async with stream:
            async for chunk in stream:
                if not got:
                    await direct.write_raw(r, b"B" * size)  # replaced while the first bytes are in hand
                got += chunk
    assert set(got) <= {ord("A")}  # nothing of the new version was mixed in
    assert len(got) < size


async def test_a_download_that_keeps_failing_gives_up_with_a_transient_error(
    target: Target, stores: tuple[DataStore, DataStore]
) -> None:
    proxied, direct = stores
    r = ref(target, "doomed.bin")
    await direct.write_raw(r, os.urandom(SIZE))
    stream = await proxied.read_raw(r)  # opened while the proxy is healthy
    target.proxy.inject(Reset(after_bytes=0, direction="down"), times=None)
    target.proxy.reset_connections()  # the open read's connection dies, and so does every new one
    with pytest.raises(TransientError):
        async with stream:
            await asyncio.wait_for(stream.read(), 30)


async def test_a_slow_start_is_waited_for_not_retried(target: Target, stores: tuple[DataStore, DataStore]) -> None:
    proxied, direct = stores
    r = ref(target, "slow.bin")
    data = os.urandom(MiB)
    await direct.write_raw(r, data)
    arm(target, Delay(0.5, direction="down"))
    connections = target.proxy.stats.connections
    assert await read_all(proxied, r) == data
    assert target.proxy.stats.connections - connections <= 1
