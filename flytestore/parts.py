"""The write pipeline: one way to turn a stream of chunks into parts, and parts into an object.

Every store writes through here (see ``docs/architecture.md#the-write-pipeline``):

- ``gather`` cuts a stream of bytes-like chunks into parts of a size the caller chooses. It is the
  one place that decides what may be kept from a producer: a chunk is the producer's until the
  next one is asked for, so any chunk held across that ``await`` is copied unless it is immutable
  (``bytes``, or a view of ``bytes``). A producer that refills one ``bytearray`` (the ``readinto``
  pattern) therefore stores what it yielded, on every backend.
- ``write_multipart`` drives a three-method ``Upload`` (put part / complete / abort), in the shape
  of Rust object_store's ``WriteMultipart``: a stream that fits in one part is handed to
  ``single`` (one request); a longer one starts the upload, keeps at most
  ``max_parts_in_flight`` parts uploading, then completes, or aborts on any failure. Completion
  and abort are never cut short by a cancellation, so the outcome is always known: the object
  was committed whole, or nothing was. S3 multipart, Azure block staging and GCS resumable
  uploads (one part in flight, as that protocol requires) are its users.
- ``PartSizes`` says how large each part is: fixed when the total is declared (grown just enough
  to fit the service's part limit), else doubling at even steps up to the largest part the
  service takes, so that a stream of unknown length is not refused at S3's 10,000 parts or
  Azure's 50,000 blocks before it reaches half the service's largest object.
- ``collect`` is ``gather`` into one ``bytes`` (memory and Redis, which store whole values).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .errors import InvalidArgumentError
from .units import MiB

__all__ = [
    "BoundedParts",
    "BytesLike",
    "Part",
    "PartSizes",
    "Upload",
    "collect",
    "gather",
    "is_immutable",
    "nbytes",
    "settle",
    "write_multipart",
]

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R")

BytesLike = bytes | bytearray | memoryview

_UNBOUNDED = 1 << 62

#: How many times a growing part size doubles over a service's part limit.
_GROWTH_STEPS = 10


def is_immutable(chunk: BytesLike) -> bool:
    """Whether ``chunk`` can never change under us: ``bytes``, or a view of ``bytes``.

    A read-only view of a ``bytearray`` is not: its owner can still refill it.
    """
    if type(chunk) is bytes:
        return True
    return isinstance(chunk, memoryview) and type(chunk.obj) is bytes


def nbytes(chunk: BytesLike) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


def _flat(chunk: BytesLike) -> BytesLike:
    """``chunk`` as one-dimensional unsigned bytes (a view of another format is cast)."""
    if isinstance(chunk, memoryview) and (chunk.ndim != 1 or chunk.itemsize != 1 or chunk.format != "B"):
        return chunk.cast("B") if chunk.c_contiguous else chunk.tobytes()
    return chunk


class Part:
    """One part of a stream: its pieces, in order, and their total size.

    ``pieces`` may still view a producer's buffer: use them before asking ``gather`` for the next
    part. ``data()`` is an immutable copy (free when the part is one ``bytes``), which is what an
    upload that outlives the next ``await`` must hold.
    """

    __slots__ = ("last", "pieces", "size")

    def __init__(self, pieces: list[BytesLike], size: int, last: bool) -> None:
        self.pieces = pieces
        self.size = size
        #: No part follows this one.
        self.last = last

    def data(self) -> bytes:
        pieces = self.pieces
        if len(pieces) == 1 and type(pieces[0]) is bytes:
            return pieces[0]
        return b"".join(pieces)

    def __repr__(self) -> str:
        return f"Part(size={self.size}, last={self.last})"


@dataclass(frozen=True, slots=True)
class PartSizes:
    """The size of each part of one upload.

    ``base`` is the configured part size. With ``max_parts`` (the service's limit), a declared
    ``total`` fixes the size at the smallest multiple of 1 MiB, not below ``base``, that fits the
    limit; an unknown total starts at ``base`` and doubles at even steps until it reaches
    ``max_part_size`` by half the part limit (every ``max_parts // 10`` parts without a
    maximum). Without ``max_parts`` every part is ``base``.
    """

    base: int
    max_parts: int | None = None
    max_part_size: int | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        if self.base < 1:
            raise InvalidArgumentError(f"part_size must be positive, got {self.base}")

    def _step(self, base: int, limit: int) -> int:
        """Parts between doublings: reach ``max_part_size`` by half the part limit, so the parts
        of a stream of unknown length can hold at least half the service's largest object."""
        if self.max_part_size is None or self.max_part_size <= base:
            return max(1, limit // _GROWTH_STEPS)
        doublings = math.ceil(math.log2(self.max_part_size / base))
        return max(1, limit // 2 // doublings)

    def of(self, index: int) -> int:
        """The size of part ``index`` (0-based)."""
        base, limit = self.base, self.max_parts
        if limit is None:
            return base
        if self.total is not None:
            needed = math.ceil(self.total / limit)
            size = base if needed <= base else math.ceil(needed / MiB) * MiB
        else:
            size = base << (index // self._step(base, limit))
        return size if self.max_part_size is None else min(size, self.max_part_size)


async def gather(chunks: AsyncIterator[BytesLike], sizes: PartSizes | int) -> AsyncIterator[Part]:
    """Cut ``chunks`` into parts: every part but the last has exactly the size ``sizes`` gives.

    A full part is yielded only once more data is known to follow it, so the last part (marked
    ``last``) is never empty unless the whole stream is, and a stream of at most one part comes
    out as one part marked last. Nothing the producer may reuse is kept across the ``await`` for
    its next chunk: held pieces that are not immutable are copied first.
    """
    size_of = sizes.of if isinstance(sizes, PartSizes) else (lambda _index, n=sizes: n)
    index = 0
    want = size_of(0)
    held: list[BytesLike] = []
    held_size = 0
    try:
        async for chunk in chunks:
            chunk = _flat(chunk)
            n = nbytes(chunk)
            if not n:
                continue
            # Emit every part this chunk completes, as long as bytes remain after it.
            while held_size + n > want:
                take = want - held_size
                view = memoryview(chunk)
                pieces = [*held, view[:take]] if take else held
                yield Part(pieces, want, False)
                index += 1
                want = size_of(index)
                held, held_size = [], 0
                chunk, n = view[take:], n - take
            if not is_immutable(chunk):
                chunk = bytes(chunk)  # held across the next ``await``: the producer may refill it
            held.append(chunk)
            held_size += n
        yield Part(held, held_size, True)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()  # an abandoned producer is finalised now, not at garbage collection


async def collect(chunks: AsyncIterator[BytesLike], limit: int | None = None, what: str = "the payload") -> bytes:
    """The whole stream as one ``bytes`` (``gather`` with one part), refusing
    (``InvalidArgumentError``) a stream of more than ``limit`` bytes as soon as it passes it."""
    parts = gather(chunks, _UNBOUNDED if limit is None else max(limit, 1))
    try:
        part = await anext(parts)
        if not part.last or (limit is not None and part.size > limit):
            raise InvalidArgumentError(f"{what} exceeds the store's cap of {limit} bytes")
        return part.data()
    finally:
        await parts.aclose()  # type: ignore[attr-defined]


class Upload(Protocol[T, R_co]):
    """A multipart upload in progress, as a backend provides it to ``write_multipart``.

    ``put_part`` may run concurrently for different parts (up to ``max_parts_in_flight``); parts
    are numbered from 1 in stream order, and ``last`` marks the final one. ``complete`` gets every
    ``put_part`` result, in part order, and commits the object. ``abort`` drops whatever was
    uploaded; it must not raise.
    """

    async def put_part(self, number: int, data: bytes, last: bool) -> T: ...

    async def complete(self, parts: list[T]) -> R_co: ...

    async def abort(self) -> None: ...


class BoundedParts(Generic[T]):
    """The parts of one upload in flight: at most ``limit`` at once, results kept in order.

    ``write_multipart`` keeps a stream's parts here; a backend uses it directly only for parts
    that are not cut from a stream (S3's server-side part copies), so that "at most N parts in
    flight" is one piece of code. ``put`` waits for a free slot and starts ``upload.put_part``
    (a part that failed meanwhile raises there); ``drain`` waits for the rest and returns every
    result in part order; ``cancel`` stops whatever is still running.
    """

    def __init__(self, upload: Upload[T, object], limit: int) -> None:
        self.upload = upload
        self.limit = limit
        self.tasks: dict[asyncio.Task[T], int] = {}
        self.results: dict[int, T] = {}

    def _reap(self, done: set[asyncio.Task[T]]) -> None:
        for task in done:
            number = self.tasks.pop(task)
            self.results[number] = task.result()  # a failed part fails the write now

    async def put(self, number: int, data: bytes, last: bool) -> None:
        self._reap({task for task in self.tasks if task.done()})
        while len(self.tasks) >= self.limit:
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            self._reap(done)
        self.tasks[asyncio.ensure_future(self.upload.put_part(number, data, last))] = number

    async def drain(self) -> list[T]:
        while self.tasks:
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            self._reap(done)
        return [self.results[number] for number in sorted(self.results)]

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


async def settle(awaitable: Awaitable[R]) -> R:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile (the
    cancellation is raised afterwards), so an upload's outcome is always known."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise  # the task itself was cancelled
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def write_multipart(
    chunks: AsyncIterator[BytesLike],
    sizes: PartSizes,
    *,
    max_parts_in_flight: int,
    start: Callable[[], Awaitable[Upload[T, R]]],
    single: Callable[[bytes], Awaitable[R]],
) -> R:
    """Write ``chunks`` as one object: ``single(data)`` when they fit in one part, else a
    multipart upload that ``start`` begins.

    At most ``max_parts_in_flight`` parts upload at once, so a write holds about
    ``max_parts_in_flight + 1`` parts in memory whatever the object size. On any failure or
    cancellation the parts in flight are cancelled and the upload is aborted before the error
    propagates; completion and abort run to their end even under cancellation.
    """
    if max_parts_in_flight < 1:
        raise InvalidArgumentError(f"max_parts_in_flight must be positive, got {max_parts_in_flight}")
    limit = sizes.max_parts
    parts = gather(chunks, sizes)
    upload: Upload[T, R] | None = None
    flight: BoundedParts[T] | None = None
    completed = False
    try:
        number = 0
        async for part in parts:
            if upload is None:
                if part.last:
                    return await single(part.data())
                upload = await start()
                flight = BoundedParts(upload, max_parts_in_flight)
            assert flight is not None
            number += 1
            if limit is not None and number > limit:
                raise InvalidArgumentError(f"the object needs more than {limit} parts, the most the service accepts")
            await flight.put(number, part.data(), part.last)
        assert upload is not None and flight is not None
        results = await flight.drain()
        task = asyncio.ensure_future(upload.complete(results))
        try:
            result = await settle(task)
        finally:
            completed = task.done() and not task.cancelled() and task.exception() is None
        return result
    except BaseException:
        if flight is not None:
            await settle(flight.cancel())
        if upload is not None and not completed:
            await settle(upload.abort())
        raise
    finally:
        await parts.aclose()  # type: ignore[attr-defined]
