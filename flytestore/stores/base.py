"""``BaseStore``: the plumbing every backend shares (reference checks, listing loops, the
generic streamed copy, lifecycle). A new backend subclasses it; see
``docs/architecture.md#adding-a-backend``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from ..errors import InvalidArgumentError, InvalidReferenceError, NotFoundError, UnsupportedError
from ..payload import Payload
from ..rawstore import (
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    SignedURLProperties,
    SignedURLResponse,
    check_refs,
    enforce_limit,
)
from ..reference import DataReference, escape_key, split_reference
from ..streamcopy import stream_copy

__all__ = ["DELETE_CONCURRENCY", "BaseStore", "delete_each", "run_bounded"]

_S = TypeVar("_S", bound="BaseStore")
T = TypeVar("T")

#: Single deletes in flight at once in the default ``delete_many`` (backends without a bulk
#: delete request).
DELETE_CONCURRENCY = 32


async def run_bounded(call: Callable[[T], Awaitable[None]], items: Iterable[T], concurrency: int) -> None:
    """``await call(item)`` for every item, at most ``concurrency`` at once (a few workers
    sharing one iterator: no task per item)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await call(item)

    if concurrency <= 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))


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
