"""Conformance registration of the gcs backend: a GCSStore against fake-gcs-server.

Each test gets a bucket of its own (the store's ``open()`` creates it, which also exercises the
init-container path) and a unique prefix in it. The store carries a throwaway service-account
key, so signed URLs work against the emulator (which does not check signatures).
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from flytestore.stores.gcs import GCSStore

from .backends import Backend, part_size_option, register

#: The smallest resumable-upload chunk GCS allows, so multi-part contracts send a few chunks.
PART_SIZE = 256 * 1024


@functools.lru_cache(maxsize=1)
def fake_service_account() -> dict[str, str]:
    """A service-account key with a fresh RSA key (generated once per session: it is slow)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "flytestore-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "tester@flytestore-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def fake_service_account_json() -> str:
    return json.dumps(fake_service_account())


@contextlib.asynccontextmanager
async def gcs(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    endpoint = request.getfixturevalue("gcs_server")
    bucket = f"flytestore-{uuid.uuid4().hex[:16]}"
    store = GCSStore(
        container=bucket,
        endpoint=endpoint,
        service_account=fake_service_account(),
        **part_size_option(GCSStore, PART_SIZE, "upload_chunk_size"),
    )
    async with store:
        base = f"gs://{bucket}/t-{uuid.uuid4().hex[:12]}"
        yield Backend("gcs", store, base, signed_urls=True, part_size=PART_SIZE)


register("gcs", gcs)
