"""The RawStore protocol and the value types every store and layer shares.

Owns: ``RawStore`` (the one protocol backends and layers implement), ``Metadata``, ``Options``,
``Cursor``, ``ListEntry``, signed-URL types, ``ByteStream`` (what reads return), the payload
helpers that turn anything a caller may write into bounded chunks, and ``BaseStore``, the shared
plumbing of backends (reference checks, listing loops, generic copy, lifecycle).
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import inspect
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import (
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PreconditionFailedError,
    SizeMismatchError,
    UnsupportedError,
)
from .parts import collect
from .reference import DataReference, escape_key, split_reference

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BaseStore",
    "ByteStream",
    "BytesLike",
    "Cursor",
    "ListEntry",
    "Metadata",
    "Options",
    "Payload",
    "RawStore",
    "SignedURLProperties",
    "SignedURLResponse",
    "SupportsAsyncRead",
    "SupportsRead",
    "check_declared",
    "check_range",
    "enforce_limit",
    "iter_payload",
    "payload_size",
    "read_payload",
    "split_read",
    "stream_copy",
    "SPLIT_NEVER",
    "SPLIT_THRESHOLD",
]

#: Chunk size for slicing in-memory payloads and bodies: slicing costs no I/O, so this only
#: bounds how much one chunk pins. Backends with a per-chunk cost pick their own (the local
#: store uses 8 MiB, measured with ``benchmarks/bench_local.py``).
DEFAULT_CHUNK_SIZE = 1024 * 1024

BytesLike = bytes | bytearray | memoryview

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Metadata:
    """What ``head`` and ``write_raw`` report about one object.

    A missing object is ``Metadata(exists=False)``; ``head`` never raises for it.
    """

    exists: bool
    size: int = 0
    etag: str = ""
    content_md5: str = ""
    content_type: str | None = None
    last_modified: datetime | None = None
    user_metadata: Mapping[str, str] = field(default_factory=_empty)
    version: str | None = None

    @classmethod
    def missing(cls) -> Metadata:
        return _MISSING


_MISSING = Metadata(exists=False)


@dataclass(frozen=True, slots=True)
class Options:
    """Per-write options: user metadata, content type and create-only writes."""

    metadata: Mapping[str, str] = field(default_factory=_empty)
    content_type: str | None = None
    #: Create only: raise ``AlreadyExistsError`` rather than overwrite an existing object.
    if_not_exists: bool = False


DEFAULT_OPTIONS = Options()


class _CursorState(enum.IntEnum):
    START = 0
    END = 1
    AT = 2


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a paginated listing resumes. Compare by value; ``Cursor.end()`` means exhausted."""

    state: _CursorState = _CursorState.START
    position: str = ""

    @classmethod
    def start(cls) -> Cursor:
        return _START

    @classmethod
    def end(cls) -> Cursor:
        return _END

    @classmethod
    def at(cls, position: str) -> Cursor:
        return cls(_CursorState.AT, position)

    def is_start(self) -> bool:
        return self.state is _CursorState.START

    def is_end(self) -> bool:
        return self.state is _CursorState.END


