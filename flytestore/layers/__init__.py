"""RawStore -> RawStore wrappers: each adds one behaviour (protobuf, cache, limits, budget and
retries, routing, metrics). How they stack: ``docs/architecture.md#the-stack``."""

from .base import Layer
from .cached import CachedStore
from .instrumented import InstrumentedStore
from .limited import LimitedStore
from .protobuf import ProtobufStore
from .resilient import ResilientStore
from .routing import RoutingStore

__all__ = [
    "CachedStore",
    "InstrumentedStore",
    "Layer",
    "LimitedStore",
    "ProtobufStore",
    "ResilientStore",
    "RoutingStore",
]
