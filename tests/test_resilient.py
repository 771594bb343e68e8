"""ResilientStore over a MemoryStore that fails on demand: the budget, retries, resumed reads and listings.

The same behaviour against real servers, with connections cut by a proxy, is in the fault tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flytestore import (
    AlreadyExistsError,
    Config,
    DataStore,
    MemoryStore,
    Metadata,
    NotFoundError,
    Options,
    PermissionDeniedError,
    PreconditionFailedError,
    ResilientStore,
    RetryPolicy,
    TransientError,
)
from flytestore.config import RetriesConfig
from flytestore.layers.resilient import Budget
from flytestore.rawstore import ByteStream, ListEntry
from flytestore.retry import DEFAULT_RETRIES, Retries, policy_of, sharing

from .servers_redis import RedisServer

FAST = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, total_timeout=None)


class FlakyStore(MemoryStore):
    """A MemoryStore whose operations fail as told, and whose streams are not in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, list[BaseException]] = {}
        self.calls: dict[str, int] = {}
        #: Streams break with a TransientError after this many bytes (once each listed cut).
        self.cuts: list[int] = []
        self.etag_override: str | None = None
        self.active = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None
        self.opened = 0
        self.closes = 0

    async def _enter(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
        finally:
            self.active -= 1
        errors = self.fail.get(op)
        if errors:
            raise errors.pop(0)

    async def head(self, ref: str) -> Metadata:
        await self._enter("head")
        return await super().head(ref)

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        await self._enter("read_bytes")
        return await super().read_bytes(ref, offset, length, max_size)

    async def write_raw(
        self, ref: str, data: object, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        await self._enter("write_raw")
        return await super().write_raw(ref, data, size, options)  # type: ignore[arg-type]

    async def delete(self, ref: str) -> None:
        await self._enter("delete")
        await super().delete(ref)

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        await self._enter("read_raw")
        inner = await super().read_raw(ref, offset, length)
        data = await inner.read()
        meta = inner.metadata
        if self.etag_override is not None and meta is not None and offset > 0:
            meta = Metadata(exists=True, size=meta.size, etag=self.etag_override)
        cut = self.cuts.pop(0) if self.cuts else None

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1000):
                if cut is not None and start >= cut:
                    raise TransientError("connection reset by peer (simulated)")
                yield data[start : start + 1000]

        self.opened += 1
        stream = ByteStream(chunks(), size=len(data), metadata=meta)
        stream.on_close(self._closed)
        return stream

    def _closed(self) -> None:
        self.closes += 1


def resilient(inner: FlakyStore, *, budget: int = 0, retries: RetryPolicy = FAST) -> ResilientStore:
    return ResilientStore(inner, budget=Budget(budget), retries=retries)


# -- the budget ---------------------------------------------------------------------------------


async def test_budget_bounds_operations_in_flight() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"x")
    store = resilient(inner, budget=3)
    inner.gate = asyncio.Event()
    tasks = [asyncio.create_task(store.head("mem://b/k")) for _ in range(50)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert inner.active == 3
    assert store.budget.in_flight == 3
    inner.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(meta.exists for meta in results)
    assert inner.peak == 3
    assert store.budget.in_flight == 0


async def test_cancelled_waiters_do_not_leak_slots() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"x")
    store = resilient(inner, budget=2)
    inner.gate = asyncio.Event()
    running = [asyncio.create_task(store.head("mem://b/k")) for _ in range(2)]
    waiting = [asyncio.create_task(store.head("mem://b/k")) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    inner.gate.set()
    await asyncio.gather(*running)
    assert store.budget.in_flight == 0
    inner.gate = None
    assert all(m.exists for m in await asyncio.gather(*(store.head("mem://b/k") for _ in range(10))))
    assert store.budget.in_flight == 0


async def test_open_streams_do_not_hold_the_budget() -> None:
    """Copying streams into writes through a budget of one must not deadlock."""
    inner = FlakyStore()
    await inner.write_raw("mem://b/src", b"a" * 5000)
    store = resilient(inner, budget=1)
    stream = await store.read_raw("mem://b/src")
    meta = await asyncio.wait_for(store.write_raw("mem://b/dst", stream, size=stream.size), 5)
    assert meta.size == 5000
    assert await inner.read_bytes("mem://b/dst") == b"a" * 5000


async def test_datastore_backends_share_the_configured_budget(tmp_path: Path, redis_server: RedisServer) -> None:
    config = Config(
        type="local",
        container="bucket",
        local={"path": str(tmp_path)},
        redis={"addr": f"127.0.0.1:{redis_server.port}"},
        limits={"max_concurrent_operations": 4},
    )
    async with DataStore(config) as store:
        budget = store.router.primary.budget  # type: ignore[attr-defined]
        assert budget.capacity == 4
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, budget.in_flight)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        run = uuid.uuid4().hex
        refs = [f"file://bucket/{run}/k{i}" for i in range(100)]
        refs += [f"redis://127.0.0.1:{redis_server.port}/{run}/k{i}" for i in range(100)]
        await asyncio.gather(*(store.write_raw(ref, ref.encode()) for ref in refs))
        values = await asyncio.gather(*(store.read_bytes(ref) for ref in refs))
        watcher.cancel()
        assert values == [ref.encode() for ref in refs]
        assert peak == 4  # reached, never passed
        assert (await store.router.backend_for(refs[-1])).budget is budget  # type: ignore[attr-defined]
        assert budget.in_flight == 0


