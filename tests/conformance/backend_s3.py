"""Conformance registration of the s3 backend: an S3Store against the session's moto server.

Two entries run the suite on both request paths of the store: ``s3`` with the default lean
requests (HEAD, GET, PUT and UploadPart signed and sent by ``_s3lean``) and ``s3-full`` with every
call through aiobotocore (``lean_requests=False``). Both use S3's smallest part size (5 MiB), so
the multi-part contracts upload two parts. A third, ``datastore-s3``, runs the suite through a
full ``DataStore`` built from a Flyte-shaped config (cache on, download limit, routing, the
resilient and instrumented layers) with its default part size.

Each test gets a bucket of its own (created by the store's ``open()``, as on a fresh deployment)
and a unique prefix in it. The bucket is emptied and removed afterwards so that moto's memory
stays flat over the session.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator

import pytest

from flytestore import DataStore, RawStore
from flytestore.layers import InstrumentedStore, ResilientStore

from ..servers_s3 import MotoS3, drop_bucket
from .backend_stack import scope, stack_config
from .backends import Backend, MiB, register

#: S3's smallest part (every part but the last must be at least 5 MiB).
PART_SIZE = 5 * MiB


@contextlib.asynccontextmanager
async def s3(request: pytest.FixtureRequest, *, lean: bool = True) -> AsyncIterator[Backend]:
    pytest.importorskip("aiobotocore", reason="the s3 backend needs aiobotocore: pip install 'flytestore[s3]'")
    from flytestore.stores.s3 import S3Store, _LeanS3Api

    server: MotoS3 = request.getfixturevalue("s3_server")
    bucket = f"conf-{uuid.uuid4().hex[:16]}"
    store = S3Store(server.settings(lean_requests=lean), container=bucket, multicontainer=False, part_size=PART_SIZE)
    async with store:
        # The entry tests the path it names, not a silent fallback.
        assert isinstance(store.api, _LeanS3Api) is lean
        try:
            base = f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}"
            yield Backend("s3" if lean else "s3-full", store, base, signed_urls=True, part_size=PART_SIZE)
        finally:
            await drop_bucket(store, bucket)


def _innermost(store: RawStore) -> RawStore:
    while hasattr(store, "inner"):
        store = store.inner
    return store


@contextlib.asynccontextmanager
async def datastore_s3(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    pytest.importorskip("aiobotocore", reason="the s3 backend needs aiobotocore: pip install 'flytestore[s3]'")
    from flytestore.stores.s3 import S3Store

    server: MotoS3 = request.getfixturevalue("s3_server")
    bucket = f"conf-{uuid.uuid4().hex[:16]}"
    config = stack_config(type="stow", container=bucket, stow={"kind": "s3", "config": server.stow_config()})
    async with DataStore(config, scope=scope()) as store:  # opening creates the bucket
        primary = store.router.primary
        assert isinstance(primary, ResilientStore) and isinstance(primary.inner, InstrumentedStore)
        assert store.cache is not None
        s3_store = _innermost(primary)
        assert isinstance(s3_store, S3Store)
        try:
            base = f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}"
            yield Backend("datastore-s3", store, base, signed_urls=True, part_size=s3_store.part_size)
        finally:
            await drop_bucket(s3_store, bucket)


register("s3", s3)
register("s3-full", functools.partial(s3, lean=False))
register("datastore-s3", datastore_s3)
