"""The backends the conformance suite runs against, each a factory of a ready ``Backend``.

A factory gets the pytest ``request`` (to reach server fixtures such as a moto server started
on a free 127.0.0.1 port) and yields an opened store plus a base reference unique to the test.
Add a backend by adding a factory to ``FACTORIES``.

Besides the bare stores, the suite runs through the stack users get (``backend_stack``: a full
``DataStore`` over memory, local disk and S3, and each layer on its own over memory), as Rust
object_store runs its integration suite through its wrapper stores.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flytestore import DataStore, MemoryStore, RawStore
from flytestore.stores.local import LocalStore

MiB = 1024 * 1024


@dataclass
class Backend:
    name: str
    #: A bare store, a layer over one, or a whole DataStore: the contracts are the same.
    store: RawStore | DataStore
    #: A prefix reference unique to this test, e.g. ``mem://bucket/t-1234``.
    base: str
    etag: bool = True
    user_metadata: bool = True
    content_type: bool = True
    signed_urls: bool = False
    #: Signed URLs a plain HTTP client can use against the server (tests fetch them).
    wrong_scheme_ref: str = "gopher://bucket/key"
    #: Writes longer than this are multi-part (S3 parts, Azure blocks, GCS resumable chunks).
    #: Factories build their stores with a small one where the store allows, so the multi-part
    #: contracts stay fast; stores that gather a whole object take the default.
    part_size: int = MiB
    #: Other spellings of ``base`` that name the same objects (e.g. Azure's ADLS form).
    base_spellings: tuple[str, ...] = ()

    def ref(self, *keys: str) -> str:
        return self.base.rstrip("/") + "/" + "/".join(keys)


def part_size_option(store_type: Callable[..., object], size: int, current: str) -> dict[str, int]:
    """``{parameter: size}`` for a store's part-size parameter: ``part_size`` where the store
    names it so (the shared write pipeline of issue 10 gives every backend that name), else the
    name it has today (``current``)."""
    name = "part_size" if "part_size" in inspect.signature(store_type).parameters else current
    return {name: size}


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


# Each remote backend (and each stack entry) registers its factory here when its module is imported.
from . import backend_azure, backend_gcs, backend_redis, backend_s3, backend_stack  # noqa: E402, F401
