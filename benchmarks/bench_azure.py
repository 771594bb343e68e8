"""AzureStore against the raw azure-storage-blob aio client, both talking to one Azurite server.

Run ``python benchmarks/bench_azure.py`` (``--help`` for sizes and repetitions). It starts its own
in-memory Azurite on a free 127.0.0.1 port (installing the pinned npm package on first use, as the
tests do) and prints:

1. Small objects: ``--count`` (1,000) puts of 4 KiB, then as many gets, at concurrency 32. The
   figure is the client's CPU time per operation (``time.process_time()`` of this process; Azurite
   runs in its own), flytestore vs the raw client doing the same calls the way a user of the SDK
   would (one ``BlobClient`` per call, ``upload_blob(overwrite=True)``, ``download_blob().readall()``).
   The ratio is flytestore / raw; the target is at most 1.10.
2. Large objects: a ``--big`` (64 MiB) upload and a streamed download, MB/s and client CPU.
   flytestore: ``write_raw`` of the bytes, ``write_raw`` of an async generator of unknown length
   (both staged as 8 MiB blocks, 4 in flight), and ``read_raw`` consumed chunk by chunk (4 MiB
   ranged GETs, one fetched ahead). Raw: ``upload_blob(bytes, max_concurrency=4)`` (a single Put
   Blob of 64 MiB) and ``download_blob().chunks()`` with the SDK's default sizes (a 32 MiB first
   GET, then 4 MiB). Both download the same blob, written once by the raw client.

Each figure is the median of ``--reps`` runs, flytestore and raw runs interleaved; the small-object
ratio is the median of the per-repetition ratios, with their range. Client and server are pinned to
different CPUs when ``taskset`` exists (``--no-pin`` to skip), and the blobs of each round are deleted
(unmeasured) before the next, since Azurite slows down as blobs pile up. Both clients use the SDK's
aiohttp transport. flytestore's session is sized by ``defaultHttpClient`` (100 connections by
default) and sets ``trust_env`` only when proxies or a netrc file exist, where the SDK's always does
(a thread hop per request to look for ``~/.netrc``); ``--trust-env`` measures flytestore with it on,
like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.storage.blob.aio import BlobServiceClient

import flytestore.stores.azure as azure_store_module
from flytestore.stores.azure import AzureStore
from flytestore.units import KiB, MiB
from tests.servers_azure import AzuriteServer, start_azurite

CONCURRENCY = 32
SHARED_BIG = "shared/big"


async def _gather_bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with sem:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> tuple[float, float]:
    """(client CPU seconds, wall seconds) of running the calls at the benchmark's concurrency."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await _gather_bounded(calls, CONCURRENCY)
    return time.process_time() - cpu, time.perf_counter() - wall


# -- the two clients ------------------------------------------------------------------------------


class Flyte:
    name = "flytestore"

    def __init__(self, server: AzuriteServer, container: str) -> None:
        credential = {"account_name": server.account, "account_key": server.key}
        self.store = AzureStore(account_url=server.endpoint, credential=credential, container=container)
        self.container = container

    async def __aenter__(self) -> Flyte:
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.aclose()

    def ref(self, key: str) -> str:
        return f"abfs://{self.container}/{key}"

    async def put(self, key: str, data: Any) -> None:
        await self.store.write_raw(self.ref(key), data)

    async def get(self, key: str) -> bytes:
        stream = await self.store.read_raw(self.ref(key))
        return await stream.read()

    async def stream_get(self, key: str) -> int:
        n = 0
        async with await self.store.read_raw(self.ref(key)) as stream:
            async for chunk in stream:
                n += len(chunk)
        return n


class Raw:
    name = "raw"

    def __init__(self, server: AzuriteServer, container: str) -> None:
        credential = {"account_name": server.account, "account_key": server.key}
        self.service = BlobServiceClient(server.endpoint, credential=credential)
        self.container = container

    async def __aenter__(self) -> Raw:
        await self.service.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.close()

    async def put(self, key: str, data: Any) -> None:
        blob = self.service.get_blob_client(self.container, key)
        await blob.upload_blob(data, overwrite=True, max_concurrency=4)

    async def get(self, key: str) -> bytes:
        blob = self.service.get_blob_client(self.container, key)
        return await (await blob.download_blob()).readall()

    async def stream_get(self, key: str) -> int:
        blob = self.service.get_blob_client(self.container, key)
        n = 0
        async for chunk in (await blob.download_blob()).chunks():
            n += len(chunk)
        return n


# -- runs -----------------------------------------------------------------------------------------


async def small_round(
    client: Flyte | Raw, count: int, size: int, cleanup: Callable[[list[str]], Awaitable[None]]
) -> dict[str, float]:
    payload = os.urandom(size)
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}/small/{i:05d}" for i in range(count)]
    put_cpu, put_wall = await _timed([lambda k=k: client.put(k, payload) for k in keys])  # type: ignore[misc]
    get_cpu, get_wall = await _timed([lambda k=k: client.get(k) for k in keys])  # type: ignore[misc]
    await cleanup(keys)
    return {
        "put_cpu_ms": put_cpu / count * 1000,
        "get_cpu_ms": get_cpu / count * 1000,
        "put_ops_s": count / put_wall,
        "get_ops_s": count / get_wall,
    }


