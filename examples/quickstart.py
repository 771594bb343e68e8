"""A tour of flytestore on local disk: no server, nothing to configure.

    python examples/quickstart.py [ROOT]

ROOT defaults to a fresh temporary directory (removed afterwards).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from google.protobuf import struct_pb2
from prometheus_client import CollectorRegistry, generate_latest

from flytestore import Config, Cursor, DataStore, ExceedsLimitError, Options, Scope

MiB = 1024 * 1024


async def generate(total: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    """A body of unknown length, produced chunk by chunk (think: an HTTP upload)."""
    for start in range(0, total, chunk):
        yield os.urandom(min(chunk, total - start))


async def main(root: str) -> None:
    config = Config(
        type="local",
        container="my-bucket",
        local={"path": root},
        cache={"max_size_mbs": 64},
        limits={"max_download_mbs": 2},
    )
    scope = Scope("flyte:storage", registry=CollectorRegistry())
    async with DataStore(config, scope=scope) as store:
        print(f"store root: {root}, base container: {store.base_container}")

        # References are built the way Flyte builds them.
        ref = store.construct_reference(store.base_container, "metadata", "proj", "dom", "exec-1", "inputs.pb")
        print(f"reference: {ref}  split: {ref.split()}")

        # Raw bytes.
        meta = await store.write_raw(store.construct_reference(store.base_container, "hello.txt"), b"hello, flyte")
        print(f"wrote hello.txt: size={meta.size} etag={meta.etag}")

        # Protobuf messages.
        msg = struct_pb2.Struct()
        msg.update({"workflow": "training", "epochs": 10})
        await store.write_protobuf(ref, msg)
        back = await store.read_protobuf(ref, struct_pb2.Struct())
        print(f"protobuf round trip ok: {dict(back)}")

        # Streaming a large object of unknown length in and out with bounded memory.
        big = store.construct_reference(store.base_container, "datasets", "blob.bin")
        total = 64 * MiB
        started = time.perf_counter()
        await store.write_raw(big, generate(total), options=Options(content_type="application/octet-stream"))
        written = time.perf_counter() - started
        print(f"streamed {total // MiB} MiB in {written:.2f}s ({total / MiB / written:.0f} MiB/s)")

        # The download limit (2 MiB here) refuses the whole object before its first byte...
        try:
            await store.read_raw(big)
        except ExceedsLimitError as err:
            print(f"download limit works: {err}")
        # ...while range reads of an allowed size go through.
        head = await store.read_bytes(big, offset=0, length=MiB)
        print(f"range read of the first MiB: md5 {hashlib.md5(head).hexdigest()}")

        # Listing, every page or one page at a time.
        for i in range(5):
            await store.write_raw(store.construct_reference(store.base_container, "runs", f"r{i}.json"), b"{}")
        async for entry in store.list(store.construct_reference(store.base_container, "runs")):
            print(f"  listed {entry.ref} ({entry.size} B)")
        page, cursor = await store.list_page(store.base_container, max_items=3, cursor=Cursor.start())
        print(f"first page of 3: {[str(r) for r in page]}, more: {not cursor.is_end()}")

        # The cache serves repeated small reads from memory.
        small = store.construct_reference(store.base_container, "hello.txt")
        for _ in range(3):
            await store.read_bytes(small)

        # Copy and delete.
        copy = store.construct_reference(store.base_container, "hello-copy.txt")
        await store.copy_raw(small, copy)
        await store.delete(copy)
        print(f"after delete, exists={(await store.head(copy)).exists}")

    wanted = ("cache_hit", "cache_miss", "write_ms_count", "read_open_ms_count")
    print("metrics:")
    for line in generate_latest(scope.registry).decode().splitlines():
        if not line.startswith("#") and any(w in line for w in wanted) and "_created" not in line:
            print(f"  {line}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="flytestore-demo-") as tmp:
            asyncio.run(main(tmp))
