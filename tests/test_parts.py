"""The write pipeline (flytestore.parts) on its own: what every backend's writes rest on.

The backends' use of it is pinned by the shared conformance suite (reused producer buffers,
failed and cancelled writes); these tests pin the pipeline's own rules with an in-memory upload.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flytestore.errors import InvalidArgumentError
from flytestore.parts import PartSizes, collect, gather, is_immutable, write_multipart
from flytestore.units import GiB, MiB


async def reused(
    data: bytes, sizes: list[int], kind: str = "bytearray"
) -> AsyncIterator[bytes | bytearray | memoryview]:
    """Yield ``data`` in chunks of ``sizes`` (cycled) through ONE buffer refilled each time."""
    buf = bytearray(max(sizes) if sizes else 1)
    pos = 0
    i = 0
    while pos < len(data):
        n = min(sizes[i % len(sizes)], len(data) - pos)
        i += 1
        buf[:n] = data[pos : pos + n]
        pos += n
        if kind == "bytearray":
            yield buf if n == len(buf) else memoryview(buf)[:n]
        else:
            yield memoryview(buf)[:n].toreadonly()
        buf[:] = b"\xee" * len(buf)  # the producer scribbles over its buffer once resumed


def test_immutable_means_nothing_can_change_it() -> None:
    assert is_immutable(b"x")
    assert is_immutable(memoryview(b"xy")[1:])
    assert not is_immutable(bytearray(b"x"))
    assert not is_immutable(memoryview(bytearray(b"x")))
    assert not is_immutable(memoryview(bytearray(b"x")).toreadonly())  # its owner can still write


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    chunk_sizes=st.lists(st.integers(1, 70), min_size=1, max_size=5),
    part_size=st.integers(1, 64),
    kind=st.sampled_from(["bytearray", "readonly-view"]),
)
def test_gather_keeps_what_a_reusing_producer_yielded(
    data: bytes, chunk_sizes: list[int], part_size: int, kind: str
) -> None:
    async def run() -> list[tuple[bytes, int, bool]]:
        out = []
        async for part in gather(reused(data, chunk_sizes, kind), part_size):
            out.append((part.data(), part.size, part.last))  # data() kept across the next await
        return out

    parts = asyncio.run(run())
    assert b"".join(p for p, _, _ in parts) == data
    assert [last for _, _, last in parts] == [False] * (len(parts) - 1) + [True]
    for body, size, last in parts:
        assert len(body) == size
        assert size == part_size if not last else 0 < size <= part_size or not data
    if not data:
        assert parts == [(b"", 0, True)]


async def test_gather_closes_the_producer_when_abandoned() -> None:
    closed = False

    async def producer() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            while True:
                yield b"x" * 10
        finally:
            closed = True

    parts = gather(producer(), 5)
    await anext(parts)
    await parts.aclose()  # type: ignore[attr-defined]
    assert closed


async def test_collect_refuses_past_the_limit_as_soon_as_it_passes() -> None:
    pulled = 0

    async def producer() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b"x" * 10

    with pytest.raises(InvalidArgumentError, match="cap of 25"):
        await collect(producer(), 25)
    assert pulled == 3
    assert await collect(reused(b"abcdefgh", [3]), 8) == b"abcdefgh"
    with pytest.raises(InvalidArgumentError):
        await collect(reused(b"a", [1]), 0)


@pytest.mark.parametrize(
    ("max_parts", "max_part_size", "largest"),
    [(10_000, 5 * GiB, 5 * 1024 * GiB), (50_000, 4000 * MiB, 95 * 1024 * GiB)],
    ids=["s3", "azure"],
)
def test_growing_parts_reach_the_largest_object_within_the_part_limit(
    max_parts: int, max_part_size: int, largest: int
) -> None:
    sizes = PartSizes(8 * MiB, max_parts=max_parts, max_part_size=max_part_size)
    assert sizes.of(0) == 8 * MiB
    assert all(sizes.of(i) <= sizes.of(i + 1) <= max_part_size for i in range(0, max_parts, 97))
    reach = sum(sizes.of(i) for i in range(max_parts))
    assert reach >= largest and reach >= max_parts * max_part_size / 2


def test_declared_total_fixes_the_part_size_to_fit_the_limit() -> None:
    assert PartSizes(8 * MiB, max_parts=10_000, total=10 * MiB).of(5) == 8 * MiB
    big = PartSizes(8 * MiB, max_parts=10_000, total=200 * GiB)
    assert big.of(0) == big.of(9_999) >= 200 * GiB / 10_000
    assert big.of(0) % MiB == 0
    with pytest.raises(InvalidArgumentError):
        PartSizes(0)


class MemoryUpload:
    """An upload into a dict, recording what the driver did."""

    def __init__(self, fail_part: int | None = None, block: asyncio.Event | None = None) -> None:
        self.parts: dict[int, bytes] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.lasts: list[int] = []
        self.aborted = False
        self.completed: bytes | None = None
        self.fail_part = fail_part
        self.block = block
        self.complete_started = asyncio.Event()
        self.release_complete = asyncio.Event()
        self.release_complete.set()

    async def put_part(self, number: int, data: bytes, last: bool) -> int:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let other parts start
            if self.block is not None:
                await self.block.wait()
            if number == self.fail_part:
                raise OSError(f"part {number} failed")
            self.parts[number] = data
            if last:
                self.lasts.append(number)
            return number
        finally:
            self.in_flight -= 1

    async def complete(self, parts: list[int]) -> bytes:
        self.complete_started.set()
        await self.release_complete.wait()
        assert parts == sorted(parts) == list(range(1, len(parts) + 1))
        self.completed = b"".join(self.parts[n] for n in parts)
        return self.completed

    async def abort(self) -> None:
        self.aborted = True


async def _write(upload: MemoryUpload, chunks: AsyncIterator[bytes | bytearray | memoryview], part_size: int) -> bytes:
    singles: list[bytes] = []

    async def start() -> MemoryUpload:
        return upload

    async def single(data: bytes) -> bytes:
        singles.append(data)
        return data

    return await write_multipart(chunks, PartSizes(part_size), max_parts_in_flight=2, start=start, single=single)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200), chunk_sizes=st.lists(st.integers(1, 50), min_size=1, max_size=4))
def test_write_multipart_stores_what_was_yielded_with_bounded_parts_in_flight(
    data: bytes, chunk_sizes: list[int]
) -> None:
    upload = MemoryUpload()
    written = asyncio.run(_write(upload, reused(data, chunk_sizes), 16))
    assert written == data
    if len(data) <= 16:
        assert upload.completed is None  # one part: a single request, no upload started
    else:
        assert upload.completed == data
        assert upload.most_in_flight <= 2
        assert upload.lasts == [len(upload.parts)]
    assert not upload.aborted


async def test_a_failed_part_aborts_and_nothing_completes() -> None:
    upload = MemoryUpload(fail_part=2)
    with pytest.raises(OSError, match="part 2"):
        await _write(upload, reused(b"x" * 100, [7]), 10)
    assert upload.aborted and upload.completed is None


async def test_a_producer_error_aborts() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 30
        raise ValueError("producer broke")

    upload = MemoryUpload()
    with pytest.raises(ValueError, match="producer broke"):
        await _write(upload, broken(), 10)
    assert upload.aborted and upload.completed is None


async def test_cancellation_while_parts_upload_aborts_and_leaves_no_task() -> None:
    block = asyncio.Event()
    upload = MemoryUpload(block=block)
    task = asyncio.ensure_future(_write(upload, reused(b"x" * 100, [10]), 10))
    for _ in range(100):  # a few loop turns: the driver starts two parts, which then block
        if upload.in_flight == 2:
            break
        await asyncio.sleep(0)
    assert upload.in_flight == 2
    before = asyncio.all_tasks()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upload.aborted and upload.completed is None
    assert upload.in_flight == 0
    assert not (asyncio.all_tasks() - before - {asyncio.current_task()})


async def test_cancellation_during_completion_waits_for_its_outcome() -> None:
    upload = MemoryUpload()
    upload.release_complete.clear()
    task = asyncio.ensure_future(_write(upload, reused(b"y" * 50, [10]), 10))
    await upload.complete_started.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # the cancellation waits for the commit to finish
    upload.release_complete.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upload.completed == b"y" * 50  # committed whole...
    assert not upload.aborted  # ...and not aborted afterwards


async def test_too_many_parts_is_refused() -> None:
    upload = MemoryUpload()

    async def start() -> MemoryUpload:
        return upload

    async def single(data: bytes) -> bytes:
        return data

    with pytest.raises(InvalidArgumentError, match="more than 3 parts"):
        await write_multipart(
            reused(b"z" * 40, [10]),
            PartSizes(10, max_parts=3, total=None, max_part_size=10),
            max_parts_in_flight=1,
            start=start,
            single=single,
        )
    assert upload.aborted
