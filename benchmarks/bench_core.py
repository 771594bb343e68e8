"""Core benchmarks: cache hit cost and the DataStore layers' overhead over a bare MemoryStore.

    python benchmarks/bench_core.py [--repeat 7] [--json results/core.json]

Method: each figure is timed over a batch of operations on one event loop after a warm-up
batch; the batch is repeated and the median (with min and max) is reported. Cache timings read
through ``CachedStore.read_raw(...).read()``. The overhead compares the same 1 KiB
write-then-read round trip on a bare MemoryStore and through ``DataStore(Config(type="mem"))``
(default 2 MiB limit, no cache), reading whole objects (``read_bytes``) and through a stream
(``read_raw`` then ``read``), the bare and DataStore batches interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from flytestore import CachedStore, Config, DataStore, MemoryStore, Scope
from flytestore.units import KiB


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

    # Layer overhead: the same 1 KiB write-then-read round trip on a bare MemoryStore and through
    # a DataStore, once reading whole objects (read_bytes) and once through a stream.
    bare = MemoryStore()
    async with DataStore(Config(type="mem"), scope=Scope("bench2", registry=CollectorRegistry())) as store:
        pairs = {
            "read_bytes": (bare.read_bytes, store.read_bytes),
            "read_raw": (bare.read_raw, store.read_raw),
        }
        for mode, (bare_read, store_read) in pairs.items():

            async def bare_rt(i: int, read: Callable[[str], Awaitable[object]] = bare_read, mode: str = mode) -> object:
                ref = keys[i % 1000]
                await bare.write_raw(ref, value)
                got = await read(ref)
                return await got.read() if mode == "read_raw" else got  # type: ignore[attr-defined]

            async def store_rt(
                i: int, read: Callable[[str], Awaitable[object]] = store_read, mode: str = mode
            ) -> object:
                ref = keys[i % 1000]
                await store.write_raw(ref, value)
                got = await read(ref)
                return await got.read() if mode == "read_raw" else got  # type: ignore[attr-defined]

            # Interleave the two so drift in machine load hits both alike.
            bare_s: list[float] = []
            store_s: list[float] = []
            for _ in range(repeat):
                bare_s += await timed(50_000, bare_rt, 1)
                store_s += await timed(50_000, store_rt, 1)
            b, s = summary(bare_s), summary(store_s)
            results[f"round_trip_{mode}_bare_memory"] = b
            results[f"round_trip_{mode}_datastore"] = s
            results[f"layer_overhead_{mode}_pct"] = (s["median_us"] / b["median_us"] - 1) * 100
    results["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor(),
    }
    return results


async def _loop(mode: str, n: int) -> None:
    """``n`` 1 KiB round trips, nothing else: what ``--instructions`` runs under callgrind."""
    value = b"v" * KiB
    keys = [f"mem://c/{i}" for i in range(1000)]
    bare = MemoryStore()
    async with DataStore(Config(type="mem"), scope=Scope("loop", registry=CollectorRegistry())) as store:
        target = bare if mode.startswith("bare") else store
        stream = mode.endswith("read_raw")
        for i in range(n):
            ref = keys[i % 1000]
            await target.write_raw(ref, value)
            if stream:
                await (await target.read_raw(ref)).read()
            else:
                await target.read_bytes(ref)


def instructions(n1: int = 2_000, n2: int = 12_000) -> dict[str, float]:
    """Instructions per round trip, by callgrind (repeatable whatever the machine's load): the
    difference between runs of n2 and n1 round trips cancels start-up and imports."""
    out: dict[str, float] = {}
    for mode in ("bare_read_bytes", "datastore_read_bytes", "bare_read_raw", "datastore_read_raw"):
        totals = []
        for n in (n1, n2):
            with tempfile.NamedTemporaryFile(suffix=".callgrind") as f:
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        f"--callgrind-out-file={f.name}",
                        sys.executable,
                        __file__,
                        "--loop",
                        mode,
                        str(n),
                    ],
                    check=True,
                    capture_output=True,
                )
                text = Path(f.name).read_text()
            totals.append(int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1)))  # type: ignore[union-attr]
        out[mode] = (totals[1] - totals[0]) / (n2 - n1)
    for kind in ("read_bytes", "read_raw"):
        out[f"layer_overhead_{kind}_pct"] = (out[f"datastore_{kind}"] / out[f"bare_{kind}"] - 1) * 100
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument("--loop", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        asyncio.run(_loop(args.loop[0], int(args.loop[1])))
        return
    if args.instructions:
        counts = instructions()
        for name, value in counts.items():
            unit = "%" if name.endswith("pct") else " instructions per round trip"
            print(f"{name:34s} {value:,.1f}{unit}")
        if args.json:
            Path(args.json).write_text(json.dumps(counts, indent=2))
        return
    results = asyncio.run(bench(args.repeat))
    for name, value in results.items():
        if isinstance(value, dict) and "median_us" in value:
            extra = f"  ({value['hits_per_s']:,.0f} hits/s)" if "hits_per_s" in value else ""
            print(
                f"{name:28s} median {value['median_us']:7.2f} us  [{value['min_us']:.2f}..{value['max_us']:.2f}]{extra}"
            )
    for name, value in results.items():
        if name.startswith("layer_overhead"):
            print(f"{name:34s} {value:+.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
