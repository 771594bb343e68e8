from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .backends import FACTORIES, Backend


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with FACTORIES[request.param](request) as b:
        yield b