_START = Cursor(_CursorState.START)
_END = Cursor(_CursorState.END)


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One object found by ``list``."""

    ref: DataReference
    size: int = 0
    etag: str = ""
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class SignedURLProperties:
    """What a signed URL may do: ``scope`` is ``GET`` or ``PUT``."""

    scope: str = "GET"
    expires_in: timedelta = timedelta(hours=1)
    #: Base64 MD5 of the content a PUT will send; signed into the URL when set.
    content_md5: str = ""
    #: Also store the MD5 as the object's ``flyteContentMD5`` metadata (S3 PUT).
    add_content_md5_metadata: bool = False

    def __post_init__(self) -> None:
        scope = self.scope.upper()
        if scope not in ("GET", "PUT"):
            raise InvalidArgumentError(f"signed URL scope must be GET or PUT, not {self.scope!r}")
        object.__setattr__(self, "scope", scope)
        if self.expires_in <= timedelta(0):
            raise InvalidArgumentError(f"signed URL expires_in must be positive, not {self.expires_in}")


@dataclass(frozen=True, slots=True)
class SignedURLResponse:
    """A signed URL and the headers the client must send with it."""

    url: str
    required_headers: Mapping[str, str] = field(default_factory=_empty)


# ---------------------------------------------------------------------------------------------
# Reads: ByteStream


class ByteStream:
    """The body of a read: an async iterator of bounded chunks and an async context manager.

    ``size`` is the number of bytes the stream will yield when the backend knows it, else None.
    ``read()`` returns the whole rest of the body. Closing is idempotent and releases the
    underlying connection or file.
    """

    __slots__ = ("_callbacks", "_chunks", "_close", "_closed", "metadata", "size")

    #: Whether the body is already in memory (a memory store, a cache hit): nothing to resume.
    in_memory = False

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        metadata: Metadata | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self.size = size
        self.metadata = metadata
        self._close = close
        self._closed = False
        self._callbacks: list[Callable[[], None]] | None = None

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the stream is closed (or right away if it already is)."""
        if self._closed:
            callback()
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    @classmethod
    def from_bytes(cls, data: BytesLike, *, metadata: Metadata | None = None) -> ByteStream:
        return _BytesStream(data, metadata)

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise

    async def read(self) -> bytes:
        """The rest of the body as one ``bytes`` object."""
        try:
            parts = [chunk async for chunk in self]
        finally:
            await self.aclose()
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._chunks, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            try:
                if self._close is not None:
                    await self._close()
            finally:
                for callback in self._callbacks or ():
                    callback()

    async def __aenter__(self) -> ByteStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _BytesStream(ByteStream):
    """A stream over bytes already in memory (memory store, cache hits): ``read`` copies nothing,
    and no generator is built unless the stream is iterated."""

    __slots__ = ("_data", "_pos")

    in_memory = True

    def __init__(self, data: BytesLike, metadata: Metadata | None) -> None:
        # ByteStream.__init__ is skipped on purpose: its chunk iterator is not needed here.
        self._chunks = None  # type: ignore[assignment]
        self._close = None
        self._closed = False
        self._callbacks = None
        self.size = len(data)
        self.metadata = metadata
        self._data: BytesLike | None = data
        self._pos = 0

    async def __anext__(self) -> bytes:
        data, pos = self._data, self._pos
        if data is None or pos >= len(data):
            await self.aclose()
            raise StopAsyncIteration
        end = pos + DEFAULT_CHUNK_SIZE
        self._pos = end
        if not pos and end >= len(data) and type(data) is bytes:
            return data
        return bytes(memoryview(data)[pos:end])

    async def read(self) -> bytes:
        data, pos = self._data, self._pos
        await self.aclose()
        if data is None:
            raise InvalidArgumentError("stream already consumed")
        if pos:
            return bytes(memoryview(data)[pos:])
        return data if type(data) is bytes else bytes(data)

    async def aclose(self) -> None:
        self._data = None
        await super().aclose()


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


