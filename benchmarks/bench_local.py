"""LocalStore streaming against plain synchronous file I/O, and its memory bound on a 1 GiB object.

Run ``python benchmarks/bench_local.py`` (``--help`` for sizes and repetitions). It prints:

1. Throughput of streamed reads (``read_raw``, consumed chunk by chunk) and writes (``write_raw``
   from an async generator) of a 256 MiB file, next to a synchronous ``open``/``read``/``write``
   loop with the same chunk size, for 64 KiB to 8 MiB chunks. The ratio is store time / sync time
   (1.00 = as fast as sync; the design target is at most 1.5). Reads come from a warm page cache, so
   the numbers measure the per-chunk cost the store adds (thread hops, coroutine switches), not
   the disk. Each figure is the median of ``--reps`` runs, store and sync runs interleaved.
2. Peak RSS above the interpreter's baseline while a 1 GiB object of unknown size streams through
   ``write_raw`` and back through ``read_raw``. This runs in a fresh child process so that the
   kernel's high-water mark (``ru_maxrss``) starts there; a psutil sampling thread gives a second,
   independent figure.

Everything lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil

from flytestore.stores.local import LOCAL_CHUNK_SIZE, LocalStore
from flytestore.units import GiB, KiB, MiB

CHUNK_SIZES = (64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB)
CONTAINER = "bench"
KINDS = ("sync_write", "store_write", "sync_read", "store_read")


def _label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


# -- throughput -----------------------------------------------------------------------------------


def _sync_write(path: str, block: bytes, total: int) -> None:
    with open(path, "wb") as f:
        for _ in range(total // len(block)):
            f.write(block)


def _sync_read(path: str, chunk_size: int) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            n += len(chunk)
    return n


async def _blocks(block: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield block


async def _store_write(store: LocalStore, ref: str, block: bytes, total: int) -> None:
    await store.write_raw(ref, _blocks(block, total // len(block)))


async def _store_read(store: LocalStore, ref: str) -> int:
    n = 0
    stream = await store.read_raw(ref)
    async with stream:
        async for chunk in stream:
            n += len(chunk)
    return n


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


async def _atimed(coro: Coroutine[Any, Any, object]) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


def _check_sizes(total: int, *paths: str) -> None:
    assert all(os.path.getsize(p) == total for p in paths)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


async def throughput(root: str, total: int, reps: int) -> list[dict[str, float]]:
    """Median seconds per direction and chunk size, store and sync interleaved."""
    os.makedirs(os.path.join(root, CONTAINER), exist_ok=True)
    sync_path = os.path.join(root, "sync.bin")
    store_path = os.path.join(root, CONTAINER, "store.bin")
    ref = f"file://{CONTAINER}/store.bin"
    rows = []
    for chunk_size in CHUNK_SIZES:
        store = LocalStore(root, container=CONTAINER, chunk_size=chunk_size)
        await store.open()
        block = os.urandom(chunk_size)
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        for _ in range(reps):
            _remove(sync_path)
            _remove(store_path)
            times["sync_write"].append(_timed(functools.partial(_sync_write, sync_path, block, total)))
            times["store_write"].append(await _atimed(_store_write(store, ref, block, total)))
            _check_sizes(total, sync_path, store_path)
            # Both files are now in the page cache: reads measure per-chunk overhead, not the disk.
            times["sync_read"].append(_timed(functools.partial(_sync_read, sync_path, chunk_size)))
            times["store_read"].append(await _atimed(_store_read(store, ref)))
        await store.aclose()
        row = {"chunk_size": float(chunk_size)}
        row.update({k: statistics.median(v) for k, v in times.items()})
        rows.append(row)
    _remove(sync_path)
    _remove(store_path)
    return rows


def print_throughput(rows: list[dict[str, float]], total: int) -> None:
    mib = total / MiB
    print(f"\nStreaming throughput, {total // MiB} MiB file (MiB/s, median; ratio = store time / sync time)")
    header = (
        f"{'chunk':>8} | {'read sync':>10} {'read store':>11} {'ratio':>6} | "
        f"{'write sync':>10} {'write store':>11} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{_label(int(r['chunk_size'])):>8} | "
            f"{mib / r['sync_read']:>10.0f} {mib / r['store_read']:>11.0f} "
            f"{r['store_read'] / r['sync_read']:>6.2f} | "
            f"{mib / r['sync_write']:>10.0f} {mib / r['store_write']:>11.0f} "
            f"{r['store_write'] / r['sync_write']:>6.2f}"
        )


# -- memory bound -----------------------------------------------------------------------------------


class _RSSSampler:
    """Samples this process's RSS in a background thread and keeps the maximum."""

    def __init__(self, interval: float = 0.001) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _maxrss_bytes() -> int:
    # ru_maxrss is KiB on Linux and bytes on macOS.
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage if sys.platform == "darwin" else usage * KiB


