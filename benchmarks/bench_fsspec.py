"""flytestore's fsspec filesystem (``flytestore.fsspec.DataStoreFileSystem``) beside the fsspec
filesystems a user would pick instead: s3fs, gcsfs, adlfs and obstore's fsspec layer
(``obstore.fsspec.FsspecStore``), against the same local servers in one run.

    python benchmarks/bench_fsspec.py                       # full sizes, s3, gcs and azure
    python benchmarks/bench_fsspec.py --backends s3 --large-mib 64 --parquet-mb 50 --reps 2

Per backend (moto, fake-gcs-server, Azurite; started as ``benchmarks/suite.py`` starts them):

- ``cat_file`` of 4 KiB objects, one at a time: client CPU per operation (``time.process_time``,
  every thread of the client; the servers are other processes) and operations per second;
- ``cat_ranges`` of 1,000 random 64 KiB ranges of one object, in one call: client CPU and MiB/s
  of ranges returned (on S3 the object is 8 MiB: moto copies the whole object for every ranged
  GET, as ``suite.py`` notes);
- ``cat_file`` of one 256 MiB object, and the same object read through ``fs.open()`` in 1 MiB
  reads, each in a fresh child process: MiB/s, client CPU, and the peak RSS above the child's
  RSS just before the read (``VmHWM`` reset through ``/proc/self/clear_refs``);
- ``pyarrow.parquet.read_table(path, filesystem=fs)`` of a 200 MB Parquet file (random int64 and
  float64 columns), in a fresh child process: MiB/s of the file and client CPU.

The in-process figures use each filesystem's coroutine API (``asynchronous=True``) on one loop;
the children use the synchronous API, as pandas and pyarrow do. Every figure is repeated
(``--reps``), libraries interleaved and their order rotated each repetition; a cell is the median
with (min-max). Ratios are flytestore / peer of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import peers as P  # noqa: E402
import suite as S  # noqa: E402

from flytestore.units import KiB, MiB  # noqa: E402

FLY = "flytestore.fsspec"
OBS = "obstore.fsspec"
#: backend -> the filesystems measured there, flytestore's first.
LIBS = {
    "s3": [FLY, "s3fs", OBS],
    "gcs": [FLY, "gcsfs", OBS],
    "azure": [FLY, "adlfs", OBS],
}


# -- the filesystems ---------------------------------------------------------------------------------


def make_fs(t: P.Target, lib: str, asynchronous: bool) -> Any:
    """``lib``'s filesystem for the target, as a user of that library would build it."""
    if lib == FLY:
        from flytestore.fsspec import DataStoreFileSystem

        return DataStoreFileSystem(config=P.flytestore_config(t), asynchronous=asynchronous, skip_instance_cache=True)
    if lib == "s3fs":
        import s3fs

        return s3fs.S3FileSystem(
            key=t.access_key,
            secret=t.secret_key,
            endpoint_url=t.endpoint,
            client_kwargs={"region_name": t.region},
            config_kwargs={"max_pool_connections": P.POOL},
            asynchronous=asynchronous,
            skip_instance_cache=True,
        )
    if lib == "gcsfs":
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # see peers.Gcsfs
        import gcsfs

        return gcsfs.GCSFileSystem(
            endpoint_url=t.endpoint, token="anon", asynchronous=asynchronous, skip_instance_cache=True
        )
    if lib == "adlfs":
        import adlfs

        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={t.account};AccountKey={t.account_key};"
            f"BlobEndpoint={t.endpoint};"
        )
        return adlfs.AzureBlobFileSystem(connection_string=conn, asynchronous=asynchronous, skip_instance_cache=True)
    if lib == OBS:
        from obstore.fsspec import FsspecStore

        client = {"allow_http": True, "pool_max_idle_per_host": str(P.POOL)}
        if t.backend == "s3":
            config = {
                "endpoint": t.endpoint,
                "access_key_id": t.access_key,
                "secret_access_key": t.secret_key,
                "region": t.region,
                "virtual_hosted_style_request": False,
            }
            return FsspecStore("s3", config=config, client_options=client, asynchronous=asynchronous)
        if t.backend == "gcs":
            config = {"service_account_key": P.fake_gcs_service_account(t.endpoint)}
            return FsspecStore("gs", config=config, client_options=client, asynchronous=asynchronous)
        config = {"account_name": t.account, "account_key": t.account_key, "endpoint": t.endpoint}
        return FsspecStore("abfs", config=config, client_options=client, asynchronous=asynchronous)
    raise ValueError(lib)


