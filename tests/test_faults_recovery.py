"""A server that goes away and comes back, and one that answers too slowly.

Each DataStore is configured as a user would (Flyte YAML shape, ``defaultHttpClient.timeout``
and a ``retries`` section) with its server behind a ``FaultProxy``. While the proxy does not
listen, operations fail with a flytestore ``TransientError`` (what the retry layer gives up
with) in bounded time; once it listens again on the same port, the very same DataStore object
works again, and a write attempted during the outage left nothing behind. A ``Delay`` or a
``Drop`` longer than the configured timeout is a timeout error, not a hang.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, Scope, StorageError, TransientError

from .faultproxy import Delay, Drop, Fault, FaultProxy
from .servers_azure import AzuriteServer
from .servers_faults import note
from .servers_s3 import MotoS3

TIMEOUT = 0.5  # defaultHttpClient.timeout, seconds
RETRIES: dict[str, Any] = {"max_attempts": 3, "base_delay": "10ms", "max_delay": "100ms", "total_timeout": "3s"}
#: What "bounded" means while the whole stack keeps to its settings: no retry starts after
#: ``total_timeout``, and the attempt under way then ends within about two timeouts (connect and
#: read); plus slack for a loaded CI machine.
TIGHT_BOUND = 3.0 + 2 * TIMEOUT + 2.0
#: What any backend must meet today (see ``test_time_to_fail_keeps_to_the_retry_budget``).
GENEROUS_BOUND = 60.0
KINDS = ["s3", "gcs", "azure", "redis"]


@dataclass
class Target:
    kind: str
    proxy: FaultProxy
    config: Callable[[dict[str, Any]], Config]  # retries -> Config, reaching the server through the proxy


def make_target(kind: str, request: pytest.FixtureRequest) -> Target:
    """The proxy of ``kind``'s session server (a function-scoped fixture) and a config through it."""
    name = f"recovery-{uuid.uuid4().hex[:12]}"
    http = {"timeout": f"{TIMEOUT}s"}
    if kind == "s3":
        server: MotoS3 = request.getfixturevalue("s3_server")
        proxy: FaultProxy = request.getfixturevalue("s3_proxy")

        def config(retries: dict[str, Any]) -> Config:
            settings = {**server.stow_config(), "endpoint": proxy.endpoint}
            stow = {"kind": "s3", "config": settings}
            return Config(type="stow", container=name, stow=stow, default_http_client=http, retries=retries)

    elif kind == "gcs":
        request.getfixturevalue("gcs_server")
        proxy = request.getfixturevalue("gcs_proxy")

        def config(retries: dict[str, Any]) -> Config:
            stow = {"kind": "google", "config": {"endpoint": proxy.endpoint, "project_id": "test"}}
            return Config(type="stow", container=name, stow=stow, default_http_client=http, retries=retries)

    elif kind == "azure":
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        proxy = request.getfixturevalue("azure_proxy")

        def config(retries: dict[str, Any]) -> Config:
            settings = {
                "account": azurite.account,
                "key": azurite.key,
                "endpoint": f"{proxy.endpoint}/{azurite.account}",
            }
            stow = {"kind": "azure", "config": settings}
            return Config(type="stow", container=name, stow=stow, default_http_client=http, retries=retries)

    else:
        request.getfixturevalue("redis_server")
        proxy = request.getfixturevalue("redis_proxy")

        def config(retries: dict[str, Any]) -> Config:
            addr = f"127.0.0.1:{proxy.port}"
            return Config(type="redis", redis={"addr": addr}, default_http_client=http, retries=retries)

    return Target(kind, proxy, config)


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest) -> Target:
    return make_target(request.param, request)


def datastore(config: Config) -> DataStore:
    return DataStore(config, scope=Scope("flyte:storage", registry=CollectorRegistry()))


def gave_up_transiently(err: BaseException) -> bool:
    """A flytestore error that is, or was raised from, a TransientError."""
    seen = err
    while seen is not None:
        if isinstance(seen, TransientError):
            return True
        seen = seen.__cause__  # type: ignore[assignment]
    return False


