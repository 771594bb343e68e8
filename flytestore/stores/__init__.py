"""The backends, one module each (their descriptions: ``flytestore.backends``; how they are
built from a config: ``flytestore.registry``). Only the memory store is imported here: the
others load on first use, with their client libraries."""

from __future__ import annotations

from typing import Any

from .memory import MemoryStore

__all__ = ["MemoryStore"]


def __getattr__(name: str) -> Any:
    # The registry lived here once: ``flytestore.stores.create_backend`` and friends still resolve.
    if name in ("SCHEME_KINDS", "SchemeFactory", "build_primary", "create_backend"):
        from .. import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
