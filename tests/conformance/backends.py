"""The backends the conformance suite runs against, each a factory of a ready ``Backend``.

A factory gets the pytest ``request`` (to reach server fixtures such as a moto server started
on a free 127.0.0.1 port) and yields an opened store plus a base reference unique to the test.
Add a backend by adding a factory to ``FACTORIES``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flytestore import MemoryStore, RawStore
from flytestore.stores.local import LocalStore


@dataclass
class Backend:
    name: str
    store: RawStore
    #: A prefix reference unique to this test, e.g. ``mem://bucket/t-1234``.
    base: str
    etag: bool = True
    user_metadata: bool = True
    content_type: bool = True
    signed_urls: bool = False
    #: Signed URLs a plain HTTP client can use against the server (tests fetch them).
    wrong_scheme_ref: str = "gopher://bucket/key"

    def ref(self, *keys: str) -> str:
        return self.base.rstrip("/") + "/" + "/".join(keys)


def _unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def memory(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with MemoryStore(container="bucket") as store:
        yield Backend("memory", store, f"mem://bucket/{_unique()}")


@contextlib.asynccontextmanager
async def local(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    root = request.getfixturevalue("tmp_path")
    store = LocalStore(root, container="bucket")
    async with store:
        yield Backend("local", store, f"file://bucket/{_unique()}", user_metadata=False, content_type=False)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Backend]]] = {
    "memory": memory,
    "local": local,
}


def register(name: str, factory: Callable[[pytest.FixtureRequest], Any]) -> None:
    FACTORIES[name] = factory


# Each remote backend registers its factory here when its module is imported.
from . import backend_azure, backend_gcs, backend_redis, backend_s3  # noqa: E402, F401
