"""Bulk transfer: copy_many and sync across schemes on real memory and local stores."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flytestore import (
    ByteStream,
    Config,
    DataStore,
    LocalStore,
    MemoryStore,
    Metadata,
    NotFoundError,
    Options,
    PermissionDeniedError,
    PreconditionFailedError,
    Scope,
    TransientError,
)
from flytestore.errors import InvalidArgumentError
from flytestore.layers.base import Layer
from flytestore.layers.resilient import ResilientStore
from flytestore.rawstore import ListEntry
from flytestore.streamcopy import stream_copy
from flytestore.transfer import ByteBudget, Progress, RetryPolicy, Summary, copy_many, sync

from .test_resilient import FlakyStore

FAST = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.005)


def scope() -> Scope:
    return Scope("flyte:storage", registry=CollectorRegistry())


def local(tmp_path: Path) -> DataStore:
    """A local primary store (file://c); mem:// references are routed to a memory backend."""
    return DataStore(Config(type="local", container="c", local={"path": str(tmp_path)}), scope=scope())


def content(i: int, size: int = 100) -> bytes:
    return (f"object {i}:".encode() * size)[:size]


async def fill(store: Any, prefix: str, n: int, size: int = 100) -> list[str]:
    refs = [f"{prefix}/obj-{i:04d}" for i in range(n)]
    await asyncio.gather(*(store.write_raw(ref, content(i, size)) for i, ref in enumerate(refs)))
    return refs


class Counting(Layer):
    """Counts concurrent copies."""

    def __init__(self, inner: Any, delay: float = 0.005) -> None:
        super().__init__(inner)
        self.delay = delay
        self.current = 0
        self.peak = 0

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            await asyncio.sleep(self.delay)
            return await self.inner.copy_raw(src, dst, options=options)
        finally:
            self.current -= 1


class Failing(Layer):
    """Raises ``make_error(...)`` on the first ``failures`` attempts of each copy, then lets it through."""

    def __init__(self, inner: Any, make_error: Any, failures: int) -> None:
        super().__init__(inner)
        self.make_error = make_error
        self.failures = failures
        self.attempts: dict[str, int] = {}

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        n = self.attempts[src] = self.attempts.get(src, 0) + 1
        if n <= self.failures:
            raise self.make_error(f"attempt {n} of {src}")
        return await self.inner.copy_raw(src, dst, options=options)


class Slow(Layer):
    """Streams each copy in small, slow pieces, so cancellation lands mid-write."""

    def __init__(self, inner: Any, piece: int = 4096, delay: float = 0.01) -> None:
        super().__init__(inner)
        self.piece = piece
        self.delay = delay
        self.started = 0

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        self.started += 1
        data = await self.inner.read_bytes(src)

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(data), self.piece):
                await asyncio.sleep(self.delay)
                yield data[start : start + self.piece]

        return await self.inner.write_raw(dst, pieces(), size=len(data))  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# copy_many


async def test_copy_many_mem_to_file_with_progress(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src/data", 200)
        pairs = [(src, f"file://c/dst/obj-{i:04d}") for i, src in enumerate(srcs)]
        seen: list[Progress] = []
        summary = await copy_many(store, pairs, concurrency=8, progress=seen.append)
        assert summary.ok and summary.copied == 200 and summary.skipped == 0
        assert summary.bytes == 200 * 100
        assert summary.seconds > 0 and summary.throughput > 0
        for i, (_, dst) in enumerate(pairs):
            assert await store.read_bytes(dst) == content(i)
        assert (tmp_path / "c" / "dst" / "obj-0199").read_bytes() == content(199)
        assert len(seen) == 200
        assert [p.objects_done for p in seen] == list(range(1, 201))
        assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(seen))
        assert all(a.bytes_total <= b.bytes_total for a, b in itertools.pairwise(seen))
        assert seen[-1].objects_total == 200 and seen[-1].bytes_done == seen[-1].bytes_total == 20_000
        assert all(p.failures == 0 for p in seen)


async def test_copy_many_file_to_mem_from_async_iterable(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "file://c/in", 20, size=3000)

        async def pairs() -> AsyncIterator[tuple[str, str]]:
            for i, src in enumerate(srcs):
                yield src, f"mem://out/x/{i}"

        summary = await copy_many(store, pairs(), concurrency=4)
        assert summary.ok and summary.copied == 20 and summary.bytes == 20 * 3000
        assert [await store.read_bytes(f"mem://out/x/{i}") for i in range(20)] == [content(i, 3000) for i in range(20)]


