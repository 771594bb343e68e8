"""Copies between any two stores, streamed: large objects from object stores split into
parallel ranged reads pinned to the source's etag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from .errors import InvalidArgumentError, PreconditionFailedError, SizeMismatchError
from .rawstore import ByteStream, Metadata, Options, RawStore
from .units import MiB

__all__ = [
    "SPLIT_AHEAD",
    "SPLIT_NEVER",
    "SPLIT_PART_SIZE",
    "SPLIT_THRESHOLD",
    "EtagPin",
    "split_read",
    "stream_copy",
]


#: Objects at least this large are copied across stores by parallel ranged reads (from stores
#: whose range reads are cheap: see ``RoutingStore``).
SPLIT_THRESHOLD = 64 * MiB
#: A threshold no object reaches.
SPLIT_NEVER = 1 << 62
#: The size of each ranged read of a split copy, and how many are fetched ahead of the writer.
SPLIT_PART_SIZE = 8 * MiB
SPLIT_AHEAD = 4


class EtagPin:
    """The one rule for reading an object by several requests: every response must come from the
    version the first one did, by etag; a changed object raises ``PreconditionFailedError``
    rather than being spliced (``split_read``, ``BaseStore.read_ranges``).

    ``etag`` pins a version known already; otherwise the first response carrying an etag pins
    it. ``strict``: a response without an etag counts as a change (a split copy, whose every
    range is within the object); else it is not compared (a range past the end has no body and,
    on some services, no etag; backends without etags cannot be pinned).
    """

    __slots__ = ("etag", "ref", "strict", "what")

    def __init__(self, ref: str, etag: str = "", *, strict: bool = False, what: str = "read") -> None:
        self.ref = ref
        self.etag = etag
        self.strict = strict
        self.what = what

    def check(self, meta: Metadata | None) -> None:
        now = meta.etag if meta is not None else ""
        if not now:
            if self.strict:
                self._changed(now)
            return
        if not self.etag:
            self.etag = now
        elif now != self.etag:
            self._changed(now)

    def _changed(self, now: str) -> None:
        raise PreconditionFailedError(
            f"[{self.ref}] changed while it was being {self.what} (etag {self.etag} became {now or 'unknown'})"
        )


async def stream_copy(
    src_store: RawStore,
    src: str,
    dst_store: RawStore,
    dst: str,
    options: Options | None = None,
    *,
    split_threshold: int = SPLIT_THRESHOLD,
    part_size: int = SPLIT_PART_SIZE,
    ahead: int = SPLIT_AHEAD,
) -> Metadata:
    """Copy one object between any two stores without buffering it whole.

    A source of at least ``split_threshold`` bytes with an etag is read as parts of ``part_size``
    bytes, up to ``ahead`` of them fetched in parallel by range reads pinned to the etag (see
    ``split_read``), while the destination writes what has arrived (in parts of its own where it
    does multipart writes). Memory stays within about ``(ahead + 1) * part_size`` on the read side.
    """
    stream = await src_store.read_raw(src)
    async with stream:
        meta = stream.metadata
        if options is None and meta is not None:
            options = Options(metadata=meta.user_metadata, content_type=meta.content_type)
        split: AsyncGenerator[bytes, None] | None = None
        size = stream.size
        if (
            size is not None
            and size >= split_threshold
            and size > part_size
            and not stream.in_memory
            and meta is not None
            and meta.etag
        ):
            split = split_read(src_store, src, stream, size, meta.etag, part_size=part_size, ahead=ahead)
        try:
            return await dst_store.write_raw(dst, stream if split is None else split, size=size, options=options)
        finally:
            if split is not None:
                await split.aclose()


async def split_read(
    store: RawStore,
    ref: str,
    first: ByteStream,
    size: int,
    etag: str,
    *,
    part_size: int = SPLIT_PART_SIZE,
    ahead: int = SPLIT_AHEAD,
) -> AsyncGenerator[bytes, None]:
    """The ``size`` bytes of ``ref`` in order: the first part from ``first`` (an open read of the
    whole object, closed once the part is taken), the rest by range reads of ``part_size`` bytes,
    ``ahead`` of them in flight at once. Every range must come from the object ``etag`` names; a
    changed object raises ``PreconditionFailedError`` rather than being spliced."""
    if part_size <= 0 or ahead <= 0:
        raise InvalidArgumentError("part_size and ahead must be positive")

    pin = EtagPin(ref, etag, strict=True, what="copied")

    async def fetch(offset: int, length: int) -> bytes:
        part = await store.read_raw(ref, offset, length)
        async with part:
            pin.check(part.metadata)
            data = await part.read()
        if len(data) != length:
            raise SizeMismatchError(f"a range read of [{ref}] at {offset} returned {len(data)} of {length} bytes")
        return data

    pending: list[asyncio.Task[bytes]] = []
    next_offset = part_size

    def fill() -> None:
        nonlocal next_offset
        while len(pending) < ahead and next_offset < size:
            length = min(part_size, size - next_offset)
            pending.append(asyncio.ensure_future(fetch(next_offset, length)))
            next_offset += length

    try:
        fill()
        taken = 0
        async for chunk in first:
            if taken + len(chunk) >= part_size:
                yield bytes(chunk[: part_size - taken])
                break
            taken += len(chunk)
            yield bytes(chunk)
        else:
            raise SizeMismatchError(f"[{ref}] ended after {taken} of {size} bytes")
        await first.aclose()
        while pending:
            data = await pending.pop(0)
            fill()
            yield data
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await first.aclose()
