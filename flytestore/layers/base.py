"""Layer: a RawStore that delegates every operation to an inner RawStore.

For each operation a subclass does not override, the constructor binds the inner store's method
onto the instance, so an untouched operation costs nothing per call (the methods below document
the delegation and serve when a subclass calls ``super()``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

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
)
from ..reference import DataReference

__all__ = ["Layer"]

_L = TypeVar("_L", bound="Layer")


_DELEGATED = (
    "open",
    "aclose",
    "head",
    "read_raw",
    "read_bytes",
    "write_raw",
    "list",
    "list_page",
    "delete",
    "delete_many",
    "read_ranges",
    "copy_raw",
    "create_signed_url",
)


class Layer:
    """Base of every layer: a RawStore that forwards each operation to ``inner``. A subclass
    overrides only the operations its one behaviour touches (``docs/architecture.md#the-stack``);
    opening and closing pass down the stack."""

    def __init__(self, inner: RawStore) -> None:
        self.inner = inner
        cls = type(self)
        for name in _DELEGATED:
            if getattr(cls, name) is getattr(Layer, name):
                setattr(self, name, getattr(inner, name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def __aenter__(self: _L) -> _L:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def base_container(self) -> DataReference:
        return self.inner.base_container

    def open(self) -> Coroutine[Any, Any, None]:
        return self.inner.open()

    def aclose(self) -> Coroutine[Any, Any, None]:
        return self.inner.aclose()

    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]:
        return self.inner.head(ref)

    def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> Coroutine[Any, Any, ByteStream]:
        return self.inner.read_raw(ref, offset=offset, length=length)

    def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> Coroutine[Any, Any, bytes]:
        return self.inner.read_bytes(ref, offset, length, max_size)

    def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Coroutine[Any, Any, Metadata]:
        return self.inner.write_raw(ref, data, size=size, options=options)

    def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        return self.inner.list(ref, page_size=page_size)

    def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> Coroutine[Any, Any, tuple[builtins.list[DataReference], Cursor]]:
        return self.inner.list_page(ref, max_items=max_items, cursor=cursor)

    def delete(self, ref: str) -> Coroutine[Any, Any, None]:
        return self.inner.delete(ref)

    def delete_many(self, refs: Sequence[str]) -> Coroutine[Any, Any, builtins.list[BaseException | None]]:
        return self.inner.delete_many(refs)

    def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> Coroutine[Any, Any, builtins.list[bytes]]:
        return self.inner.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size)

    def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Coroutine[Any, Any, Metadata]:
        return self.inner.copy_raw(src, dst, options=options)

    def create_signed_url(self, ref: str, props: SignedURLProperties) -> Coroutine[Any, Any, SignedURLResponse]:
        return self.inner.create_signed_url(ref, props)
