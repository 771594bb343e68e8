"""Bulk transfer against the peers: many small files local -> S3, and one 2 GiB object's memory.

Run ``python benchmarks/bench_transfer.py`` (``--help`` for sizes). It starts a moto server on a
free 127.0.0.1 port and prints, then writes as JSON (``--json``):

1. ``--files`` (2,000) files of ``--file-kib`` (64 KiB) on local disk copied to S3 at concurrency
   ``--concurrency`` (32): wall time of ``flytestore.transfer.copy_many`` (through a DataStore whose
   primary is S3 and whose ``file://`` scheme is routed to the local directory), of obstore
   (``put_async`` of each file's path under an asyncio semaphore of the same width) and of s3fs
   (``put(..., recursive=True, batch_size=concurrency)``), all in one run against the same server,
   repetitions interleaved with the order rotating. Each repetition writes under a fresh prefix.
   The client process's CPU time per object is printed too (process-wide, so obstore's Rust
   threads and s3fs's I/O thread count): when moto is the bottleneck, wall times converge and the
   CPU figure is what tells the clients apart.
   Bounds: flytestore no slower than obstore and at least 2x faster than s3fs.
2. One ``--large-gib`` (2 GiB) object copied local -> S3 (a streamed read feeding a multipart
   write with parts in flight) and S3 -> local with ``DataStore.copy_raw``, each in a fresh child
   process, with its peak RSS above the child's baseline (sampled every 5 ms). Bound: 128 MiB.
   Split copies (parallel ranged reads) are off against moto: see ``datastore_config``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil

from flytestore import Config, DataStore
from flytestore.transfer import copy_many
from flytestore.units import GiB, KiB, MiB
from tests.servers_s3 import MotoS3, start_moto

BUCKET = "bench-transfer"


def datastore_config(moto: MotoS3, root: str) -> Config:
    """S3 primary (the moto server); ``file://`` references routed to ``root`` on local disk."""
    return Config(
        type="stow",
        container=BUCKET,
        stow={"kind": "s3", "config": moto.stow_config()},
        schemes={"file": {"kind": "local", "config": {"path": root}}},
        # moto reads a whole object to serve each range (about 0.25 s per 8 MiB range of a 256 MiB
        # object here), so splitting large copies into parallel ranged reads, which real object
        # stores serve in O(range), only slows a copy out of moto down: it is off for this server.
        limits={"max_download_mbs": 0, "copy_split_threshold_mbs": 0},
    )


def make_files(root: Path, n: int, size: int) -> list[Path]:
    folder = root / "src" / "files"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


async def run_flytestore(moto: MotoS3, root: Path, paths: list[Path], concurrency: int) -> float:
    prefix = uuid.uuid4().hex
    async with DataStore(datastore_config(moto, str(root))) as store:
        await store.head(f"s3://{BUCKET}/warm-up")  # the client and its connection pool exist
        pairs = [(f"file://src/files/{p.name}", f"s3://{BUCKET}/flytestore/{prefix}/{p.name}") for p in paths]
        gc.collect()
        start = time.perf_counter()
        summary = await copy_many(store, pairs, concurrency=concurrency)
        seconds = time.perf_counter() - start
    if not summary.ok or summary.copied != len(paths):
        raise SystemExit(f"flytestore copy failed: {summary.failed[:3]}")
    return seconds


async def run_obstore(moto: MotoS3, paths: list[Path], concurrency: int) -> float:
    import obstore
    from obstore.store import S3Store as ObS3Store

    store = ObS3Store(
        BUCKET,
        endpoint=moto.endpoint,
        access_key_id=moto.access_key_id,
        secret_access_key=moto.secret_key,
        region="us-east-1",
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )
    prefix = uuid.uuid4().hex
    await obstore.put_async(store, "obstore/warm-up", b"x")  # the client and a connection exist
    slots = asyncio.Semaphore(concurrency)

    async def put(path: Path) -> None:
        async with slots:
            await obstore.put_async(store, f"obstore/{prefix}/{path.name}", path)

    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(put(p) for p in paths))
    return time.perf_counter() - start


def run_s3fs(moto: MotoS3, root: Path, paths: list[Path], concurrency: int) -> float:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=moto.access_key_id,
        secret=moto.secret_key,
        client_kwargs={"endpoint_url": moto.endpoint, "region_name": "us-east-1"},
        skip_instance_cache=True,
    )
    fs.ls(BUCKET)  # warm: session, client, connection
    prefix = uuid.uuid4().hex
    gc.collect()
    start = time.perf_counter()
    fs.put(str(root / "src" / "files") + "/", f"{BUCKET}/s3fs/{prefix}/", recursive=True, batch_size=concurrency)
    seconds = time.perf_counter() - start
    listed = fs.ls(f"{BUCKET}/s3fs/{prefix}/", refresh=True)
    if len(listed) != len(paths):
        raise SystemExit(f"s3fs put wrote {len(listed)} of {len(paths)} objects")
    return seconds


