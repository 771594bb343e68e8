"""RawStore -> RawStore wrappers: each adds one behaviour (cache, limits, budget and retries, routing, metrics)."""

from .base import Layer
from .cached import CachedStore
from .instrumented import InstrumentedStore
from .limited import LimitedStore
from .resilient import ResilientStore
from .routing import RoutingStore

__all__ = ["CachedStore", "InstrumentedStore", "Layer", "LimitedStore", "ResilientStore", "RoutingStore"]
