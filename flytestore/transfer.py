"""Bulk transfer between any two references, through one store: ``copy_many``, ``copy_tree``,
``sync``, ``move_many``, ``move_tree``, ``delete_refs``, ``delete_tree``, ``du``, ``prefix_pairs``
and ``overlaps``.

Owns the job engine they share: bounded concurrency (objects in flight), a byte budget shared by
the whole job, progress reporting, the ``Summary`` of a job, dry runs, bulk deletes and prompt
cancellation. Each object is copied by the store's ``copy_raw`` (server-side within a backend,
streamed across backends), which never leaves a partial destination; a failed object is reported
in the summary, never skipped.

Owns, too, the rules that keep a bulk transfer from losing an object, so that every caller (the
command, scripts) gets them:

- A prefix is listed whole, once, before anything is written (the *snapshot*): what a transfer
  writes is never read back as its source, the total is known before the first copy, and a
  source prefix with no objects raises ``NotFoundError`` before anything is copied or deleted.
- A destination inside its source is left out of the source's snapshot; a destination that would
  overwrite one of the source's own objects, or the same prefix on both sides, is an
  ``InvalidArgumentError`` before anything is written (``overlaps`` tells a caller in advance).
- ``sync(delete=True)`` deletes only once every copy succeeded; a move deletes a source only
  once its copy is verified (size and MD5).
- Every copy carries the source's modification time in the ``mtime`` metadata, as rclone does
  (``flytestore.mtime``), which is how ``sync`` decides what changed.

Retries belong to the store stack (its ``ResilientStore``s, per the config's ``retries``
section): heads, deletes and copies are not retried here on top of it. The one exception is a
copy the stack cannot replay, a stream from one backend into another that failed with a
``TransientError``: the whole copy runs again. Each object's copy runs under one ``Retries``
counter (``retry.sharing``) that the stack's own retries of it draw on too, so an object sees at
most ``attempts`` attempts whichever way it fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from .backends import BY_SCHEME
from .errors import CorruptObjectError, InvalidArgumentError, NotFoundError, StorageError, TransientError
from .mtime import MTIME_KEY, format_mtime, mtime_of
from .rawstore import ByteStream, ListEntry, Metadata, Options
from .reference import escape_key, split_reference
from .retry import Retries, RetryPolicy, policy_of, sharing
from .units import MiB

__all__ = [
    "DELETE_BATCH",
    "Action",
    "ByteBudget",
    "Failure",
    "Progress",
    "RetryPolicy",
    "Summary",
    "TransferStore",
    "copy_many",
    "copy_tree",
    "delete_refs",
    "delete_tree",
    "du",
    "move_many",
    "move_tree",
    "overlaps",
    "prefix_pairs",
    "sync",
]

#: References deleted per ``delete_many`` call (S3's DeleteObjects takes at most 1,000 keys).
DELETE_BATCH = 1000

#: Schemes whose etag is the hex MD5 of the content when it has no ``-`` (S3: a single-part
#: upload without SSE-KMS/SSE-C; memory: always). GCS and Azure report their MD5 in
#: ``content_md5``; a local file's etag names a version (inode, mtime), not content.
_MD5_ETAG_SCHEMES = frozenset({"s3", "mem"})
_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")

#: Listed objects between two progress reports of a listing.
_LIST_REPORT_EVERY = 1000


class TransferStore(Protocol):
    """What a transfer needs of a store: a ``RawStore`` or a ``DataStore`` both qualify. A store
    with ``delete_many(refs) -> list[BaseException | None]`` has its deletes batched through it;
    without, they run one by one, ``concurrency`` at a time."""

    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]: ...

    def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> Coroutine[Any, Any, ByteStream]: ...

    def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Coroutine[Any, Any, Metadata]: ...

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]: ...

    def delete(self, ref: str) -> Coroutine[Any, Any, None]: ...


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's progress, passed to the callback as the job goes.

    ``phase`` says what the job is doing:

    - ``"list"``: listing the source; ``listed`` objects (and ``bytes_total`` bytes) found so far,
      reported every 1,000 objects; ``objects_total`` is None.
    - ``"copy"``: reported once when the listing is done (``objects_done`` 0, ``objects_total``
      and ``bytes_total`` final), then after each object finishes (copied, skipped or failed).
      For ``copy_many`` over pairs, ``objects_total`` is None until the pairs are exhausted and
      ``bytes_total`` is the sum of the sizes learned so far.
    - ``"delete"``: ``objects_done`` of ``objects_total`` deletions, reported once before the
      first batch and after each batch of ``DELETE_BATCH``.
    """

    objects_done: int
    objects_total: int | None
    bytes_done: int
    bytes_total: int
    failures: int
    phase: Literal["list", "copy", "delete"] = "copy"
    listed: int = 0


