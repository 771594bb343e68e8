"""S3Store's two request paths against raw aiobotocore and obstore, on a moto server started for the run.

Run ``python benchmarks/bench_s3.py`` (``--help`` for sizes and repetitions). It prints:

1. Small objects: ``--ops`` (1,000) puts of 4 KiB, then as many gets (whole, then streamed) and
   heads, at ``--concurrency`` 32. The figure is the client process's CPU time per operation
   (``time.process_time()``, every thread of the process: obstore's Rust runtime included; moto
   runs in its own process, so its CPU is not counted), for

   - ``lean``: ``S3Store`` with its default ``lean_requests`` (``write_raw`` / ``read_bytes`` /
     ``read_raw`` streamed / ``head``), the hot operations signed and sent by ``_s3lean``;
   - ``full``: ``S3Store`` with ``lean_requests=False``, every call through aiobotocore;
   - ``datastore``: the whole ``DataStore`` stack (metrics, limits, routing) over a lean store;
   - ``raw``: the raw aiobotocore client doing the same calls (``put_object`` / ``get_object`` +
     ``Body.read()`` / ``head_object``) with the same client settings;
   - ``obstore``: obstore (Rust ``object_store``) in the same process against the same server.

   Ratios are against raw aiobotocore and against obstore. These figures move by +-20% run to run
   on a busy 2-core VM (the client's CPU per operation grows with event-loop wake-ups while it
   waits for the server), so the run also measures S3Store's own CPU per operation with its client
   stubbed out: a deterministic figure for what flytestore adds around its client calls.

   moto's server (Werkzeug) closes the connection after every response, so each request also pays
   a TCP connect, which costs asyncio and aiohttp far more than Rust. ``--keepalive`` repeats the
   small-object runs against a minimal in-memory S3 of this file (an aiohttp server in a child
   process that keeps connections alive, as S3 does, and checks no signatures) to show the
   clients' own cost.
2. One large object (``--large-mib``, 256 MiB): streamed GET throughput of ``read_raw`` on both
   paths (consumed chunk by chunk), raw ``get_object`` + ``Body.iter_chunks`` and obstore's
   ``GetResult.stream``, all with the same chunk size; the client CPU per GiB streamed, and moto's
   CPU per GiB (its process, measured around each GET: when moto's CPU time is about the GET's
   wall time, moto is the bottleneck and the clients cannot be told apart by speed). Then, in a
   fresh child process each, the peak RSS above the process's baseline while that object streams
   through ``read_raw`` (lean and full; target: within 64 MiB) and while a stream of unknown length
   of the same size goes through ``write_raw`` (multipart: expect about
   ``(2 * max_parts_in_flight + 1) * part_size`` on Python 3.11, whose socket transports copy
   what a send leaves over, and ``(max_parts_in_flight + 1) * part_size`` from 3.12).

Every figure is the median of ``--reps`` runs (default 5, at least 3), the implementations'
runs interleaved, their order alternating; "paired" ratios are the median of the per-repetition
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
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
from flytestore.units import KiB, MiB  # noqa: E402
from tests.servers import HOST, free_port, http_ready, run_server  # noqa: E402

ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


def settings(endpoint: str, *, lean: bool = True) -> S3Settings:
    return S3Settings(
        region=REGION,
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        addressing_style="path",
        lean_requests=lean,
    )


def datastore_config(endpoint: str, bucket: str, *, pool_size: int | None = None) -> Config:
    """A DataStore config for the same server and bucket (a lean S3 primary)."""
    extra: dict[str, Any] = {} if pool_size is None else {"default_http_client": {"maxIdleConns": pool_size}}
    return Config(
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
        **extra,
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


def obstore_store(endpoint: str, bucket: str) -> Any:
    """An obstore S3 store for the same server and bucket (``None`` without obstore)."""
    try:
        from obstore.store import S3Store as ObStore
    except ImportError:
        return None
    return ObStore(
        bucket,
        endpoint=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region=REGION,
        client_options={"allow_http": True},
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

#: The implementations, in the order they are printed.
IMPLS = ("lean", "full", "datastore", "raw", "obstore")
OPS = ("put", "get", "get (stream)", "head")

Op = Callable[[int], Awaitable[Any]]


def store_ops(store: S3Store | DataStore, refs: list[str], body: bytes) -> dict[str, Op]:
    async def stream_get(i: int) -> None:
        stream = await store.read_raw(refs[i])
        async with stream:
            async for _ in stream:
                pass

    return {
        "put": lambda i: store.write_raw(refs[i], body),
        "get": lambda i: store.read_bytes(refs[i]),
        "get (stream)": stream_get,
        "head": lambda i: store.head(refs[i]),
    }


def raw_ops(raw: Any, bucket: str, keys: list[str], body: bytes) -> dict[str, Op]:
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

    async def head(i: int) -> None:
        await raw.head_object(Bucket=bucket, Key=keys[i])

    return {"put": put, "get": get, "get (stream)": stream_get, "head": head}


def obstore_ops(ob: Any, keys: list[str], body: bytes) -> dict[str, Op]:
    import obstore

    async def put(i: int) -> None:
        await obstore.put_async(ob, keys[i], body)

    async def get(i: int) -> None:
        resp = await obstore.get_async(ob, keys[i])
        await resp.bytes_async()

    async def stream_get(i: int) -> None:
        resp = await obstore.get_async(ob, keys[i])
        async for _ in resp.stream(min_chunk_size=DEFAULT_CHUNK_SIZE):
            pass

    async def head(i: int) -> None:
        await obstore.head_async(ob, keys[i])

    return {"put": put, "get": get, "get (stream)": stream_get, "head": head}


async def small_objects(endpoint: str, ops: int, concurrency: int, reps: int) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    body = os.urandom(4 * KiB)
    results: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, value: tuple[float, float]) -> None:
        results.setdefault(name, []).append(value)

    lean = S3Store(settings(endpoint), container=bucket)
    full = S3Store(settings(endpoint, lean=False), container=bucket)
    config = datastore_config(endpoint, bucket, pool_size=lean.settings.pool_size)
    async with lean, full, DataStore(config) as ds, raw_client(endpoint) as raw:
        assert isinstance(lean.api, s3_module._LeanS3Api) and not isinstance(full.api, s3_module._LeanS3Api)
        ob = obstore_store(endpoint, bucket)

        def make_round(name: str) -> Callable[[str], Awaitable[None]]:
            async def one_round(prefix: str) -> None:
                keys = [f"{prefix}/{i}" for i in range(ops)]
                refs = [f"s3://{bucket}/{key}" for key in keys]
                if name == "lean":
                    calls = store_ops(lean, refs, body)
                elif name == "full":
                    calls = store_ops(full, refs, body)
                elif name == "datastore":
                    calls = store_ops(ds, refs, body)
                    calls = {op: calls[op] for op in ("put", "get")}
                elif name == "raw":
                    calls = raw_ops(raw, bucket, keys, body)
                else:
                    calls = obstore_ops(ob, keys, body)
                for op, call in calls.items():  # put first: the others read what it wrote
                    record(f"{name} {op}", await measured(ops, concurrency, call))

            one_round.__name__ = name
            return one_round

        rounds = [make_round(name) for name in IMPLS if name != "obstore" or ob is not None]
        # Warm-up: connections, credential resolution, botocore's lazily built handlers.
        for fn in rounds:
            await fn(f"warm-{fn.__name__}")
        results.clear()
        for rep in range(reps):
            order = rounds if rep % 2 == 0 else rounds[::-1]
            for fn in order:
                await fn(f"r{rep}-{fn.__name__}")
                print(".", end="", flush=True)
        print()
    summary: dict[str, Any] = {
        name: {
            "cpu_ms_per_op": statistics.median(v[0] for v in values) * 1e3,
            "ops_per_s": statistics.median(ops / v[1] for v in values),
            "runs_cpu_ms": [round(v[0] * 1e3, 4) for v in values],
        }
        for name, values in results.items()
    }
    # Each repetition's run against the raw / obstore run of the same repetition: pairing cancels
    # much of the drift of a shared machine's load.
    for name, values in results.items():
        impl, _, op = name.partition(" ")
        for other in ("raw", "obstore"):
            base = results.get(f"{other} {op}")
            if impl != other and base is not None:
                summary[name][f"paired_vs_{other}"] = statistics.median(
                    v[0] / b[0] for v, b in zip(values, base, strict=True)
                )
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

    async def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self.meta


async def own_overhead(n: int) -> dict[str, float]:
    """Microseconds of CPU per operation that S3Store adds around its client calls."""
    body = os.urandom(4 * KiB)
    store = S3Store(settings("http://127.0.0.1:1"))
    store._api = _StubApi(body)
    refs = [f"s3://bucket/prefix/{i}" for i in range(1000)]
    ops = store_ops(store, refs, body)
    out = {}
    for name, op in ops.items():
        runs = []
        for _ in range(3):
            gc.collect()
            cpu = time.process_time()
            for i in range(n):
                await op(i % 1000)
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


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def large_object(endpoint: str, size: int, reps: int, server_pid: int | None) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    key = "large.bin"
    ref = f"s3://{bucket}/{key}"
    server = psutil.Process(server_pid) if server_pid else None
    out: dict[str, Any] = {}
    async with (
        S3Store(settings(endpoint), container=bucket) as lean,
        S3Store(settings(endpoint, lean=False), container=bucket) as full,
        raw_client(endpoint) as raw,
    ):
        start = time.perf_counter()
        await lean.write_raw(ref, blocks(size))
        out["write_mb_s"] = size / MiB / (time.perf_counter() - start)
        ob = obstore_store(endpoint, bucket)

        # Each returns (bytes read, seconds until the response's headers were in).
        async def store_get(store: S3Store) -> tuple[int, float]:
            n, start = 0, time.perf_counter()
            stream = await store.read_raw(ref)
            headers_in = time.perf_counter() - start
            async with stream:
                async for chunk in stream:
                    n += len(chunk)
            return n, headers_in

        async def raw_get() -> tuple[int, float]:
            n, start = 0, time.perf_counter()
            resp = await raw.get_object(Bucket=bucket, Key=key)
            headers_in = time.perf_counter() - start
            async with resp["Body"] as body:
                async for chunk in body.iter_chunks(DEFAULT_CHUNK_SIZE):
                    n += len(chunk)
            return n, headers_in

        async def obstore_get() -> tuple[int, float]:
            import obstore

            n, start = 0, time.perf_counter()
            resp = await obstore.get_async(ob, key)
            headers_in = time.perf_counter() - start
            async for chunk in resp.stream(min_chunk_size=DEFAULT_CHUNK_SIZE):
                n += len(chunk)
            return n, headers_in

        getters: dict[str, Callable[[], Awaitable[tuple[int, float]]]] = {
            "lean": lambda: store_get(lean),
            "full": lambda: store_get(full),
            "raw": raw_get,
        }
        if ob is not None:
            getters["obstore"] = obstore_get
        speeds: dict[str, list[float]] = {name: [] for name in getters}
        cpu_per_gib: dict[str, list[float]] = {name: [] for name in getters}
        server_cpu_per_gib: dict[str, list[float]] = {name: [] for name in getters}
        server_busy: dict[str, list[float]] = {name: [] for name in getters}
        first_byte: dict[str, list[float]] = {name: [] for name in getters}
        body_speeds: dict[str, list[float]] = {name: [] for name in getters}
        gib = size / (1024 * MiB)
        for fn in getters.values():  # warm-up
            await fn()
        for rep in range(reps):
            pairs = list(getters.items())
            for name, fn in pairs if rep % 2 == 0 else pairs[::-1]:
                gc.collect()
                t, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server)
                n, headers_in = await fn()
                wall = time.perf_counter() - t
                assert n == size, (name, n)
                speeds[name].append(size / MiB / wall)
                first_byte[name].append(headers_in / wall)
                body_speeds[name].append(size / MiB / (wall - headers_in))
                cpu_per_gib[name].append((time.process_time() - cpu) / gib)
                served = cpu_seconds(server) - server_cpu
                server_cpu_per_gib[name].append(served / gib)
                server_busy[name].append(served / wall)
                print(".", end="", flush=True)
        print()
        # Client CPU per GiB moves less than wall time with the load of a shared machine.
        out["get_cpu_s_per_gib"] = {name: statistics.median(v) for name, v in cpu_per_gib.items()}
        out["get_mb_s"] = {name: statistics.median(v) for name, v in speeds.items()}
        out["server_cpu_s_per_gib"] = {name: statistics.median(v) for name, v in server_cpu_per_gib.items()}
        #: moto's CPU time over the GET's wall time: ~1.0 means moto is the bottleneck.
        out["server_busy"] = {name: statistics.median(v) for name, v in server_busy.items()}
        #: The share of a GET's wall time spent before its headers arrive: moto reads the whole
        #: object before it answers, and no client can do anything meanwhile.
        out["before_headers"] = {name: statistics.median(v) for name, v in first_byte.items()}
        out["body_mb_s"] = {name: statistics.median(v) for name, v in body_speeds.items()}
        out["get_paired_ratio"] = {
            name: statistics.median(f / r for f, r in zip(speeds[name], speeds["raw"], strict=True))
            for name in speeds
            if name != "raw"
        }
        out["get_runs_mb_s"] = {name: [round(x, 1) for x in v] for name, v in speeds.items()}
        out["rss"] = {
            "read_raw (lean)": child_rss(endpoint, bucket, key, "read"),
            "read_raw (full)": child_rss(endpoint, bucket, key, "read-full"),
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

    store = S3Store(settings(endpoint, lean=mode != "read-full"), container=bucket, create_container=False)
    async with store:
        ref = f"s3://{bucket}/{key}"
        # Warm the client (imports, handlers, a connection) before taking the baseline.
        await store.head(ref)
        gc.collect()
        baseline = proc.memory_info().rss
        baseline_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        if mode in ("read", "read-full"):
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


# -- a keep-alive S3 for the clients' own cost ----------------------------------------------------------------


def serve_keepalive(port: int) -> None:
    """A minimal in-memory S3 (buckets, PUT/GET/HEAD of whole objects, no signature checks) that
    keeps connections alive, as S3 does and moto's Werkzeug server does not."""
    import hashlib
    from email.utils import formatdate

    from aiohttp import web

    objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}
    buckets: set[str] = set()

    def missing(code: str) -> web.Response:
        text = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>x</Message></Error>'
        return web.Response(status=404, text=text, content_type="application/xml")

    async def handle(request: web.Request) -> web.Response:
        bucket, _, key = request.match_info["tail"].partition("/")
        if not key:
            if request.method == "PUT":
                buckets.add(bucket)
                return web.Response()
            return web.Response() if bucket in buckets else missing("NoSuchBucket")
        if request.method == "PUT":
            body = await request.read()
            headers = {
                "ETag": f'"{hashlib.md5(body).hexdigest()}"',
                "Last-Modified": formatdate(usegmt=True),
                "Content-Type": request.headers.get("Content-Type", "binary/octet-stream"),
            }
            headers.update((k, v) for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-"))
            objects[(bucket, key)] = (body, headers)
            return web.Response(headers={"ETag": headers["ETag"]})
        found = objects.get((bucket, key))
        if found is None:
            return missing("NoSuchKey")
        body, headers = found
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(body))})
        return web.Response(body=body, headers=headers)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


