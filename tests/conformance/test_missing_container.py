"""The contract of ``create_container=False`` (the config's ``createContainer: false``): nothing
ever creates a bucket or container, and an operation on a missing one is a ``NotFoundError`` that
names it, on every backend that has containers, alone and through a ``DataStore``.

Each factory yields a ``Missing``: a store opened over a container that does not exist, and a
way to ask the server whether it exists now.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flytestore import Config, DataStore, NotFoundError, RawStore
from flytestore.stores.local import LocalStore

from .backend_gcs import fake_service_account


@dataclass
class Missing:
    store: RawStore | DataStore
    #: The reference of the missing container (``s3://bucket``).
    container_ref: str
    #: The container's name, which every error must quote.
    name: str
    exists: Callable[[], Awaitable[bool]]


def _name() -> str:
    return f"missing-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def local(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    root, name = str(request.getfixturevalue("tmp_path")), _name()

    async def exists() -> bool:
        return await asyncio.to_thread(os.path.exists, os.path.join(root, name))

    async with LocalStore(root, container=name, create_container=False) as store:
        yield Missing(store, f"file://{name}", name, exists)


@contextlib.asynccontextmanager
async def datastore_local(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    root, name = str(request.getfixturevalue("tmp_path")), _name()

    async def exists() -> bool:
        return await asyncio.to_thread(os.path.exists, os.path.join(root, name))

    config = Config(type="local", container=name, create_container=False, local={"path": root})
    async with DataStore(config) as store:
        yield Missing(store, f"file://{name}", name, exists)


def _s3_exists(server: Any, name: str) -> Callable[[], Awaitable[bool]]:
    from flytestore.stores.s3 import S3Store

    async def exists() -> bool:
        async with S3Store(server.settings(), create_container=False) as probe:
            try:
                await probe.api.head_bucket(name)
            except Exception as err:  # botocore's 404
                if "404" in str(err) or "Not Found" in str(err):
                    return False
                raise
            return True

    return exists


@contextlib.asynccontextmanager
async def s3(request: pytest.FixtureRequest, *, lean: bool = True) -> AsyncIterator[Missing]:
    pytest.importorskip("aiobotocore")
    from flytestore.stores.s3 import S3Store

    server, name = request.getfixturevalue("s3_server"), _name()
    store = S3Store(server.settings(lean_requests=lean), container=name, create_container=False)
    async with store:
        yield Missing(store, f"s3://{name}", name, _s3_exists(server, name))


@contextlib.asynccontextmanager
async def s3_full(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    async with s3(request, lean=False) as missing:
        yield missing


@contextlib.asynccontextmanager
async def datastore_s3(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    pytest.importorskip("aiobotocore")
    server, name = request.getfixturevalue("s3_server"), _name()
    config = Config.from_dict(
        {
            "type": "s3",
            "container": name,
            "createContainer": False,
            "stow": {"kind": "s3", "config": server.stow_config()},
        }
    )
    async with DataStore(config) as store:
        yield Missing(store, f"s3://{name}", name, _s3_exists(server, name))


@contextlib.asynccontextmanager
async def gcs(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    from flytestore.stores.gcs import GCSStore

    endpoint, name = request.getfixturevalue("gcs_server"), _name()

    async def exists() -> bool:
        async with GCSStore(endpoint=endpoint, service_account=fake_service_account()) as probe:
            try:
                await probe.storage.get_bucket_metadata(name)
            except Exception as err:
                if getattr(err, "status", None) == 404:
                    return False
                raise
            return True

    store = GCSStore(container=name, endpoint=endpoint, service_account=fake_service_account(), create_container=False)
    async with store:
        yield Missing(store, f"gs://{name}", name, exists)


@contextlib.asynccontextmanager
async def azure(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    from flytestore.stores.azure import AzureStore

    server, name = request.getfixturevalue("azurite"), _name()
    store = AzureStore(
        account_url=server.endpoint,
        credential={"account_name": server.account, "account_key": server.key},
        container=name,
        client_options={"retry_total": 0},
        create_container=False,
    )

    async def exists() -> bool:
        return bool(await store.service.get_container_client(name).exists())

    async with store:
        yield Missing(store, f"abfs://{name}", name, exists)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Missing]]] = {
    "local": local,
    "datastore-local": datastore_local,
    "s3": s3,
    "s3-full": s3_full,
    "datastore-s3": datastore_s3,
    "gcs": gcs,
    "azure": azure,
}


@pytest.fixture(params=sorted(FACTORIES))
async def missing(request: pytest.FixtureRequest) -> AsyncIterator[Missing]:
    async with FACTORIES[request.param](request) as m:
        yield m


async def test_open_creates_nothing_and_operations_name_the_missing_container(missing: Missing) -> None:
    store, name = missing.store, missing.name
    ref = f"{missing.container_ref}/a/b"
    assert not await missing.exists()  # open() created nothing

    with pytest.raises(NotFoundError, match=rf"\[{name}\] does not exist"):
        await store.write_raw(ref, b"x")
    with pytest.raises(NotFoundError, match=rf"\[{name}\] does not exist"):
        await store.write_raw(ref, [b"x" * 1024, b"y"])  # a stream: the multi-part path
    with pytest.raises(NotFoundError, match=name):
        await store.read_raw(ref)
    for base in (missing.container_ref, f"{missing.container_ref}/a"):
        with pytest.raises(NotFoundError, match=rf"\[{name}\] does not exist"):
            await store.list_page(base)
        with pytest.raises(NotFoundError, match=rf"\[{name}\] does not exist"):
            async for _ in store.list(base):
                pass
    assert not (await store.head(ref)).exists
    assert not await missing.exists()  # nor did any operation
