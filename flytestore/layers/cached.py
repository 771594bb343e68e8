"""CachedStore: a byte-bounded in-memory LRU cache of small objects (FLYTE_BEHAVIOUR.md §7).

Admission follows Flyte's freecache rule exactly: an entry is refused when
``len(key) + len(value) > capacity / 1024 - 24`` bytes (objects larger than 1/1024 of the cache),
or when its key is longer than 65535 bytes; the capacity is at least 512 KiB. A refused entry is
counted as ``cache_write_err`` and is never an error for the caller.

Unlike Go, writes, copies onto a cached key and deletes always invalidate, even when the new
value is not admitted, and a fill (read miss or write) that raced with an invalidation of the
same key is dropped rather than cached: the cache never serves a value older than the last
write, copy or delete made through it.

Entries are keyed on the parsed reference (scheme family, container, key), not on its text: every
spelling of one object (``mem://b/k``, ``mem://b/%6B``, ``MEM://b/k/``, ``abfs://c/k`` and
``abfss://c@account.dfs.core.windows.net/k``) is one entry, so a write, copy, delete or
invalidation through any spelling reaches them all. A scheme family is the set of schemes one
backend serves (``flytestore.backends``: ``abfs`` and ``abfss``), plus the scheme-less spelling,
which only the memory store accepts. The admission rule still measures the reference as the
caller wrote it. Azure's blob URL (``https://<account>.blob.core.windows.net/c/k``) is not a
reference any store serves, so it has no family.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..backends import BY_SCHEME
from ..errors import InvalidReferenceError, check_size
from ..metrics import Scope
from ..parts import BytesLike
from ..payload import Payload, iter_payload, payload_size
from ..rawstore import (
    COALESCE_DEFAULT,
    ByteStream,
    Metadata,
    Options,
    RawStore,
    check_range,
    check_ranges,
    check_refs,
    enforce_limit,
)
from ..reference import escape_key, split_reference
from ..units import MiB
from .base import Layer

__all__ = ["CachedStore"]

_MIN_CAPACITY = 512 * 1024
_MAX_KEY = 65535

#: scheme -> its family: the canonical scheme of the backend serving it (``abfss`` -> ``abfs``).
#: A scheme-less reference reaches the same object as ``mem://``: the memory store alone takes one.
_FAMILY: dict[str, str] = {scheme: info.schemes[0] for scheme, info in BY_SCHEME.items()}
_FAMILY[""] = "mem"

#: A cache key: the canonical reference text of the object, or, where no reference text parses
#: back to exactly that object (a container with an escaped "/"), the parsed parts themselves.
_Key = str | tuple[str, str, str]

#: reference text -> its cache key, shared by every cache (a key depends on the text alone), so
#: a spelling is parsed once, not on every call.
_KEYS: dict[str, _Key] = {}
_MAX_KEYS = 65536


def cache_key(ref: str) -> _Key:
    """The key of every spelling of ``ref``'s object; ``""`` (never an entry) when ``ref`` does not parse.

    The key is ``<family>://<container>/<escaped key>`` when that text parses back to the same
    (family, container, key), which holds for every common reference: the reference as usually
    written is then its own key, and a cache hit needs no lookup of its spelling at all. A text
    equal to such a key names the same object whoever wrote it, so the shortcut is exact. Otherwise
    the key is the tuple itself, which no reference text can equal.
    """
    known = _KEYS.get(ref)
    if known is not None:
        return known
    try:
        scheme, container, path = split_reference(ref)
    except InvalidReferenceError:
        return ""
    family = _FAMILY.get(scheme, scheme)
    text = f"{family}://{container}/{escape_key(path)}"
    try:
        canonical = split_reference(text) == (family, container, path)
    except InvalidReferenceError:
        canonical = False
    key = (ref if text == ref else text) if canonical else (family, container, path)
    if len(_KEYS) >= _MAX_KEYS:
        _KEYS.clear()
    _KEYS[ref] = key
    return key


class _Fill:
    """A pending insertion; an invalidation of its key while it runs makes it stale."""

    __slots__ = ("valid",)

    def __init__(self) -> None:
        self.valid = True


class CachedStore(Layer):
    """A byte-bounded LRU cache of small objects over ``inner``; see the module docstring."""

    def __init__(self, inner: RawStore, *, max_size_mbs: float, scope: Scope | None = None) -> None:
        super().__init__(inner)
        self.capacity = max(int(max_size_mbs * MiB), _MIN_CAPACITY)
        self.max_entry = self.capacity // 1024 - 24
        #: cache key -> (value, metadata, bytes it counts for: len(reference) + len(value)).
        self._entries: OrderedDict[_Key, tuple[bytes, Metadata, int]] = OrderedDict()
        self._used = 0
        self._fills: dict[_Key, list[_Fill]] = {}
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

    def _put(self, key: _Key, ref: str, data: bytes, meta: Metadata) -> None:
        self._drop(key)
        cost = self._key_len(ref) + len(data)
        self._entries[key] = (data, meta, cost)
        self._used += cost
        while self._used > self.capacity:
            self._used -= self._entries.popitem(last=False)[1][2]

    def _drop(self, key: _Key) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._used -= entry[2]
        return True

    def _begin_fill(self, key: _Key) -> _Fill:
        fill = _Fill()
        self._fills.setdefault(key, []).append(fill)
        return fill

    def _end_fill(
        self,
        key: _Key,
        ref: str,
        fill: _Fill,
        data: bytes | None,
        meta: Metadata | None,
        *,
        mutation: bool = False,
    ) -> None:
        fills = self._fills.get(key)
        if fills is not None:
            fills.remove(fill)
            if not fills:
                del self._fills[key]
        if mutation:
            # Reads that began while this write ran may hold the old value: they must not cache it.
            valid = fill.valid
            self._invalidate(key)
            fill.valid = valid
        if data is None or meta is None:
            return
        if not self.admits(ref, len(data)):
            self.write_errors.inc()
            return
        if fill.valid:
            self._put(key, ref, data, meta)

    def invalidate(self, ref: str) -> None:
        """Forget ``ref``'s object (under every spelling) and make every fill of it still running stale."""
        key = cache_key(ref)
        if key:
            self._invalidate(key)

    def _invalidate(self, key: _Key) -> None:
        self._drop(key)
        for fill in self._fills.get(key, ()):
            fill.valid = False

    def _hit(self, ref: str) -> tuple[bytes, Metadata, int] | None:
        entries = self._entries
        key: _Key = ref
        entry = entries.get(ref)  # a reference written as usual is its own key: see cache_key
        if entry is None:
            key = _KEYS.get(ref) or cache_key(ref)
            entry = entries.get(key)
            if entry is None:
                self.misses.inc()
                return None
        entries.move_to_end(key)
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
        entries = self._entries
        key: _Key = ref
        entry = entries.get(ref)  # a reference written as usual is its own key: see cache_key
        if entry is None:
            key = _KEYS.get(ref) or cache_key(ref)
            entry = entries.get(key)
        if entry is not None:
            entries.move_to_end(key)
            self.hits.value += 1
            data = entry[0]
            if offset or length is not None:
                check_range(offset, length)  # as the store would have
                data = data[offset : None if length is None else offset + length]
            check_size(len(data), max_size, ref)
            return data
        stream = await self.read_raw(ref, offset, length)
        return await (await enforce_limit(stream, max_size, ref)).read()

    async def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> list[bytes]:
        """A cached object answers every range from memory; a miss reads the ranges from the
        store (a range read does not fill the cache, as with ``read_raw``)."""
        entry = self._hit(ref)
        if entry is None:
            return await self.inner.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size)
        data = entry[0]
        checked = check_ranges(ranges, coalesce)  # as the store would have
        results = [data[start:end] for start, end in checked]
        check_size(sum(map(len, results)), max_size, ref)
        return results

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        entry = self._hit(ref)
        if entry is not None:
            data, meta, _ = entry
            if offset or length is not None:
                check_range(offset, length)  # as the store would have
                end = len(data) if length is None else offset + length
                return ByteStream.from_bytes(memoryview(data)[offset:end], metadata=meta)
            return ByteStream.from_bytes(data, metadata=meta)
        if offset or length is not None:
            return await self.inner.read_raw(ref, offset=offset, length=length)
        key = _KEYS.get(ref) or cache_key(ref)
        if not key:  # a reference that does not parse: the store says why
            return await self.inner.read_raw(ref)
        fill = self._begin_fill(key)
        started = time.perf_counter()
        try:
            stream = await self.inner.read_raw(ref)
        except BaseException:
            self._end_fill(key, ref, fill, None, None)
            raise
        if stream.size is not None:
            if not self.admits(ref, stream.size):
                self._end_fill(key, ref, fill, None, None)
                self.write_errors.inc()
                return stream
            try:
                data = await stream.read()
            except BaseException:
                self._end_fill(key, ref, fill, None, None)
                raise
            meta = stream.metadata or Metadata(exists=True, size=len(data))
            self.remote_fetch.observe(time.perf_counter() - started)
            self._end_fill(key, ref, fill, data, meta)
            return ByteStream.from_bytes(data, metadata=meta)
        return ByteStream(
            self._tee_read(key, ref, fill, stream, started), metadata=stream.metadata, close=stream.aclose
        )

    async def _tee_read(
        self, key: _Key, ref: str, fill: _Fill, stream: ByteStream, started: float
    ) -> AsyncIterator[bytes]:
        parts: list[bytes] | None = []
        total = 0
        data: bytes | None = None
        try:
            async for chunk in stream:
                if parts is not None:
                    total += len(chunk)
                    if self.admits(ref, total):
                        parts.append(chunk)
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
            self._end_fill(key, ref, fill, data, meta)

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        key = _KEYS.get(ref) or cache_key(ref)
        if not key:  # a reference that does not parse: the store says why
            return await self.inner.write_raw(ref, data, size=size, options=options)
        self._invalidate(key)
        fill = self._begin_fill(key)
        body: bytes | None = None
        try:
            known = payload_size(data)
            if known is not None:
                meta = await self.inner.write_raw(ref, data, size=size, options=options)
                if self.admits(ref, known):
                    body = bytes(data)  # type: ignore[arg-type]  # payload_size() proved it bytes-like
                else:
                    self.write_errors.inc()
            elif type(size) is int and not self.admits(ref, size):  # a bad size: the store says why
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
            self._end_fill(key, ref, fill, None, None)
            raise
        self._end_fill(key, ref, fill, body, meta if body is not None else None, mutation=True)
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
        key = cache_key(ref)
        if not key:
            self.misses.inc()
            return await self.inner.delete(ref)
        if self._drop(key):
            self.hits.inc()
        else:
            self.misses.inc()
        self._invalidate(key)
        try:
            await self.inner.delete(ref)
        finally:
            self._invalidate(key)

    async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
        refs = check_refs(refs)
        keys = [key for key in (cache_key(ref) for ref in refs if isinstance(ref, str)) if key]
        for key in keys:
            self._invalidate(key)
        try:
            return await self.inner.delete_many(refs)
        finally:
            for key in keys:
                self._invalidate(key)

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
