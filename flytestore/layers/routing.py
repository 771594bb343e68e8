"""RoutingStore: picks a backend by the reference's scheme (Flyte's multi-scheme routing store).

The primary store serves its own schemes, scheme-less references, references that do not parse
and schemes no factory knows (so one store can keep handling everything, as in Go). Other
schemes get a backend from the factory on first use: built and opened once per cache key, even
under many concurrent first uses; a failed build is not remembered, so the next use retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import InvalidReferenceError
from ..payload import Payload
from ..rawstore import (
    COALESCE_DEFAULT,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    RawStore,
    SignedURLProperties,
    SignedURLResponse,
    check_refs,
)
from ..reference import DataReference, split_reference
from ..streamcopy import SPLIT_NEVER, SPLIT_THRESHOLD, stream_copy

__all__ = ["BackendFactory", "RoutingStore"]

T = TypeVar("T")


class BackendFactory(Protocol):
    def cache_key(self, scheme: str, ref: str) -> str | None:
        """The key under which the backend for ``ref`` is shared, or None for an unknown scheme."""

    async def create(self, scheme: str, ref: str) -> RawStore:
        """Build and open the backend for ``ref``."""


class RoutingStore:
    """Sends each reference to the backend of its scheme: the primary serves its own schemes and
    anything it cannot place; other schemes get a backend from ``factory`` on first use. Copies
    across backends stream (``streamcopy.stream_copy``), split into ranged reads from stores
    whose ranges are cheap."""

    def __init__(
        self,
        primary: RawStore | None,
        primary_schemes: tuple[str, ...] = (),
        factory: BackendFactory | None = None,
        *,
        split_threshold: int = SPLIT_THRESHOLD,
    ) -> None:
        self.primary = primary
        #: Cross-backend copies from stores with ``parallel_range_reads`` split objects this large
        #: into parallel ranged reads (0: never).
        self.split_threshold = split_threshold or SPLIT_NEVER
        self.factory = factory
        self._live: dict[str, RawStore] = {}
        #: "<scheme>://" of the primary: the one check the commonest references need.
        self._primary_prefix = f"{primary_schemes[0]}://" if primary is not None and primary_schemes else "\0"
        self._plen = len(self._primary_prefix)
        if primary is not None:
            self._live.update(dict.fromkeys(primary_schemes, primary))
        self._created: list[RawStore] = []
        self._locks: dict[str, asyncio.Lock] = {}
        #: Long-running operations and open streams using this router's backends (streaming
        #: writes, copies, listings, and streams its owner registers with hold/release).
        self.inflight = 0
        self._drained: asyncio.Event | None = None

    # -- in-flight accounting (what DataStore.refresh_config waits for) --------------------------
    def hold(self) -> None:
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1
        if self._drained is not None and not self.inflight:
            self._drained.set()

    async def drained(self) -> None:
        """Return once no held operation or stream is left."""
        if self.inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()

    async def _held(self, call: Awaitable[T]) -> T:
        self.hold()
        try:
            return await call
        finally:
            self.release()

    def __repr__(self) -> str:
        return f"RoutingStore(primary={self.primary!r}, live={sorted(self._live)})"

    @property
    def base_container(self) -> DataReference:
        return self.primary.base_container if self.primary is not None else DataReference("")

    async def open(self) -> None:
        if self.primary is not None:
            await self.primary.open()

    async def aclose(self) -> None:
        stores, self._created = self._created, []
        if self.primary is not None:
            stores.append(self.primary)
        self._live.clear()
        for result in await asyncio.gather(*(s.aclose() for s in stores), return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    # -- resolution ---------------------------------------------------------------------------
    def _fallback(self, ref: str, why: str) -> RawStore:
        if self.primary is None:
            raise InvalidReferenceError(f"no store serves reference [{ref}]: {why}")
        return self.primary

    def _live_for(self, ref: str) -> RawStore | None:
        """The backend for ``ref`` when it needs no creation (the fast path), else None."""
        try:
            store = self._live.get(split_reference(ref)[0])
        except InvalidReferenceError as err:
            return self._fallback(ref, str(err))
        if store is not None:
            return store
        if not split_reference(ref)[0]:
            return self._fallback(ref, "it has no scheme and there is no primary store")
        return None

    async def backend_for(self, ref: str) -> RawStore:
        """The backend serving ``ref``, creating it on first use."""
        store = self._live_for(ref)
        if store is not None:
            return store
        scheme = split_reference(ref)[0]  # _live_for has ruled out parse errors
        key = self.factory.cache_key(scheme, ref) if self.factory is not None else None
        if key is None:
            return self._fallback(ref, f"no backend is registered for scheme [{scheme}]")
        store = self._live.get(key)
        if store is not None:
            return store
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            store = self._live.get(key)
            if store is None:
                assert self.factory is not None
                store = await self.factory.create(scheme, ref)
                self._created.append(store)
                self._live[key] = store
        return store

    # -- RawStore ---------------------------------------------------------------------------
    # The hottest operations find their backend inline, by the reference's literal scheme
    # prefix, and keep their slow path in separate methods: a closure in a function makes
    # CPython allocate cells for its captured variables on every call, used or not.
    # When the text before "://" is a live scheme exactly, it is the scheme the full parse would
    # give (the backend still validates the whole reference); anything else (upper case, no
    # "://", a scheme-less path) gets None here and the full parse in backend_for.
    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("head", ref)
        return store.head(ref)

    def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> Coroutine[Any, Any, ByteStream]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("read_raw", ref, offset, length)
        return store.read_raw(ref, offset, length)

    def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> Coroutine[Any, Any, bytes]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("read_bytes", ref, offset, length, max_size)
        return store.read_bytes(ref, offset, length, max_size)

    def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Coroutine[Any, Any, Metadata]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("write_raw", ref, data, size, options)
        if type(data) is bytes or isinstance(data, (bytearray, memoryview)):
            return store.write_raw(ref, data, size, options)
        return self._held(store.write_raw(ref, data, size, options))  # a stream: may run long

    def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> Coroutine[Any, Any, list[bytes]]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("read_ranges", ref, ranges, coalesce=coalesce, max_size=max_size)
        return store.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size)

    async def _slow(self, method: str, ref: str, *args: Any, **kwargs: Any) -> Any:
        """An operation whose backend needs a full parse or creation first (or a cold one)."""
        store = await self.backend_for(ref)
        return await self._held(getattr(store, method)(ref, *args, **kwargs))

    def delete(self, ref: str) -> Coroutine[Any, Any, None]:
        store = self.primary if ref[: self._plen] == self._primary_prefix else self._live.get(ref[: ref.find("://")])
        if store is None:
            return self._slow("delete", ref)
        return store.delete(ref)

    async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
        """Each backend deletes its own references in one ``delete_many`` (all backends at once);
        the results come back in the order of ``refs``. A reference no backend serves, or whose
        backend cannot be built, gets the error in its slot."""
        refs = check_refs(refs)
        results: list[BaseException | None] = [None] * len(refs)
        groups: dict[int, tuple[RawStore, list[int]]] = {}
        unbuilt: dict[str, BaseException] = {}  # scheme -> why its backend could not be built
        self.hold()
        try:
            for i, ref in enumerate(refs):
                try:
                    store = self._live_for(ref)
                    if store is None:
                        scheme = split_reference(ref)[0]
                        failed = unbuilt.get(scheme)
                        if failed is not None:
                            results[i] = failed
                            continue
                        try:
                            store = await self.backend_for(ref)
                        except Exception as err:
                            unbuilt[scheme] = err
                            raise
                except Exception as err:
                    results[i] = err
                    continue
                groups.setdefault(id(store), (store, []))[1].append(i)

            async def run(store: RawStore, indices: list[int]) -> None:
                outcomes = await store.delete_many([refs[i] for i in indices])
                for i, outcome in zip(indices, outcomes, strict=True):
                    results[i] = outcome

            await asyncio.gather(*(run(store, indices) for store, indices in groups.values()))
        finally:
            self.release()
        return results

    def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> Coroutine[Any, Any, tuple[list[DataReference], Cursor]]:
        return self._slow("list_page", ref, max_items=max_items, cursor=cursor)

    def create_signed_url(self, ref: str, props: SignedURLProperties) -> Coroutine[Any, Any, SignedURLResponse]:
        return self._slow("create_signed_url", ref, props)

    async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        self.hold()
        try:
            store = await self.backend_for(ref)
            async for entry in store.list(ref, page_size=page_size):
                yield entry
        finally:
            self.release()

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        self.hold()
        try:
            src_store = await self.backend_for(src)
            dst_store = await self.backend_for(dst)
            if src_store is dst_store:
                return await src_store.copy_raw(src, dst, options=options)
            split = self.split_threshold if getattr(src_store, "parallel_range_reads", False) else SPLIT_NEVER
            return await stream_copy(src_store, src, dst_store, dst, options, split_threshold=split)
        finally:
            self.release()