def check_range(offset: int, length: int | None) -> None:
    """Validate a range read's arguments."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgumentError(f"offset must be a non-negative int, got {offset!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
        raise InvalidArgumentError(f"length must be a non-negative int or None, got {length!r}")


# ---------------------------------------------------------------------------------------------
# The protocol


@runtime_checkable
class RawStore(Protocol):
    """The one interface of every backend and every layer.

    Range reads use Python slice semantics: a range past the end yields the bytes that exist
    (possibly none). Listing is recursive and directory-aware: the reference's key names a
    "directory" (``a/b`` lists ``a/b/...``, not ``a/bc``); an empty key lists the container.
    Results come in key order.
    """

    @property
    def base_container(self) -> DataReference: ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def head(self, ref: str) -> Metadata: ...

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream: ...

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        """The whole object (or range) at once: ``read_raw`` then ``read``, which layers and
        stores that hold bytes already can answer without building a stream. With ``max_size``,
        a larger object raises ``ExceedsLimitError`` before it is downloaded."""
        ...

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata: ...

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]: ...

    async def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> tuple[builtins.list[DataReference], Cursor]: ...

    async def delete(self, ref: str) -> None: ...

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata: ...

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse: ...


_S = TypeVar("_S", bound="BaseStore")


class BaseStore:
    """Shared plumbing for backends: reference checks, listing loops, generic copy, lifecycle.

    A backend sets ``schemes`` (the first is canonical) and implements the ``_list_entries``
    primitive plus the object operations; everything else here derives from them.
    """

    schemes: tuple[str, ...] = ()
    #: Also accept scheme-less references (``/a/b``), as Flyte's in-memory store does.
    accepts_no_scheme = False

    def __init__(self, *, container: str = "", multicontainer: bool = True) -> None:
        self.container = container
        self.multicontainer = multicontainer

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open clients; create the configured container when it is missing."""

    async def aclose(self) -> None:
        """Close clients and pools."""

    async def __aenter__(self: _S) -> _S:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def base_container(self) -> DataReference:
        if not self.container:
            return DataReference("")
        return DataReference(f"{self.schemes[0]}://{self.container}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(container={self.container!r})"

    # -- references -----------------------------------------------------------------------------
    def locate(self, ref: str, *, allow_empty_key: bool = False) -> tuple[str, str]:
        """Check ``ref`` belongs to this store and return its ``(container, key)``."""
        scheme, container, key = split_reference(ref)
        if scheme not in self.schemes and not (self.accepts_no_scheme and not scheme):
            expected = " or ".join(f"{s}://" for s in self.schemes)
            raise InvalidReferenceError(f"reference [{ref}] is not a {expected} reference")
        if not self.multicontainer and self.container and container != self.container:
            raise NotFoundError(
                f"reference [{ref}] names container [{container}] but this store serves only "
                f"[{self.container}]; set enable-multicontainer to reach other containers"
            )
        if not key and not allow_empty_key:
            raise InvalidReferenceError(f"reference [{ref}] has an empty key")
        return container, key

    def make_ref(self, container: str, key: str) -> DataReference:
        """The reference of an object this store found (listing): the key is escaped so that
        ``split()`` gives it back unchanged."""
        return DataReference(f"{self.schemes[0]}://{container}/{escape_key(key)}")

    # -- what each backend implements ----------------------------------------------------------
    async def head(self, ref: str) -> Metadata:
        raise NotImplementedError

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        raise NotImplementedError

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        raise NotImplementedError

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        stream = await self.read_raw(ref, offset, length)
        return await (await enforce_limit(stream, max_size, ref)).read()

    async def delete(self, ref: str) -> None:
        raise NotImplementedError

    # -- listing --------------------------------------------------------------------------------
    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        """One page of entries under ``prefix`` ('' or ending in '/'), in key order."""
        raise NotImplementedError

    @staticmethod
    def dir_prefix(key: str) -> str:
        return key.rstrip("/") + "/" if key.strip("/") else ""

    async def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> tuple[list[DataReference], Cursor]:
        entries, nxt = await self.list_entries_page(ref, max_items=max_items, cursor=cursor)
        return [e.ref for e in entries], nxt

    async def list_entries_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> tuple[list[ListEntry], Cursor]:
        cursor = cursor or Cursor.start()
        if cursor.is_end():
            raise InvalidArgumentError("cursor cannot be at end for a list call: the listing is exhausted")
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items <= 0:
            raise InvalidArgumentError(f"max_items must be a positive int, got {max_items!r}")
        container, key = self.locate(ref, allow_empty_key=True)
        return await self._list_entries(container, self.dir_prefix(key), max_items, cursor)

    async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        cursor = Cursor.start()
        while not cursor.is_end():
            entries, cursor = await self.list_entries_page(ref, max_items=page_size, cursor=cursor)
            for entry in entries:
                yield entry

    # -- generic operations ------------------------------------------------------------------
    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Generic copy: stream the source into the destination (backends override with
        server-side copies)."""
        return await stream_copy(self, src, self, dst, options)

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse:
        self.locate(ref)
        raise UnsupportedError(f"signed URLs are unsupported by {type(self).__name__}")


async def enforce_limit(stream: ByteStream, limit: int | None, ref: str) -> ByteStream:
    """``stream`` refused (closed, ``ExceedsLimitError``) when its known size passes ``limit``,
    or cut off with that error as soon as it does when the size is unknown."""
    if not limit:
        return stream
    if stream.size is not None:
        if stream.size > limit:
            await stream.aclose()
            raise ExceedsLimitError(stream.size, limit, ref)
        return stream
    return ByteStream(_capped(stream, limit, ref), metadata=stream.metadata, close=stream.aclose)


async def _capped(stream: ByteStream, limit: int, ref: str) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise ExceedsLimitError(seen, limit, ref)
        yield chunk


#: Objects at least this large are copied across stores by parallel ranged reads (from stores
#: whose range reads are cheap: see ``RoutingStore``).
SPLIT_THRESHOLD = 64 * 1024 * 1024
#: A threshold no object reaches.
SPLIT_NEVER = 1 << 62
#: The size of each ranged read of a split copy, and how many are fetched ahead of the writer.
SPLIT_PART_SIZE = 8 * 1024 * 1024
SPLIT_AHEAD = 4


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

    async def fetch(offset: int, length: int) -> bytes:
        part = await store.read_raw(ref, offset, length)
        async with part:
            now = part.metadata.etag if part.metadata is not None else ""
            if now != etag:
                raise PreconditionFailedError(
                    f"[{ref}] changed while it was being copied (etag {etag} became {now or 'unknown'})"
                )
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