def many_files(moto: MotoS3, root: Path, paths: list[Path], concurrency: int, reps: int) -> dict[str, Any]:
    runners = {
        "flytestore": lambda: asyncio.run(run_flytestore(moto, root, paths, concurrency)),
        "obstore": lambda: asyncio.run(run_obstore(moto, paths, concurrency)),
        "s3fs": lambda: run_s3fs(moto, root, paths, concurrency),
    }
    names = list(runners)
    runs: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            cpu_start = time.process_time()
            runs[name].append(runners[name]())
            cpu[name].append((time.process_time() - cpu_start) / len(paths) * 1000)
            print(
                f"  rep {rep + 1} {name:10s} {runs[name][-1]:6.2f} s, client CPU {cpu[name][-1]:.2f} ms/object",
                flush=True,
            )
    median = {name: statistics.median(v) for name, v in runs.items()}
    cpu_median = {name: statistics.median(v) for name, v in cpu.items()}
    return {
        "seconds": {name: [round(x, 3) for x in v] for name, v in runs.items()},
        "median_seconds": median,
        "objects_per_s": {name: len(paths) / s for name, s in median.items()},
        "client_cpu_ms_per_object": {name: [round(x, 3) for x in v] for name, v in cpu.items()},
        "median_client_cpu_ms_per_object": cpu_median,
        "flytestore_vs_obstore": median["flytestore"] / median["obstore"],
        "s3fs_vs_flytestore": median["s3fs"] / median["flytestore"],
        "s3fs_vs_flytestore_client_cpu": cpu_median["s3fs"] / cpu_median["flytestore"],
    }


# -- one large object, in a child process -------------------------------------------------------------


def large_copy(moto: MotoS3, root: Path, size: int) -> dict[str, Any]:
    src = root / "src" / "large.bin"
    with open(src, "wb") as f:
        block = os.urandom(8 * MiB)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    out = {}
    for direction in ("local-to-s3", "s3-to-local"):
        argv = [sys.executable, os.path.abspath(__file__), "--child", direction, moto.endpoint, str(root), str(size)]
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        out[direction] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {direction}: {out[direction]}", flush=True)
    src.unlink()
    (root / "dst" / "large.bin").unlink(missing_ok=True)
    return out


async def child(direction: str, endpoint: str, root: str, size: int) -> dict[str, float]:
    if os.environ.get("BENCH_SPLIT"):  # an experiment knob: "threshold,part_mib,ahead"
        import functools

        from flytestore.layers import routing
        from flytestore.streamcopy import stream_copy

        threshold, part, ahead = (int(x) for x in os.environ["BENCH_SPLIT"].split(","))
        routing.stream_copy = functools.partial(  # type: ignore[assignment]
            stream_copy, split_threshold=threshold, part_size=part * MiB, ahead=ahead
        )
    moto = MotoS3(endpoint)
    proc = psutil.Process()
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            stop.wait(0.005)

    os.makedirs(os.path.join(root, "dst"), exist_ok=True)
    async with DataStore(datastore_config(moto, root)) as store:
        s3_ref = f"s3://{BUCKET}/large/large.bin"
        await store.head(s3_ref)
        await store.head("file://src/large.bin")
        gc.collect()
        baseline = proc.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        if direction == "local-to-s3":
            meta = await store.copy_raw("file://src/large.bin", s3_ref)
        else:
            meta = await store.copy_raw(s3_ref, "file://dst/large.bin")
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        if meta.size != size:
            raise SystemExit(f"copied {meta.size} of {size} bytes")
        if direction == "s3-to-local":
            await store.delete(s3_ref)
    return {"peak_rss_above_baseline_mib": round((peak - baseline) / MiB, 1), "mib_s": round(size / MiB / seconds, 1)}


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, direction, endpoint, root, size = sys.argv
        print(json.dumps(asyncio.run(child(direction, endpoint, root, int(size)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-kib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large-gib", type=float, default=2.0, help="0 skips the large object")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp, start_moto() as moto:
        root = Path(tmp)

        async def bucket() -> None:
            async with DataStore(datastore_config(moto, tmp)) as store:  # creates the bucket
                await store.head(f"s3://{BUCKET}/x")

        asyncio.run(bucket())
        paths = make_files(root, args.files, args.file_kib * KiB)
        print(
            f"moto on {moto.endpoint}; {args.files} x {args.file_kib} KiB local -> S3 at concurrency {args.concurrency}"
        )
        results["many_files"] = many_files(moto, root, paths, args.concurrency, args.reps)
        m = results["many_files"]
        print(
            f"median: flytestore {m['median_seconds']['flytestore']:.2f} s, "
            f"obstore {m['median_seconds']['obstore']:.2f} s, s3fs {m['median_seconds']['s3fs']:.2f} s; "
            f"flytestore/obstore = {m['flytestore_vs_obstore']:.2f} "
            f"(bound <= 1), s3fs/flytestore = {m['s3fs_vs_flytestore']:.2f} (bound >= 2); client CPU per object: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in m["median_client_cpu_ms_per_object"].items())
        )
        if args.large_gib > 0:
            size = int(args.large_gib * GiB)
            print(f"one {args.large_gib} GiB object, peak RSS above baseline (bound 128 MiB):")
            results["large_copy"] = large_copy(moto, root, size)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
