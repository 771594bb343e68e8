"""Conformance entries that run the suite through the stack users get, not only the bare stores.

- ``datastore-memory`` and ``datastore-local``: a full ``DataStore`` (protobuf, cache on, download
  limit, routing; the local backend also sits in its ``ResilientStore`` and ``InstrumentedStore``).
  ``datastore-s3`` (the same over moto) registers in ``backend_s3``.
- ``layer-cached``, ``layer-limited``, ``layer-routing``, ``layer-resilient``,
  ``layer-instrumented``: each layer on its own over a ``MemoryStore``.

A layer must keep every contract of the store under it. Where one legitimately changes a
behaviour, it is configured so that the contract holds, and says so where it is built.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, MemoryStore, RawStore, Scope
from flytestore.layers import CachedStore, InstrumentedStore, LimitedStore, ResilientStore, RoutingStore
from flytestore.layers.resilient import Budget

from .backends import Backend, register

#: The download limit of every stack entry, in MiB: larger than any object the suite reads back
#: (6 MiB streams; multi-part writes of 1.5 part sizes, 12 MiB through the S3 DataStore), so
#: the limit never refuses a read a bare store serves. Smaller objects still pass through the
#: limit's code path, and ``read_bytes(max_size=...)`` is checked against it.
DOWNLOAD_LIMIT_MBS = 16
#: Cache size, in MiB: objects up to 1/1024 of it (64 KiB) are cached, so the suite's small
#: objects are served from the cache and its large ones are not.
CACHE_MBS = 64


def scope() -> Scope:
    # A registry per store: two stacks in one process must not collide in prometheus's default one.
    return Scope("conformance", registry=CollectorRegistry())


def stack_config(**fields: object) -> Config:
    """A config with the cache on and the suite's download limit (see ``DOWNLOAD_LIMIT_MBS``)."""
    return Config(
        **fields,
        cache={"max_size_mbs": CACHE_MBS},
        limits={"maxDownloadMBs": DOWNLOAD_LIMIT_MBS},
    )


def _unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def datastore_memory(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with DataStore(stack_config(type="mem"), scope=scope()) as store:
        assert store.cache is not None
        yield Backend("datastore-memory", store, f"mem://bucket/{_unique()}")


@contextlib.asynccontextmanager
async def datastore_local(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    root = request.getfixturevalue("tmp_path")
    config = stack_config(type="local", container="bucket", local={"path": str(root)})
    async with DataStore(config, scope=scope()) as store:
        assert store.cache is not None
        assert isinstance(store.router.primary, ResilientStore)
        yield Backend(
            "datastore-local",
            store,
            f"file://bucket/{_unique()}",
            user_metadata=False,
            content_type=False,
        )


@contextlib.asynccontextmanager
async def _over_memory(name: str, store: RawStore) -> AsyncIterator[Backend]:
    await store.open()
    try:
        yield Backend(name, store, f"mem://bucket/{_unique()}")
    finally:
        await store.aclose()


def layer_cached(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    return _over_memory("layer-cached", CachedStore(MemoryStore(), max_size_mbs=CACHE_MBS, scope=scope()))


def layer_limited(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    # The limit refuses larger reads by design: set above the suite's largest object.
    return _over_memory("layer-limited", LimitedStore(MemoryStore(), max_download_mbs=DOWNLOAD_LIMIT_MBS))


class _MemoryFactory:
    """Builds the ``mem://`` backend on first use, so the entry exercises lazy routing."""

    def cache_key(self, scheme: str, ref: str) -> str | None:
        return scheme if scheme == "mem" else None

    async def create(self, scheme: str, ref: str) -> RawStore:
        store = MemoryStore()
        await store.open()
        return store


def layer_routing(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    # No primary: every reference is routed by its scheme, unknown ones are refused.
    return _over_memory("layer-routing", RoutingStore(None, factory=_MemoryFactory()))


def layer_resilient(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    # A small budget, so the suite's concurrent operations queue for it.
    return _over_memory("layer-resilient", ResilientStore(MemoryStore(), budget=Budget(4)))


def layer_instrumented(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    return _over_memory("layer-instrumented", InstrumentedStore(MemoryStore(), scope()))


register("datastore-memory", datastore_memory)
register("datastore-local", datastore_local)
register("layer-cached", layer_cached)
register("layer-limited", layer_limited)
register("layer-routing", layer_routing)
register("layer-resilient", layer_resilient)
register("layer-instrumented", layer_instrumented)
