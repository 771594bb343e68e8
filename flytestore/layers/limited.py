"""LimitedStore: refuse downloads larger than ``limits.max_download_mbs`` (default 2 MiB).

The limit is per store (per DataStore), never process-global. A read whose size is known is
refused before its first byte; a read of unknown size is cut off, with the same error, as soon
as it passes the limit. Copies are not limited: they stream and never hold an object in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import ExceedsLimitError
from ..rawstore import BytesLike, ByteStream, RawStore
from .base import Layer

__all__ = ["MiB", "LimitedStore"]

MiB = 1024 * 1024


class LimitedStore(Layer):
    def __init__(self, inner: RawStore, *, max_download_mbs: float = 2) -> None:
        super().__init__(inner)
        if max_download_mbs < 0:
            raise ValueError(f"max_download_mbs must not be negative, got {max_download_mbs}")
        #: Largest readable object in bytes; 0 means unlimited.
        self.limit = int(max_download_mbs * MiB)

    async def read_raw(self, ref: str, *, offset: int = 0, length: int | None = None) -> ByteStream:
        stream = await self.inner.read_raw(ref, offset=offset, length=length)
        limit = self.limit
        if not limit:
            return stream
        if stream.size is not None:
            if stream.size > limit:
                await stream.aclose()
                raise ExceedsLimitError(stream.size, limit, ref)
            return stream
        return ByteStream(_capped(stream, limit, ref), metadata=stream.metadata, close=stream.aclose)


async def _capped(stream: ByteStream, limit: int, ref: str) -> AsyncIterator[BytesLike]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise ExceedsLimitError(seen, limit, ref)
        yield chunk
