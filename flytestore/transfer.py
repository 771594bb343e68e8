"""Bulk transfer: ``copy_many`` and ``sync`` between any two references, through one store.

Owns the job engine shared by both: bounded concurrency (objects in flight), a byte budget shared
by the whole job, progress reporting, the ``Summary`` of a job, and prompt cancellation. Each
object is copied by the store's ``copy_raw`` (server-side within a backend, streamed across
backends), which never leaves a partial destination; a failed object is reported in the summary,
never skipped.

Retries belong to the store stack (its ``ResilientStore``s, per the config's ``retries``
section): heads, deletes and copies are not retried here on top of it. The one exception is a
copy the stack cannot replay, a stream from one backend into another that failed with a
``TransientError``: the whole copy runs again. Each object's copy runs under one ``Retries``
counter (``retry.sharing``) that the stack's own retries of it draw on too, so an object sees at
most ``attempts`` attempts whichever way it fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .errors import InvalidArgumentError, NotFoundError, TransientError
from .rawstore import ListEntry, Metadata, Options
from .reference import escape_key, split_reference
from .retry import Retries, RetryPolicy, policy_of, sharing
from .units import MiB

__all__ = [
    "ByteBudget",
    "Failure",
    "Progress",
    "RetryPolicy",
    "Summary",
    "TransferStore",
    "copy_many",
    "prefix_pairs",
    "sync",
]


#: Schemes whose etag names a version of a file (inode, mtime), not its content: two equal
#: objects there have different etags, so sync compares modification times instead.
_VERSION_ETAG_SCHEMES = frozenset({"file"})


class TransferStore(Protocol):
    """What a transfer needs of a store: a ``RawStore`` or a ``DataStore`` both qualify."""

    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]: ...

    def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Coroutine[Any, Any, Metadata]: ...

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]: ...

    def delete(self, ref: str) -> Coroutine[Any, Any, None]: ...


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's progress, passed to the callback after each object finishes (copied, skipped or failed).

    ``objects_total`` is None while the input is still being read (or listed). ``bytes_total`` is
    the sum of the sizes learned so far; it is final once ``objects_total`` is set and every
    object has been looked at.
    """

    objects_done: int
    objects_total: int | None
    bytes_done: int
    bytes_total: int
    failures: int


class Failure(NamedTuple):
    """One object that could not be transferred (``src`` is empty for a failed sync delete)."""

    src: str
    dst: str
    error: BaseException


@dataclass(slots=True)
class Summary:
    """What a job did."""

    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: list[Failure] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def throughput(self) -> float:
        """Bytes copied per second of wall time."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Building blocks


class ByteBudget:
    """An async semaphore counted in bytes. A request larger than the capacity is clamped to it,
    so one huge object waits for the whole budget rather than forever. Waiters are served in order,
    so a large request is not starved by a stream of small ones."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise InvalidArgumentError(f"the byte budget must be positive, got {capacity}")
        self.capacity = capacity
        self.available = capacity
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def clamp(self, n: int) -> int:
        return max(0, min(n, self.capacity))

    async def acquire(self, n: int) -> int:
        """Take ``n`` bytes (clamped); returns the amount to ``release``."""
        n = self.clamp(n)
        if not self._waiters and self.available >= n:
            self.available -= n
            return n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await fut
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif fut.done() and not fut.cancelled():
                self.available += n  # granted as we were cancelled: hand it back
            self._wake()
            raise
        return n

    def release(self, n: int) -> None:
        self.available += n
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.available:
            n, fut = self._waiters.pop(0)
            if fut.done():
                continue
            self.available -= n
            fut.set_result(None)


class _Item(NamedTuple):
    src: str
    dst: str
    #: The source's size and etag when a listing gave them, else None (the job heads the source).
    entry: ListEntry | None


