"""S3Store against the raw aiobotocore client it wraps, on a moto server started for the run.

Run ``python benchmarks/bench_s3.py`` (``--help`` for sizes and repetitions). It prints:

1. Small objects: ``--ops`` (1,000) puts of 4 KiB, then as many gets, at concurrency 32. The figure
   is the client process's CPU time per operation (``time.process_time()``; moto runs in its own
   process, so its CPU is not counted), for ``S3Store`` (``write_raw`` / ``read_bytes`` /
   ``read_raw`` streamed), for the whole ``DataStore`` stack over it (metrics, limits, routing), and
   for the raw aiobotocore client doing the same calls (``put_object`` / ``get_object`` +
   ``Body.read()``) with the same client settings. The ratio is flytestore / raw (target <= 1.10).
   These figures move by +-20% run to run on a busy 2-core VM (the client's CPU per operation
   grows with event-loop wake-ups while it waits for the server), so the run also measures
   S3Store's own CPU per operation with its client stubbed out: a deterministic figure for what
   flytestore adds on top of botocore.
2. One large object (``--large-mib``, 256 MiB): streamed GET throughput of ``read_raw`` (consumed
   chunk by chunk) next to raw ``get_object`` + ``Body.iter_chunks`` with the same chunk size
   (target >= 90% of raw) and the client CPU per GiB streamed; then, in a fresh child process
   each, the peak RSS above the process's baseline while that object streams through
   ``read_raw`` (target: within 64 MiB) and while a stream of unknown length of the same size
   goes through ``write_raw`` (multipart: expect about
   ``(2 * max_parts_in_flight + 1) * part_size`` on Python 3.11, whose socket transports copy
   what a send leaves over, and ``(max_parts_in_flight + 1) * part_size`` from 3.12).

Every figure is the median of ``--reps`` runs (default 5, at least 3), flytestore and raw runs
interleaved, their order alternating; "paired" ratios are the median of the per-repetition
ratios. The numbers come from a small shared VM: compare them with each other, not with real S3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import psutil  # noqa: E402
from aiobotocore.session import AioSession  # noqa: E402

from flytestore import Config, DataStore  # noqa: E402
from flytestore.rawstore import DEFAULT_CHUNK_SIZE  # noqa: E402
from flytestore.stores import s3 as s3_module  # noqa: E402
from flytestore.stores.s3 import S3Settings, S3Store  # noqa: E402
from tests.servers import HOST, free_port, http_ready, run_server  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


def settings(endpoint: str) -> S3Settings:
    return S3Settings(
        region=REGION,
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        addressing_style="path",
    )


def raw_client(endpoint: str) -> Any:
    """The raw aiobotocore client, configured exactly as S3Store configures its own."""
    return AioSession().create_client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=settings(endpoint).client_config(),
    )


async def run_workers(n_ops: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> None:
    """``op(0..n_ops-1)`` on ``concurrency`` workers pulling from one counter (no per-op tasks)."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n_ops:
            i = next_index
            next_index += 1
            await op(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measured(n_ops: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """(client CPU seconds per op, wall seconds) of one batch."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await run_workers(n_ops, concurrency, op)
    return (time.process_time() - cpu) / n_ops, time.perf_counter() - wall


# -- small objects ------------------------------------------------------------------------------------


async def small_objects(endpoint: str, ops: int, concurrency: int, reps: int) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    body = os.urandom(4 * KiB)
    results: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, value: tuple[float, float]) -> None:
        results.setdefault(name, []).append(value)

    store = S3Store(settings(endpoint), container=bucket)
    config = Config(
        type="s3",
        container=bucket,
        stow={
            "kind": "s3",
            "config": {
                "access_key_id": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "region": REGION,
                "endpoint": endpoint,
                "addressing_style": "path",
            },
        },
        default_http_client={"maxIdleConns": store.settings.pool_size},
    )
    async with store, DataStore(config) as ds, raw_client(endpoint) as raw:

        async def flyte_round(prefix: str) -> None:
            refs = [f"s3://{bucket}/{prefix}/{i}" for i in range(ops)]
            record("s3store put", await measured(ops, concurrency, lambda i: store.write_raw(refs[i], body)))
            record("s3store get", await measured(ops, concurrency, lambda i: store.read_bytes(refs[i])))

            async def stream_get(i: int) -> None:
                stream = await store.read_raw(refs[i])
                async with stream:
                    async for _ in stream:
                        pass

            record("s3store get (stream)", await measured(ops, concurrency, stream_get))

        async def datastore_round(prefix: str) -> None:
            refs = [f"s3://{bucket}/{prefix}/{i}" for i in range(ops)]
            record("datastore put", await measured(ops, concurrency, lambda i: ds.write_raw(refs[i], body)))
            record("datastore get", await measured(ops, concurrency, lambda i: ds.read_bytes(refs[i])))

        async def raw_round(prefix: str) -> None:
            keys = [f"{prefix}/{i}" for i in range(ops)]

            async def put(i: int) -> None:
                await raw.put_object(Bucket=bucket, Key=keys[i], Body=body)

            async def get(i: int) -> None:
                resp = await raw.get_object(Bucket=bucket, Key=keys[i])
                async with resp["Body"] as stream:
                    await stream.read()

            async def stream_get(i: int) -> None:
                resp = await raw.get_object(Bucket=bucket, Key=keys[i])
                async with resp["Body"] as stream:
                    async for _ in stream.iter_chunks(DEFAULT_CHUNK_SIZE):
                        pass

            record("raw put", await measured(ops, concurrency, put))
            record("raw get", await measured(ops, concurrency, get))
            record("raw get (stream)", await measured(ops, concurrency, stream_get))

        # Warm-up: connections, credential resolution, botocore's lazily built handlers.
        await flyte_round("warm-f")
        await raw_round("warm-r")
        await datastore_round("warm-d")
        results.clear()
        rounds = [flyte_round, raw_round, datastore_round]
        for rep in range(reps):
            order = rounds if rep % 2 == 0 else rounds[::-1]
            for fn in order:
                await fn(f"r{rep}-{fn.__name__}")
                print(".", end="", flush=True)
        print()
    summary: dict[str, Any] = {
        name: {
            "cpu_ms_per_op": statistics.median(v[0] for v in values) * 1e3,
            "wall_s": statistics.median(v[1] for v in values),
            "runs_cpu_ms": [round(v[0] * 1e3, 4) for v in values],
        }
        for name, values in results.items()
    }
    # Each repetition's flytestore run against the raw run of the same repetition: pairing cancels
    # much of the drift of a shared machine's load.
    for name, values in results.items():
        impl, _, op = name.partition(" ")
        raw = results.get(f"raw {op}")
        if impl != "raw" and raw is not None:
            summary[name]["paired_ratio"] = statistics.median(v[0] / r[0] for v, r in zip(values, raw, strict=True))
    return summary


# -- flytestore's own cost, without the network ---------------------------------------------------------


class _StubBody:
    """A response body already in memory (what aiobotocore's body offers, minimally)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    async def read(self, amt: int | None = None) -> bytes:
        data, self._data = self._data or b"", None
        return data

    def close(self) -> None:
        self._data = None


class _StubApi(s3_module._S3Api):
    """``_S3Api`` answering from memory: what is left of an operation's CPU is flytestore's."""

    def __init__(self, body: bytes) -> None:
        self.client = self.signer = None
        self.checksums = self.conditional_copy = False
        self.body = body
        self.meta = {
            "ETag": '"0123456789abcdef0123456789abcdef"',
            "ContentLength": len(body),
            "ContentType": "binary/octet-stream",
            "Metadata": {},
        }

    async def put(self, bucket: str, key: str, body: bytes, params: Any) -> dict[str, Any]:
        return {"ETag": self.meta["ETag"]}

    async def get(self, bucket: str, key: str, byte_range: str | None = None) -> dict[str, Any]:
        return {**self.meta, "Body": _StubBody(self.body)}


async def own_overhead(n: int) -> dict[str, float]:
    """Microseconds of CPU per operation that S3Store adds around its client calls."""
    body = os.urandom(4 * KiB)
    store = S3Store(settings("http://127.0.0.1:1"))
    store._api = _StubApi(body)
    refs = [f"s3://bucket/prefix/{i}" for i in range(1000)]

    async def stream_get(ref: str) -> None:
        stream = await store.read_raw(ref)
        async with stream:
            async for _ in stream:
                pass

    ops: dict[str, Callable[[str], Awaitable[Any]]] = {
        "put": lambda r: store.write_raw(r, body),
        "get": store.read_bytes,
        "get (stream)": stream_get,
    }
    out = {}
    for name, op in ops.items():
        runs = []
        for _ in range(3):
            gc.collect()
            cpu = time.process_time()
            for i in range(n):
                await op(refs[i % 1000])
            runs.append((time.process_time() - cpu) / n * 1e6)
        out[name] = statistics.median(runs)
    return out


# -- large object -----------------------------------------------------------------------------------------


async def blocks(total: int, block: int = 8 * MiB) -> AsyncIterator[bytes]:
    data = os.urandom(block)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield data if n == block else data[:n]
        sent += n


async def large_object(endpoint: str, size: int, reps: int) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    key = "large.bin"
    ref = f"s3://{bucket}/{key}"
    out: dict[str, Any] = {}
    async with S3Store(settings(endpoint), container=bucket) as store, raw_client(endpoint) as raw:
        start = time.perf_counter()
        await store.write_raw(ref, blocks(size))
        out["write_mb_s"] = size / MiB / (time.perf_counter() - start)

        async def flyte_get() -> int:
            n = 0
            stream = await store.read_raw(ref)
            async with stream:
                async for chunk in stream:
                    n += len(chunk)
            return n

        async def raw_get() -> int:
            n = 0
            resp = await raw.get_object(Bucket=bucket, Key=key)
            async with resp["Body"] as body:
                async for chunk in body.iter_chunks(DEFAULT_CHUNK_SIZE):
                    n += len(chunk)
            return n

        speeds: dict[str, list[float]] = {"s3store": [], "raw": []}
        cpu_per_gib: dict[str, list[float]] = {"s3store": [], "raw": []}
        await flyte_get()  # warm-up
        for rep in range(reps):
            pairs = [("s3store", flyte_get), ("raw", raw_get)]
            for name, fn in pairs if rep % 2 == 0 else pairs[::-1]:
                gc.collect()
                t, cpu = time.perf_counter(), time.process_time()
                n = await fn()
                assert n == size, (name, n)
                speeds[name].append(size / MiB / (time.perf_counter() - t))
                cpu_per_gib[name].append((time.process_time() - cpu) / (size / (1024 * MiB)))
                print(".", end="", flush=True)
        print()
        # Client CPU per GiB moves less than wall time with the load of a shared machine.
        out["get_cpu_s_per_gib"] = {name: statistics.median(v) for name, v in cpu_per_gib.items()}
        out["get_mb_s"] = {name: statistics.median(v) for name, v in speeds.items()}
        out["get_paired_ratio"] = statistics.median(
            f / r for f, r in zip(speeds["s3store"], speeds["raw"], strict=True)
        )
        out["get_runs_mb_s"] = {name: [round(x, 1) for x in v] for name, v in speeds.items()}
        out["rss"] = {
            "read_raw": child_rss(endpoint, bucket, key, "read"),
            "write_raw (unknown length)": child_rss(endpoint, bucket, "written-by-child.bin", "write", size),
        }
        await raw.delete_object(Bucket=bucket, Key=key)
        await raw.delete_object(Bucket=bucket, Key="written-by-child.bin")
    return out


def child_rss(endpoint: str, bucket: str, key: str, mode: str, size: int = 0) -> dict[str, float | None]:
    argv = [sys.executable, os.path.abspath(__file__), "--rss-child", mode, endpoint, bucket, key, str(size)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, float | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def rss_child(mode: str, endpoint: str, bucket: str, key: str, size: int) -> dict[str, float | None]:
    """In a fresh process: peak RSS above the baseline while one object streams through the store
    (sampled every 5 ms by a thread; ``ru_maxrss`` as a cross-check when it is usable)."""
    proc = psutil.Process()
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            stop.wait(0.005)

    async with S3Store(settings(endpoint), container=bucket, create_container=False) as store:
        ref = f"s3://{bucket}/{key}"
        # Warm the client (imports, handlers, a connection) before taking the baseline.
        await store.head(ref)
        gc.collect()
        baseline = proc.memory_info().rss
        baseline_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        if mode == "read":
            stream = await store.read_raw(ref)
            async with stream:
                async for _ in stream:
                    pass
        else:
            await store.write_raw(ref, blocks(size, DEFAULT_CHUNK_SIZE))
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
    ru_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
    # ru_maxrss is a high-water mark that can predate the baseline (Linux carries the parent's
    # across fork/exec); it only says something when it was not above the baseline already.
    ru_valid = baseline_max <= baseline + MiB
    return {
        "peak_above_baseline_mib": (peak - baseline) / MiB,
        "ru_maxrss_above_baseline_mib": (ru_peak - baseline) / MiB if ru_valid else None,
        "mb_s": (size or 0) / MiB / seconds if mode == "write" else 0.0,
    }


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1000, help="small objects per batch (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--large-mib", type=int, default=256, help="large object size in MiB (default 256)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions, at least 3 (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument(
        "--rss-child", nargs=5, metavar=("MODE", "ENDPOINT", "BUCKET", "KEY", "SIZE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.rss_child:
        mode, endpoint, bucket, key, size = args.rss_child
        print(json.dumps(asyncio.run(rss_child(mode, endpoint, bucket, key, int(size)))))
        return
    reps = max(3, args.reps)
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    with run_server(argv, http_ready(f"http://{HOST}:{port}/moto-api/"), port=port) as server:
        print(f"moto on {server.endpoint}; {args.ops} x 4 KiB at concurrency {args.concurrency}, {reps} reps")
        small = asyncio.run(small_objects(server.endpoint, args.ops, args.concurrency, reps))
        overhead = asyncio.run(own_overhead(20_000))
        large = None if args.skip_large else asyncio.run(large_object(server.endpoint, args.large_mib * MiB, reps))

    print("\nClient CPU per operation (ms), median; ratio = flytestore / raw (target <= 1.10);")
    print("paired = median over repetitions of flytestore / raw within the same repetition")
    for op, raw_name in (("put", "raw put"), ("get", "raw get"), ("get (stream)", "raw get (stream)")):
        raw_ms = small[raw_name]["cpu_ms_per_op"]
        print(f"  raw aiobotocore {op:<13} {raw_ms:7.3f}")
        for impl in ("s3store", "datastore"):
            name = f"{impl} {op}"
            if name in small:
                ms = small[name]["cpu_ms_per_op"]
                paired = small[name]["paired_ratio"]
                print(f"  {impl:<15} {op:<13} {ms:7.3f}   ratio {ms / raw_ms:5.3f}   paired {paired:5.3f}")
    print("S3Store's own CPU per operation (client stubbed, no I/O; deterministic, unlike the above)")
    for op, us in overhead.items():
        raw_ms = small[f"raw {op}"]["cpu_ms_per_op"]
        print(f"  {op:<13} {us:6.1f} us = {us / 1e3 / raw_ms:5.1%} of the raw client's CPU per op")
    if large is not None:
        get = large["get_mb_s"]
        print(f"\n{args.large_mib} MiB object: multipart write {large['write_mb_s']:.0f} MiB/s (moto-bound)")
        print(
            f"  streamed GET: s3store {get['s3store']:.0f} MiB/s, raw {get['raw']:.0f} MiB/s, "
            f"s3store / raw = {get['s3store'] / get['raw']:.1%}, paired {large['get_paired_ratio']:.1%} (target >= 90%)"
        )
        cpu = large["get_cpu_s_per_gib"]
        print(
            f"  client CPU per GiB streamed: s3store {cpu['s3store']:.3f} s, raw {cpu['raw']:.3f} s "
            f"(s3store / raw = {cpu['s3store'] / cpu['raw']:.3f})"
        )
        for what, rss in large["rss"].items():
            ru = rss["ru_maxrss_above_baseline_mib"]
            cross_check = f"; ru_maxrss: {ru:.1f} MiB" if ru is not None else ""
            target = " (target <= 64 MiB)" if what == "read_raw" else ""
            print(f"  peak RSS above baseline, {what}: {rss['peak_above_baseline_mib']:.1f} MiB{target}{cross_check}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"small": small, "overhead_us": overhead, "large": large}, f, indent=2)


if __name__ == "__main__":
    main()