async def _agen(block: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield block


async def big_round(
    client: Flyte | Raw, size: int, cleanup: Callable[[list[str]], Awaitable[None]]
) -> dict[str, float]:
    data = os.urandom(size)
    key = f"{uuid.uuid4().hex[:8]}/big"
    out: dict[str, float] = {}
    cpu, wall = await _timed([lambda: client.put(key, data)])
    out["upload_bytes_mb_s"], out["upload_bytes_cpu_s"] = size / MiB / wall, cpu
    block = data[:MiB]
    cpu, wall = await _timed([lambda: client.put(key + "-stream", _agen(block, size // MiB))])
    out["upload_stream_mb_s"], out["upload_stream_cpu_s"] = size / MiB / wall, cpu
    got: list[int] = []

    async def download() -> None:
        # Both clients read the same blob, written once by the raw client: Azurite's cost per GET
        # depends on how the blob was written (one Put Blob or blocks), not only on the reader.
        got.append(await client.stream_get(SHARED_BIG))

    cpu, wall = await _timed([download])
    assert got == [size], got
    out["download_mb_s"], out["download_cpu_s"] = size / MiB / wall, cpu
    await cleanup([key, key + "-stream"])
    return out


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


async def run(server: AzuriteServer, args: argparse.Namespace) -> dict[str, Any]:
    container = f"bench-{uuid.uuid4().hex[:8]}"
    small: dict[str, list[dict[str, float]]] = {"flytestore": [], "raw": []}
    big: dict[str, list[dict[str, float]]] = {"flytestore": [], "raw": []}
    async with Flyte(server, container) as flyte, Raw(server, container) as raw:
        blobs = raw.service.get_container_client(container)

        async def cleanup(keys: list[str]) -> None:
            # Unmeasured. Azurite's in-memory store slows down as blobs pile up (its CPU per request
            # doubled after a few thousand), which would favour whichever client ran first.
            await _gather_bounded([lambda k=k: blobs.delete_blob(k) for k in keys], CONCURRENCY)  # type: ignore[misc]

        # Warm both clients (connections, imports, lazily built serializers) before measuring.
        await small_round(flyte, 64, args.size, cleanup)
        await small_round(raw, 64, args.size, cleanup)
        for rep in range(args.reps):
            order: list[Flyte | Raw] = [flyte, raw] if rep % 2 == 0 else [raw, flyte]
            for client in order:
                small[client.name].append(await small_round(client, args.count, args.size, cleanup))
        if args.big:
            await raw.put(SHARED_BIG, os.urandom(args.big))
            for rep in range(args.reps):
                order = [flyte, raw] if rep % 2 == 0 else [raw, flyte]
                for client in order:
                    big[client.name].append(await big_round(client, args.big, cleanup))
    result: dict[str, Any] = {"small": {k: _median(v) for k, v in small.items()}}
    # Drift (VM neighbours, CPU clocks) moves both clients alike within a repetition, so the ratio
    # of each repetition's pair is steadier than the ratio of the medians.
    result["small"]["ratios"] = {
        op: sorted(
            f[f"{op}_cpu_ms"] / r[f"{op}_cpu_ms"] for f, r in zip(small["flytestore"], small["raw"], strict=True)
        )
        for op in ("put", "get")
    }
    if args.big:
        result["big"] = {k: _median(v) for k, v in big.items()}
    return result


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    f, r = result["small"]["flytestore"], result["small"]["raw"]
    print(f"\n{args.count} x {args.size // KiB} KiB at concurrency {CONCURRENCY} (median of {args.reps})")
    print(f"{'':6} {'flytestore':>22} {'raw client':>22}   ratio: median (min-max) of the per-repetition ratios")
    for op in ("put", "get"):
        ratios = result["small"]["ratios"][op]
        print(
            f"{op:6} {f[f'{op}_cpu_ms']:8.3f} ms CPU/op {f[f'{op}_ops_s']:5.0f}/s "
            f"{r[f'{op}_cpu_ms']:8.3f} ms CPU/op {r[f'{op}_ops_s']:5.0f}/s "
            f"  {statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
    if "big" in result:
        f, r = result["big"]["flytestore"], result["big"]["raw"]
        print(f"\n{args.big // MiB} MiB object (MB/s, client CPU s; median of {args.reps})")
        rows = [
            ("upload (bytes)", "upload_bytes"),
            ("upload (stream)", "upload_stream"),
            ("download (stream)", "download"),
        ]
        for label, key in rows:
            print(
                f"{label:18} flytestore {f[f'{key}_mb_s']:6.0f} MB/s {f[f'{key}_cpu_s']:5.2f} s   "
                f"raw {r[f'{key}_mb_s']:6.0f} MB/s {r[f'{key}_cpu_s']:5.2f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="small objects per round (default 1000)")
    parser.add_argument("--size", type=int, default=4 * KiB, help="small object size in bytes (default 4096)")
    parser.add_argument("--big", type=int, default=64 * MiB, help="large object size in bytes; 0 skips (64 MiB)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions; medians are reported (default 7)")
    parser.add_argument(
        "--trust-env",
        action="store_true",
        help="give flytestore's session trust_env=True as the SDK's has (a netrc lookup per request)",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin client and server to CPUs")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.trust_env:
        azure_store_module._environment_matters = lambda: True
    # The raw client's single-put of a large bytes body makes aiohttp warn; not what we measure.
    warnings.simplefilter("ignore", ResourceWarning)
    prefix: list[str] = []
    if args.pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") and hasattr(os, "sched_setaffinity"):
        # Client and server on their own CPUs: less noise in the client's CPU time.
        os.sched_setaffinity(0, {0})
        prefix = ["taskset", "-c", "1"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, pinned: {bool(prefix)}; starting Azurite ...")
    with start_azurite(prefix=prefix) as server:
        result = asyncio.run(run(server, args))
    report(result, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
