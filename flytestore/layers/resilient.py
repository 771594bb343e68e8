"""ResilientStore: how each operation reaches a backend that does I/O — admitted under a
concurrency budget, retried when it fails transiently, and (for reads) resumed where a dropped
connection cut it. The registry wraps every backend but the memory store in one (see
``registry.create_backend``); the backends of one DataStore share one ``Budget``.

- **Budget.** At most ``Budget.capacity`` operations are in flight at once across every backend
  sharing it, so a burst cannot exhaust sockets, file descriptors or server limits; the rest wait
  in arrival order. An operation holds its slot until it returns, including its retries; ``read_raw`` holds
  one while the read is being opened (not while the caller consumes the stream, so a caller
  that copies streams into writes cannot deadlock the budget), ``list`` while each entry is
  fetched.
- **Retries** of ``TransientError`` only (timeouts, throttling, 5xx, dropped connections; never a
  4xx), per a ``RetryPolicy`` (``retry_policy``; from the config's ``retries`` section). This is
  the one place a stack retries: an operation makes at most ``attempts`` attempts. Inside
  ``retry.sharing(counter)`` (a bulk transfer's copy of one object) the retries are counted by
  that counter, which the caller's own whole-object retries also draw on. A write is retried
  only when its payload can be sent again (bytes) and it is not create-only: a lost response to
  a create-only write that succeeded would turn into a false ``AlreadyExistsError``. A
  ``delete`` retried after a lost response finds nothing, which counts as done. ``delete_many``
  is one operation of the budget (the backend bounds its own requests in flight); the objects
  whose slot holds a ``TransientError`` (a failed DeleteObjects request fills every slot of it)
  are deleted again, idempotently, until they succeed or the attempts are spent.
- **Resumable reads.** When a stream fails transiently mid-body, the rest is fetched with a range
  read and its etag compared with the first response's: a changed object raises
  ``PreconditionFailedError`` rather than splicing two versions. Streams without an etag (so
  nothing to pin to) and in-memory ones are passed through as they are.
- **Listings** retry a failed page and carry on after the last key they yielded.
"""

from __future__ import annotations

import asyncio
import builtins
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from ..errors import InvalidArgumentError, NotFoundError, PreconditionFailedError, TransientError
from ..payload import Payload
from ..rawstore import COALESCE_DEFAULT, ByteStream, Cursor, ListEntry, Metadata, Options, RawStore, check_refs
from ..reference import DataReference, split_reference
from ..retry import NO_RETRY, RetryPolicy, retrying
from .base import Layer

__all__ = ["Budget", "ResilientStore"]

T = TypeVar("T")

_REPLAYABLE = (bytes, bytearray, memoryview)


class Budget:
    """A count of operations in flight, shared by the backends of one store stack.

    ``capacity`` 0 means unbounded. Slots are granted in arrival order: ``take`` when one is free
    (no coroutine), else ``wait``; ``release`` hands it to the next waiter or frees it.
    """

    __slots__ = ("capacity", "free", "waiters")

    def __init__(self, capacity: int = 0) -> None:
        if capacity < 0:
            raise InvalidArgumentError(f"the concurrency budget must not be negative, got {capacity}")
        self.capacity = capacity
        #: Slots free now (effectively unbounded when ``capacity`` is 0).
        self.free = capacity if capacity else 1 << 62
        self.waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"Budget(capacity={self.capacity}, in_flight={self.in_flight})"

    @property
    def in_flight(self) -> int:
        """Operations holding a slot now."""
        return self.capacity - self.free if self.capacity else 0

    def take(self) -> bool:
        """Take a slot if one is free and nobody is queued (the fast path, no coroutine)."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if not self.take():
            await self.wait()

    async def wait(self) -> None:
        """Queue for a slot (the fast path found none free)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # granted as we were cancelled: pass it on
            elif fut in self.waiters:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next waiter
                return
        self.free += 1


