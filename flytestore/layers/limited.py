"""LimitedStore: refuse downloads larger than ``limits.max_download_mbs`` (default 2 MiB).

The limit is per store (per DataStore), never process-global. A read whose size is known is
refused before its first byte; a read of unknown size is cut off, with the same error, as soon
as it passes the limit (``rawstore.enforce_limit``). ``read_bytes`` hands the limit down as
``max_size`` so a store holding the bytes already can judge it without a stream. ``read_ranges``
hands it down the same way: it bounds the total bytes one call returns (the ranges clipped to the
object), since they are all held at once. Copies are not limited: they stream and never hold an
object in memory.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from ..errors import InvalidArgumentError
from ..rawstore import COALESCE_DEFAULT, ByteStream, RawStore, enforce_limit
from ..units import MiB
from .base import Layer

__all__ = ["LimitedStore"]


class LimitedStore(Layer):
    """Refuses reads of objects over ``max_download_mbs`` (0: unlimited) with
    ``ExceedsLimitError``, before their first byte when the size is known."""

    def __init__(self, inner: RawStore, *, max_download_mbs: float = 2) -> None:
        super().__init__(inner)
        if max_download_mbs < 0:
            raise InvalidArgumentError(f"max_download_mbs must not be negative, got {max_download_mbs}")
        #: Largest readable object in bytes; 0 means unlimited.
        self.limit = int(max_download_mbs * MiB)

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        stream = await self.inner.read_raw(ref, offset, length)
        if stream.size is not None and stream.size <= self.limit:  # the common case, inline
            return stream
        return await enforce_limit(stream, self.limit, ref)

    def _limit(self, max_size: int | None) -> int | None:
        """The tighter of this store's limit and a caller's ``max_size``; None: unlimited."""
        limit = self.limit
        if max_size and (not limit or max_size < limit):
            limit = max_size
        return limit or None

    def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> Coroutine[Any, Any, bytes]:
        return self.inner.read_bytes(ref, offset, length, self._limit(max_size))

    def read_ranges(
        self,
        ref: str,
        ranges: Sequence[tuple[int, int]],
        *,
        coalesce: int = COALESCE_DEFAULT,
        max_size: int | None = None,
    ) -> Coroutine[Any, Any, list[bytes]]:
        return self.inner.read_ranges(ref, ranges, coalesce=coalesce, max_size=self._limit(max_size))