# -- retries --------------------------------------------------------------------------------------


async def test_transient_errors_are_retried_until_success() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"value")
    inner.fail["read_bytes"] = [TransientError("503 SlowDown"), TransientError("timeout")]
    assert await resilient(inner).read_bytes("mem://b/k") == b"value"
    assert inner.calls["read_bytes"] == 3


@pytest.mark.parametrize("error", [NotFoundError("404"), PermissionDeniedError("403"), AlreadyExistsError("412")])
async def test_other_errors_are_never_retried(error: Exception) -> None:
    inner = FlakyStore()
    inner.fail["head"] = [error]
    with pytest.raises(type(error)):
        await resilient(inner).head("mem://b/k")
    assert inner.calls["head"] == 1


async def test_retries_stop_after_the_attempts() -> None:
    inner = FlakyStore()
    inner.fail["head"] = [TransientError(f"down {i}") for i in range(10)]
    with pytest.raises(TransientError, match="down 3"):
        await resilient(inner).head("mem://b/k")
    assert inner.calls["head"] == 4


async def test_retries_stop_at_the_time_budget() -> None:
    inner = FlakyStore()
    inner.fail["head"] = [TransientError("down") for _ in range(1000)]
    policy = RetryPolicy(attempts=1000, base_delay=0.02, max_delay=0.02, total_timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransientError):
        await resilient(inner, retries=policy).head("mem://b/k")
    assert loop.time() - start < 1.0
    assert inner.calls["head"] < 100


async def test_byte_writes_are_retried_but_streams_and_create_only_are_not() -> None:
    inner = FlakyStore()
    store = resilient(inner)
    inner.fail["write_raw"] = [TransientError("reset")]
    await store.write_raw("mem://b/bytes", b"payload")
    assert await inner.read_bytes("mem://b/bytes") == b"payload"

    async def body() -> AsyncIterator[bytes]:
        yield b"payload"

    inner.fail["write_raw"] = [TransientError("reset")]
    with pytest.raises(TransientError):
        await store.write_raw("mem://b/stream", body())
    inner.fail["write_raw"] = [TransientError("reset")]
    with pytest.raises(TransientError):
        await store.write_raw("mem://b/once", b"x", options=Options(if_not_exists=True))
    assert not (await inner.head("mem://b/stream")).exists
    assert not (await inner.head("mem://b/once")).exists


async def test_a_delete_whose_response_was_lost_counts_as_done() -> None:
    class LostResponse(FlakyStore):
        async def delete(self, ref: str) -> None:
            first = self.calls.get("delete", 0) == 0
            await super().delete(ref)
            if first:
                raise TransientError("connection dropped after the server deleted it")

    inner = LostResponse()
    await inner.write_raw("mem://b/k", b"x")
    await resilient(inner).delete("mem://b/k")
    assert not (await inner.head("mem://b/k")).exists
    with pytest.raises(NotFoundError):
        await resilient(inner).delete("mem://b/k")  # a first attempt that finds nothing still says so


# -- resumed reads --------------------------------------------------------------------------------


async def test_a_dropped_read_resumes_where_it_stopped() -> None:
    inner = FlakyStore()
    data = bytes(range(256)) * 40  # 10,240 bytes, streamed in 1,000-byte chunks
    await inner.write_raw("mem://b/k", data)
    inner.cuts = [3000, 2000]  # the first stream breaks after 3,000 bytes, the resumed one after 2,000 more
    stream = await resilient(inner).read_raw("mem://b/k")
    assert stream.size == len(data)
    assert await stream.read() == data
    assert inner.calls["read_raw"] == 3
    assert inner.closes == inner.opened == 3  # every broken stream was closed, not left to the GC