async def test_concurrency_bound(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 60)
        counting = Counting(store)
        summary = await copy_many(counting, [(s, s.replace("mem://src", "file://c/d")) for s in srcs], concurrency=8)
        assert summary.ok and summary.copied == 60
        assert counting.peak == 8


async def test_byte_budget_bound(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 30, size=1000)
        big = "mem://src/big"
        await store.write_raw(big, b"B" * 5000)  # larger than the whole budget: still copied
        srcs.append(big)
        counting = Counting(store)
        summary = await copy_many(
            counting,
            [(s, s.replace("mem://src", "file://c/d")) for s in srcs],
            concurrency=16,
            max_bytes_in_flight=2500,
        )
        assert summary.ok and summary.copied == 31 and summary.bytes == 30 * 1000 + 5000
        assert counting.peak == 2  # 2 x 1000 bytes fit in 2500, 3 do not
        assert await store.read_bytes("file://c/d/big") == b"B" * 5000


async def test_byte_budget_unit() -> None:
    budget = ByteBudget(10)
    assert await budget.acquire(6) == 6
    budget.release(6)
    held = await budget.acquire(100)
    assert held == 10 and budget.available == 0
    waiter = asyncio.ensure_future(budget.acquire(3))
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(held)
    assert budget.available == 10
    with pytest.raises(InvalidArgumentError):
        ByteBudget(0)


async def test_missing_source_is_reported_and_the_rest_succeed(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 10)
        srcs.insert(4, "mem://src/missing")
        pairs = [(s, s.replace("mem://src", "file://c/d")) for s in srcs]
        seen: list[Progress] = []
        summary = await copy_many(store, pairs, concurrency=3, progress=seen.append)
        assert not summary.ok and summary.copied == 10
        assert len(summary.failed) == 1
        src, dst, err = summary.failed[0]
        assert (src, dst) == ("mem://src/missing", "file://c/d/missing")
        assert isinstance(err, NotFoundError)
        assert not (await store.head("file://c/d/missing")).exists
        assert seen[-1].failures == 1 and seen[-1].objects_done == 11


async def test_transient_errors_are_retried(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 5)
        flaky = Failing(store, TransientError, failures=2)
        summary = await copy_many(flaky, [(s, s.replace("mem://src", "file://c/d")) for s in srcs], retries=FAST)
        assert summary.ok and summary.copied == 5
        assert flaky.attempts == dict.fromkeys(srcs, 3)
        for i in range(5):
            assert await store.read_bytes(f"file://c/d/obj-{i:04d}") == content(i)


async def test_retries_give_up_after_attempts(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 2)
        flaky = Failing(store, TransientError, failures=100)
        policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
        summary = await copy_many(flaky, [(s, s + "-copy") for s in srcs], retries=policy)
        assert summary.copied == 0 and len(summary.failed) == 2
        assert all(isinstance(f.error, TransientError) for f in summary.failed)
        assert flaky.attempts == dict.fromkeys(srcs, 3)


async def test_retries_stop_at_the_total_timeout(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        (src,) = await fill(store, "mem://src", 1)
        flaky = Failing(store, TransientError, failures=100)
        policy = RetryPolicy(attempts=1000, base_delay=0.02, max_delay=0.02, total_timeout=0.1)
        started = time.monotonic()
        summary = await copy_many(flaky, [(src, src + "-copy")], retries=policy)
        assert time.monotonic() - started < 1.0
        assert len(summary.failed) == 1 and 1 < flaky.attempts[src] < 100


@pytest.mark.parametrize("error", [PermissionDeniedError, NotFoundError])
async def test_non_transient_errors_are_not_retried(tmp_path: Path, error: type[Exception]) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 3)
        failing = Failing(store, error, failures=1)
        summary = await copy_many(failing, [(s, s.replace("mem://src", "file://c/d")) for s in srcs], retries=FAST)
        assert summary.copied == 0 and len(summary.failed) == 3
        assert all(isinstance(f.error, error) for f in summary.failed)
        assert failing.attempts == dict.fromkeys(srcs, 1)


def test_retry_policy_validation_and_jitter() -> None:
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(attempts=0)
    policy = RetryPolicy(base_delay=0.1, max_delay=0.3)
    assert all(0 <= policy.delay(1) <= 0.1 for _ in range(50))
    assert all(0 <= policy.delay(10) <= 0.3 for _ in range(50))
    assert Summary().ok and Summary().throughput == 0.0


