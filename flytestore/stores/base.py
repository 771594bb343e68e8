"""``BaseStore``: the plumbing every backend shares (reference checks, listing loops, the
generic streamed copy, lifecycle). A new backend subclasses it; see
``docs/architecture.md#adding-a-backend``."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from ..errors import InvalidArgumentError, InvalidReferenceError, NotFoundError, UnsupportedError, check_size
from ..payload import Payload
from ..rawstore import (
    COALESCE_DEFAULT,
    COALESCE_PARALLEL,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    SignedURLProperties,
    SignedURLResponse,
    check_ranges,
    check_refs,
    enforce_limit,
)
from ..reference import DataReference, escape_key, split_reference
from ..streamcopy import SPLIT_PART_SIZE, EtagPin, stream_copy

__all__ = [
    "COALESCE_MAX_REQUEST",
    "DELETE_CONCURRENCY",
    "BaseStore",
    "delete_each",
    "merge_ranges",
    "run_bounded",
]

_S = TypeVar("_S", bound="BaseStore")
T = TypeVar("T")

#: Single deletes in flight at once in the default ``delete_many`` (backends without a bulk
#: delete request).
DELETE_CONCURRENCY = 32

#: ``read_ranges``: a request stops absorbing nearby ranges once it would span more than this, so
#: a long run of adjacent ranges is fetched by several requests in parallel rather than one long
#: one (a single range larger than this is still one request).
COALESCE_MAX_REQUEST = SPLIT_PART_SIZE


def merge_ranges(ranges: Iterable[tuple[int, int]], coalesce: int) -> list[tuple[int, int]]:
    """The requests that fetch the non-empty ``ranges``, sorted by start: ranges whose gap is at
    most ``coalesce`` bytes (overlapping and adjacent ones too) share one request while it spans
    at most ``COALESCE_MAX_REQUEST`` bytes. With ``coalesce=0`` nothing is merged: each distinct
    range is one request."""
    spans = sorted({r for r in ranges if r[0] < r[1]})
    if not coalesce:
        return spans
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged:
            first, last = merged[-1]
            if start - last <= coalesce and max(end, last) - first <= COALESCE_MAX_REQUEST:
                merged[-1] = (first, max(end, last))
                continue
        merged.append((start, end))
    return merged


async def run_bounded(call: Callable[[T], Awaitable[None]], items: Iterable[T], concurrency: int) -> None:
    """``await call(item)`` for every item, at most ``concurrency`` at once (a few workers
    sharing one iterator: no task per item)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await call(item)

    if concurrency <= 1:
        await worker()
        return
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException:  # one failed (or we are cancelled): stop the others before raising
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


async def delete_each(
    delete: Callable[[str], Awaitable[None]],
    refs: Sequence[str],
    results: list[BaseException | None],
    indices: Sequence[int],
    concurrency: int = DELETE_CONCURRENCY,
) -> None:
    """``delete(refs[i])`` for each ``i`` of ``indices``, at most ``concurrency`` at once, each
    outcome in ``results[i]``: ``None`` when deleted or already missing, else the error."""

    async def one(i: int) -> None:
        try:
            await delete(refs[i])
        except NotFoundError:
            results[i] = None
        except Exception as err:
            results[i] = err

    await run_bounded(one, indices, min(concurrency, len(indices)))


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

    async def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> list[bytes]:
        """``RawStore.read_ranges`` over this store's own ``read_raw``: the ranges merged into
        requests (``merge_ranges``), ``COALESCE_PARALLEL`` requests in flight, every response
        pinned to one etag (``streamcopy.EtagPin``), then each range cut from its request.

        ``max_size`` bounds the bytes returned: when the ranges ask for more, a ``head`` learns
        the object's size (and pins its etag) and the call is refused before any range is read
        unless the ranges, clipped to the object, fit."""
        checked = check_ranges(ranges, coalesce)
        pin = EtagPin(ref)
        if max_size and sum(end - start for start, end in checked) > max_size:
            meta = await self.head(ref)
            if not meta.exists:
                raise NotFoundError(f"object [{ref}] does not exist")
            pin.check(meta)
            check_size(sum(max(0, min(end, meta.size) - start) for start, end in checked), max_size, ref)
        requests = merge_ranges(checked, coalesce)
        bodies: list[bytes] = [b""] * len(requests)

        async def fetch(i: int) -> None:
            start, end = requests[i]
            stream = await self.read_raw(ref, start, end - start)
            async with stream:
                pin.check(stream.metadata)
                bodies[i] = await stream.read()

        await run_bounded(fetch, range(len(requests)), min(COALESCE_PARALLEL, len(requests)))
        starts = [start for start, _ in requests]
        results: list[bytes] = []
        for start, end in checked:
            if start == end:
                results.append(b"")
                continue
            i = bisect.bisect_right(starts, start) - 1  # the request holding the range
            body, first = bodies[i], starts[i]
            results.append(body if (start, end) == requests[i] else body[start - first : end - first])
        return results

    async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
        """Delete each reference (``RawStore.delete_many``): the references are checked first (a
        bad one is an error in its slot), then ``delete`` runs for the rest, at most
        ``DELETE_CONCURRENCY`` at once. Backends with a bulk request override ``_delete_located``."""
        refs = check_refs(refs)
        results: list[BaseException | None] = [None] * len(refs)
        located: list[tuple[int, str, str]] = []
        for i, ref in enumerate(refs):
            try:
                container, key = self.locate(ref)
            except (InvalidReferenceError, NotFoundError) as err:
                results[i] = err
                continue
            located.append((i, container, key))
        if located:
            await self._delete_located(refs, located, results)
        return results

    async def _delete_located(
        self, refs: list[str], located: list[tuple[int, str, str]], results: list[BaseException | None]
    ) -> None:
        """Delete ``refs[i]`` (in ``container`` at ``key``) for each ``(i, container, key)`` of
        ``located``, each outcome in ``results[i]``. The default: one ``delete`` each, bounded."""
        await delete_each(self.delete, refs, results, [i for i, _, _ in located])

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