async def fails_in(call: Callable[[], Awaitable[object]], limit: float) -> tuple[StorageError, float]:
    """The StorageError ``call`` fails with, and how long it took (it must fail within ``limit``)."""
    start = time.monotonic()
    try:
        await asyncio.wait_for(call(), limit)
    except StorageError as err:
        return err, time.monotonic() - start
    except asyncio.TimeoutError:
        raise AssertionError(f"still running after {limit}s") from None
    raise AssertionError("the operation succeeded")


# ---------------------------------------------------------------------------------------------


async def test_server_gone_fails_transiently_and_the_same_store_recovers(
    target: Target, request: pytest.FixtureRequest
) -> None:
    async with datastore(target.config(RETRIES)) as store:
        ref = store.construct_reference(store.base_container, "recovery", "obj")
        await store.write_raw(ref, b"before the outage")

        target.proxy.stop_listening()
        times = {}
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "head": lambda: store.head(ref),
            "write": lambda: store.write_raw(ref, b"during the outage"),
        }
        for name, call in operations.items():
            err, took = await fails_in(call, GENEROUS_BOUND)
            assert gave_up_transiently(err), repr(err)
            assert type(err).__module__.startswith("flytestore")
            times[name] = round(took, 2)

        target.proxy.start_listening()
        # The same DataStore object, not rebuilt: its pools reconnect.
        assert await store.read_bytes(ref) == b"before the outage"  # the failed write left nothing
        await store.write_raw(ref, b"after the outage")
        assert await store.read_bytes(ref) == b"after the outage"
        assert (await store.head(ref)).exists
        refs, _ = await store.list_page(store.construct_reference(store.base_container, "recovery"))
        assert refs == [ref]
        await store.delete(ref)
        note(request, "seconds_to_fail", times)


@pytest.mark.parametrize("fault", [Delay(30, "down"), Drop()], ids=["delay", "drop"])
async def test_an_answer_slower_than_the_timeout_is_a_timeout_error(
    target: Target, fault: Fault, request: pytest.FixtureRequest
) -> None:
    async with datastore(target.config({"max_attempts": 1})) as store:
        ref = store.construct_reference(store.base_container, "slow", "obj")
        await store.write_raw(ref, b"x")
        target.proxy.inject(fault, times=None)
        target.proxy.reset_connections()  # pooled connections would bypass a fault on new ones
        err, took = await fails_in(lambda: store.head(ref), GENEROUS_BOUND)
        assert isinstance(err, TransientError), repr(err)
        assert "timed out" in str(err).lower() or "timeout" in str(err).lower(), str(err)
        assert took >= TIMEOUT * 0.9  # the timeout, not some other failure
        target.proxy.clear()
        target.proxy.reset_connections()  # the stalled ones (a Drop holds its connection open)
        assert await store.read_bytes(ref) == b"x"
        await store.delete(ref)
        note(request, "seconds_to_fail", round(took, 2))


# Stores built from a config turn their client library's own retries off (botocore, redis-py,
# azure-core), so the retry layer's time budget is the only one.
@pytest.mark.parametrize("kind", ["s3", "gcs", "azure", "redis"])
@pytest.mark.parametrize("outage", ["stopped", "delay"])
async def test_time_to_fail_keeps_to_the_retry_budget(kind: str, outage: str, request: pytest.FixtureRequest) -> None:
    target = make_target(kind, request)
    async with datastore(target.config(RETRIES)) as store:
        ref = store.construct_reference(store.base_container, "budget", "obj")
        await store.write_raw(ref, b"x")
        if outage == "stopped":
            target.proxy.stop_listening()
        else:
            target.proxy.inject(Delay(30, "down"), times=None)
            target.proxy.reset_connections()
        err, took = await fails_in(lambda: store.head(ref), GENEROUS_BOUND)
        note(request, "seconds_to_fail", round(took, 2))
        assert gave_up_transiently(err)
        target.proxy.clear()
        if not target.proxy.listening:
            target.proxy.start_listening()
        target.proxy.reset_connections()
        await store.delete(ref)
        assert took <= TIGHT_BOUND, f"{kind}: {took:.1f}s to fail, over {TIGHT_BOUND}s"
