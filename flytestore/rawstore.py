"""The RawStore protocol and the value types every store and layer shares.

Owns: ``RawStore`` (the one protocol backends and layers implement), ``Metadata``, ``Options``,
``Cursor``, ``ListEntry``, signed-URL types and ``ByteStream`` (what reads return). Neighbours:
``flytestore.payload`` (what writes accept), ``flytestore.parts`` (the write pipeline),
``flytestore.streamcopy`` (copies between stores), ``flytestore.stores.base`` (``BaseStore``).
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ExceedsLimitError, InvalidArgumentError
from .parts import BytesLike
from .reference import DataReference
from .units import MiB

if TYPE_CHECKING:  # moved names, served lazily by ``__getattr__`` below
    from .payload import Payload as Payload
    from .payload import SupportsAsyncRead as SupportsAsyncRead
    from .payload import SupportsRead as SupportsRead
    from .payload import check_declared as check_declared
    from .payload import iter_payload as iter_payload
    from .payload import payload_size as payload_size
    from .payload import read_payload as read_payload
    from .stores.base import BaseStore as BaseStore
    from .streamcopy import SPLIT_AHEAD as SPLIT_AHEAD
    from .streamcopy import SPLIT_NEVER as SPLIT_NEVER
    from .streamcopy import SPLIT_PART_SIZE as SPLIT_PART_SIZE
    from .streamcopy import SPLIT_THRESHOLD as SPLIT_THRESHOLD
    from .streamcopy import split_read as split_read
    from .streamcopy import stream_copy as stream_copy

__all__ = [
    "COALESCE_DEFAULT",
    "COALESCE_PARALLEL",
    "DEFAULT_CHUNK_SIZE",
    "ByteStream",
    "BytesLike",
    "Cursor",
    "ListEntry",
    "Metadata",
    "Options",
    "RawStore",
    "SignedURLProperties",
    "SignedURLResponse",
    "check_range",
    "check_ranges",
    "check_refs",
    "enforce_limit",
]

#: Chunk size for slicing in-memory payloads and bodies: slicing costs no I/O, so this only
#: bounds how much one chunk pins. Backends with a per-chunk cost pick their own (the local
#: store uses 8 MiB, measured with ``benchmarks/bench_local.py``).
DEFAULT_CHUNK_SIZE = MiB

#: ``read_ranges``: ranges whose gap is at most this many bytes are fetched by one request (Rust
#: object_store's ``OBJECT_STORE_COALESCE_DEFAULT``, which obstore's ``get_ranges`` uses).
COALESCE_DEFAULT = MiB
#: ``read_ranges``: requests in flight at once for one call (object_store's
#: ``OBJECT_STORE_COALESCE_PARALLEL``).
COALESCE_PARALLEL = 10


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


def check_range(offset: int, length: int | None) -> None:
    """Validate a range read's arguments."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgumentError(f"offset must be a non-negative int, got {offset!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
        raise InvalidArgumentError(f"length must be a non-negative int or None, got {length!r}")


def check_ranges(ranges: Sequence[tuple[int, int]], coalesce: int = 0) -> builtins.list[tuple[int, int]]:
    """Validate ``read_ranges``' arguments: a sequence of ``(start, end)`` pairs of ints with
    ``0 <= start <= end`` (end exclusive), and a non-negative ``coalesce``. Returns the ranges as
    a list of tuples."""
    if isinstance(coalesce, bool) or not isinstance(coalesce, int) or coalesce < 0:
        raise InvalidArgumentError(f"coalesce must be a non-negative int (bytes), got {coalesce!r}")
    if isinstance(ranges, (str, bytes, bytearray, memoryview)) or not isinstance(ranges, Sequence):
        raise InvalidArgumentError(f"ranges must be a sequence of (start, end) pairs, got {type(ranges).__name__}")
    checked: builtins.list[tuple[int, int]] = []
    for i, pair in enumerate(ranges):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidArgumentError(f"ranges[{i}] must be a (start, end) pair of ints, got {pair!r}")
        start, end = pair
        if isinstance(start, bool) or not isinstance(start, int) or isinstance(end, bool) or not isinstance(end, int):
            raise InvalidArgumentError(f"ranges[{i}] must be a (start, end) pair of ints, got {pair!r}")
        if start < 0 or end < start:
            raise InvalidArgumentError(f"ranges[{i}] = {pair!r}: need 0 <= start <= end (byte offsets, end exclusive)")
        checked.append((start, end))
    return checked


def check_refs(refs: Sequence[str]) -> builtins.list[str]:
    """Validate ``delete_many``'s argument: a sequence of references (not one reference).

    The references themselves are checked one by one by the store: a bad one is an error in its
    own slot of the results, not a failure of the call."""
    if isinstance(refs, (str, bytes, bytearray, memoryview)) or not isinstance(refs, Sequence):
        raise InvalidArgumentError(
            f"refs must be a sequence of references (a list or a tuple of str), got {type(refs).__name__}"
        )
    return builtins.list(refs)


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

    async def delete_many(self, refs: Sequence[str]) -> builtins.list[BaseException | None]:
        """Delete many objects: one result per reference, in order. ``None`` when the object was
        deleted or did not exist (a missing object is not an error here: bulk deletes race other
        deleters), else the error (a bad reference: ``InvalidReferenceError``). Raises only for
        what concerns the whole call (``refs`` not a sequence)."""
        ...

    async def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> builtins.list[bytes]:
        """The bytes of each ``(start, end)`` range of one object (end exclusive), in order.

        Slice semantics: a range past the end yields what exists (possibly ``b""``). Ranges whose
        gap is at most ``coalesce`` bytes are fetched by one request and split back (0: each
        distinct range its own request); the requests run ``COALESCE_PARALLEL`` at once. Every
        range comes from one version of the object: a change between requests raises
        ``PreconditionFailedError``. With ``max_size``, a call whose ranges total more bytes
        raises ``ExceedsLimitError`` before they are downloaded. Bad ranges:
        ``InvalidArgumentError``. Ranges that are all empty make no request."""
        ...

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata: ...

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse: ...


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


#: Names that moved to neighbouring modules, still importable from here.
_MOVED = {
    "Payload": "payload",
    "SupportsRead": "payload",
    "SupportsAsyncRead": "payload",
    "check_declared": "payload",
    "iter_payload": "payload",
    "payload_size": "payload",
    "read_payload": "payload",
    "stream_copy": "streamcopy",
    "split_read": "streamcopy",
    "SPLIT_THRESHOLD": "streamcopy",
    "SPLIT_NEVER": "streamcopy",
    "SPLIT_PART_SIZE": "streamcopy",
    "SPLIT_AHEAD": "streamcopy",
    "BaseStore": "stores.base",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__package__}.{module}"), name)
