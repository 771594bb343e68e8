"""ProtobufStore: protobuf marshalling over any RawStore (Flyte's DefaultProtobufStore).

Metrics (Flyte's names): ``proto_fetch``, ``marshal``, ``unmarshal`` stopwatches (``*_ms``);
``marshal_failure``, ``unmarshal_failure``, ``read_failure_unrelated_to_cache``,
``write_failure_unrelated_to_cache`` counters. The cache never fails a call here (a value it
cannot admit is only counted), so every failure counted is unrelated to the cache.
"""

from __future__ import annotations

import time
from typing import TypeVar

from google.protobuf.message import DecodeError, EncodeError, Message

from ..errors import CorruptObjectError, InvalidArgumentError, StorageError
from ..metrics import Scope
from ..rawstore import Metadata, Options, RawStore
from .base import Layer

__all__ = ["ProtobufStore"]

M = TypeVar("M", bound=Message)


class ProtobufStore(Layer):
    """The top layer of a DataStore: ``read_protobuf`` / ``write_protobuf`` over any RawStore,
    with Flyte's marshalling metrics. Raw calls pass through unchanged."""

    def __init__(self, inner: RawStore, scope: Scope | None = None) -> None:
        super().__init__(inner)
        scope = scope or Scope("flyte:storage")
        self.fetch_time = scope.stopwatch("proto_fetch", "time to fetch the bytes of a message")
        self.marshal_time = scope.stopwatch("marshal", "time to serialize a message")
        self.unmarshal_time = scope.stopwatch("unmarshal", "time to parse a message")
        self.marshal_failures = scope.counter("marshal_failure", "messages that failed to serialize")
        self.unmarshal_failures = scope.counter("unmarshal_failure", "stored bytes that failed to parse")
        self.read_failures = scope.counter("read_failure_unrelated_to_cache", "failed message reads")
        self.write_failures = scope.counter("write_failure_unrelated_to_cache", "failed message writes")

    async def read_protobuf(self, ref: str, msg: M) -> M:
        """Read ``ref`` and parse it into ``msg`` (cleared first); returns ``msg``."""
        if not isinstance(msg, Message):
            raise InvalidArgumentError(f"read_protobuf needs a protobuf Message to fill, got {type(msg).__name__}")
        start = time.perf_counter()
        try:
            data = await self.inner.read_bytes(ref)
        except StorageError:
            self.read_failures.inc()
            raise
        self.fetch_time.observe(time.perf_counter() - start)
        start = time.perf_counter()
        try:
            msg.Clear()
            msg.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as err:
            self.unmarshal_failures.inc()
            raise CorruptObjectError(
                f"[{ref}] holds {len(data)} bytes that do not parse as {msg.DESCRIPTOR.full_name}: {err}"
            ) from err
        self.unmarshal_time.observe(time.perf_counter() - start)
        return msg

    async def write_protobuf(self, ref: str, msg: Message, options: Options | None = None) -> Metadata:
        """Serialize ``msg`` and write it to ``ref``."""
        if not isinstance(msg, Message):
            raise InvalidArgumentError(f"write_protobuf needs a protobuf Message, got {type(msg).__name__}")
        start = time.perf_counter()
        try:
            data = msg.SerializeToString()
        except EncodeError as err:
            self.marshal_failures.inc()
            raise InvalidArgumentError(f"cannot serialize {msg.DESCRIPTOR.full_name} for [{ref}]: {err}") from err
        self.marshal_time.observe(time.perf_counter() - start)
        try:
            return await self.inner.write_raw(ref, data, size=len(data), options=options)
        except StorageError:
            self.write_failures.inc()
            raise