async def test_progress_callback_error_stops_the_job(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 50)

        def boom(p: Progress) -> None:
            if p.objects_done == 3:
                raise RuntimeError("callback failed")

        with pytest.raises(RuntimeError, match="callback failed"):
            await copy_many(store, [(s, s + "-copy") for s in srcs], concurrency=2, progress=boom)


# -- one retry owner: the store stack ----------------------------------------------------------

THREE = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, total_timeout=None)


class BreaksMidway(FlakyStore):
    """Takes the first chunk of each streamed write, then fails it with a TransientError
    (``breaks`` times), as a connection reset mid-upload does."""

    breaks = 1000

    async def write_raw(
        self, ref: str, data: object, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        if self.breaks and isinstance(data, ByteStream):
            self.calls["write_raw"] = self.calls.get("write_raw", 0) + 1
            self.breaks -= 1
            async for _chunk in data:
                break
            raise TransientError("connection reset mid-upload (simulated)")
        return await super().write_raw(ref, data, size, options)


class TwoBackends:
    """Two stack backends (``mem://src/...`` and the rest), copied between as RoutingStore copies
    across backends: streamed, which the stack cannot replay. ``retry_policy`` as a DataStore's."""

    def __init__(self, src: ResilientStore, dst: ResilientStore, policy: RetryPolicy) -> None:
        self.src, self.dst, self.retry_policy = src, dst, policy

    def _of(self, ref: str) -> ResilientStore:
        return self.src if ref == "mem://src" or ref.startswith("mem://src/") else self.dst

    async def head(self, ref: str) -> Metadata:
        return await self._of(ref).head(ref)

    async def delete(self, ref: str) -> None:
        await self._of(ref).delete(ref)

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        return self._of(ref).list(ref, page_size=page_size)

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        return await stream_copy(self._of(src), src, self._of(dst), dst, options)


async def two_backends(breaks: int) -> tuple[TwoBackends, FlakyStore, BreaksMidway]:
    src, dst = FlakyStore(), BreaksMidway()
    dst.breaks = breaks
    await src.write_raw("mem://src/k", content(0, 5000))
    src.calls.clear()
    return TwoBackends(ResilientStore(src, retries=THREE), ResilientStore(dst, retries=THREE), THREE), src, dst


async def test_a_streamed_copy_that_fails_midway_is_retried_whole_within_max_attempts() -> None:
    store, _, dst = await two_backends(breaks=1000)
    summary = await copy_many(store, [("mem://src/k", "mem://dst/k")])
    assert len(summary.failed) == 1 and isinstance(summary.failed[0].error, TransientError)
    assert dst.calls["write_raw"] == 3  # the stack could not replay it: 3 whole copies, not 3 x 3
    assert not (await dst.head("mem://dst/k")).exists

    store, _, dst = await two_backends(breaks=2)
    summary = await sync(store, "mem://src", "mem://dst")
    assert summary.ok and summary.copied == 1
    assert dst.calls["write_raw"] == 3  # two broken, the third whole
    assert await dst.read_bytes("mem://dst/k") == content(0, 5000)


async def test_the_stacks_retries_of_a_copy_count_against_its_budget() -> None:
    """A copy whose source read the stack retried once has two attempts left, not three."""
    store, src, dst = await two_backends(breaks=1000)
    src.fail["read_raw"] = [TransientError("503 SlowDown")]
    summary = await copy_many(store, [("mem://src/k", "mem://dst/k")])
    assert len(summary.failed) == 1
    assert src.calls["read_raw"] == 3  # 1 failed open, then one per copy
    assert dst.calls["write_raw"] == 2  # 3 failed attempts in all


async def test_a_server_side_copy_is_retried_by_the_stack_only() -> None:
    """Within one backend the stack retries the copy; the transfer adds no attempt of its own."""
    inner = FlakyStore()
    await inner.write_raw("mem://b/src", b"x")
    inner.fail["copy_raw"] = [TransientError(f"503 SlowDown {i}") for i in range(100)]
    calls = 0
    original = inner.copy_raw

    async def counted(src: str, dst: str, *, options: Options | None = None) -> Metadata:
        nonlocal calls
        calls += 1
        errors = inner.fail["copy_raw"]
        if errors:
            raise errors.pop(0)
        return await original(src, dst, options=options)

    inner.copy_raw = counted  # type: ignore[method-assign]
    summary = await copy_many(ResilientStore(inner, retries=THREE), [("mem://b/src", "mem://b/dst")])
    assert len(summary.failed) == 1 and calls == 3


async def test_without_retries_the_datastore_policy_applies_and_is_not_multiplied(tmp_path: Path) -> None:
    config = Config(
        type="local", container="c", local={"path": str(tmp_path)}, retries={"max_attempts": 3, "base_delay": 0}
    )
    async with DataStore(config, scope=scope()) as store:
        srcs = await fill(store, "mem://src", 2)
        flaky = Failing(store, TransientError, failures=100)  # a layer above the stack: found below it
        summary = await copy_many(flaky, [(s, s.replace("mem://src", "file://c/d")) for s in srcs])
        assert len(summary.failed) == 2 and flaky.attempts == dict.fromkeys(srcs, 3)
        flaky = Failing(store, TransientError, failures=100)
        summary = await sync(flaky, "mem://src", "file://c/d")
        assert len(summary.failed) == 2 and flaky.attempts == dict.fromkeys(srcs, 3)


async def test_a_bare_store_is_not_retried_by_the_transfer() -> None:
    inner = MemoryStore()
    await inner.write_raw("mem://b/src", b"x")
    flaky = Failing(inner, TransientError, failures=100)
    summary = await copy_many(flaky, [("mem://b/src", "mem://b/dst")])
    assert len(summary.failed) == 1 and flaky.attempts == {"mem://b/src": 1}


# ---------------------------------------------------------------------------------------------
# sync


async def test_sync_mem_to_file_skips_copies_and_deletes(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        n = 12
        srcs = await fill(store, "mem://bucket/data", n - 2)
        await store.write_raw("mem://bucket/data/nested/deep/a%20b%25c", b"odd key")  # key "a b%c"
        await store.write_raw("mem://bucket/data/nested/x", b"x")
        await store.write_raw("mem://bucket/datax/not-below", b"no")  # a sibling prefix, not below it

        first = await sync(store, "mem://bucket/data", "file://c/mirror", concurrency=4)
        assert first.ok and (first.copied, first.skipped, first.deleted) == (n, 0, 0)
        assert (tmp_path / "c" / "mirror" / "nested" / "deep" / "a b%c").read_bytes() == b"odd key"
        assert (tmp_path / "c" / "mirror" / "obj-0003").read_bytes() == content(3)
        assert not (tmp_path / "c" / "mirror" / "not-below").exists()

        second = await sync(store, "mem://bucket/data/", "file://c/mirror/", concurrency=4)
        assert second.ok and (second.copied, second.skipped) == (0, n)

        await asyncio.sleep(0.01)  # a later modification time than the mirror's copies
        await store.write_raw(srcs[0], b"a different size")
        await store.write_raw(srcs[1], bytes(reversed(content(1))))  # same size, new content
        (tmp_path / "c" / "mirror" / "extra").write_bytes(b"not in the source")
        third = await sync(store, "mem://bucket/data", "file://c/mirror")
        assert third.ok and (third.copied, third.skipped, third.deleted) == (2, n - 2, 0)
        assert (tmp_path / "c" / "mirror" / "obj-0000").read_bytes() == b"a different size"
        assert (tmp_path / "c" / "mirror" / "obj-0001").read_bytes() == bytes(reversed(content(1)))
        assert (tmp_path / "c" / "mirror" / "extra").exists()

        fourth = await sync(store, "mem://bucket/data", "file://c/mirror", delete=True)
        assert fourth.ok and (fourth.copied, fourth.skipped, fourth.deleted) == (0, n, 1)
        assert not (tmp_path / "c" / "mirror" / "extra").exists()
        mirrored = [e.ref async for e in store.list("file://c/mirror")]
        assert len(mirrored) == n


async def test_sync_within_memory_compares_etags() -> None:
    async with DataStore(Config(type="mem"), scope=scope()) as store:
        await fill(store, "mem://a/src", 5)
        assert (await sync(store, "mem://a/src", "mem://b/dst")).copied == 5
        await store.write_raw("mem://a/src/obj-0002", bytes(reversed(content(2))))  # same size
        summary = await sync(store, "mem://a/src", "mem://b/dst")
        assert (summary.copied, summary.skipped) == (1, 4)
        assert await store.read_bytes("mem://b/dst/obj-0002") == bytes(reversed(content(2)))


async def test_sync_file_to_file_and_back_to_mem(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        await fill(store, "file://c/src", 6, size=500)
        assert (await sync(store, "file://c/src", "file://c/dst")).copied == 6
        again = await sync(store, "file://c/src", "file://c/dst")
        assert (again.copied, again.skipped) == (0, 6)
        out = await sync(store, "file://c/dst", "mem://back/here")
        assert out.copied == 6
        assert await store.read_bytes("mem://back/here/obj-0005") == content(5, 500)


async def test_sync_delete_false_keeps_extras(tmp_path: Path) -> None:
    async with local(tmp_path) as store:
        await fill(store, "mem://s/p", 3)
        await store.write_raw("file://c/m/keep-me", b"extra")
        summary = await sync(store, "mem://s/p", "file://c/m")
        assert (summary.copied, summary.deleted) == (3, 0)
        assert await store.read_bytes("file://c/m/keep-me") == b"extra"


# ---------------------------------------------------------------------------------------------
# cancellation


async def test_cancellation_stops_promptly_without_partial_objects(tmp_path: Path) -> None:
    size = 64 * 1024
    async with local(tmp_path) as store:
        srcs = await fill(store, "mem://src", 40, size=size)
        slow = Slow(store, piece=4096, delay=0.01)  # ~0.16 s per object
        pairs = [(s, s.replace("mem://src", "file://c/dst")) for s in srcs]
        task = asyncio.create_task(copy_many(slow, pairs, concurrency=4))
        await asyncio.sleep(0.25)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.5
        begun = slow.started
        assert 4 <= begun < 40
        await asyncio.sleep(0.1)
        assert slow.started == begun  # nothing new starts after cancellation

        dst_dir = tmp_path / "c" / "dst"
        names = {f"obj-{i:04d}": i for i in range(40)}
        found = [name for _, _, files in os.walk(dst_dir) for name in files] if dst_dir.exists() else []
        assert 0 < len(found) < 40
        for name in found:
            assert name in names, f"stray file {name}"
            assert (dst_dir / name).read_bytes() == content(names[name], size)


async def test_slow_layer_stream_is_a_bytestream_free_copy(tmp_path: Path) -> None:
    """The Slow helper itself copies correctly when left alone (guards the test above)."""
    async with local(tmp_path) as store:
        (src,) = await fill(store, "mem://src", 1, size=10_000)
        meta = await Slow(store, delay=0).copy_raw(src, "file://c/one")
        assert meta.size == 10_000
        stream = await store.read_raw("file://c/one")
        assert isinstance(stream, ByteStream)
        assert await stream.read() == content(0, 10_000)


# -- large objects: split into parallel ranged reads ---------------------------------------------


class RangeRecorder(Layer):
    """Records the range reads of a store; ``changed_after`` makes later ranges report another etag."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.ranges: list[tuple[int, int | None]] = []
        self.in_flight = 0
        self.peak = 0
        self.changed_after: int | None = None

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        self.ranges.append((offset, length))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            stream = await self.inner.read_raw(ref, offset, length)
        finally:
            self.in_flight -= 1
        if self.changed_after is not None and len(self.ranges) > self.changed_after and stream.metadata is not None:
            stream.metadata = Metadata(exists=True, size=stream.metadata.size, etag="another-version")
        return stream


async def test_a_large_object_is_copied_by_parallel_ranged_reads(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    src = LocalStore(str(tmp_path), chunk_size=512)
    recorder = RangeRecorder(src)
    dst = MemoryStore()
    data = os.urandom(10_000)
    await src.write_raw("file://c/big", data)
    meta = await stream_copy(
        recorder, "file://c/big", dst, "mem://d/big", split_threshold=5000, part_size=1500, ahead=3
    )
    assert meta.size == len(data)
    assert await dst.read_bytes("mem://d/big") == data
    # The whole-object read serves the first part; the rest come as 1,500-byte ranges.
    assert recorder.ranges == [(0, None)] + [(o, min(1500, 10_000 - o)) for o in range(1500, 10_000, 1500)]
    assert recorder.peak >= 2  # ranges were in flight together
    small = await stream_copy(recorder, "file://c/big", dst, "mem://d/small", split_threshold=20_000)
    assert small.size == len(data) and recorder.ranges[-1] == (0, None)


async def test_an_object_changed_during_a_split_copy_is_not_spliced(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    src = LocalStore(str(tmp_path), chunk_size=512)
    recorder = RangeRecorder(src)
    recorder.changed_after = 2
    dst = MemoryStore()
    await src.write_raw("file://c/big", os.urandom(10_000))
    with pytest.raises(PreconditionFailedError, match="changed while it was being copied"):
        await stream_copy(recorder, "file://c/big", dst, "mem://d/big", split_threshold=5000, part_size=1000, ahead=2)
    assert not (await dst.head("mem://d/big")).exists
    assert recorder.in_flight == 0  # the parts fetched ahead were cancelled and waited for
