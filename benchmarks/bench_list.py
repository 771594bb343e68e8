"""Listing 10,000 S3 keys: flytestore's two request paths against raw aiobotocore and obstore.

One client process, one server: ``--server moto`` (``python -m moto.server``, which closes the
connection after every response), ``--server keepalive`` (moto's same WSGI app served over HTTP/1.1
keep-alive, ``keepalive_moto.py``), or ``--server both`` (one after the other, the same run).

The bucket is seeded once per server with ``--keys`` 4-byte objects under ``list/``, spread over
100 "directories" (``list/d042/k000123``), as ``suite.py`` seeds its listing. Then, ``--reps``
times, each client lists the whole prefix recursively, 1,000 keys a request, and the run records
its wall time and **client CPU** (``time.process_time()`` of this process: every thread, obstore's
Rust runtime included; the server is another process). The garbage collector runs before every
listing, so each pays for its own. The order of the clients rotates every repetition and reverses
every other one. With two CPUs or more the client is pinned to CPU 0 and the server to CPU 1
(``--no-pin``).

Clients:

- ``lean``: ``S3Store`` (``lean_requests`` on): ``store.list()``, ListObjectsV2 built and signed
  without botocore's per-call machinery, parsed by ``xml.etree``, the next page requested while
  this one is consumed;
- ``full``: ``S3Store`` with ``lean_requests=False``: every page through aiobotocore;
- ``datastore``: the whole ``DataStore`` stack over a lean store (``DataStore.list``);
- ``aiobotocore``: the raw client's ``list_objects_v2`` paginator, configured as S3Store's own;
- ``obstore``: ``obstore.list(store, prefix, chunk_size=1000)`` (when obstore is installed).

Every listing is checked to return every key. A table cell is the median (min-max) over the
repetitions; ``÷ obstore`` is flytestore's CPU over obstore's within each repetition, its median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from benchmarks.bench_s3 import datastore_config, obstore_store, raw_client, settings  # noqa: E402
from benchmarks.keepalive_moto import start_s3  # noqa: E402
from flytestore import DataStore  # noqa: E402
from flytestore.stores import s3 as s3_module  # noqa: E402
from flytestore.stores.s3 import S3Store  # noqa: E402

CLIENTS = ("lean", "full", "datastore", "aiobotocore", "obstore")


def pin() -> None:
    """The client on CPU 0, the server (our child process) on CPU 1, when there are two CPUs."""
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return
    os.sched_setaffinity(0, {0})
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.cpu_affinity([1])


async def seed(store: S3Store, keys: list[str]) -> None:
    pending = iter(keys)

    async def worker() -> None:
        for key in pending:
            await store.write_raw(store.make_ref(store.container, key), b"data")

    await asyncio.gather(*(worker() for _ in range(32)))


async def run_server_bench(endpoint: str, n_keys: int, reps: int) -> dict[str, Any]:
    bucket = f"bench-list-{uuid.uuid4().hex[:12]}"
    keys = [f"list/d{i % 100:03d}/k{i:06d}" for i in range(n_keys)]
    lean = S3Store(settings(endpoint), container=bucket)
    full = S3Store(settings(endpoint, lean=False), container=bucket)
    config = datastore_config(endpoint, bucket)
    async with lean, full, DataStore(config) as ds, raw_client(endpoint) as raw:
        assert isinstance(lean.api, s3_module._LeanS3Api) and not isinstance(full.api, s3_module._LeanS3Api)
        ob = obstore_store(endpoint, bucket)
        root = f"s3://{bucket}/list"

        async def store_list(store: S3Store | DataStore) -> int:
            n = 0
            async for _ in store.list(root):
                n += 1
            return n

        async def raw_list() -> int:
            n = 0
            async for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="list/"):
                n += len(page.get("Contents", ()))
            return n

        async def ob_list() -> int:
            import obstore

            n = 0
            async for batch in obstore.list(ob, "list/", chunk_size=1000):
                n += len(batch)
            return n

        listers: dict[str, Callable[[], Awaitable[int]]] = {
            "lean": lambda: store_list(lean),
            "full": lambda: store_list(full),
            "datastore": lambda: store_list(ds),
            "aiobotocore": raw_list,
        }
        if ob is not None:
            listers["obstore"] = ob_list
        t = time.perf_counter()
        await seed(lean, keys)
        print(f"  seeded {n_keys:,} keys in {time.perf_counter() - t:.1f}s", flush=True)
        for name, lister in listers.items():  # warm-up: connections, credentials, imports
            count = await lister()
            if count != n_keys:
                raise RuntimeError(f"{name} listed {count} keys, expected {n_keys}")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in listers}
        names = list(listers)
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            if rep % 2:
                order.reverse()
            for name in order:
                gc.collect()
                cpu, wall = time.process_time(), time.perf_counter()
                count = await listers[name]()
                samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
                if count != n_keys:
                    raise RuntimeError(f"{name} listed {count} keys, expected {n_keys}")
        with contextlib.suppress(Exception):
            await lean.delete_many([lean.make_ref(bucket, key) for key in keys])
    return {"keys": n_keys, "reps": reps, "samples": samples}


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def report(server: str, result: dict[str, Any]) -> str:
    samples: dict[str, list[tuple[float, float]]] = result["samples"]
    ob = samples.get("obstore")
    lines = [
        f"### {server}: list {result['keys']:,} keys, {result['reps']} repetitions",
        "",
        "| client | client CPU ms | wall ms | CPU ÷ obstore |",
        "|---|---|---|---|",
    ]
    for name in CLIENTS:
        if name not in samples:
            continue
        cpu = [c * 1e3 for c, _ in samples[name]]
        wall = [w * 1e3 for _, w in samples[name]]
        ratio = "—"
        if ob is not None:
            ratios = [c / o for (c, _), (o, _) in zip(samples[name], ob, strict=True)]
            ratio = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        lines.append(f"| {name} | {cell(cpu)} | {cell(wall)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("moto", "keepalive", "both"), default="both")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", help="also write the raw samples to this file")
    args = parser.parse_args()
    servers = ("moto", "keepalive") if args.server == "both" else (args.server,)
    results: dict[str, Any] = {}
    for server in servers:
        with start_s3(server) as s3:
            if not args.no_pin:
                pin()
            print(f"{server} on {s3.endpoint}", flush=True)
            results[server] = asyncio.run(run_server_bench(s3.endpoint, args.keys, args.reps))
        print(report(server, results[server]), flush=True)
        print(flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