async def test_a_ranged_read_resumes_within_its_range() -> None:
    inner = FlakyStore()
    data = bytes(range(256)) * 40
    await inner.write_raw("mem://b/k", data)
    inner.cuts = [2000]
    stream = await resilient(inner).read_raw("mem://b/k", offset=1000, length=5000)
    assert await stream.read() == data[1000:6000]


async def test_an_object_changed_between_attempts_is_never_spliced() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"v" * 10_000)
    inner.cuts = [4000]
    inner.etag_override = "a-different-version"
    stream = await resilient(inner).read_raw("mem://b/k")
    got = bytearray()
    with pytest.raises(PreconditionFailedError, match="changed while it was being read"):
        async for chunk in stream:
            got += chunk
    assert len(got) == 4000


async def test_a_read_that_keeps_failing_gives_up() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"v" * 10_000)
    inner.cuts = [1000, 0, 0, 0, 0, 0]
    stream = await resilient(inner).read_raw("mem://b/k")
    with pytest.raises(TransientError):
        await stream.read()


async def test_without_retries_streams_pass_through() -> None:
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"v" * 5000)
    inner.cuts = [1000]
    stream = await resilient(inner, retries=RetryPolicy(attempts=1)).read_raw("mem://b/k")
    with pytest.raises(TransientError):
        await stream.read()


# -- listings ---------------------------------------------------------------------------------------


async def test_a_listing_resumes_after_the_last_key_it_yielded() -> None:
    class FlakyList(FlakyStore):
        broken = 2

        async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
            n = 0
            async for entry in super().list(ref, page_size=page_size):
                if self.broken and n == 7:
                    self.broken -= 1
                    raise TransientError("listing dropped")
                n += 1
                yield entry

    inner = FlakyList()
    keys = [f"mem://b/p/{i:03d}" for i in range(20)]
    for ref in keys:
        await inner.write_raw(ref, b"x")
    listed = [entry.ref async for entry in resilient(inner).list("mem://b/p")]
    assert listed == keys


# -- one budget for the attempts at one object ----------------------------------------------------


async def test_retries_inside_a_shared_budget_count_against_it() -> None:
    """Inside ``sharing``, every retry of every operation is counted by the one counter: a
    head that needed a retry leaves a read two more attempts of the policy's four, not four."""
    inner = FlakyStore()
    await inner.write_raw("mem://b/k", b"value")
    inner.calls.clear()
    store = resilient(inner)  # FAST: 4 attempts
    inner.fail["head"] = [TransientError("503 SlowDown")]
    inner.fail["read_bytes"] = [TransientError(f"503 SlowDown {i}") for i in range(10)]
    with sharing(Retries(FAST)) as retries:
        assert (await store.head("mem://b/k")).exists
        with pytest.raises(TransientError):
            await store.read_bytes("mem://b/k")
    assert inner.calls == {"head": 2, "read_bytes": 3}  # 4 failed attempts in all
    assert retries.count == 4
    inner.calls.clear()
    with pytest.raises(TransientError):
        await store.read_bytes("mem://b/k")  # outside the block: a budget of its own
    assert inner.calls["read_bytes"] == 4


async def test_a_layer_that_does_not_retry_never_draws_on_a_shared_budget() -> None:
    inner = FlakyStore()
    inner.fail["head"] = [TransientError("503 SlowDown") for _ in range(5)]
    with sharing(Retries(FAST)) as retries, pytest.raises(TransientError):
        await resilient(inner, retries=RetryPolicy(attempts=1)).head("mem://b/k")
    assert inner.calls["head"] == 1 and retries.count == 0


def test_one_default_policy() -> None:
    """The defaults are RetryPolicy's, once: the config's retries section and a DataStore's policy
    are the same."""
    assert RetryPolicy() == DEFAULT_RETRIES
    assert RetryPolicy.from_config(RetriesConfig()) == DEFAULT_RETRIES
    assert RetryPolicy.from_config(Config(type="mem").retries) == DEFAULT_RETRIES
    assert DataStore(Config(type="mem")).retry_policy == DEFAULT_RETRIES
    configured = DataStore(Config(type="mem", retries={"max_attempts": 3, "total_timeout": 0}))
    assert configured.retry_policy == RetryPolicy(attempts=3, total_timeout=None)
    assert policy_of(configured) == configured.retry_policy
    assert policy_of(resilient(FlakyStore())) == FAST
    assert policy_of(MemoryStore()) is None
