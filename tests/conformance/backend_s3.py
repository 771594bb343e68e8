"""Conformance registration of the s3 backend: an S3Store against the session's moto server.

Two entries run the suite on both request paths of the store: ``s3`` with the default lean
requests (HEAD, GET, PUT and UploadPart signed and sent by ``_s3lean``) and ``s3-full`` with every
call through aiobotocore (``lean_requests=False``).

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

from ..servers_s3 import MotoS3, drop_bucket
from .backends import Backend, register


@contextlib.asynccontextmanager
async def s3(request: pytest.FixtureRequest, *, lean: bool = True) -> AsyncIterator[Backend]:
    pytest.importorskip("aiobotocore", reason="the s3 backend needs aiobotocore: pip install 'flytestore[s3]'")
    from flytestore.stores.s3 import S3Store, _LeanS3Api

    server: MotoS3 = request.getfixturevalue("s3_server")
    bucket = f"conf-{uuid.uuid4().hex[:16]}"
    store = S3Store(server.settings(lean_requests=lean), container=bucket, multicontainer=False)
    async with store:
        # The entry tests the path it names, not a silent fallback.
        assert isinstance(store.api, _LeanS3Api) is lean
        try:
            base = f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}"
            yield Backend("s3" if lean else "s3-full", store, base, signed_urls=True)
        finally:
            await drop_bucket(store, bucket)


register("s3", s3)
register("s3-full", functools.partial(s3, lean=False))
