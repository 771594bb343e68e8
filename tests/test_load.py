"""Load: thousands of concurrent small operations from one DataStore per backend.

One ``asyncio.gather`` of mixed ``write_raw`` / ``read_bytes`` / ``head`` calls on ~100-byte
objects, under the DataStore's concurrency budget (``limits.max_concurrent_operations``). Every
call must succeed, every value read (during the burst and afterwards) must be the one written,
and once the DataStore is closed the process must be back to its file descriptors and sockets
of before (within a small margin), with RSS growth under a bound.

Operation counts: 10,000 in the burst for every backend but Azure, whose 10,000 took 44 s on
the 2-vCPU test VM (about 230 operations/s: the Azure SDK's per-request CPU plus Azurite's), so
it runs 5,000; fake-gcs-server took 25 s and moto 36 s for their 10,000. Plus the seed objects
written before, and the read-back of every object written during the burst. While the burst
runs, the process never holds more sockets than the concurrency budget allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, NotFoundError, Scope

from .servers_faults import note

BURST = 10_000
#: Per-backend bursts where 10,000 took over ~30 s (see the module doc).
BURSTS = {"azure": 5_000}
SEED = 1_000
CONCURRENCY = 256
#: Growth of the process' RSS over the whole test that still counts as bounded. The objects are
#: ~100 bytes, so what a leak would show is per-operation state (tasks, responses, buffers):
#: 10,000 leaked responses of a few KiB each would pass 40 MiB; the memory store itself keeps
#: ~4,300 objects. Measured growth: well under half of this on every backend.
RSS_BOUND = 96 * 1024 * 1024
#: File descriptors / sockets that may differ from the baseline after closing: the event loop's
#: own (a self-pipe created lazily, executor threads' wakeups) and sockets in the kernel's
#: closing states that the process no longer owns.
FD_MARGIN = 4
SOCKET_MARGIN = 2
KINDS = ["memory", "local", "s3", "gcs", "azure", "redis"]


def value_of(key: str) -> bytes:
    """~100 bytes that only this key has."""
    digest = hashlib.sha256(key.encode()).hexdigest().encode()
    return digest + b"|" + key.encode() + b"|" + digest[: 100 - len(digest) - len(key) - 2]


def config_for(kind: str, request: pytest.FixtureRequest, name: str) -> Config:
    limits = {"max_download_mbs": 2, "max_concurrent_operations": CONCURRENCY}
    if kind == "memory":
        return Config(type="mem", limits=limits)
    if kind == "local":
        tmp: Path = request.getfixturevalue("tmp_path")
        return Config(type="local", container=name, local={"path": str(tmp)}, limits=limits)
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        return Config(type="stow", container=name, stow={"kind": "s3", "config": server.stow_config()}, limits=limits)
    if kind == "gcs":
        endpoint = request.getfixturevalue("gcs_server")
        stow = {"kind": "google", "config": {"endpoint": endpoint, "project_id": "test"}}
        return Config(type="stow", container=name, stow=stow, limits=limits)
    if kind == "azure":
        az = request.getfixturevalue("azurite")
        stow = {"kind": "azure", "config": {"account": az.account, "key": az.key, "endpoint": az.endpoint}}
        return Config(type="stow", container=name, stow=stow, limits=limits)
    server = request.getfixturevalue("redis_server")
    return Config(type="redis", redis={"addr": server.addr}, limits=limits)


@contextlib.asynccontextmanager
async def cleanup(kind: str, request: pytest.FixtureRequest, name: str) -> AsyncIterator[None]:
    """Remove what the test stored on the shared servers, with clients of the test's own."""
    try:
        yield
    finally:
        if kind == "s3":
            from flytestore.stores.s3 import S3Store

            from .servers_s3 import drop_bucket

            server = request.getfixturevalue("s3_server")
            async with S3Store(server.settings(), container=name, create_container=False) as s3:
                await drop_bucket(s3, name)
        elif kind == "azure":
            from azure.storage.blob.aio import BlobServiceClient

            az = request.getfixturevalue("azurite")
            async with BlobServiceClient.from_connection_string(az.connection_string) as service:
                await service.delete_container(name)
        elif kind == "redis":
            import redis.asyncio as aioredis

            server = request.getfixturevalue("redis_server")
            raw = aioredis.Redis(host="127.0.0.1", port=server.port)
            try:
                keys = [k async for k in raw.scan_iter(match=f"{name}/*", count=1000)]
                for start in range(0, len(keys), 1000):
                    await raw.delete(*keys[start : start + 1000])
            finally:
                await raw.aclose()


