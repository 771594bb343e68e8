"""Function-scoped fault proxies in front of the session's servers (see ``tests/faultproxy.py``).

Each fixture yields a fresh ``FaultProxy`` (no faults armed, listening) on a free 127.0.0.1 port
that forwards to the session server; point a store's endpoint at ``proxy.endpoint`` (or
``proxy.port``) and arm faults. At teardown the proxy is closed, and the faults that fired are
noted as the test's ``proxy_faults`` user property (see ``note``), never printed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from .faultproxy import FaultProxy
from .servers_azure import AzuriteServer
from .servers_redis import RedisServer
from .servers_s3 import MotoS3

__all__ = ["azure_proxy", "gcs_proxy", "redis_proxy", "s3_proxy"]


def note(request: pytest.FixtureRequest, name: str, value: object) -> None:
    """Keep a figure (faults fired, bytes verified...) with the test's report, printing nothing.

    ``record_property`` without its warning under the default ``junit_family``: the figures
    reach plugins and ``--junitxml`` with ``-o junit_family=xunit1``.
    """
    request.node.user_properties.append((name, value))


@contextlib.contextmanager
def _proxy(port: int, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    proxy = FaultProxy(port)
    try:
        yield proxy
    finally:
        stats = proxy.stats
        proxy.close()
        note(request, "proxy_faults", dict(stats.faults))


def _port(endpoint: str) -> int:
    port = urlsplit(endpoint).port
    assert port is not None, endpoint
    return port


@pytest.fixture
def s3_proxy(s3_server: MotoS3, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy in front of the session's moto server."""
    with _proxy(_port(s3_server.endpoint), request) as proxy:
        yield proxy


@pytest.fixture
def gcs_proxy(gcs_server: str, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy in front of the session's fake-gcs-server."""
    with _proxy(_port(gcs_server), request) as proxy:
        yield proxy


@pytest.fixture
def azure_proxy(azurite: AzuriteServer, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy in front of the session's Azurite blob service."""
    with _proxy(azurite.port, request) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy in front of the session's plain redis-server."""
    with _proxy(redis_server.port, request) as proxy:
        yield proxy