class Failure(NamedTuple):
    """One object that could not be transferred. For a failed delete ``src`` is empty and ``dst``
    is the object that could not be deleted."""

    src: str
    dst: str
    error: BaseException


class Action(NamedTuple):
    """One step of a dry run's plan: ``kind`` is ``"copy"``, ``"move"`` (copy, then delete the
    source), ``"skip"`` (unchanged) or ``"delete"`` (``src`` empty, ``dst`` the object)."""

    kind: Literal["copy", "move", "skip", "delete"]
    src: str
    dst: str
    size: int


@dataclass(slots=True)
class Summary:
    """What a job did, or with ``dry_run`` would do (then ``actions`` lists each step, in the
    order decided, and nothing was changed)."""

    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: list[Failure] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    actions: list[Action] = field(default_factory=list)
    #: ``sync(delete=True)``: destination objects left in place because a copy failed.
    deletes_withheld: int = 0

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
    #: The source's size when a listing gave it, else None (the job learns it from its head).
    entry: ListEntry | None


_Mode = Literal["copy", "sync", "move"]


class _Job:
    """Runs items with bounded concurrency; records outcomes in ``summary``.

    ``mode`` is what each item gets: ``"copy"`` copies it; ``"sync"`` copies it when it changed
    (``checksum``: by content hash instead of modification time); ``"move"`` copies it, verifies
    the copy and queues its source for deletion (``verified``)."""

    def __init__(
        self,
        store: TransferStore,
        *,
        mode: _Mode = "copy",
        concurrency: int = 32,
        max_bytes_in_flight: int = 256 * MiB,
        retries: RetryPolicy | None = None,
        progress: Callable[[Progress], None] | None = None,
        checksum: bool = False,
        dry_run: bool = False,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, got {concurrency}")
        self.store = store
        self.mode = mode
        self.concurrency = concurrency
        self.budget = ByteBudget(max_bytes_in_flight)
        self.retries = retries if retries is not None else policy_of(store)
        self.progress = progress
        self.checksum = checksum
        self.dry_run = dry_run
        self.summary = Summary(dry_run=dry_run)
        self.objects_total: int | None = None
        self.objects_done = 0
        self.bytes_total = 0
        self.verified: list[str] = []
        self._fatal: BaseException | None = None
        self._started = time.perf_counter()

    def finish(self) -> Summary:
        self.summary.seconds = time.perf_counter() - self._started
        return self.summary

    def _report(self, phase: Literal["list", "copy", "delete"] = "copy", *, listed: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                Progress(
                    objects_done=self.objects_done,
                    objects_total=self.objects_total,
                    bytes_done=self.summary.bytes,
                    bytes_total=self.bytes_total,
                    failures=len(self.summary.failed),
                    phase=phase,
                    listed=listed,
                )
            )

    # -- one object --------------------------------------------------------------------------

    async def _md5(self, ref: str, meta: Metadata, *, compute: bool) -> bytes | None:
        """The object's MD5: the one its backend reports, else (``compute``) read and hashed."""
        known = _reported_md5(split_reference(ref)[0], meta)
        if known is not None or not compute:
            return known
        digest = hashlib.md5(usedforsecurity=False)
        stream = await self.store.read_raw(ref)
        async with stream:
            async for chunk in stream:
                digest.update(chunk)
        return digest.digest()

    async def _changed(self, item: _Item, src: Metadata) -> bool:
        """rclone's rule: changed when the sizes differ, or (``checksum``) the MD5s differ, or else
        the modification times differ (within the coarser precision of the two sides). A side
        that keeps no time (Redis) leaves the size to decide. Times that differ on content both
        backends report the same MD5 for count as unchanged (no read is spent to find out)."""
        dst = await self.store.head(item.dst)
        if not dst.exists or dst.size != src.size:
            return True
        if self.checksum:
            return await self._md5(item.src, src, compute=True) != await self._md5(item.dst, dst, compute=True)
        src_time, dst_time = mtime_of(src), mtime_of(dst)
        if src_time is None or dst_time is None or src_time.same(dst_time):
            return False
        src_md5 = await self._md5(item.src, src, compute=False)
        return src_md5 is None or src_md5 != await self._md5(item.dst, dst, compute=False)

    async def _copy(self, item: _Item) -> None:
        src = await self.store.head(item.src)
        if not src.exists:
            raise NotFoundError(f"source [{item.src}] does not exist")
        if item.entry is None:
            self.bytes_total += src.size
        if self.mode == "sync" and not await self._changed(item, src):
            self.summary.skipped += 1
            if self.dry_run:
                self.summary.actions.append(Action("skip", item.src, item.dst, src.size))
            return
        if self.dry_run:
            self.summary.actions.append(Action("move" if self.mode == "move" else "copy", item.src, item.dst, src.size))
            self.summary.copied += 1
            self.summary.bytes += src.size
            return
        held = await self.budget.acquire(src.size)
        try:
            meta = await self._copy_object(item, _carried(src))
        finally:
            self.budget.release(held)
        if self.mode == "move":
            await self._verify(item, src)
            self.verified.append(item.src)
        self.summary.copied += 1
        self.summary.bytes += meta.size if meta.size else src.size

    async def _verify(self, item: _Item, src: Metadata) -> None:
        """The copy has the source's size and MD5, or ``CorruptObjectError`` (the source stays)."""
        dst = await self.store.head(item.dst)
        if not dst.exists or dst.size != src.size:
            raise CorruptObjectError(
                f"copy [{item.dst}] of [{item.src}] has {dst.size if dst.exists else 'no'} bytes, not "
                f"{src.size}: the source is kept"
            )
        if await self._md5(item.src, src, compute=True) != await self._md5(item.dst, dst, compute=True):
            raise CorruptObjectError(f"copy [{item.dst}] of [{item.src}] differs from it: the source is kept")

    async def _copy_object(self, item: _Item, options: Options | None) -> Metadata:
        """``copy_raw`` under one retry budget for the object. The stack retries what it can
        replay, drawing on the budget; what is left of it re-runs a copy the stack could not
        replay (a stream between backends that failed), and is spent by then otherwise."""
        if self.retries is None:  # no retry layer to share a budget with: the store is on its own
            return await self.store.copy_raw(item.src, item.dst, options=options)
        retries = Retries(self.retries)
        with sharing(retries):
            while True:
                try:
                    return await self.store.copy_raw(item.src, item.dst, options=options)
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

    # -- phases ------------------------------------------------------------------------------

    async def run(self, items: AsyncIterator[_Item]) -> None:
        """The copy phase over items as they come (the total is known once they are exhausted)."""
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        try:
            async for item in items:
                await slots.acquire()
                if self._fatal is not None:
                    slots.release()
                    break
                task = asyncio.create_task(self._run_one(item, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            self.objects_total = n
            while tasks:
                await asyncio.wait(set(tasks))
        finally:
            # On any exit other than completion (cancellation, a failing input), cancel the copies
            # still running and wait for them before the exception propagates.
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

    async def run_planned(self, items: list[_Item]) -> None:
        """The copy phase over a snapshot: its totals are reported before the first copy."""
        self.objects_total = len(items)
        self.bytes_total = sum(item.entry.size for item in items if item.entry is not None)
        self._report()

        async def each() -> AsyncIterator[_Item]:
            for item in items:
                yield item

        await self.run(each())

    async def delete(self, refs: Sequence[str]) -> None:
        """Delete ``refs`` in batches of ``DELETE_BATCH`` (the store's ``delete_many`` when it has
        one, else single deletes, ``concurrency`` at a time); a missing object counts as deleted."""
        self.objects_done, self.objects_total = 0, len(refs)
        self._report("delete")
        if self.dry_run:
            self.summary.actions.extend(Action("delete", "", ref, 0) for ref in refs)
            self.summary.deleted += len(refs)
            return
        bulk = getattr(self.store, "delete_many", None)
        for start in range(0, len(refs), DELETE_BATCH):
            batch = list(refs[start : start + DELETE_BATCH])
            results = await bulk(batch) if bulk is not None else await self._delete_each(batch)
            for ref, error in zip(batch, results, strict=True):
                if error is None:
                    self.summary.deleted += 1
                else:
                    self.summary.failed.append(Failure("", ref, error))
            self.objects_done += len(batch)
            self._report("delete")

    async def _delete_each(self, refs: list[str]) -> list[BaseException | None]:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(ref: str) -> BaseException | None:
            async with slots:
                try:
                    await self.store.delete(ref)
                except NotFoundError:
                    return None  # gone already: the goal holds
                except Exception as err:
                    return err
                return None

        return list(await asyncio.gather(*(one(ref) for ref in refs)))


def _reported_md5(scheme: str, meta: Metadata) -> bytes | None:
    """The MD5 a backend reports for an object without reading it: ``content_md5`` (hex or
    base64: GCS ``md5Hash``, Flyte's ``flyteContentMD5``), or a plain-MD5 etag (S3 single-part,
    memory)."""
    if meta.content_md5:
        if _HEX_MD5.fullmatch(meta.content_md5):
            return bytes.fromhex(meta.content_md5)
        with contextlib.suppress(binascii.Error, ValueError):
            decoded = base64.b64decode(meta.content_md5, validate=True)
            if len(decoded) == 16:
                return decoded
    if scheme in _MD5_ETAG_SCHEMES and _HEX_MD5.fullmatch(meta.etag):
        return bytes.fromhex(meta.etag)
    return None


def _carried(src: Metadata) -> Options | None:
    """The options a copy of ``src`` is written with: its user metadata and content type, and its
    modification time as ``mtime`` (rclone's key), so ``sync`` can compare it later."""
    metadata = {k: v for k, v in src.user_metadata.items() if k.lower() != MTIME_KEY}
    when = mtime_of(src)
    if when is not None:
        metadata[MTIME_KEY] = format_mtime(when.ns)
    if not metadata and src.content_type is None:
        return None
    return Options(metadata=metadata, content_type=src.content_type)


# ---------------------------------------------------------------------------------------------
# Prefixes: filters, overlap, snapshot


def _glob(pattern: str) -> re.Pattern[str]:
    """An rclone-style glob as a regex over a relative key (see ``Filters``)."""
    if not isinstance(pattern, str) or not pattern.strip("/"):
        raise InvalidArgumentError(f"a filter must be a non-empty glob, got {pattern!r}")
    anchored = pattern.startswith("/")
    body = pattern.lstrip("/")
    if body.endswith("/"):
        body += "**"  # a directory: everything below it
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if body.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := body.find("]", i + 2)) != -1:
            inner = body[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile(("" if anchored else "(?:.*/)?") + "".join(out), re.DOTALL)
    except re.error as err:
        raise InvalidArgumentError(f"bad filter {pattern!r}: {err}") from None


class Filters:
    """``include``/``exclude`` globs over an object's key relative to the prefix, rclone-like:

    - ``*`` matches any characters but ``/``, ``**`` any characters including ``/``, ``?`` one
      character but ``/``, ``[abc]``/``[a-z]``/``[!abc]`` one of (or none of) a set;
    - a pattern starting with ``/`` is anchored at the prefix (``/top.csv`` only there); any other
      matches at any depth, against whole path segments (``*.csv`` is ``a.csv`` and ``x/y/a.csv``;
      ``logs/**`` is everything below a ``logs`` directory at any depth);
    - a pattern ending with ``/`` means everything below that directory (``logs/`` = ``logs/**``);
    - an object is selected when it matches an include (or there are none) and no exclude:
      excludes win. On a ``sync(delete=True)`` the filters select the destination's objects too,
      so an object they leave out is neither copied nor deleted (rclone's rule).
    """

    __slots__ = ("_exclude", "_include")

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self._include = [_glob(p) for p in ([include] if isinstance(include, str) else include)]
        self._exclude = [_glob(p) for p in ([exclude] if isinstance(exclude, str) else exclude)]

    def __call__(self, rel: str) -> bool:
        if self._include and not any(p.fullmatch(rel) for p in self._include):
            return False
        return not any(p.fullmatch(rel) for p in self._exclude)


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


def _place(ref: str) -> tuple[str, str, str]:
    """``(backend, container, directory key)``: where a prefix lives, spellings aside."""
    scheme, container, key = split_reference(ref)
    info = BY_SCHEME.get(scheme)
    return (info.kind if info is not None else scheme), container, key.strip("/") + "/" if key.strip("/") else ""


def _inside(inner: str, outer: str) -> bool:
    """Is prefix ``inner`` within prefix ``outer`` (equal included), on the same backend and container?"""
    a, b = _place(inner), _place(outer)
    return a[:2] == b[:2] and a[2].startswith(b[2])


def overlaps(src: str, dst: str) -> bool:
    """Do the prefixes ``src`` and ``dst`` overlap: the same backend (``abfs`` and ``abfss`` are
    one) and container, and one prefix equal to or inside the other (``s3://b/a`` and
    ``s3://b/a/sub``, either way round; not ``s3://b/a`` and ``s3://b/ab``). References are
    compared parsed (``reference.split_reference``), so spellings of one prefix are one.

    The transfer functions handle overlap safely by themselves (see the module doc); a caller
    that wants to refuse it (the command does, by default) asks this first."""
    return _inside(dst, src) or _inside(src, dst)


async def _snapshot(
    store: TransferStore, prefix: str, filters: Filters, job: _Job | None, leave_out: str | None = None
) -> list[tuple[ListEntry, str]]:
    """Every object under ``prefix`` the filters select, with its key relative to the prefix,
    listed whole before anything is written. Objects under ``leave_out`` (a destination inside
    the source) are not part of it. No object under the prefix at all is a ``NotFoundError``."""
    _, dir_key = _dir_key(prefix)
    skip = _relative(leave_out, dir_key) if leave_out is not None else None
    found = 0
    selected: list[tuple[ListEntry, str]] = []
    listed_bytes = 0
    async for entry in store.list(prefix):
        rel = _relative(entry.ref, dir_key)
        if rel is None:
            continue
        found += 1
        if skip is not None and (rel + "/").startswith(skip.rstrip("/") + "/"):
            continue
        if filters(rel):
            selected.append((entry, rel))
            listed_bytes += entry.size
            if job is not None and len(selected) % _LIST_REPORT_EVERY == 0:
                job.bytes_total = listed_bytes
                job._report("list", listed=len(selected))
    if not found:
        await _no_objects(store, prefix)
    return selected


async def _no_objects(store: TransferStore, prefix: str) -> None:
    """Raise for a source prefix with no objects: ``NotFoundError``, or ``InvalidArgumentError``
    when it names one object (copy that with ``copy_many``)."""
    is_object = False
    with contextlib.suppress(StorageError):
        is_object = split_reference(prefix)[2] != "" and (await store.head(prefix)).exists
    if is_object:
        raise InvalidArgumentError(
            f"source [{prefix}] is an object, not a prefix: copy it with copy_many([(src, dst)])"
        )
    raise NotFoundError(f"source [{prefix}] not found: there is no object under it")


async def _tree_items(
    store: TransferStore, src_prefix: str, dst_prefix: str, filters: Filters, job: _Job | None
) -> list[_Item]:
    """The snapshot of ``src_prefix`` mapped below ``dst_prefix``, refused when a destination
    would be one of the source's own objects."""
    if _inside(src_prefix, dst_prefix) and _inside(dst_prefix, src_prefix):
        raise InvalidArgumentError(f"source [{src_prefix}] and destination [{dst_prefix}] are the same prefix")
    leave_out = dst_prefix if _inside(dst_prefix, src_prefix) else None
    snapshot = await _snapshot(store, src_prefix, filters, job, leave_out)
    items = [_Item(entry.ref, _join(dst_prefix, rel), entry) for entry, rel in snapshot]
    if _inside(src_prefix, dst_prefix):  # the source lives below the destination: may it be written?
        sources = {split_reference(entry.ref)[2] for entry, _ in snapshot}
        for item in items:
            if split_reference(item.dst)[2] in sources:
                raise InvalidArgumentError(
                    f"copying [{src_prefix}] to [{dst_prefix}] would overwrite its own source object "
                    f"[{item.dst}]: nothing was copied"
                )
    return items


# ---------------------------------------------------------------------------------------------
# Public API

_Pairs = Iterable[tuple[str, str]] | AsyncIterable[tuple[str, str]]


async def _pairs(pairs: _Pairs) -> AsyncIterator[_Item]:
    if isinstance(pairs, AsyncIterable):
        async for src, dst in pairs:
            yield _Item(src, dst, None)
    else:
        for src, dst in pairs:
            yield _Item(src, dst, None)


async def copy_many(
    store: TransferStore,
    pairs: _Pairs,
    *,
    dry_run: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Copy each ``(src, dst)`` pair through ``store`` (any scheme to any scheme).

    Each copy keeps the source's user metadata and content type and records its modification
    time in the ``mtime`` metadata (the local store sets the file's mtime from it), as rclone
    does, so a later ``sync`` sees it unchanged. ``dry_run``: each source is looked at (a missing
    one is a failure, as it would be) and ``Summary.actions`` lists the copies; nothing is written.

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
    job = _Job(
        store,
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries,
        progress=progress,
        dry_run=dry_run,
    )
    try:
        await job.run(_pairs(pairs))
    finally:
        job.finish()
    return job.summary


async def prefix_pairs(
    store: TransferStore,
    src_prefix: str,
    dst_prefix: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> AsyncIterator[tuple[str, str]]:
    """``(source, destination)`` for every object under ``src_prefix`` (selected by the filters:
    see ``Filters``), mirrored below ``dst_prefix`` exactly as ``copy_tree`` and ``sync`` map
    them, from one snapshot listing taken before the first pair is yielded: feed it to
    ``copy_many`` to copy a prefix. The overlap rules and the ``NotFoundError`` for a source
    with no objects are ``copy_tree``'s (raised before the first pair)."""
    for item in await _tree_items(store, src_prefix, dst_prefix, Filters(include, exclude), None):
        yield item.src, item.dst


async def copy_tree(
    store: TransferStore,
    src_prefix: str,
    dst_prefix: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dry_run: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Copy every object under ``src_prefix`` below ``dst_prefix`` (``a/b`` under the source
    becomes ``<dst_prefix>/a/b``: the contents of the source go into the destination, as
    ``rclone copy`` and ``aws s3 cp --recursive`` do).

    The source is listed once, whole, before anything is written; its totals are reported then
    (``Progress``). A source with no objects raises ``NotFoundError`` (one object, not a prefix:
    ``InvalidArgumentError``); a destination inside the source is left out of the snapshot; the
    same prefix on both sides, or a destination that would overwrite one of the source's own
    objects, raises ``InvalidArgumentError``; all before anything is written. ``include``/
    ``exclude``: see ``Filters``. The rest is ``copy_many``'s."""
    job = _Job(
        store,
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries,
        progress=progress,
        dry_run=dry_run,
    )
    try:
        await job.run_planned(await _tree_items(store, src_prefix, dst_prefix, Filters(include, exclude), job))
    finally:
        job.finish()
    return job.summary


async def sync(
    store: TransferStore,
    src_prefix: str,
    dst_prefix: str,
    *,
    delete: bool = False,
    checksum: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dry_run: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Make ``dst_prefix`` mirror ``src_prefix``: copy what is missing or changed there.

    Changed, as rclone decides it: the sizes differ; or, with ``checksum``, the MD5s differ (the
    one the backend reports: S3 single-part etags, GCS ``md5Hash``, Flyte's ``flyteContentMD5``;
    else read and hashed); or, without, the modification times differ. A copy records the
    source's time in the ``mtime`` metadata (the local store sets the file's mtime from it); an
    object's time is that metadata, else its ``last_modified``. Times compare equal within the
    coarser precision of the two sides, judged from each value: exact to the nanosecond from the
    metadata, a ``last_modified`` in whole seconds (HTTP headers: S3 and Azure heads) to the
    second, in whole milliseconds to the millisecond, else to the microsecond. So a second sync
    right after the first copies nothing, and a file rewritten with the same size and an older
    mtime is copied. A side that keeps no time (Redis) leaves the size alone to decide; times
    that differ on objects whose backends report equal MD5s count as unchanged.

    With ``delete=True``, destination objects with no source counterpart (among those the filters
    select) are deleted, in batches, only once every copy succeeded: after any failure nothing is
    deleted and ``Summary.deletes_withheld`` counts what was left. ``delete=True`` on prefixes
    where the source lies inside the destination (it would delete the source) is an
    ``InvalidArgumentError``.

    The listing, overlap, ``dry_run`` and missing-source rules are ``copy_tree``'s; ``dry_run``
    also lists the deletions. Retries and ``retries`` are as for ``copy_many``.
    """
    if delete and _inside(src_prefix, dst_prefix) and not _inside(dst_prefix, src_prefix):
        raise InvalidArgumentError(
            f"sync --delete from [{src_prefix}] into [{dst_prefix}] would delete the source, which lies "
            "inside the destination"
        )
    filters = Filters(include, exclude)
    job = _Job(
        store,
        mode="sync",
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries,
        progress=progress,
        checksum=checksum,
        dry_run=dry_run,
    )
    try:
        items = await _tree_items(store, src_prefix, dst_prefix, filters, job)
        await job.run_planned(items)
        if delete:
            _, dst_dir = _dir_key(dst_prefix)
            wanted = {split_reference(item.dst)[2] for item in items}
            extras: list[str] = []
            async for entry in store.list(dst_prefix):
                rel = _relative(entry.ref, dst_dir)
                if rel is not None and filters(rel) and split_reference(entry.ref)[2] not in wanted:
                    extras.append(entry.ref)
            if job.summary.failed:
                job.summary.deletes_withheld = len(extras)
            else:
                await job.delete(extras)
    finally:
        job.finish()
    return job.summary


async def move_many(
    store: TransferStore,
    pairs: _Pairs,
    *,
    dry_run: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Move each ``(src, dst)`` pair: copy it (as ``copy_many``), verify the copy (same size and
    MD5: reported by the backends where they can, else read and hashed), and delete the verified
    sources once every copy has finished, in batches. A source whose copy failed or did not
    verify (``CorruptObjectError``) is kept and reported in ``Summary.failed``. ``Summary.copied``
    counts the verified copies, ``deleted`` the sources deleted. ``dry_run`` lists ``"move"``
    actions and changes nothing."""
    job = _Job(
        store,
        mode="move",
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries,
        progress=progress,
        dry_run=dry_run,
    )
    try:
        await job.run(_pairs(pairs))
        await _delete_moved(job)
    finally:
        job.finish()
    return job.summary


async def move_tree(
    store: TransferStore,
    src_prefix: str,
    dst_prefix: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dry_run: bool = False,
    concurrency: int = 32,
    max_bytes_in_flight: int = 256 * MiB,
    retries: RetryPolicy | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Move every object under ``src_prefix`` below ``dst_prefix``: ``copy_tree``'s listing,
    mapping and overlap rules, ``move_many``'s verification and deletes."""
    job = _Job(
        store,
        mode="move",
        concurrency=concurrency,
        max_bytes_in_flight=max_bytes_in_flight,
        retries=retries,
        progress=progress,
        dry_run=dry_run,
    )
    try:
        await job.run_planned(await _tree_items(store, src_prefix, dst_prefix, Filters(include, exclude), job))
        await _delete_moved(job)
    finally:
        job.finish()
    return job.summary


async def _delete_moved(job: _Job) -> None:
    if job.dry_run:
        job.summary.deleted = job.summary.copied
    elif job.verified:
        await job.delete(job.verified)


async def delete_refs(
    store: TransferStore,
    refs: Iterable[str],
    *,
    dry_run: bool = False,
    concurrency: int = 32,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Delete ``refs`` in batches of ``DELETE_BATCH`` through the store's ``delete_many`` (S3
    DeleteObjects; bounded concurrency elsewhere), or one by one, ``concurrency`` at a time, on a
    store without it; ``Progress`` after each batch (phase ``"delete"``). An object already
    missing counts as deleted; any other failure is in ``Summary.failed`` (``src`` empty).
    ``dry_run`` lists the deletions and changes nothing."""
    if isinstance(refs, str):
        raise InvalidArgumentError("refs must be an iterable of references, not one str")
    job = _Job(store, concurrency=concurrency, progress=progress, dry_run=dry_run)
    try:
        await job.delete(list(refs))
    finally:
        job.finish()
    return job.summary


async def delete_tree(
    store: TransferStore,
    prefix: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dry_run: bool = False,
    concurrency: int = 32,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Delete every object under ``prefix`` the filters select (``Filters``), from one listing
    taken first, as ``delete_refs``. A prefix with no objects raises ``NotFoundError`` (one
    object, not a prefix: ``InvalidArgumentError``)."""
    job = _Job(store, concurrency=concurrency, progress=progress, dry_run=dry_run)
    try:
        snapshot = await _snapshot(store, prefix, Filters(include, exclude), job)
        await job.delete([entry.ref for entry, _ in snapshot])
    finally:
        job.finish()
    return job.summary


async def du(
    store: TransferStore, prefix: str, *, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[int, int]:
    """``(objects, bytes)`` under ``prefix`` (selected by the filters: ``Filters``), from one
    listing; ``(0, 0)`` for a prefix with no objects."""
    filters = Filters(include, exclude)
    _, dir_key = _dir_key(prefix)
    count = total = 0
    async for entry in store.list(prefix):
        rel = _relative(entry.ref, dir_key)
        if rel is not None and filters(rel):
            count += 1
            total += entry.size
    return count, total
