"""Core benchmarks: cache hit cost and the DataStore layers' overhead over a bare MemoryStore.

    python benchmarks/bench_core.py [--repeat 7] [--json results/core.json]

Method: each figure is timed over a batch of operations on one event loop after a warm-up
batch; the batch is repeated and the median (with min and max) is reported. Cache timings read
through ``CachedStore.read_raw(...).read()``; the overhead compares the same 1 KiB
write-then-read round trip on a bare MemoryStore and through ``DataStore(Config(type="mem"))``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from flytestore import CachedStore, Config, DataStore, MemoryStore, Scope

KiB = 1024


async def timed(batch: int, op: Callable[[int], Awaitable[object]], repeat: int) -> list[float]:
    for i in range(batch // 10):
        await op(i)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(batch):
            await op(i)
        samples.append((time.perf_counter() - start) / batch)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_us": statistics.median(samples) * 1e6, "min_us": min(samples) * 1e6, "max_us": max(samples) * 1e6}


async def bench(repeat: int) -> dict[str, object]:
    value = b"v" * KiB
    results: dict[str, object] = {}

    # Cache hits and misses on 1 KiB objects.
    backend = MemoryStore()
    cache = CachedStore(backend, max_size_mbs=64, scope=Scope("bench", registry=CollectorRegistry()))
    keys = [f"mem://c/{i}" for i in range(1000)]
    for k in keys:
        await cache.write_raw(k, value)

    async def hit(i: int) -> bytes:
        return await (await cache.read_raw(keys[i % 1000])).read()

    hits = summary(await timed(100_000, hit, repeat))
    results["cache_hit"] = {**hits, "hits_per_s": 1e6 / hits["median_us"]}

    async def miss(i: int) -> bytes:
        cache.invalidate(keys[i % 1000])
        return await (await cache.read_raw(keys[i % 1000])).read()

    results["cache_miss_then_fill"] = summary(await timed(50_000, miss, repeat))

    # Layer overhead: 1 KiB write + read round trip.
    bare = MemoryStore()

    async def bare_round_trip(i: int) -> bytes:
        ref = keys[i % 1000]
        await bare.write_raw(ref, value)
        return await (await bare.read_raw(ref)).read()

    async with DataStore(Config(type="mem"), scope=Scope("bench2", registry=CollectorRegistry())) as store:

        async def store_round_trip(i: int) -> bytes:
            ref = keys[i % 1000]
            await store.write_raw(ref, value)
            return await store.read_bytes(ref)

        # Interleave the two so drift in machine load hits both alike.
        bare_s: list[float] = []
        store_s: list[float] = []
        for _ in range(repeat):
            bare_s += await timed(50_000, bare_round_trip, 1)
            store_s += await timed(50_000, store_round_trip, 1)
    b, s = summary(bare_s), summary(store_s)
    results["round_trip_bare_memory"] = b
    results["round_trip_datastore"] = s
    results["layer_overhead_pct"] = (s["median_us"] / b["median_us"] - 1) * 100
    results["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor(),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(bench(args.repeat))
    for name, value in results.items():
        if isinstance(value, dict) and "median_us" in value:
            extra = f"  ({value['hits_per_s']:,.0f} hits/s)" if "hits_per_s" in value else ""
            print(
                f"{name:28s} median {value['median_us']:7.2f} us  [{value['min_us']:.2f}..{value['max_us']:.2f}]{extra}"
            )
    print(f"{'layer_overhead_pct':28s} {results['layer_overhead_pct']:+.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
