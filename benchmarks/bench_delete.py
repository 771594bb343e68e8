"""Bulk deletes on S3: ``delete_many`` (DeleteObjects, 1,000 keys a request) against one ``delete``
per object at the same concurrency, on a moto server started for the run.

Run ``python benchmarks/bench_delete.py`` (``--help`` for the count, concurrency and repetitions).
Each repetition writes ``--objects`` (5,000) small objects under a fresh prefix, then deletes them
both ways, the order alternating between repetitions:

- ``delete_many``: one ``DataStore.delete_many`` call over every reference (S3: DeleteObjects of
  1,000 keys, ``DELETE_REQUESTS_IN_FLIGHT`` requests at once);
- ``delete``: ``DataStore.delete`` of each object, ``--concurrency`` (32) at once: what a client
  without a bulk request does (``delete`` checks the object first, as flytestore reports a missing
  one, so it is two requests an object; ``--plain`` counts that baseline as the DeleteObject
  requests alone, through the raw client, for a fairer comparison).

Both go through the full DataStore stack (resilient, instrumented, routing, cache layers). It
prints the wall time of each, objects per second, and the ratio (median of ``--reps``, default 3).
Each run checks that every object is gone. The numbers come from a small shared VM: compare them
with each other, not with real S3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from flytestore import Config, DataStore  # noqa: E402
from tests.servers_s3 import MotoS3, start_moto  # noqa: E402


async def _fill(store: DataStore, refs: list[str], concurrency: int) -> None:
    pending = iter(refs)

    async def worker() -> None:
        for ref in pending:
            await store.write_raw(ref, b"x" * 64)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _one_by_one(store: DataStore, refs: list[str], concurrency: int, plain: bool) -> None:
    pending = iter(refs)
    client = None
    if plain:
        from flytestore.stores.s3 import S3Store

        inner = store.router.primary
        while not isinstance(inner, S3Store):
            inner = inner.inner  # type: ignore[attr-defined]
        client = inner.api.client

    async def worker() -> None:
        for ref in pending:
            if client is not None:
                bucket, key = ref[len("s3://") :].split("/", 1)
                await client.delete_object(Bucket=bucket, Key=key)
            else:
                await store.delete(ref)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _bulk(store: DataStore, refs: list[str]) -> None:
    results = await store.delete_many(refs)
    failed = [r for r in results if r is not None]
    if failed:
        raise SystemExit(f"delete_many failed for {len(failed)} objects: {failed[0]}")


async def _empty(store: DataStore, prefix: str) -> None:
    async for entry in store.list(prefix):
        raise SystemExit(f"left behind: {entry.ref}")


async def run(server: MotoS3, args: argparse.Namespace) -> None:
    bucket = f"bench-delete-{uuid.uuid4().hex[:8]}"
    config = Config.from_dict(
        {"type": "s3", "container": bucket, "stow": {"kind": "s3", "config": server.stow_config()}}
    )
    times: dict[str, list[float]] = {"delete_many": [], "delete": []}
    async with DataStore(config) as store:
        for rep in range(args.reps):
            order = ["delete_many", "delete"] if rep % 2 == 0 else ["delete", "delete_many"]
            for how in order:
                prefix = f"s3://{bucket}/{how}-{rep}"
                refs = [f"{prefix}/{i:06d}" for i in range(args.objects)]
                await _fill(store, refs, args.concurrency)
                start = time.perf_counter()
                if how == "delete_many":
                    await _bulk(store, refs)
                else:
                    await _one_by_one(store, refs, args.concurrency, args.plain)
                times[how].append(time.perf_counter() - start)
                await _empty(store, prefix)
    bulk, single = statistics.median(times["delete_many"]), statistics.median(times["delete"])
    print(f"{args.objects} objects on moto, median of {args.reps}")
    baseline = "DeleteObject each (raw client)" if args.plain else "DataStore.delete each"
    print(f"  delete_many (DeleteObjects)        {bulk:7.2f} s  {args.objects / bulk:8.0f} objects/s")
    print(f"  {baseline:<34} {single:7.2f} s  {args.objects / single:8.0f} objects/s  ({args.concurrency} at once)")
    print(f"  ratio: delete_many is {single / bulk:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=5000, help="objects deleted each way (default 5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="single deletes in flight (default 32)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the median is reported (default 3)")
    parser.add_argument(
        "--plain", action="store_true", help="baseline: one raw DeleteObject per object (no existence check)"
    )
    args = parser.parse_args()
    with start_moto() as server:
        asyncio.run(run(server, args))


if __name__ == "__main__":
    main()
