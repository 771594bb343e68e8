"""CachedStore: a byte-bounded in-memory LRU cache of small objects (FLYTE_BEHAVIOUR.md §7).

Admission follows Flyte's freecache rule exactly: an entry is refused when
``len(key) + len(value) > capacity / 1024 - 24`` bytes (objects larger than 1/1024 of the cache),
or when its key is longer than 65535 bytes; the capacity is at least 512 KiB. A refused entry is
counted as ``cache_write_err`` and is never an error for the caller.

Unlike Go, writes, copies onto a cached key and deletes always invalidate, even when the new
value is not admitted, and a fill (read miss or write) that raced with an invalidation of the
same key is dropped rather than cached: the cache never serves a value older than the last
write, copy or delete made through it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from ..errors import check_size
from ..metrics import Scope
from ..rawstore import (
    BytesLike,
    ByteStream,
    Metadata,
    Options,
    Payload,
    RawStore,
    enforce_limit,
    iter_payload,
    payload_size,
)
from .base import Layer

__all__ = ["CachedStore"]

MiB = 1024 * 1024
_MIN_CAPACITY = 512 * 1024
_MAX_KEY = 65535


class _Fill:
    """A pending insertion; an invalidation of its key while it runs makes it stale."""

    __slots__ = ("valid",)

    def __init__(self) -> None:
        self.valid = True


class CachedStore(Layer):
    def __init__(self, inner: RawStore, *, max_size_mbs: float, scope: Scope | None = None) -> None:
        super().__init__(inner)
        self.capacity = max(int(max_size_mbs * MiB), _MIN_CAPACITY)
        self.max_entry = self.capacity // 1024 - 24
        self._entries: OrderedDict[str, tuple[bytes, Metadata]] = OrderedDict()
        self._used = 0
        self._fills: dict[str, list[_Fill]] = {}
        scope = scope or Scope("flyte:storage")
        self.hits = scope.counter("cache_hit", "reads and heads served from the cache")
        self.misses = scope.counter("cache_miss", "reads and heads not found in the cache")
        self.write_errors = scope.counter("cache_write_err", "values the cache could not admit")
        self.remote_fetch = scope.stopwatch("remote_fetch", "time to fetch a missed object from the store")

    # -- the cache itself --------------------------------------------------------------------
    @staticmethod
    def _key_len(ref: str) -> int:
        return len(ref) if ref.isascii() else len(ref.encode())

    def admits(self, ref: str, size: int) -> bool:
        """Whether an object of ``size`` bytes at ``ref`` may be cached."""
        key_len = self._key_len(ref)
        return key_len <= _MAX_KEY and key_len + size <= self.max_entry

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._used

    def _put(self, ref: str, data: bytes, meta: Metadata) -> None:
        self._drop(ref)
        self._entries[ref] = (data, meta)
        self._used += self._key_len(ref) + len(data)
        while self._used > self.capacity:
            old_ref, (old, _) = self._entries.popitem(last=False)
            self._used -= self._key_len(old_ref) + len(old)

    def _drop(self, ref: str) -> bool:
        entry = self._entries.pop(ref, None)
        if entry is None:
            return False
        self._used -= self._key_len(ref) + len(entry[0])
        return True

    def _begin_fill(self, ref: str) -> _Fill:
        fill = _Fill()
        self._fills.setdefault(ref, []).append(fill)
        return fill

    def _end_fill(
        self, ref: str, fill: _Fill, data: bytes | None, meta: Metadata | None, *, mutation: bool = False
    ) -> None:
        fills = self._fills.get(ref)
        if fills is not None:
            fills.remove(fill)
            if not fills:
                del self._fills[ref]
        if mutation:
            # Reads that began while this write ran may hold the old value: they must not cache it.
            valid = fill.valid
            self.invalidate(ref)
            fill.valid = valid
        if data is None or meta is None:
            return
        if not self.admits(ref, len(data)):
            self.write_errors.inc()
            return
        if fill.valid:
            self._put(ref, data, meta)

    def invalidate(self, ref: str) -> None:
        """Forget ``ref`` and make every fill of it still running stale."""
        self._drop(ref)
        for fill in self._fills.get(ref, ()):
            fill.valid = False

    def _hit(self, ref: str) -> tuple[bytes, Metadata] | None:
        entry = self._entries.get(ref)
        if entry is None:
            self.misses.inc()
            return None
        self._entries.move_to_end(ref)
        self.hits.inc()
        return entry

    # -- RawStore ---------------------------------------------------------------------------
    async def head(self, ref: str) -> Metadata:
        entry = self._hit(ref)
        if entry is not None:
            return entry[1]
        return await self.inner.head(ref)

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        entry = self._entries.get(ref)
        if entry is not None:
            self._entries.move_to_end(ref)
            self.hits.value += 1
            data = entry[0]
            if offset or length is not None:
                data = data[offset : None if length is None else offset + length]
            check_size(len(data), max_size, ref)
            return data
        stream = await self.read_raw(ref, offset, length)
        return await (await enforce_limit(stream, max_size, ref)).read()

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        entry = self._hit(ref)
        if entry is not None:
            data, meta = entry
            if offset or length is not None:
                end = len(data) if length is None else offset + length
                return ByteStream.from_bytes(memoryview(data)[offset:end], metadata=meta)
            return ByteStream.from_bytes(data, metadata=meta)
        if offset or length is not None:
            return await self.inner.read_raw(ref, offset=offset, length=length)
        fill = self._begin_fill(ref)
        started = time.perf_counter()
        try:
            stream = await self.inner.read_raw(ref)
        except BaseException:
            self._end_fill(ref, fill, None, None)
            raise
        if stream.size is not None:
            if not self.admits(ref, stream.size):
                self._end_fill(ref, fill, None, None)
                self.write_errors.inc()
                return stream
            try:
                data = await stream.read()
            except BaseException:
                self._end_fill(ref, fill, None, None)
                raise
            meta = stream.metadata or Metadata(exists=True, size=len(data))
            self.remote_fetch.observe(time.perf_counter() - started)
            self._end_fill(ref, fill, data, meta)
            return ByteStream.from_bytes(data, metadata=meta)
        return ByteStream(self._tee_read(ref, fill, stream, started), metadata=stream.metadata, close=stream.aclose)

    async def _tee_read(self, ref: str, fill: _Fill, stream: ByteStream, started: float) -> AsyncIterator[BytesLike]:
        parts: list[bytes] | None = []
        total = 0
        data: bytes | None = None
        try:
            async for chunk in stream:
                if parts is not None:
                    total += len(chunk)
                    if self.admits(ref, total):
                        parts.append(bytes(chunk))
                    else:
                        parts = None
                yield chunk
            if parts is None:
                self.write_errors.inc()
            else:
                data = b"".join(parts)
                self.remote_fetch.observe(time.perf_counter() - started)
        finally:
            meta = None if data is None else (stream.metadata or Metadata(exists=True, size=len(data)))
            self._end_fill(ref, fill, data, meta)

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        self.invalidate(ref)
        fill = self._begin_fill(ref)
        body: bytes | None = None
        try:
            known = payload_size(data)
            if known is not None:
                meta = await self.inner.write_raw(ref, data, size=size, options=options)
                if self.admits(ref, known):
                    body = bytes(data)  # type: ignore[arg-type]  # payload_size() proved it bytes-like
                else:
                    self.write_errors.inc()
            elif size is not None and not self.admits(ref, size):
                meta = await self.inner.write_raw(ref, data, size=size, options=options)
                self.write_errors.inc()
            else:
                parts: list[bytes] = []
                meta = await self.inner.write_raw(
                    ref, self._tee_write(ref, data, size, parts), size=size, options=options
                )
                if parts and parts[-1] is _OVERFLOW:
                    self.write_errors.inc()
                else:
                    body = b"".join(parts)
        except BaseException:
            self._end_fill(ref, fill, None, None)
            raise
        self._end_fill(ref, fill, body, meta if body is not None else None, mutation=True)
        return meta

    async def _tee_write(
        self, ref: str, data: Payload, size: int | None, parts: list[bytes]
    ) -> AsyncIterator[BytesLike]:
        total = 0
        overflow = False
        async for chunk in iter_payload(data, size):
            if not overflow:
                total += len(chunk)
                if self.admits(ref, total):
                    parts.append(bytes(chunk))
                else:
                    overflow = True
                    parts.clear()
                    parts.append(_OVERFLOW)
            yield chunk

    async def delete(self, ref: str) -> None:
        if self._drop(ref):
            self.hits.inc()
        else:
            self.misses.inc()
        self.invalidate(ref)
        try:
            await self.inner.delete(ref)
        finally:
            self.invalidate(ref)

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        # The copy is not cached here: the destination fills on its next read.
        self.invalidate(dst)
        try:
            return await self.inner.copy_raw(src, dst, options=options)
        finally:
            self.invalidate(dst)

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "used_bytes": self._used, "capacity": self.capacity}


_OVERFLOW = b"\0overflow"
