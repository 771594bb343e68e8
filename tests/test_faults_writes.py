"""Writes under network faults: a write either completes whole or leaves nothing behind.

Each network store is built with its endpoint on a fault proxy (``tests/faultproxy.py``) in front
of the session's server, and the aftermath is checked directly against the server, around the
proxy: no object at the key, and no orphaned upload state (S3: no multipart upload left; Azure:
see below; GCS: the resumable session was cancelled, which is all fake-gcs-server lets a client
check, since it answers the cancel with 499 but keeps the session, and probing a session's
status with ``Content-Range: bytes */*`` finalises it there).

How the cut lands mid-body of a later part depends on the server's connection handling:

- moto closes the connection after every response, so each request is a connection of its own:
  the payload arms the fault for "the next connection" once the first part has gone out.
- fake-gcs-server and Azurite keep connections alive, and the store's requests are sequential
  here (GCS chunks always are; Azure with ``max_parts_in_flight=1``), so one connection carries
  everything: a byte threshold armed before ``open()`` counts from the store's first request.

aiohttp resends an idempotent request (PUT) once on a new connection after a connection error,
and the SDKs retry too, so a cut that must make the write fail also covers every later
connection ("the network keeps cutting uploads"); small requests (aborts, heads) stay below it.

Local-disk counterparts (a failing or cancelled stream leaves no temp file) live in
``test_local.py`` (``test_failing_payload_leaves_nothing``, ``test_cancelled_write_leaves_nothing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from flytestore.errors import NotFoundError, StorageError, TransientError
from flytestore.rawstore import RawStore

from .faultproxy import Delay, Fault, FaultProxy, Reset
from .servers_faults import note

KiB = 1024
MiB = 1024 * KiB


async def eventually(check: Callable[[], object], timeout: float = 20.0, what: object = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time {what}")
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------------------------
# Targets: a store through the proxy, and a direct look at the server


@dataclass
class Target:
    kind: str
    store: RawStore
    proxy: FaultProxy
    base: str
    #: Part, chunk or block size of streamed writes (several of them make a multipart write).
    part: int
    #: Directly at the server: does an object exist at this key?
    exists: Callable[[str], Awaitable[bool]]
    #: Directly at the server: leftover upload state of this key (empty: none).
    leftovers: Callable[[str], Awaitable[list[str]]]
    extra: dict[str, Any] = field(default_factory=dict)

    def ref(self, key: str) -> str:
        return f"{self.base}/{key}"


def unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def s3_target(request: pytest.FixtureRequest, before_open: Callable[[FaultProxy], None]) -> AsyncIterator[Target]:
    pytest.importorskip("aiobotocore")
    from flytestore.stores.s3 import S3Store

    from .servers_s3 import drop_bucket

    server = request.getfixturevalue("s3_server")
    proxy: FaultProxy = request.getfixturevalue("s3_proxy")
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    direct = S3Store(server.settings(), container=bucket)
    store = S3Store(server.settings(endpoint_url=proxy.endpoint), container=bucket, part_size=5 * MiB)
    async with direct:
        client = direct.api.client

        async def exists(key: str) -> bool:
            return (await direct.head(f"s3://{bucket}/{key}")).exists

        async def leftovers(key: str) -> list[str]:
            resp = await client.list_multipart_uploads(Bucket=bucket, Prefix=key)
            return [f"multipart upload {u['UploadId']} of {u['Key']}" for u in resp.get("Uploads", [])]

        before_open(proxy)
        try:
            async with store:
                yield Target("s3", store, proxy, f"s3://{bucket}", 5 * MiB, exists, leftovers)
        finally:
            await drop_bucket(direct, bucket)


def spy_gcs_store(**kwargs: Any) -> Any:
    """A GCSStore that records the resumable sessions it cancels (the class is made here: gcs is
    an optional backend)."""
    from flytestore.stores.gcs import GCSStore

    class SpyGCSStore(GCSStore):
        cancelled: list[str]

        async def _abort(self, session_url: Any) -> None:
            await super()._abort(session_url)
            self.cancelled.append(str(session_url))

    store = SpyGCSStore(**kwargs)
    store.cancelled = []
    return store


@contextlib.asynccontextmanager
async def gcs_target(
    request: pytest.FixtureRequest, before_open: Callable[[FaultProxy], None]
) -> AsyncIterator[Target]:
    endpoint: str = request.getfixturevalue("gcs_server")
    proxy: FaultProxy = request.getfixturevalue("gcs_proxy")
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    part = 256 * KiB
    store = spy_gcs_store(container=bucket, endpoint=proxy.endpoint, part_size=part)
    async with aiohttp.ClientSession() as http:

        async def exists(key: str) -> bool:
            async with http.get(f"{endpoint}/storage/v1/b/{bucket}/o/{key}") as resp:
                assert resp.status in (200, 404), resp.status
                return resp.status == 200

        async def leftovers(key: str) -> list[str]:
            # fake-gcs-server cannot report a session's state without finalising it (see the
            # module doc); what can be checked is that the store cancelled every session it
            # started and failed (checked by the tests through ``store.cancelled``).
            async with http.get(f"{endpoint}/storage/v1/b/{bucket}/o", params={"prefix": key}) as resp:
                items = (await resp.json()).get("items") or []
            return [f"object {item['name']}" for item in items if item["name"] != key]

        before_open(proxy)
        async with store:
            yield Target("gcs", store, proxy, f"gs://{bucket}", part, exists, leftovers)


@contextlib.asynccontextmanager
async def azure_target(
    request: pytest.FixtureRequest, before_open: Callable[[FaultProxy], None]
) -> AsyncIterator[Target]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    from flytestore.stores.azure import AzureStore

    server = request.getfixturevalue("azurite")
    proxy: FaultProxy = request.getfixturevalue("azure_proxy")
    container = f"faults-{uuid.uuid4().hex[:12]}"
    part = 256 * KiB
    store = AzureStore(
        account_url=f"http://127.0.0.1:{proxy.port}/{server.account}",
        credential={"account_name": server.account, "account_key": server.key},
        container=container,
        part_size=part,
        max_parts_in_flight=1,
        # The SDK's own retries back off 15 s and more (a cut write takes ~86 s to fail with them
        # on); the store's behaviour under a failed request is the same either way.
        client_options={"retry_total": 0},
    )
    async with BlobServiceClient.from_connection_string(server.connection_string) as service:
        blobs = service.get_container_client(container)

        async def exists(key: str) -> bool:
            try:
                await blobs.get_blob_client(key).get_blob_properties()
            except ResourceNotFoundError:
                return False
            return True

        async def uncommitted(key: str) -> list[str]:
            try:
                _, pending = await blobs.get_blob_client(key).get_block_list("uncommitted")
            except ResourceNotFoundError:
                return []
            return [f"uncommitted block {b.id}" for b in pending]

        before_open(proxy)
        try:
            async with store:
                target = Target("azure", store, proxy, f"abfs://{container}", part, exists, uncommitted)
                yield target
        finally:
            await service.delete_container(container)


@contextlib.asynccontextmanager
async def redis_target(
    request: pytest.FixtureRequest, before_open: Callable[[FaultProxy], None]
) -> AsyncIterator[Target]:
    import redis.asyncio as aioredis

    from flytestore.stores.redis import RedisStore

    server = request.getfixturevalue("redis_server")
    proxy: FaultProxy = request.getfixturevalue("redis_proxy")
    raw = aioredis.Redis(host="127.0.0.1", port=server.port)
    prefix = unique()
    store = RedisStore(f"127.0.0.1:{proxy.port}")

    async def exists(key: str) -> bool:
        return bool(await raw.exists(f"{prefix}/{key}"))

    async def leftovers(key: str) -> list[str]:
        # A SET has no partial state; anything else under the key's name would be a stray.
        return [k.decode() async for k in raw.scan_iter(match=f"{prefix}/{key}?*")]

    try:
        before_open(proxy)
        async with store:
            yield Target("redis", store, proxy, f"redis://127.0.0.1:{proxy.port}/{prefix}", 0, exists, leftovers)
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}/*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


TARGETS = {"s3": s3_target, "gcs": gcs_target, "azure": azure_target, "redis": redis_target}
MULTIPART = ["s3", "gcs", "azure"]


def _nothing(proxy: FaultProxy) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# Payloads


def block_of(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def stream(
    total: int, chunk: int, seed: int, *, mark: int | None = None, at_mark: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[bytes]:
    """``total`` bytes of one repeated random block, in ``chunk``-byte pieces, of unknown size to
    the store; ``at_mark`` runs once ``mark`` bytes were produced, before the next piece."""
    block = block_of(seed, chunk)
    sent = 0
    while sent < total:
        if at_mark is not None and sent == mark:
            await at_mark()
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n


def expected(total: int, chunk: int, seed: int) -> bytes:
    block = block_of(seed, chunk)
    return (block * (total // chunk + 1))[:total]


def plan_mid_part2(
    target_kind: str, part: int, fault: Callable[[int], Fault], *, persistent: bool
) -> tuple[Callable[[FaultProxy], None], Callable[[Target], Callable[[], Awaitable[None]] | None]]:
    """Where to arm ``fault(after_bytes)`` so that it hits mid-body of part 2 (see the module doc).

    Returns what to do before ``open()`` and, for per-request connections, the payload hook.
    With ``persistent`` every later connection also gets the fault (cutting retries too).
    """
    if target_kind == "s3":

        def hook(target: Target) -> Callable[[], Awaitable[None]]:
            async def at_mark() -> None:
                proxy = target.proxy
                # Part 1's connection was accepted once its body is flowing: the next
                # connection is part 2's (the upload is sequential up to here).
                await eventually(lambda: proxy.stats.bytes_up >= part, what=proxy)
                proxy.inject(fault(part // 5), times=None if persistent else 1)

            return at_mark

        return _nothing, hook

    def before_open(proxy: FaultProxy) -> None:
        # One keep-alive connection carries open()'s requests (a few KiB), part 1, then part 2.
        proxy.inject(fault(part + part // 2))
        if persistent:
            proxy.inject(fault(part // 4), times=None)

    return before_open, lambda target: None


def is_flytestore_error(err: BaseException) -> bool:
    return isinstance(err, StorageError) and type(err).__module__.startswith("flytestore")


async def assert_nothing_left(target: Target, key: str) -> None:
    assert not await target.exists(key), f"{target.kind}: an object appeared at {key}"
    left = await target.leftovers(key)
    if target.kind == "azure" and left:
        # Known and documented by AzureStore: Azure has no call to drop uncommitted blocks, so a
        # failed write leaves its own (invisible) blocks until the next commit of that name or
        # seven days pass. They must all be this one write's (one random block-id prefix), and
        # the next successful write of the name must discard them
        # (``test_azure_failed_write_leaves_no_uncommitted_blocks`` pins the gap, xfail).
        assert len({entry.split()[-1][:16] for entry in left}) == 1, left
        target.extra["uncommitted_after_failure"] = len(left)
    else:
        assert left == []
    target.proxy.clear()
    assert not (await target.store.head(target.ref(key))).exists
    with pytest.raises(NotFoundError):
        await target.store.read_bytes(target.ref(key))
    if target.kind == "gcs":
        # The one check fake-gcs-server allows: every session the store started was cancelled.
        assert len(target.store.cancelled) == 1  # type: ignore[attr-defined]


async def assert_usable_again(target: Target, key: str) -> None:
    """The same store object still works once the faults are gone, also at the failed key."""
    target.proxy.clear()
    # Azure: a block-list commit, which discards the name's uncommitted blocks. (Azure's Put Blob
    # does too, by its documentation; Azurite 3.35's does not.)
    data = block_of(7, 2 * target.part + 1000 if target.kind == "azure" else 1000)
    await target.store.write_raw(target.ref(key), stream(len(data), len(data), 7))
    assert await target.store.read_bytes(target.ref(key)) == data
    assert await target.leftovers(key) == []
    await target.store.delete(target.ref(key))


# ---------------------------------------------------------------------------------------------
# (a) the connection reset mid-request-body of a later part


@pytest.mark.parametrize("kind", MULTIPART)
async def test_reset_mid_later_part_leaves_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    part = 5 * MiB if kind == "s3" else 256 * KiB
    before_open, hook = plan_mid_part2(kind, part, lambda n: Reset(n, "up"), persistent=True)
    async with TARGETS[kind](request, before_open) as target:
        key = unique()
        total = 3 * part + part // 2
        payload = stream(total, 64 * KiB, 1, mark=2 * part, at_mark=hook(target))
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            await target.store.write_raw(target.ref(key), payload)
        took = time.monotonic() - start
        err = info.value
        assert isinstance(err, TransientError), repr(err)
        assert is_flytestore_error(err) and err.__cause__ is not None
        assert target.proxy.stats.faults["Reset"] >= 1
        await assert_nothing_left(target, key)
        await assert_usable_again(target, key)
        note(request, "write_failed_after_s", round(took, 2))
        note(request, "azure_uncommitted_blocks_after_failure", target.extra.get("uncommitted_after_failure", 0))
        note(request, "objects_lost", 0)


@pytest.mark.parametrize("kind", MULTIPART)
async def test_one_reset_mid_later_part_completes_whole_or_leaves_nothing(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """One cut, with the clients' own resends allowed: either the write recovers and the object
    is whole, or it fails and nothing is left. Never a partial object."""
    part = 5 * MiB if kind == "s3" else 256 * KiB
    before_open, hook = plan_mid_part2(kind, part, lambda n: Reset(n, "up"), persistent=False)
    async with TARGETS[kind](request, before_open) as target:
        key = unique()
        total = 3 * part + part // 2
        payload = stream(total, 64 * KiB, 2, mark=2 * part, at_mark=hook(target))
        try:
            meta = await target.store.write_raw(target.ref(key), payload)
        except StorageError as err:
            assert is_flytestore_error(err)
            await assert_nothing_left(target, key)
            note(request, "outcome", "failed, nothing left")
        else:
            assert meta.size == total
            target.proxy.clear()
            data = await target.store.read_bytes(target.ref(key), max_size=0)
            assert data == expected(total, 64 * KiB, 2)
            assert await target.leftovers(key) == []
            note(request, "outcome", "completed whole")
            note(request, "bytes_verified", len(data))
        assert target.proxy.stats.faults["Reset"] == 1
        note(request, "objects_lost", 0)


# ---------------------------------------------------------------------------------------------
# (b) the task cancelled mid-upload


@pytest.mark.parametrize("kind", MULTIPART)
async def test_cancelled_mid_later_part_leaves_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    part = 5 * MiB if kind == "s3" else 256 * KiB
    # Part 2's body stalls in the proxy; the write is cancelled while it hangs there.
    before_open, hook = plan_mid_part2(kind, part, lambda n: Delay(60, "up", after_bytes=n), persistent=False)
    async with TARGETS[kind](request, before_open) as target:
        key = unique()
        payload = stream(3 * part + part // 2, 64 * KiB, 3, mark=2 * part, at_mark=hook(target))
        task = asyncio.create_task(target.store.write_raw(target.ref(key), payload))
        await eventually(lambda: target.proxy.stats.faults["Delay"] >= 1 or task.done())
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        target.proxy.reset_connections()  # drop the stalled request: the server must not commit it
        await assert_nothing_left(target, key)
        await assert_usable_again(target, key)
        note(request, "objects_lost", 0)


async def test_cancelled_mid_set_leaves_no_redis_key(request: pytest.FixtureRequest) -> None:
    value = block_of(4, 512 * KiB)
    async with redis_target(request, lambda p: p.inject(Delay(60, "up", after_bytes=200 * KiB))) as target:
        key = unique()
        task = asyncio.create_task(target.store.write_raw(target.ref(key), value))
        await eventually(lambda: target.proxy.stats.faults["Delay"] >= 1 or task.done())
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        target.proxy.reset_connections()
        assert not await target.exists(key)
        await assert_usable_again(target, key)
        assert not await target.exists(key)
        note(request, "objects_lost", 0)


# ---------------------------------------------------------------------------------------------
# (c) a single-request write reset mid-body


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure", "redis"])
async def test_single_request_write_reset_mid_body_leaves_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    size = 200 * KiB  # one PutObject / media upload / Put Blob / SET everywhere
    async with TARGETS[kind](request, _nothing) as target:
        key = unique()
        # Every new connection is cut 100 KiB into its request stream, so the retries (botocore,
        # aiohttp's resend, redis-py) are cut too; the connection open() left in the pool is
        # reset, so nothing reaches the server on a connection without the fault.
        target.proxy.inject(Reset(100 * KiB, "up"), times=None)
        target.proxy.reset_connections()
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            await target.store.write_raw(target.ref(key), block_of(5, size))
        took = time.monotonic() - start
        err = info.value
        assert isinstance(err, TransientError), repr(err)
        assert is_flytestore_error(err) and err.__cause__ is not None
        assert not await target.exists(key)
        target.proxy.clear()
        assert not (await target.store.head(target.ref(key))).exists
        await assert_usable_again(target, key)
        note(request, "write_failed_after_s", round(took, 2))
        note(request, "objects_lost", 0)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: AzureStore leaves a failed write's staged blocks uncommitted (Azure has no call "
    "to drop them; the service discards them at the name's next commit, or after seven days)",
)
async def test_azure_failed_write_leaves_no_uncommitted_blocks(request: pytest.FixtureRequest) -> None:
    before_open, _ = plan_mid_part2("azure", 256 * KiB, lambda n: Reset(n, "up"), persistent=True)
    async with azure_target(request, before_open) as target:
        key = unique()
        with pytest.raises(TransientError):
            await target.store.write_raw(target.ref(key), stream(MiB, 64 * KiB, 6))
        assert not await target.exists(key)
        assert await target.leftovers(key) == []