def path_of(t: P.Target, lib: str, key: str) -> str:
    if lib == FLY:
        return f"{P.flytestore_base(t)}/{key}"
    if lib == OBS:
        return f"{ {'s3': 's3', 'gcs': 'gs', 'azure': 'abfs'}[t.backend] }://{t.bucket}/{key}"
    return f"{t.bucket}/{key}"


async def open_fs(fs: Any, lib: str) -> None:
    if lib == "s3fs":
        fs._bench_client = await fs.set_session()
    elif lib == "gcsfs":
        await fs._set_session()


async def close_fs(fs: Any, lib: str) -> None:
    if lib == FLY:
        await fs.aclose()
    elif lib == "s3fs":
        await fs._bench_client.close()
    elif lib == "gcsfs":
        await fs.session.close()
    elif lib == "adlfs":
        await fs.service_client.close()
        for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
            info = finalizer.peek()
            if info is not None and info[0] is fs:
                finalizer.detach()


# -- the child process: one large read -------------------------------------------------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    t, lib, mode, key = P.Target(**spec["target"]), spec["lib"], spec["mode"], spec["key"]
    fs = make_fs(t, lib, asynchronous=False)
    path = path_of(t, lib, key)
    fs.cat_file(path, start=0, end=1)  # warm-up: imports, credentials, a connection
    if mode == "parquet":
        import pyarrow.parquet as pq

        pq.read_metadata(path, filesystem=fs)
    gc.collect()
    baseline = (S._status_kib("VmRSS") or 0) * KiB
    exact = S._reset_peak() and S._status_kib("VmHWM") is not None
    if not exact:
        raise RuntimeError("no VmHWM / clear_refs: this benchmark needs Linux")
    cpu, wall = time.process_time(), time.perf_counter()
    if mode == "cat":
        n = len(fs.cat_file(path))
    elif mode == "stream":
        n = 0
        with fs.open(path, "rb", block_size=8 * MiB) as f:
            while chunk := f.read(MiB):
                n += len(chunk)
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(path, filesystem=fs).num_rows
        if rows != spec["rows"]:
            raise RuntimeError(f"{rows} rows, expected {spec['rows']}")
        n = spec["size"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = (S._status_kib("VmHWM") or 0) * KiB
    if n != spec["size"]:
        raise RuntimeError(f"read {n} bytes, expected {spec['size']}")
    out = {"wall_s": wall, "cpu_s": cpu, "mib_s": n / MiB / wall, "peak_rss_mib": (peak - baseline) / MiB}
    if mode == "cat":  # cat_file returns the whole object: what it holds beyond that result
        out["beyond_result_mib"] = out["peak_rss_mib"] - n / MiB
    return out


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"child exited with {done.returncode}: {lines[-1][:300]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- one backend -------------------------------------------------------------------------------------


def parquet_file(mb: int, directory: str) -> tuple[str, int]:
    """A Parquet file of about ``mb`` MB of random int64 and float64 columns; (path, rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = mb * 1_000_000 // 16
    rng = np.random.default_rng(42)
    table = pa.table({"i": rng.integers(0, 2**62, rows), "f": rng.random(rows)})
    path = os.path.join(directory, "data.parquet")
    pq.write_table(table, path, compression="none")
    return path, rows


async def run_backend(t: P.Target, args: argparse.Namespace, results: dict[str, Any]) -> None:
    await S.create_bucket(t)
    libs = [lib for lib in LIBS[t.backend] if lib in args.libs]
    fss: dict[str, Any] = {}
    for lib in libs:
        try:
            fss[lib] = make_fs(t, lib, asynchronous=True)
            await open_fs(fss[lib], lib)
        except Exception as err:
            print(f"  ! {lib}: {type(err).__name__}: {err}")
            fss.pop(lib, None)
    writer = fss[FLY]
    out = results.setdefault(t.backend, {})

    def add(op: str, lib: str, **values: float) -> None:
        out.setdefault(op, {}).setdefault(lib, []).append(values)

    # Seeding (not timed), through flytestore's filesystem: every library reads the same objects.
    small = [f"small/{i:05d}" for i in range(args.small_n)]
    payload = os.urandom(4 * KiB)
    # One write first: the filesystem opens its DataStore before the concurrent writes.
    await writer._pipe_file(path_of(t, FLY, small[0]), payload)
    await S.run_workers(len(small), 32, lambda i: writer._pipe_file(path_of(t, FLY, small[i]), payload))
    large_size = args.large_mib * MiB
    await writer._pipe_file(path_of(t, FLY, "large.bin"), os.urandom(large_size))
    if t.backend == "s3":
        range_key, range_size = "range.bin", args.s3_range_object_mib * MiB
        await writer._pipe_file(path_of(t, FLY, range_key), os.urandom(range_size))
    else:
        range_key, range_size = "large.bin", large_size
    with tempfile.TemporaryDirectory() as tmp:
        local, rows = parquet_file(args.parquet_mb, tmp)
        parquet_size = Path(local).stat().st_size  # noqa: ASYNC240 (setup, not timed)
        await writer._put_file(local, path_of(t, FLY, "data.parquet"))
    rng = random.Random(1234)
    range_len = args.range_kib * KiB
    starts = [rng.randrange(0, range_size - range_len) for _ in range(args.ranges)]

    async def smalls(fs: Any, lib: str, n: int) -> None:
        for key in small[:n]:
            if len(await fs._cat_file(path_of(t, lib, key))) != 4 * KiB:
                raise RuntimeError("short read")

    async def ranges(fs: Any, lib: str, n: int) -> None:
        path = path_of(t, lib, range_key)
        got = await fs._cat_ranges([path] * n, starts[:n], [s + range_len for s in starts[:n]], on_error="raise")
        if any(len(g) != range_len for g in got):
            raise RuntimeError("a range of the wrong length")

    # Warm-up: every library, every in-process operation, a few times.
    for lib, fs in fss.items():
        await smalls(fs, lib, min(20, args.small_n))
        await ranges(fs, lib, min(16, args.ranges))

    for rep in range(args.reps):
        order = S.order_for(list(fss), rep)
        for lib in order:
            wall, cpu = await S.timed(lambda lib=lib: smalls(fss[lib], lib, args.small_n))
            add("cat_file 4 KiB", lib, cpu_us=cpu / args.small_n * 1e6, ops_s=args.small_n / wall)
        for lib in order:
            try:
                wall, cpu = await S.timed(lambda lib=lib: ranges(fss[lib], lib, args.ranges))
            except Exception as err:
                print(f"  ! {lib} cat_ranges: {type(err).__name__}: {str(err)[:200]}")
                continue
            add(
                f"cat_ranges {args.ranges} x {args.range_kib} KiB",
                lib,
                cpu_ms=cpu * 1e3,
                mib_s=args.ranges * range_len / MiB / wall,
            )
        for mode, key, size, extra in (
            ("cat", "large.bin", large_size, {}),
            ("stream", "large.bin", large_size, {}),
            ("parquet", "data.parquet", parquet_size, {"rows": rows}),
        ):
            for lib in order:
                spec = {"target": t.__dict__, "lib": lib, "mode": mode, "key": key, "size": size, **extra}
                try:
                    r = run_child(spec)
                except Exception as err:
                    print(f"  ! {lib} {mode}: {err}")
                    continue
                name = {
                    "cat": f"cat_file {args.large_mib} MiB",
                    "stream": f"open().read() {args.large_mib} MiB",
                    "parquet": f"pq.read_table {parquet_size / 1e6:.0f} MB",
                }[mode]
                add(name, lib, **r)
        print(f"  rep {rep + 1}/{args.reps} done", flush=True)

    for lib, fs in fss.items():
        await close_fs(fs, lib)


# -- the report --------------------------------------------------------------------------------------


def med(samples: list[dict[str, float]], field: str) -> tuple[float, float, float]:
    values = [s[field] for s in samples]
    return statistics.median(values), min(values), max(values)


def fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


FIELDS = {"cpu_us": "client CPU µs/op", "ops_s": "ops/s", "cpu_ms": "client CPU ms", "mib_s": "MiB/s"}
FIELDS |= {"cpu_s": "client CPU s", "peak_rss_mib": "peak RSS MiB above baseline"}
FIELDS |= {"beyond_result_mib": "of which beyond the returned bytes, MiB"}


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for backend, ops in results.items():
        for op, by_lib in ops.items():
            libs = list(by_lib)
            fields = [f for f in FIELDS if f in next(iter(by_lib.values()))[0]]
            lines += [f"\n**{backend}: {op}**\n", "| figure | " + " | ".join(libs) + " |"]
            lines.append("|---" * (len(libs) + 1) + "|")
            for field in fields:
                cells = []
                fly = med(by_lib[FLY], field)[0] if FLY in by_lib else None
                for lib in libs:
                    m, lo, hi = med(by_lib[lib], field)
                    cell = f"{fmt(m)} ({fmt(lo)}{S.EN}{fmt(hi)})"
                    if lib != FLY and fly is not None and m:
                        cell += f" · {fly / m:.2f}{S.TIMES}"
                    cells.append(cell)
                lines.append(f"| {FIELDS[field]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["\n**Targets**\n"]
    x = S.TIMES
    for backend, ops in results.items():
        small = ops.get("cat_file 4 KiB", {})
        peer = {"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs"}[backend]
        if FLY in small and peer in small:
            r = med(small[FLY], "cpu_us")[0] / med(small[peer], "cpu_us")[0]
            lines.append(
                f"- {backend}: client CPU per 4 KiB cat_file {r:.2f}{x} {peer}'s (<= 0.5): {verdict(r <= 0.5)}"
            )
        large = ("cat_file " + str(args.large_mib), "open()", "pq.read_table")
        for op, by_lib in ops.items():
            if op.startswith(large) and FLY in by_lib and OBS in by_lib:
                r = med(by_lib[FLY], "mib_s")[0] / med(by_lib[OBS], "mib_s")[0]
                lines.append(f"- {backend}: {op} throughput {r:.2f}{x} obstore.fsspec's (>= 1.0): {verdict(r >= 1.0)}")
        for op, field, what in (
            (f"cat_file {args.large_mib} MiB", "beyond_result_mib", "above baseline beyond the returned bytes"),
            (f"open().read() {args.large_mib} MiB", "peak_rss_mib", "above baseline"),
        ):
            if FLY in ops.get(op, {}):
                rss = med(ops[op][FLY], field)[0]
                lines.append(f"- {backend}: {op} peak RSS {rss:.0f} MiB {what} (< 64): {verdict(rss < 64)}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="s3,gcs,azure", type=lambda s: s.split(","))
    p.add_argument(
        "--libs", default=",".join(sorted({lib for v in LIBS.values() for lib in v})), type=lambda s: s.split(",")
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--small-n", type=int, default=200)
    p.add_argument("--ranges", type=int, default=1000)
    p.add_argument("--range-kib", type=int, default=64)
    p.add_argument("--s3-range-object-mib", type=int, default=8)
    p.add_argument("--large-mib", type=int, default=256)
    p.add_argument("--parquet-mb", type=int, default=200)
    p.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the client to CPU 0 and servers to CPU 1"
    )
    p.add_argument("--json", help="write every sample here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        os._exit(0)  # obstore's Rust runtime can abort in interpreter teardown (see suite.py)
    args.pin = args.pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if args.pin:
        os.sched_setaffinity(0, {0})
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for backend in args.backends:
        print(f"{backend} ({S.SERVERS[backend]}):", flush=True)
        with S.start_backend(backend, args.pin, {}) as target:
            asyncio.run(run_backend(target, args, results))
    text = report(results) + "\n" + targets(results, args)
    print(text)
    print(f"\ndone in {(time.perf_counter() - started) / 60:.1f} min; load {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