def resources() -> tuple[int, int, int]:
    """(file descriptors, inet sockets, RSS bytes) of this process."""
    gc.collect()
    proc = psutil.Process()
    return proc.num_fds(), len(proc.net_connections(kind="inet")), proc.memory_info().rss


async def settle(baseline: tuple[int, int, int], margin: tuple[int, int], timeout: float = 10.0) -> tuple[int, int]:
    """Descriptors and sockets once they are back within ``margin`` of ``baseline`` (closing
    transports finish on later loop turns), or as they are when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        fds, socks, _ = resources()
        if (fds <= baseline[0] + margin[0] and socks <= baseline[1] + margin[1]) or time.monotonic() > deadline:
            return fds, socks
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
async def test_ten_thousand_concurrent_small_operations(kind: str, request: pytest.FixtureRequest) -> None:
    name = f"load-{uuid.uuid4().hex[:12]}"
    config = config_for(kind, request, name)  # starts the session server first: not in the baseline
    baseline = resources()
    start = time.monotonic()
    written: list[str] = []
    verified = 0
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            DataStore(config, scope=Scope("flyte:storage", registry=CollectorRegistry()))
        )
        base = store.construct_reference(store.base_container or f"mem://{name}", name)
        await stack.enter_async_context(cleanup(kind, request, name))

        def ref(key: str) -> str:
            return store.construct_reference(base, key)

        seeds = [f"seed-{i:05d}" for i in range(SEED)]
        await asyncio.gather(*(store.write_raw(ref(k), value_of(k)) for k in seeds))

        async def op(i: int) -> int:
            """One operation of the burst; returns the bytes it checked."""
            which = i % 3
            if which == 0:
                key = f"burst-{i:05d}"
                meta = await store.write_raw(ref(key), value_of(key))
                assert meta.size == len(value_of(key))
                written.append(key)
                return 0
            key = seeds[i % SEED]
            if which == 1:
                data = await store.read_bytes(ref(key))
                assert data == value_of(key), (key, data)
                return len(data)
            meta = await store.head(ref(key))
            assert meta.exists and meta.size == len(value_of(key)), (key, meta)
            return 0

        burst = BURSTS.get(kind, BURST)
        peak_sockets = 0

        async def sample_sockets() -> None:
            nonlocal peak_sockets
            proc = psutil.Process()
            while True:
                peak_sockets = max(peak_sockets, len(proc.net_connections(kind="inet")))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample_sockets())
        burst_start = time.monotonic()
        try:
            checked = await asyncio.gather(*(op(i) for i in range(burst)))
        finally:
            sampler.cancel()
        burst_seconds = time.monotonic() - burst_start
        verified += sum(checked)

        # Everything written during the burst reads back whole, and nothing else appeared.
        async def check(key: str) -> int:
            data = await store.read_bytes(ref(key))
            assert data == value_of(key), (key, data)
            return len(data)

        verified += sum(await asyncio.gather(*(check(k) for k in written + seeds)))
        with pytest.raises(NotFoundError):
            await store.read_bytes(ref("never-written"))
        _, _, peak_rss = resources()
    total_seconds = time.monotonic() - start

    fds, socks = await settle(baseline, (FD_MARGIN, SOCKET_MARGIN))
    _, _, rss = resources()
    note(request, "operations", SEED + burst + len(written) + SEED + 1)
    note(request, "peak_sockets", peak_sockets)
    note(request, "bytes_verified", verified)
    note(request, "burst_seconds", round(burst_seconds, 2))
    note(request, "total_seconds", round(total_seconds, 2))
    note(request, "rss_growth_mib", round((max(rss, peak_rss) - baseline[2]) / 2**20, 1))
    note(request, "fds_sockets_after_vs_before", ((fds, socks), baseline[:2]))
    assert len(written) == len(range(0, burst, 3))
    # The budget bounds the connections in use (plus the one open() made; idle pooled ones
    # are reused, not added).
    assert peak_sockets <= CONCURRENCY + 2, f"{peak_sockets} sockets at once with a budget of {CONCURRENCY}"
    assert fds <= baseline[0] + FD_MARGIN, f"file descriptors: {baseline[0]} before, {fds} after closing"
    assert socks <= baseline[1] + SOCKET_MARGIN, f"inet sockets: {baseline[1]} before, {socks} after closing"
    assert max(rss, peak_rss) - baseline[2] < RSS_BOUND


def test_the_concurrency_budget_is_configurable() -> None:
    """The key the load test relies on (a flytestore addition to Flyte's ``limits``)."""
    config = Config(type="mem", limits={"max_download_mbs": 2, "max_concurrent_operations": 256})
    assert config.limits.max_concurrent_operations == 256
