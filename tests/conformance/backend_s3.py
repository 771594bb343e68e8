"""Conformance registration of the s3 backend: an S3Store against the session's moto server.

Each test gets a bucket of its own (created by the store's ``open()``, as on a fresh deployment)
and a unique prefix in it. The bucket is emptied and removed afterwards so that moto's memory
stays flat over the session.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from ..servers_s3 import MotoS3, drop_bucket
from .backends import Backend, register


@contextlib.asynccontextmanager
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    pytest.importorskip("aiobotocore", reason="the s3 backend needs aiobotocore: pip install 'flytestore[s3]'")
    from flytestore.stores.s3 import S3Store

    server: MotoS3 = request.getfixturevalue("s3_server")
    bucket = f"conf-{uuid.uuid4().hex[:16]}"
    store = S3Store(server.settings(), container=bucket, multicontainer=False)
    async with store:
        try:
            yield Backend("s3", store, f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}", signed_urls=True)
        finally:
            await drop_bucket(store, bucket)


register("s3", s3)
