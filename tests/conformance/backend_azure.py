"""Conformance registration of the azure backend: an AzureStore against Azurite, one container per test.

The store is built as ``from_config`` builds it from a Flyte-shaped config (account key, the
Azurite endpoint, the SDK's own retries off), but directly, to give it 1 MiB blocks (a config has
no key for them): the multi-part contracts then stage a few blocks, not 8 MiB ones.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from flytestore.stores.azure import AzureStore

from ..servers_azure import AzuriteServer
from .backends import Backend, MiB, part_size_option, register

PART_SIZE = MiB


@contextlib.asynccontextmanager
async def azure(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    server: AzuriteServer = request.getfixturevalue("azurite")
    container = f"t-{uuid.uuid4().hex[:16]}"
    store = AzureStore(
        account_url=server.endpoint,
        credential={"account_name": server.account, "account_key": server.key},
        container=container,
        multicontainer=False,
        client_options={"retry_total": 0},
        **part_size_option(AzureStore, PART_SIZE, "block_size"),
    )
    async with store:
        prefix = uuid.uuid4().hex[:8]
        try:
            yield Backend(
                "azure",
                store,
                f"abfs://{container}/{prefix}",
                signed_urls=True,
                part_size=PART_SIZE,
                # The ADLS Gen2 form names the same blobs (its account is advisory).
                base_spellings=(f"abfss://{container}@{server.account}.dfs.core.windows.net/{prefix}",),
            )
        finally:
            # A container per test keeps tests apart; dropping it frees Azurite's memory.
            await store.service.delete_container(container)


register("azure", azure)
