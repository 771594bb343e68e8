"""Conformance registration of the redis backend: ``redis`` (one server) and ``redis_cluster``
(three cluster nodes, so listing, pipelines and copies also cross slots and nodes).

Each test gets its own store and a unique key prefix (``redis://<addr>/t-<hex>``); the keys under
it are deleted afterwards, so the shared server stays small and never needs a FLUSHALL (which
would race if tests ever ran concurrently).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from flytestore import NotFoundError
from flytestore.stores.redis import RedisStore

from .backends import Backend, register


async def _purge(store: RedisStore, base: str) -> None:
    async for entry in store.list(base):
        with contextlib.suppress(NotFoundError):
            await store.delete(entry.ref)


@contextlib.asynccontextmanager
async def _backend(name: str, store: RedisStore) -> AsyncIterator[Backend]:
    async with store:
        base = f"{store.base_container}/t-{uuid.uuid4().hex[:12]}"
        try:
            yield Backend(name, store, base, etag=False, user_metadata=False, content_type=False)
        finally:
            await _purge(store, base)


def redis(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    server = request.getfixturevalue("redis_server")
    return _backend("redis", RedisStore(server.addr))


def redis_cluster(request: pytest.FixtureRequest) -> contextlib.AbstractAsyncContextManager[Backend]:
    cluster = request.getfixturevalue("redis_cluster")
    return _backend("redis_cluster", RedisStore(addrs=cluster.addrs))


register("redis", redis)
register("redis_cluster", redis_cluster)