class _Job:
    """Runs items with bounded concurrency; records outcomes in ``summary``."""

    def __init__(
        self,
        store: TransferStore,
        *,
        concurrency: int,
        max_bytes_in_flight: int,
        retries: RetryPolicy | None,
        progress: Callable[[Progress], None] | None,
        skip_unchanged: bool,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, got {concurrency}")
        self.store = store
        self.concurrency = concurrency
        self.budget = ByteBudget(max_bytes_in_flight)
        self.retries = retries
        self.progress = progress
        self.skip_unchanged = skip_unchanged
        self.summary = Summary()
        self.objects_total: int | None = None
        self.objects_done = 0
        self.bytes_total = 0
        self._fatal: BaseException | None = None

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(
                Progress(
                    objects_done=self.objects_done,
                    objects_total=self.objects_total,
                    bytes_done=self.summary.bytes,
                    bytes_total=self.bytes_total,
                    failures=len(self.summary.failed),
                )
            )

    async def _unchanged(self, item: _Item, src: Metadata | ListEntry) -> bool:
        dst = await self.store.head(item.dst)
        if not dst.exists or dst.size != src.size:
            return False
        src_meta = src if isinstance(src, Metadata) else None
        if src_meta is not None and src_meta.content_md5 and dst.content_md5:
            return src_meta.content_md5 == dst.content_md5
        if src.etag and dst.etag:
            if src.etag == dst.etag:
                return True
            src_scheme = split_reference(item.src)[0]
            if src_scheme == split_reference(item.dst)[0] and src_scheme not in _VERSION_ETAG_SCHEMES:
                return False  # both etags derive from content by the same rules: they differ
        # Etags not comparable (another backend, or file versions): a destination written no
        # earlier than the source was last modified is a copy of it.
        if src.last_modified is not None and dst.last_modified is not None:
            return dst.last_modified >= src.last_modified
        return True

    async def _copy(self, item: _Item) -> None:
        source: Metadata | ListEntry
        if item.entry is not None:
            source = item.entry
        else:
            source = await self.store.head(item.src)
            if not source.exists:
                raise NotFoundError(f"source [{item.src}] does not exist")
        self.bytes_total += source.size
        if self.skip_unchanged and await self._unchanged(item, source):
            self.summary.skipped += 1
            return
        held = await self.budget.acquire(source.size)
        try:
            meta = await self._copy_object(item)
        finally:
            self.budget.release(held)
        self.summary.copied += 1
        self.summary.bytes += meta.size if meta.size else source.size

    async def _copy_object(self, item: _Item) -> Metadata:
        """``copy_raw`` under one retry budget for the object. The stack retries what it can
        replay, drawing on the budget; what is left of it re-runs a copy the stack could not
        replay (a stream between backends that failed), and is spent by then otherwise."""
        if self.retries is None:  # no retry layer to share a budget with: the store is on its own
            return await self.store.copy_raw(item.src, item.dst)
        retries = Retries(self.retries)
        with sharing(retries):
            while True:
                try:
                    return await self.store.copy_raw(item.src, item.dst)
                except TransientError:
                    if not await retries.wait():
                        raise

    async def _run_one(self, item: _Item, slots: asyncio.Semaphore) -> None:
        try:
            try:
                await self._copy(item)
            except Exception as err:  # reported, and the job goes on
                self.summary.failed.append(Failure(item.src, item.dst, err))
            self.objects_done += 1
            self._report()
        except Exception as err:  # the progress callback failed: stop the job
            if self._fatal is None:
                self._fatal = err
        finally:
            slots.release()

    async def run(self, items: AsyncIterator[_Item]) -> None:
        await self._pool(items, self._run_one, count=True)

    async def _pool(
        self,
        items: AsyncIterator[_Item],
        worker: Callable[[_Item, asyncio.Semaphore], Coroutine[Any, Any, None]],
        *,
        count: bool,
    ) -> None:
        """Start ``worker`` for each item, at most ``concurrency`` at once; on any exit other than
        completion (cancellation, a failing input), cancel the workers still running and wait for
        them before the exception propagates."""
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        try:
            async for item in items:
                await slots.acquire()
                if self._fatal is not None:
                    slots.release()
                    break
                task = asyncio.create_task(worker(item, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if count:
                self.objects_total = n
            while tasks:
                await asyncio.wait(set(tasks))
        finally:
            if tasks:
                pending = set(tasks)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._fatal is not None:
            raise self._fatal

    async def _delete_one(self, item: _Item, slots: asyncio.Semaphore) -> None:
        try:
            await self.store.delete(item.dst)
            self.summary.deleted += 1
        except NotFoundError:
            pass  # gone already: the goal holds
        except Exception as err:
            self.summary.failed.append(Failure("", item.dst, err))
        finally:
            slots.release()

    async def delete(self, items: AsyncIterator[_Item]) -> None:
        await self._pool(items, self._delete_one, count=False)


async def _pairs(pairs: Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]]) -> AsyncIterator[_Item]:
    if isinstance(pairs, AsyncIterable):
        async for src, dst in pairs:
            yield _Item(src, dst, None)
    else:
        for src, dst in pairs:
            yield _Item(src, dst, None)


# ---------------------------------------------------------------------------------------------
# Public API


async def copy_many(
    store: TransferStore,
    pairs: Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]],
    *,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Copy each ``(src, dst)`` pair through ``store`` (any scheme to any scheme).

    At most ``concurrency`` objects are in flight, holding at most ``max_bytes_in_flight`` bytes
    between them (by their sizes; one larger object holds the whole budget). Transient errors are
    retried by the store stack, per its ``retries`` section: each object sees at most
    ``retries.maxAttempts`` attempts, a streamed cross-backend copy that failed being run again
    whole within that budget (see the module doc). ``retries`` replaces the store's policy for
    the copies of this job (the stack's retries inside them count against it; it never adds
    attempts to them); None, the default, uses the store's (``retry.policy_of``); a bare store
    with no retry layer is left to retry by itself, or not. An object that still fails is
    recorded in ``Summary.failed`` and the job goes on. Cancelling the call cancels the copies in
    flight (none leaves a partial destination) and starts no new ones.
    """
    start = time.perf_counter()
    job = _Job(
        store,
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries if retries is not None else policy_of(store),
        progress=progress,
        skip_unchanged=False,
    )
    try:
        await job.run(_pairs(pairs))
    finally:
        job.summary.seconds = time.perf_counter() - start
    return job.summary


def _dir_key(prefix: str) -> tuple[str, str]:
    """``(scheme, key)`` of a prefix reference, the key ending in ``/`` unless empty."""
    scheme, _, key = split_reference(prefix)
    return scheme, key.strip("/") + "/" if key.strip("/") else ""


def _relative(ref: str, dir_key: str) -> str | None:
    """The key of ``ref`` below ``dir_key``, unescaped; None when it is not below it."""
    key = split_reference(ref)[2].lstrip("/")
    if not key.startswith(dir_key.lstrip("/")):
        return None
    rel = key[len(dir_key.lstrip("/")) :]
    return rel or None


def _join(prefix: str, rel: str) -> str:
    """``rel`` (an unescaped key) below the prefix reference, escaped so ``split`` returns it."""
    return prefix.rstrip("/") + "/" + escape_key(rel)


async def _mapped(store: TransferStore, src_prefix: str, dst_prefix: str) -> AsyncIterator[tuple[ListEntry, str, str]]:
    """Each object under ``src_prefix`` with its key relative to it and its reference below ``dst_prefix``."""
    _, src_dir = _dir_key(src_prefix)
    async for entry in store.list(src_prefix):
        rel = _relative(entry.ref, src_dir)
        if rel is not None:
            yield entry, rel, _join(dst_prefix, rel)


async def prefix_pairs(store: TransferStore, src_prefix: str, dst_prefix: str) -> AsyncIterator[tuple[str, str]]:
    """``(source, destination)`` for every object under ``src_prefix``, mirrored below ``dst_prefix``
    exactly as ``sync`` maps them: feed it to ``copy_many`` to copy a prefix."""
    async for entry, _, dst in _mapped(store, src_prefix, dst_prefix):
        yield entry.ref, dst


async def sync(
    store: TransferStore,
    src_prefix: str,
    dst_prefix: str,
    *,
    delete: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Make ``dst_prefix`` mirror ``src_prefix``: copy what is missing or differs there.

    An object is skipped when the destination has the same size and, where the two can be
    compared, the same MD5 or etag; when they cannot (different backends, or local files whose
    etag names a version, not content), a destination modified no earlier than the source counts
    as unchanged. With ``delete=True``, destination objects with no source counterpart are removed
    once the copies are done. Retries and ``retries`` are as for ``copy_many``.
    """
    start = time.perf_counter()
    job = _Job(
        store,
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries if retries is not None else policy_of(store),
        progress=progress,
        skip_unchanged=True,
    )
    _, dst_dir = _dir_key(dst_prefix)
    seen: set[str] = set()

    async def copies() -> AsyncIterator[_Item]:
        async for entry, rel, dst in _mapped(store, src_prefix, dst_prefix):
            seen.add(rel)
            yield _Item(entry.ref, dst, entry)

    async def extras() -> AsyncIterator[_Item]:
        async for entry in store.list(dst_prefix):
            rel = _relative(entry.ref, dst_dir)
            if rel is not None and rel not in seen:
                yield _Item("", entry.ref, entry)

    try:
        await job.run(copies())
        if delete:
            await job.delete(extras())
    finally:
        job.summary.seconds = time.perf_counter() - start
    return job.summary
