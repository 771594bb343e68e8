"""InstrumentedStore: per-operation latency and failure metrics of a backend (Flyte's stow metrics).

Timers ``head``, ``read_open`` (time to open a read), ``read_ranges`` (one call, all its
ranges), ``write``, ``delete``, ``delete_many`` (one bulk delete call), ``list`` and ``copy``
(each a ``<name>_ms`` summary plus a histogram in seconds); failure counters ``head_failure``,
``read_failure`` (also failed ``read_ranges`` calls), ``write_failure``,
``delete_failure`` (also each object a bulk delete failed to delete), ``list_failure``,
``copy_failure`` labelled ``failure_type``; ``bad_key`` for references that do not parse or do
not belong.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

from ..errors import InvalidReferenceError, failure_type
from ..metrics import FailureCounter, Scope, Timer
from ..payload import Payload
from ..rawstore import COALESCE_DEFAULT, ByteStream, Cursor, ListEntry, Metadata, Options, RawStore
from ..reference import DataReference
from .base import Layer

__all__ = ["InstrumentedStore"]

T = TypeVar("T")


class InstrumentedStore(Layer):
    """Per-backend Prometheus metrics under Flyte's names: a latency timer and a failure counter
    (by error type) for each operation, plus ``bad_key`` for references that cannot be used."""

    def __init__(self, inner: RawStore, scope: Scope) -> None:
        super().__init__(inner)
        self.bad_key = scope.counter("bad_key", "references that could not be used")
        self._timers: dict[str, Timer] = {}
        self._failures: dict[str, FailureCounter] = {}
        for op in ("head", "read_open", "read_ranges", "write", "delete", "delete_many", "list", "copy"):
            self._timers[op] = scope.timer(op, f"latency of {op}")
            name = {"read_open": "read", "read_ranges": "read", "delete_many": "delete"}.get(op, op)
            if name in self._failures:
                self._failures[op] = self._failures[name]
                continue
            self._failures[op] = scope.failure_counter(f"{name}_failure", f"failed {name} operations")

    def _failed(self, op: str, err: BaseException) -> None:
        if isinstance(err, InvalidReferenceError):
            self.bad_key.inc()
        self._failures[op].inc(failure_type(err))

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        except Exception as err:
            self._failed(op, err)
            raise
        finally:
            self._timers[op].observe(time.perf_counter() - start)

    def head(self, ref: str) -> Coroutine[Any, Any, Metadata]:
        return self._timed("head", self.inner.head(ref))

    def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> Coroutine[Any, Any, ByteStream]:
        return self._timed("read_open", self.inner.read_raw(ref, offset=offset, length=length))

    def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> Coroutine[Any, Any, bytes]:
        return self._timed("read_open", self.inner.read_bytes(ref, offset, length, max_size))

    def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Coroutine[Any, Any, Metadata]:
        return self._timed("write", self.inner.write_raw(ref, data, size=size, options=options))

    def delete(self, ref: str) -> Coroutine[Any, Any, None]:
        return self._timed("delete", self.inner.delete(ref))

    async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
        results = await self._timed("delete_many", self.inner.delete_many(refs))
        for result in results:
            if result is not None:
                self._failed("delete", result)
        return results

    def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> Coroutine[Any, Any, list[bytes]]:
        return self._timed("read_ranges", self.inner.read_ranges(ref, ranges, coalesce=coalesce, max_size=max_size))

    def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Coroutine[Any, Any, Metadata]:
        return self._timed("copy", self.inner.copy_raw(src, dst, options=options))

    def list_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> Coroutine[Any, Any, tuple[list[DataReference], Cursor]]:
        return self._timed("list", self.inner.list_page(ref, max_items=max_items, cursor=cursor))

    async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        try:
            async for entry in self.inner.list(ref, page_size=page_size):
                yield entry
        except Exception as err:
            self._failed("list", err)
            raise
