"""DataStore: the public face, assembled from a Config (docs/architecture.md#the-stack).

    DataStore -> ProtobufStore -> [CachedStore] -> LimitedStore -> RoutingStore -> backends

Each backend that does I/O sits in a ResilientStore (retries, resumed reads) and an
InstrumentedStore (metrics); the backends of one stack share one concurrency ``Budget``.

The constructor does no I/O; ``open()`` (or ``async with``) builds the stack, opens the primary
backend and creates its container when missing (unless ``createContainer: false``).
``refresh_config`` builds a new stack beside the old one, swaps it in, and closes the old one once
the operations and streams that were using it have finished. Metrics live in the ``Scope`` and survive refreshes.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import Message

from .config import Config
from .errors import StorageError
from .layers.cached import CachedStore
from .layers.limited import LimitedStore
from .layers.protobuf import ProtobufStore
from .layers.resilient import Budget
from .layers.routing import RoutingStore
from .metrics import Scope
from .payload import Payload
from .rawstore import (
    COALESCE_DEFAULT,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    RawStore,
    SignedURLProperties,
    SignedURLResponse,
)
from .reference import DataReference, construct_reference
from .registry import SchemeFactory, build_primary
from .retry import RetryPolicy
from .units import MiB

__all__ = ["DataStore", "build_stack"]

T = TypeVar("T")
M = TypeVar("M", bound=Message)


class _Stack:
    """One assembled layer stack; its router counts the long-running work using it."""

    __slots__ = ("cache", "closed", "raw", "router", "top")

    def __init__(self, top: ProtobufStore, router: RoutingStore, cache: CachedStore | None) -> None:
        self.top = top
        #: The layer under the ProtobufStore, which only adds protobuf methods: raw calls skip it.
        self.raw = top.inner
        self.router = router
        self.cache = cache
        self.closed = False

    async def close_when_idle(self, grace: float) -> None:
        await asyncio.sleep(grace)
        await self.router.drained()
        await self.close()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.top.aclose()


def build_stack(config: Config, scope: Scope | None = None) -> ProtobufStore:
    """Assemble the layered store a DataStore uses (not opened)."""
    return _assemble(config, scope).top


def _assemble(config: Config, scope: Scope | None) -> _Stack:
    budget = Budget(config.limits.max_concurrent_operations)
    primary, schemes = build_primary(config, scope, budget)
    split = config.limits.copy_split_threshold_mbs * MiB
    router = RoutingStore(primary, schemes, SchemeFactory(config, scope, budget), split_threshold=split)
    store: RawStore = LimitedStore(router, max_download_mbs=config.limits.max_download_mbs)
    cache = None
    if config.cache.max_size_mbs > 0:
        cache = CachedStore(store, max_size_mbs=config.cache.max_size_mbs, scope=scope)
        store = cache
        if config.cache.target_gc_percent > 0:
            _apply_gc_percent(config.cache.target_gc_percent)
    return _Stack(ProtobufStore(store, scope), router, cache)


def _apply_gc_percent(percent: int) -> None:
    # Go's SetGCPercent has no exact Python analogue; scale the youngest generation's threshold.
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(max(1, 700 * percent // 100), threshold1, threshold2)


class DataStore:
    """References, raw bytes, protobuf messages and metrics over one configured stack."""

    #: Seconds a replaced stack stays open after refresh_config for short operations to finish.
    refresh_grace = 60.0

    def __init__(self, config: Config | None = None, *, scope: Scope | None = None) -> None:
        self.config = config if config is not None else Config(type="mem")
        self.scope = scope if scope is not None else Scope("flyte:storage")
        self._stack: _Stack | None = None
        self._opening: asyncio.Lock | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "open" if self._stack is not None else "closed"
        return f"DataStore({self.config!r}, {state})"

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> DataStore:
        """Build the stack, open the primary backend and create its container when missing
        (``config.create_container``; with false, nothing is created)."""
        if self._stack is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._stack is None:
                    stack = _assemble(self.config, self.scope)
                    await stack.top.open()
                    self._use(stack)
        return self

    async def aclose(self) -> None:
        """Close every backend; operations still running on them will fail."""
        stack = self._stack
        self._use(None)
        tasks = list(self._retiring)
        if stack is not None:
            await stack.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> DataStore:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def refresh_config(self, config: Config) -> None:
        """Rebuild the stack from ``config`` in place, keeping the metrics.

        Operations already running finish on the old stack. It is closed once the long-running
        ones (open streams, streaming writes, copies, listings) are done and at least
        ``refresh_grace`` seconds have passed, which covers the short, untracked ones.
        """
        new = _assemble(config, self.scope)
        await new.top.open()
        old, self.config = self._stack, config
        self._use(new)
        if old is not None:
            task = asyncio.create_task(old.close_when_idle(self.refresh_grace))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    #: Short operations bound straight to the current stack's methods while the store is open.
    _BOUND = (
        "head",
        "read_bytes",
        "write_raw",
        "list",
        "list_page",
        "delete",
        "delete_many",
        "copy_raw",
        "create_signed_url",
    )
    _BOUND_TOP = ("read_protobuf", "write_protobuf")

    def _use(self, stack: _Stack | None) -> None:
        self._stack = stack
        for name in (*self._BOUND, *self._BOUND_TOP):
            if stack is None:
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, getattr(stack.raw if name in self._BOUND else stack.top, name))

    def _current(self) -> _Stack:
        stack = self._stack
        if stack is None:
            raise StorageError("the DataStore is not open: use `async with DataStore(config) as store`")
        return stack

    # -- references -----------------------------------------------------------------------------
    @property
    def base_container(self) -> DataReference:
        return self._current().top.base_container

    @staticmethod
    def construct_reference(base: str, *keys: str) -> DataReference:
        """Join ``keys`` under ``base`` exactly as Flyte's URLPathConstructor does."""
        return construct_reference(base, *keys)

    @property
    def cache(self) -> CachedStore | None:
        """The cache layer, when ``cache.max_size_mbs`` > 0."""
        return self._current().cache

    @property
    def router(self) -> RoutingStore:
        return self._current().router

    @property
    def retry_policy(self) -> RetryPolicy:
        """How this store's backends retry transient errors (the config's ``retries`` section):
        what ``copy_many`` and ``sync`` count each object's attempts against."""
        return RetryPolicy.from_config(self.config.retries)

    # -- raw bytes ------------------------------------------------------------------------------
    # While open, these are bound to the stack's own methods (see _use) and cost no call of their
    # own: the definitions here serve a closed store and document the API. The stack's router
    # counts the long-running work (streaming writes, copies, listings; streams via read_raw) so
    # refresh_config closes an old stack only after it finishes.
    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]:
        """Metadata of ``ref``; ``Metadata(exists=False)`` when it does not exist."""
        return self._current().raw.head(ref)

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        """Open a read; the download limit is checked before the first byte when the size is known."""
        stack = self._current()
        router = stack.router
        router.hold()
        try:
            stream = await stack.raw.read_raw(ref, offset, length)
        except BaseException:
            router.release()
            raise
        stream.on_close(router.release)
        return stream

    def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> Coroutine[Any, Any, bytes]:
        """The whole object (or range) as bytes; the download limit (and ``max_size``) applies."""
        return self._current().raw.read_bytes(ref, offset, length, max_size)

    def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> Coroutine[Any, Any, builtins.list[bytes]]:
        """The bytes of several ranges of one object, in one call: a list with one ``bytes`` per
        range, in the order given.

        - ``ranges``: ``(start, end)`` byte offsets, end exclusive, as fsspec's ``cat_ranges``
          (``0 <= start <= end``; anything else, or a non-int, is ``InvalidArgumentError``).
          Ranges may overlap, repeat and come in any order; an empty range is ``b""``. Slice
          semantics past the end: a range yields the bytes that exist (possibly ``b""``).
        - ``coalesce``: ranges whose gap is at most this many bytes (default 1 MiB, object_store's
          and obstore's) are fetched by one request and split back; a request stops growing past
          8 MiB, so long runs are fetched by several. ``0`` merges nothing (each distinct range
          is its own request). Requests run 10 at once.
        - One version: every range comes from the object as the first response found it (by
          etag, where the backend has etags); a change mid-call is ``PreconditionFailedError``.
        - Limits: the download limit (``limits.maxDownloadMBs``) and ``max_size`` bound the total
          bytes the call returns (the ranges clipped to the object's size): over it,
          ``ExceedsLimitError`` before any range is downloaded.
        - A cached object answers from memory. A missing object is ``NotFoundError``, except
          that a call whose ranges are all empty makes no request and returns ``b""`` for each.
        """
        return self._current().raw.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size)

    def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Coroutine[Any, Any, Metadata]:
        """Store ``data`` (bytes, (async) iterable of bytes, or a binary file object) at ``ref``."""
        return self._current().raw.write_raw(ref, data, size, options)

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        """Every object under ``ref`` (recursive, in key order), fetched page by page."""
        return self._current().raw.list(ref, page_size=page_size)

    def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> Coroutine[Any, Any, tuple[builtins.list[DataReference], Cursor]]:
        """One page of references and the cursor to pass back; ``Cursor.end()`` when exhausted."""
        return self._current().raw.list_page(ref, max_items=max_items, cursor=cursor)

    def delete(self, ref: str) -> Coroutine[Any, Any, None]:
        """Delete one object; ``NotFoundError`` when it does not exist."""
        return self._current().raw.delete(ref)

    def delete_many(self, refs: Sequence[str]) -> Coroutine[Any, Any, builtins.list[BaseException | None]]:
        """Delete many objects (S3: DeleteObjects, 1,000 a request; elsewhere bounded-concurrent
        deletes). One result per reference, in order: ``None`` when the object was deleted or did
        not exist, else its error (``InvalidReferenceError`` for a bad reference). Raises only for
        an error of the whole call."""
        return self._current().raw.delete_many(refs)

    def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Coroutine[Any, Any, Metadata]:
        """Copy an object, server-side within a backend and streamed across backends."""
        return self._current().raw.copy_raw(src, dst, options=options)

    def create_signed_url(self, ref: str, props: SignedURLProperties) -> Coroutine[Any, Any, SignedURLResponse]:
        return self._current().raw.create_signed_url(ref, props)

    # -- protobuf -------------------------------------------------------------------------------
    def read_protobuf(self, ref: str, msg: M) -> Coroutine[Any, Any, M]:
        """Read ``ref`` into ``msg`` and return it; ``CorruptObjectError`` if it does not parse."""
        return self._current().top.read_protobuf(ref, msg)

    def write_protobuf(self, ref: str, msg: Message, options: Options | None = None) -> Coroutine[Any, Any, Metadata]:
        return self._current().top.write_protobuf(ref, msg, options)