@contextmanager
def keepalive_server() -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, os.path.abspath(__file__), "--serve-keepalive", str(port)]
    with run_server(argv, http_ready(f"http://{HOST}:{port}/"), port=port) as server:
        yield server.endpoint


# -- main ---------------------------------------------------------------------------------------------------


def print_small(small: dict[str, Any], title: str) -> None:
    print(f"\n{title}")
    print("  client CPU per operation (ms), median; x raw / x obstore = paired ratios (median over")
    print("  repetitions of this implementation / that one within the same repetition); ops/s = wall")
    for op in OPS:
        for impl in IMPLS:
            name = f"{impl} {op}"
            if name not in small:
                continue
            row = small[name]
            ratios = "".join(
                f"   x {other} {row[f'paired_vs_{other}']:5.2f}"
                for other in ("raw", "obstore")
                if f"paired_vs_{other}" in row
            )
            print(f"  {impl:<10} {op:<13} {row['cpu_ms_per_op']:7.3f} ms {row['ops_per_s']:7.0f} ops/s{ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1000, help="small objects per batch (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--large-mib", type=int, default=256, help="large object size in MiB (default 256)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions, at least 3 (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-small", action="store_true", help="only the large object (and --keepalive)")
    parser.add_argument(
        "--keepalive", action="store_true", help="also run the small objects on a keep-alive in-memory S3"
    )
    parser.add_argument(
        "--rss-child", nargs=5, metavar=("MODE", "ENDPOINT", "BUCKET", "KEY", "SIZE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-keepalive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        mode, endpoint, bucket, key, size = args.rss_child
        print(json.dumps(asyncio.run(rss_child(mode, endpoint, bucket, key, int(size)))))
        return
    if args.serve_keepalive:
        serve_keepalive(args.serve_keepalive)
        return
    reps = max(3, args.reps)
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    keepalive = None
    with run_server(argv, http_ready(f"http://{HOST}:{port}/moto-api/"), port=port) as server:
        print(f"moto on {server.endpoint}; {args.ops} x 4 KiB at concurrency {args.concurrency}, {reps} reps")
        small = None
        if not args.skip_small:
            small = asyncio.run(small_objects(server.endpoint, args.ops, args.concurrency, reps))
        overhead = asyncio.run(own_overhead(20_000))
        large = None
        if not args.skip_large:
            large = asyncio.run(large_object(server.endpoint, args.large_mib * MiB, reps, server.process.pid))
    if args.keepalive:
        with keepalive_server() as endpoint:
            print(f"keep-alive in-memory S3 on {endpoint}")
            keepalive = asyncio.run(small_objects(endpoint, args.ops, args.concurrency, reps))

    if small is not None:
        print_small(small, "Small objects on moto (a new connection per request: Werkzeug closes every one)")
    if keepalive is not None:
        print_small(keepalive, "Small objects on the keep-alive in-memory S3 (the clients' own cost)")
    print("\nS3Store's own CPU per operation (client stubbed, no I/O; deterministic, unlike the above)")
    for op, us in overhead.items():
        share = ""
        if small is not None:
            share = f" = {us / 1e3 / small[f'raw {op}']['cpu_ms_per_op']:5.1%} of the raw client's CPU per op"
        print(f"  {op:<13} {us:6.1f} us{share}")
    if large is not None:
        print(f"\n{args.large_mib} MiB object: multipart write {large['write_mb_s']:.0f} MiB/s (moto-bound)")
        print("  streamed GET   MiB/s  x raw  waiting for headers  body MiB/s  client CPU s/GiB  moto CPU s/GiB")
        for name, speed in large["get_mb_s"].items():
            ratio = large["get_paired_ratio"].get(name, 1.0)
            print(
                f"  {name:<12} {speed:7.0f}  {ratio:5.2f}  {large['before_headers'][name]:19.0%}"
                f"  {large['body_mb_s'][name]:10.0f}  {large['get_cpu_s_per_gib'][name]:16.3f}"
                f"  {large['server_cpu_s_per_gib'][name]:14.3f}"
            )
        print(
            "  (waiting for headers: the share of the GET's time before the response's headers came in;\n"
            "   moto reads the whole object before it answers, so that part is the server's alone)"
        )
        for what, rss in large["rss"].items():
            ru = rss["ru_maxrss_above_baseline_mib"]
            cross_check = f"; ru_maxrss: {ru:.1f} MiB" if ru is not None else ""
            target = " (target <= 64 MiB)" if what.startswith("read_raw") else ""
            print(f"  peak RSS above baseline, {what}: {rss['peak_above_baseline_mib']:.1f} MiB{target}{cross_check}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"small": small, "keepalive": keepalive, "overhead_us": overhead, "large": large}, f, indent=2)


if __name__ == "__main__":
    main()