class ResilientStore(Layer):
    """Admits each operation under the stack's concurrency ``Budget``, retries transient failures
    per ``retries`` (the stack's one retry owner), resumes broken reads pinned to the etag and
    broken listings after the last key. See the module docstring for the rules."""

    def __init__(
        self,
        inner: RawStore,
        *,
        budget: Budget | None = None,
        retries: RetryPolicy | None = None,
        parallel_range_reads: bool = False,
    ) -> None:
        super().__init__(inner)
        #: Whether range reads of the backend cost no more than the bytes they return, so large
        #: cross-backend copies may read parallel ranges (object stores: yes; disk, Redis: no).
        self.parallel_range_reads = parallel_range_reads
        self.budget = budget if budget is not None else Budget()
        self.retries = retries if retries is not None else NO_RETRY

    def __repr__(self) -> str:
        return f"ResilientStore({self.inner!r}, {self.budget!r})"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy this layer retries by (what ``retry.policy_of`` finds)."""
        return self.retries

    async def _guarded(self, call: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """``call()`` under a slot, retried: the path of the operations without a fast path."""
        budget = self.budget
        await budget.acquire()
        try:
            return await (retrying(self.retries, call) if retry else call())
        finally:
            budget.release()

    # -- operations --------------------------------------------------------------------------
    async def head(self, ref: str) -> Metadata:
        budget = self.budget
        if not budget.take():
            await budget.wait()
        try:
            try:
                return await self.inner.head(ref)
            except TransientError as err:
                return await retrying(self.retries, lambda: self.inner.head(ref), after=err)
        finally:
            budget.release()

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        budget = self.budget
        if not budget.take():
            await budget.wait()
        try:
            try:
                return await self.inner.read_bytes(ref, offset, length, max_size)
            except TransientError as err:
                return await retrying(
                    self.retries, lambda: self.inner.read_bytes(ref, offset, length, max_size), after=err
                )
        finally:
            budget.release()

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        budget = self.budget
        if not budget.take():
            await budget.wait()
        try:
            try:
                return await self.inner.write_raw(ref, data, size, options)
            except TransientError as err:
                if not isinstance(data, _REPLAYABLE) or (options is not None and options.if_not_exists):
                    raise
                return await retrying(self.retries, lambda: self.inner.write_raw(ref, data, size, options), after=err)
        finally:
            budget.release()

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        budget = self.budget
        if not budget.take():
            await budget.wait()
        try:
            try:
                stream = await self.inner.read_raw(ref, offset, length)
            except TransientError as err:
                stream = await retrying(self.retries, lambda: self.inner.read_raw(ref, offset, length), after=err)
        finally:
            budget.release()
        meta = stream.metadata
        if self.retries.attempts == 1 or stream.in_memory or meta is None or not meta.etag:
            return stream
        return _Resumed(self, ref, offset, length, stream, meta)

    async def delete(self, ref: str) -> None:
        first = True

        async def attempt() -> None:
            nonlocal first
            try:
                await self.inner.delete(ref)
            except NotFoundError:
                if first:
                    raise
                # An earlier attempt's response was lost after it deleted the object: done.
            finally:
                first = False

        await self._guarded(attempt)

    async def delete_many(self, refs: Sequence[str]) -> builtins.list[BaseException | None]:
        refs = check_refs(refs)
        results: builtins.list[BaseException | None] = [None] * len(refs)
        pending = builtins.list(range(len(refs)))
        retries = self.retries.start()
        budget = self.budget
        await budget.acquire()
        try:
            while pending:
                try:
                    outcomes = await self.inner.delete_many([refs[i] for i in pending])
                except TransientError:
                    if not await retries.wait():
                        raise
                    continue
                for i, outcome in zip(pending, outcomes, strict=True):
                    results[i] = outcome
                pending = [i for i in pending if isinstance(results[i], TransientError)]
                if pending and not await retries.wait():
                    break
        finally:
            budget.release()
        return results

    async def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> builtins.list[bytes]:
        # One operation of the budget (the store bounds its own requests in flight); a transient
        # failure reads every range again, so the result still comes from one version.
        return await self._guarded(lambda: self.inner.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size))

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        create_only = options is not None and options.if_not_exists
        return await self._guarded(lambda: self.inner.copy_raw(src, dst, options=options), retry=not create_only)

    async def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> tuple[builtins.list[DataReference], Cursor]:
        return await self._guarded(lambda: self.inner.list_page(ref, max_items=max_items, cursor=cursor))

    async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        last: str | None = None  # the key of the last entry yielded: a retry resumes after it
        retries = self.retries.start()
        while True:
            entries = self.inner.list(ref, page_size=page_size)
            try:
                while True:
                    entry = await self._guarded_next(entries)
                    if entry is None:
                        return
                    key = split_reference(entry.ref)[2]
                    if last is not None and key <= last:
                        continue
                    last = key
                    yield entry
            except TransientError:
                if not await retries.wait():
                    raise
            finally:
                aclose = getattr(entries, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def _guarded_next(self, entries: AsyncIterator[ListEntry]) -> ListEntry | None:
        budget = self.budget
        if not budget.take():
            await budget.wait()
        try:
            return await entries.__anext__()
        except StopAsyncIteration:
            return None
        finally:
            budget.release()


class _Resumed(ByteStream):
    """A stream that, when its body fails transiently, fetches the rest with a range read pinned
    to the first response's etag."""

    __slots__ = ("_current",)

    def __init__(
        self, store: ResilientStore, ref: str, offset: int, length: int | None, first: ByteStream, meta: Metadata
    ) -> None:
        self._current = first
        super().__init__(
            self._body(store, ref, offset, length, meta), size=first.size, metadata=meta, close=self._close_current
        )

    async def _close_current(self) -> None:
        await self._current.aclose()

    async def _body(
        self, store: ResilientStore, ref: str, offset: int, length: int | None, meta: Metadata
    ) -> AsyncIterator[bytes]:
        done = 0  # bytes delivered so far
        retries = store.retries.start()
        while True:
            try:
                async for chunk in self._current:
                    done += len(chunk)
                    yield chunk
                return
            except TransientError as err:
                cause: TransientError = err
            await self._current.aclose()  # release the broken connection before opening another
            # Resume: a range read of what is left, pinned to the same etag.
            while True:
                if not await retries.wait():
                    raise cause
                remaining = None if length is None else length - done
                if remaining == 0 or (self.size is not None and done >= self.size):
                    return
                try:
                    resumed = await store.inner.read_raw(ref, offset + done, remaining)
                except TransientError as err:
                    cause = err
                    continue
                break
            now = resumed.metadata
            if now is None or now.etag != meta.etag or (meta.version and now.version and now.version != meta.version):
                await resumed.aclose()
                raise PreconditionFailedError(
                    f"[{ref}] changed while it was being read (etag {meta.etag} became "
                    f"{now.etag if now is not None else 'unknown'}); the read was not resumed"
                ) from cause
            self._current = resumed
