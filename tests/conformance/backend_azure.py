"""Conformance registration of the azure backend: an AzureStore against Azurite, one container per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from flytestore import Config
from flytestore.stores.azure import AzureStore, from_config

from ..servers_azure import AzuriteServer
from .backends import Backend, register


def azure_config(server: AzuriteServer, container: str) -> Config:
    """A Flyte-shaped config (``stow.kind: azure``) for the session's Azurite server."""
    settings = {"account": server.account, "key": server.key, "endpoint": server.endpoint}
    return Config(type="stow", container=container, stow={"kind": "azure", "config": settings})


@contextlib.asynccontextmanager
async def azure(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    server = request.getfixturevalue("azurite")
    container = f"t-{uuid.uuid4().hex[:16]}"
    config = azure_config(server, container)
    store = from_config(
        config.backend_config(), container=container, multicontainer=False, config=config, field="stow.config"
    )
    assert isinstance(store, AzureStore)
    async with store:
        try:
            yield Backend("azure", store, f"abfs://{container}/{uuid.uuid4().hex[:8]}", signed_urls=True)
        finally:
            # A container per test keeps tests apart; dropping it frees Azurite's memory.
            await store.service.delete_container(container)


register("azure", azure)