async def _numbered_chunks(total: int, pattern: bytes, crc: list[int]) -> AsyncIterator[bytes]:
    # A fresh object per chunk (one allocation), as a real producer (socket, decoder) hands over.
    chunk_size = len(pattern)
    tail = memoryview(pattern)
    sent = 0
    while sent < total:
        n = min(chunk_size, total - sent)
        chunk = b"".join((sent.to_bytes(8, "little"), tail[8:n]))
        crc[0] = zlib.crc32(chunk, crc[0])
        sent += n
        yield chunk


async def rss_child(root: str, total: int, chunk_size: int) -> dict[str, float]:
    """Runs in a fresh process: stream ``total`` bytes in and out, report RSS above baseline."""
    store = LocalStore(root, container=CONTAINER, chunk_size=chunk_size)
    async with store:
        ref = f"file://{CONTAINER}/big.bin"
        # Warm up: start the executor's threads and touch every code path once before the baseline.
        pattern = os.urandom(chunk_size)
        await store.write_raw(ref, _numbered_chunks(4 * chunk_size, pattern, [0]))
        await _store_read(store, ref)
        await store.delete(ref)
        gc.collect()
        baseline = psutil.Process().memory_info().rss
        maxrss_before = _maxrss_bytes()
        crc_in = [0]
        crc_out = 0
        t0 = time.perf_counter()
        with _RSSSampler() as sampler:
            meta = await store.write_raw(ref, _numbered_chunks(total, pattern, crc_in))
            t1 = time.perf_counter()
            stream = await store.read_raw(ref)
            async with stream:
                async for chunk in stream:
                    crc_out = zlib.crc32(chunk, crc_out)
            t2 = time.perf_counter()
        assert meta.size == total, meta
        assert crc_in[0] == crc_out, "read back different bytes"
        await store.delete(ref)
    maxrss_after = _maxrss_bytes()
    return {
        "baseline_rss": baseline,
        "sampled_peak_rss": sampler.peak,
        "maxrss_before": maxrss_before,
        "maxrss_after": maxrss_after,
        "write_s": t1 - t0,
        "read_s": t2 - t1,
    }


def run_rss(root: str, total: int, chunk_size: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--rss-child", root]
    cmd += ["--big-bytes", str(total), "--chunk", str(chunk_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def print_rss(r: dict[str, float], total: int, chunk_size: int) -> None:
    sampled = r["sampled_peak_rss"] - r["baseline_rss"]
    # The kernel's high-water mark is exact but process-wide: it says something about the stream
    # only if the stream pushed it past where it stood at the baseline.
    kernel = r["maxrss_after"] - r["baseline_rss"]
    moved = r["maxrss_after"] > r["maxrss_before"]
    gib = total / GiB
    what = f"{total / GiB:g} GiB (unknown size) through write_raw then read_raw"
    print(f"\nStreaming {what}, chunk {_label(chunk_size)}")
    print(f"  write {gib * 1024 / r['write_s']:.0f} MiB/s, read {gib * 1024 / r['read_s']:.0f} MiB/s")
    print(f"  baseline RSS                      {r['baseline_rss'] / MiB:8.1f} MiB")
    print(f"  peak RSS above baseline (sampled) {sampled / MiB:8.1f} MiB")
    if moved:
        print(f"  peak RSS above baseline (ru_maxrss) {kernel / MiB:6.1f} MiB")
    else:
        print(
            "  peak RSS above baseline (ru_maxrss) <= "
            f"{kernel / MiB:.1f} MiB (the high-water mark predates the stream and did not move)"
        )


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="throughput file size (MiB)")
    parser.add_argument("--big-gib", type=float, default=1.0, help="object size of the RSS run (GiB)")
    parser.add_argument("--reps", type=int, default=5, help="runs per measurement (median reported)")
    parser.add_argument("--chunk", type=int, default=0, help="chunk size of the RSS run (default: store's)")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--big-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    chunk_size = args.chunk or LOCAL_CHUNK_SIZE
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child, args.big_bytes, chunk_size))))
        return

    total = args.size_mib * MiB
    big = int(args.big_gib * GiB)
    results: dict[str, object] = {}
    root = tempfile.mkdtemp(prefix="flytestore-bench-", dir=args.dir)
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, temp dir {root}")
        # The RSS child runs first: a child's ru_maxrss starts at its parent's high-water mark
        # (Linux carries it across fork/exec), which must stay below the child's own baseline.
        if not args.skip_rss:
            rss = run_rss(root, big, chunk_size)
            results["rss"] = rss
        if not args.skip_throughput:
            rows = asyncio.run(throughput(root, total, args.reps))
            print_throughput(rows, total)
            results["throughput"] = rows
        if not args.skip_rss:
            print_rss(rss, big, chunk_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
