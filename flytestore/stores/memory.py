"""MemoryStore: objects held in a dict, for tests and single-process use (``mem://``).

Like Flyte's in-memory store it also accepts scheme-less references (``/root/key``); unlike it,
listing is sorted and paginated like every other backend, and an empty listing is not an error.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..backends import BY_KIND
from ..errors import AlreadyExistsError, NotFoundError, check_size
from ..payload import Payload, read_payload
from ..rawstore import (
    DEFAULT_OPTIONS,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    check_range,
)
from ..reference import DataReference, escape_key
from .base import BaseStore

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["MemoryStore", "from_config"]


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    meta: Metadata


class MemoryStore(BaseStore):
    """Objects in a dict: ``mem://<container>/<key>`` (and scheme-less ``/a/b``, as Flyte's
    in-memory store takes). No I/O, so the stack adds no retries or metrics around it."""

    schemes = BY_KIND["mem"].schemes
    accepts_no_scheme = True

    def __init__(self, *, container: str = "", multicontainer: bool = True) -> None:
        super().__init__(container=container, multicontainer=multicontainer)
        self._objects: dict[tuple[str, str], _Object] = {}
        self._sorted: list[tuple[str, str]] | None = None

    def clear(self) -> None:
        """Remove every object."""
        self._objects.clear()
        self._sorted = None

    def make_ref(self, container: str, key: str) -> DataReference:
        if not container:
            return DataReference(f"/{escape_key(key)}")
        return super().make_ref(container, key)

    async def head(self, ref: str) -> Metadata:
        obj = self._objects.get(self.locate(ref))
        return obj.meta if obj is not None else Metadata.missing()

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        check_range(offset, length)
        obj = self._objects.get(self.locate(ref))
        if obj is None:
            raise NotFoundError(f"object [{ref}] does not exist")
        data = obj.data
        if offset or (length is not None and length < len(data)):
            end = len(data) if length is None else offset + length
            return ByteStream.from_bytes(memoryview(data)[offset:end], metadata=obj.meta)
        return ByteStream.from_bytes(data, metadata=obj.meta)

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        check_range(offset, length)
        obj = self._objects.get(self.locate(ref))
        if obj is None:
            raise NotFoundError(f"object [{ref}] does not exist")
        data = obj.data
        if offset or length is not None:
            data = data[offset : None if length is None else offset + length]
        check_size(len(data), max_size, ref)
        return data

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        where = self.locate(ref)
        opts = options or DEFAULT_OPTIONS
        if opts.if_not_exists and where in self._objects:
            raise AlreadyExistsError(f"object [{ref}] already exists")
        body = await read_payload(data, size)
        if opts.if_not_exists and where in self._objects:  # created while the payload streamed
            raise AlreadyExistsError(f"object [{ref}] already exists")
        meta = Metadata(
            exists=True,
            size=len(body),
            etag=hashlib.md5(body, usedforsecurity=False).hexdigest(),
            content_type=opts.content_type,
            last_modified=datetime.now(timezone.utc),
            user_metadata=dict(opts.metadata) if opts.metadata else opts.metadata,
        )
        self._store(where, _Object(body, meta))
        return meta

    def _store(self, where: tuple[str, str], obj: _Object) -> None:
        if where not in self._objects:
            self._sorted = None
        self._objects[where] = obj

    async def delete(self, ref: str) -> None:
        where = self.locate(ref)
        if self._objects.pop(where, None) is None:
            raise NotFoundError(f"object [{ref}] does not exist")
        self._sorted = None

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        obj = self._objects.get(self.locate(src))
        if obj is None:
            raise NotFoundError(f"copy source [{src}] does not exist")
        where = self.locate(dst)
        opts = options or DEFAULT_OPTIONS
        if opts.if_not_exists and where in self._objects:
            raise AlreadyExistsError(f"object [{dst}] already exists")
        meta = obj.meta
        if options is not None:
            meta = Metadata(
                exists=True,
                size=meta.size,
                etag=meta.etag,
                content_type=options.content_type,
                last_modified=datetime.now(timezone.utc),
                user_metadata=options.metadata,
            )
        self._store(where, _Object(obj.data, meta))  # bytes are immutable: share them
        return meta

    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        if self._sorted is None:
            self._sorted = sorted(self._objects)
        keys = self._sorted
        lo = (container, prefix)
        if not cursor.is_start():
            lo = max(lo, (container, cursor.position + "\0"))
        i = bisect.bisect_left(keys, lo)
        entries: list[ListEntry] = []
        last = ""
        while i < len(keys) and len(entries) < max_items:
            c, key = keys[i]
            if c != container or not key.startswith(prefix):
                break
            meta = self._objects[(c, key)].meta
            entries.append(ListEntry(self.make_ref(c, key), meta.size, meta.etag, meta.last_modified))
            last = key
            i += 1
        more = i < len(keys) and keys[i][0] == container and keys[i][1].startswith(prefix)
        return entries, (Cursor.at(last) if more and entries else Cursor.end())


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> MemoryStore:
    """A memory store for a config (``type: mem``); it has no settings."""
    return MemoryStore(container=container, multicontainer=multicontainer)
