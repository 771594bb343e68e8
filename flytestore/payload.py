"""Payloads: what ``write_raw`` accepts, turned into bounded chunks.

A payload is a bytes-like, a sync or async iterable of bytes-likes, or a (sync or async) binary
file object. ``iter_payload`` yields its chunks and enforces a declared size; ``read_payload``
gathers it whole for stores that keep whole values. What a store may keep of a chunk is decided
in one place, ``flytestore.parts``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Protocol

from .errors import InvalidArgumentError, SizeMismatchError
from .parts import BytesLike, collect
from .rawstore import DEFAULT_CHUNK_SIZE, ByteStream

__all__ = [
    "Payload",
    "SupportsAsyncRead",
    "SupportsRead",
    "check_declared",
    "iter_payload",
    "payload_size",
    "read_payload",
]


async def _slices(data: BytesLike, chunk_size: int) -> AsyncIterator[BytesLike]:
    if len(data) <= chunk_size:
        if data:
            yield data
        return
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


# ---------------------------------------------------------------------------------------------
# Writes: payloads


class SupportsRead(Protocol):
    """A binary file object: ``read(n)`` returns up to ``n`` bytes, empty at the end."""

    def read(self, n: int, /) -> BytesLike: ...


class SupportsAsyncRead(Protocol):
    """An async binary file object (aiofiles, an aiohttp request's content, ...)."""

    async def read(self, n: int, /) -> BytesLike: ...


#: Anything ``write_raw`` accepts: a bytes-like, a sync or async iterable of bytes-likes, or a
#: file object (sync or async) with ``read(n)``. Chunks may be reused by the producer once the
#: next one is asked for: every store keeps only what it copied (see ``flytestore.parts``).
Payload = BytesLike | Iterable[BytesLike] | AsyncIterable[BytesLike] | SupportsRead | SupportsAsyncRead

_BYTES_TYPES = (bytes, bytearray, memoryview)


def payload_size(data: Payload) -> int | None:
    """The payload's length when it can be known without consuming it."""
    if isinstance(data, _BYTES_TYPES):
        return memoryview(data).nbytes if isinstance(data, memoryview) else len(data)
    return None


def check_declared(data: Payload, size: int | None) -> int | None:
    """The size of a write: the declared ``size`` (validated: a non-negative int, equal to the
    payload's own length when that is known) or the payload's length; None when neither is known."""
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidArgumentError(f"size must be an int or None, not {type(size).__name__}")
        if size < 0:
            raise InvalidArgumentError(f"size must not be negative, got {size}")
    known = payload_size(data)
    if known is not None and size is not None and known != size:
        raise SizeMismatchError(f"declared size {size} but the payload holds {known} bytes")
    return size if size is not None else known


async def _raw_chunks(data: Payload, chunk_size: int) -> AsyncIterator[BytesLike]:
    if isinstance(data, _BYTES_TYPES):
        async for piece in _slices(data, chunk_size):
            yield piece
        return
    if isinstance(data, str):
        raise InvalidArgumentError("write_raw takes bytes, not str: encode the text first")
    if isinstance(data, ByteStream):
        async for chunk in data:
            yield chunk
        return
    # Files before iterables: iterating a file object yields lines, not chunks.
    read = getattr(data, "read", None)
    if read is not None:
        if inspect.iscoroutinefunction(read):
            while True:
                chunk = await read(chunk_size)
                if not chunk:
                    return
                yield _as_bytes(chunk)
        else:
            while True:
                chunk = await asyncio.to_thread(read, chunk_size)
                if not chunk:
                    return
                yield _as_bytes(chunk)
        return
    if isinstance(data, AsyncIterable):
        async for item in data:
            yield _as_bytes(item)
        return
    if isinstance(data, Iterable):
        for item in data:
            yield _as_bytes(item)
        return
    raise InvalidArgumentError(
        f"cannot write a {type(data).__name__}: pass bytes, an iterable or async iterable of bytes, "
        "or a file object opened in binary mode"
    )


def _as_bytes(chunk: object) -> BytesLike:
    if isinstance(chunk, _BYTES_TYPES):
        return chunk
    raise InvalidArgumentError(
        f"payload chunks must be bytes-like, got {type(chunk).__name__}"
        + (" (open files in binary mode)" if isinstance(chunk, str) else "")
    )


async def iter_payload(
    data: Payload, size: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> AsyncIterator[BytesLike]:
    """Yield the payload as chunks, enforcing the declared ``size``.

    Raises ``SizeMismatchError`` as soon as the stream runs past ``size`` (before that chunk is
    yielded) or ends short of it, so a store that commits only after the last chunk writes nothing.
    """
    declared = check_declared(data, size)
    seen = 0
    async for chunk in _raw_chunks(data, chunk_size):
        n = len(chunk) if not isinstance(chunk, memoryview) else chunk.nbytes
        if not n:
            continue
        seen += n
        if declared is not None and seen > declared:
            raise SizeMismatchError(f"the stream is longer than its declared size of {declared} bytes")
        yield chunk
    if declared is not None and seen != declared:
        raise SizeMismatchError(f"the stream ended after {seen} bytes, short of its declared size of {declared}")


async def read_payload(data: Payload, size: int | None = None, limit: int | None = None) -> bytes:
    """The whole payload as one ``bytes`` (for stores that keep whole values), enforcing the
    declared ``size`` and refusing (``InvalidArgumentError``) more than ``limit`` bytes, whatever
    the payload's type. Streams go through the one gatherer (``parts.collect``), so a producer
    that refills one buffer stores what it yielded."""
    declared = check_declared(data, size)
    if limit is not None and declared is not None and declared > limit:
        raise InvalidArgumentError(f"the payload of {declared} bytes exceeds the store's cap of {limit} bytes")
    if isinstance(data, _BYTES_TYPES):
        return data if type(data) is bytes else bytes(data)
    return await collect(iter_payload(data, declared), limit, "the stream")
