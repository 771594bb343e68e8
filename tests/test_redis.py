"""RedisStore behaviour the conformance suite cannot express, against real redis-servers.

Covers configuration (addresses, credentials, pool and timeout, address resolution for lazily
routed references), Flyte's ``TestRedisStore_*`` and ``TestRoutingStore_*`` cases, Redis Cluster,
glob metacharacters in listed prefixes, the value cap, error mapping (with ``__cause__``), and
client lifecycle. Tests isolate themselves by key prefix; the two that list a whole database use
database indexes nobody else touches.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from flytestore import (
    AlreadyExistsError,
    Config,
    ConfigError,
    Cursor,
    DataReference,
    DataStore,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    MemoryStore,
    NotFoundError,
    Options,
    PermissionDeniedError,
    Scope,
    SignedURLProperties,
    SizeMismatchError,
    StorageError,
    TransientError,
    UnsupportedError,
    construct_reference,
    is_exceeds_limit,
    is_not_found,
)
from flytestore.stores.redis import REDIS_MAX_VALUE, RedisStore, from_config

from .servers import free_port
from .servers_redis import (
    AUTH_DEFAULT_PASSWORD,
    AUTH_USER,
    AUTH_USER_PASSWORD,
    RedisClusterInfo,
    RedisServer,
    start_redis,
)

MiB = 1024 * 1024
NO_RETRY = Retry(NoBackoff(), 0)


def scope() -> Scope:
    from prometheus_client import CollectorRegistry

    return Scope("flyte:storage", registry=CollectorRegistry())


def unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    async with RedisStore(redis_server.addr) as s:
        yield s


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        yield client
    finally:
        await client.aclose()


def rref(server: RedisServer, key: str) -> DataReference:
    return DataReference(f"redis://{server.addr}/{key}")


async def read(s: Any, ref: str, **kw: int) -> bytes:
    stream = await s.read_raw(ref, **kw)
    async with stream:
        return bytes(await stream.read())


# -- configuration ----------------------------------------------------------------------------


def build(config: Config, settings: dict[str, str] | None = None, field: str = "stow.config") -> RedisStore:
    return from_config(settings or {}, container=config.container, multicontainer=False, config=config, field=field)


async def test_primary_from_config(redis_server: RedisServer) -> None:
    store = build(Config(type="redis", redis={"addr": redis_server.addr, "db": 2}))
    assert store.base_container == f"redis://{redis_server.addr}"
    assert repr(store) == f"RedisStore(addr='{redis_server.addr}', db=2)"
    async with store:
        ref = rref(redis_server, f"{unique()}/x")
        await store.write_raw(ref, b"in db 2")
        raw = aioredis.Redis(host="127.0.0.1", port=redis_server.port, db=2)
        try:
            assert await raw.get(ref.split()[2]) == b"in db 2"
        finally:
            await raw.aclose()


async def test_pool_size_and_timeout_come_from_default_http_client(redis_server: RedisServer) -> None:
    config = Config(
        type="redis",
        redis={"addr": redis_server.addr},
        default_http_client={"maxIdleConns": 7, "timeout": "3s"},
    )
    async with build(config) as store:
        client = store.client
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        assert pool.max_connections == 7
        assert pool.connection_kwargs["socket_timeout"] == 3.0
        assert pool.connection_kwargs["socket_connect_timeout"] == 3.0


async def test_no_timeout_by_default(redis_server: RedisServer) -> None:
    async with build(Config(type="redis", redis={"addr": redis_server.addr})) as store:
        client = store.client
        assert isinstance(client, aioredis.Redis)
        assert client.connection_pool.connection_kwargs["socket_timeout"] is None
        assert client.connection_pool.max_connections == 1024  # Flyte's maxIdleConns default


async def test_more_operations_than_connections_wait_for_one(redis_server: RedisServer) -> None:
    base = f"redis://{redis_server.addr}/{unique()}"
    async with RedisStore(redis_server.addr, pool_size=2) as store:
        refs = [f"{base}/{i}" for i in range(50)]
        await asyncio.gather(*(store.write_raw(r, r.encode()) for r in refs))
        assert await asyncio.gather(*(store.read_bytes(r) for r in refs)) == [r.encode() for r in refs]
        client = store.client
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2


async def test_single_entry_addrs_is_one_server(redis_server: RedisServer, raw: aioredis.Redis) -> None:
    # Flyte's TestNewRedisRawStore_Addrs.
    async with build(Config(type="redis", redis={"addrs": [redis_server.addr]})) as store:
        assert isinstance(store.client, aioredis.Redis)
        assert store.base_container == f"redis://{redis_server.addr}"
        key = f"{unique()}/test-key"
        await store.write_raw(rref(redis_server, key), b"value", size=5)
        assert await raw.get(key) == b"value"


async def test_several_addrs_select_redis_cluster(redis_cluster: RedisClusterInfo) -> None:
    async with build(Config(type="redis", redis={"addrs": redis_cluster.addrs})) as store:
        assert isinstance(store.client, RedisCluster)
        assert store.base_container == f"redis://{redis_cluster.addrs[0]}"
        ref = f"{store.base_container}/{unique()}/k"
        await store.write_raw(ref, b"clustered")
        assert await read(store, ref) == b"clustered"
        await store.delete(ref)


@pytest.mark.parametrize(
    ("redis_section", "field", "message"),
    [
        ({"addr": "host:abc"}, "redis.addr", "invalid port"),
        ({"addr": "host:0"}, "redis.addr", "invalid port"),
        ({"addr": "host:70000"}, "redis.addr", "invalid port"),
        ({"addr": "::1:6379"}, "redis.addr", "needs brackets"),
        ({"addr": "[::1"}, "redis.addr", "ipv6"),
        ({"addr": "redis://host:1"}, "redis.addr", "host:port"),
        ({"addr": "host:1", "addrs": ["a:1", "b:2"]}, "redis.addrs", "not both"),
        ({"addrs": ["a:1", "b:2"], "db": 1}, "redis.db", "only database 0"),
    ],
)
def test_bad_redis_settings(redis_section: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build(Config(type="redis", redis=redis_section))
    assert info.value.field == field


def test_address_with_credentials_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as info:
        build(Config(type="redis", redis={"addr": "user:hunter2@host:1"}))
    assert "hunter2" not in str(info.value)
    assert "username and password" in str(info.value)


def test_ipv6_and_default_port() -> None:
    assert RedisStore("[::1]:6380").base_container == "redis://[::1]:6380"
    assert RedisStore("cache.internal").base_container == "redis://cache.internal"
    assert RedisStore("cache.internal")._nodes == [("cache.internal", 6379)]
    assert RedisStore("[::1]")._nodes == [("::1", 6379)]


def test_unknown_scheme_config_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        build(Config(type="mem"), {"__ref_host__": "h:1", "endpoint": "x"}, field="schemes.redis.config")
    assert info.value.field == "schemes.redis.config.endpoint"


def test_password_never_in_repr() -> None:
    store = RedisStore("h:1", username="u", password="hunter2")
    assert "hunter2" not in repr(store)
    config = Config(type="redis", redis={"addr": "h:1", "password": "hunter2"})
    assert "hunter2" not in repr(config)
    assert "hunter2" not in repr(build(config))


async def test_operations_need_an_open_store(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.addr)
    with pytest.raises(StorageError, match="not open"):
        await store.head(rref(redis_server, "k"))
    async with store:
        await store.head(rref(redis_server, "k"))
    await store.aclose()  # idempotent
    with pytest.raises(StorageError, match="not open"):
        await store.head(rref(redis_server, "k"))
    async with store:  # and it reopens
        assert not (await store.head(rref(redis_server, f"{unique()}/k"))).exists


async def test_no_unclosed_connections(redis_server: RedisServer, redis_cluster: RedisClusterInfo) -> None:
    # pytest runs with -W error: an unclosed connection's ResourceWarning would fail this test.
    for store in (RedisStore(redis_server.addr), RedisStore(addrs=redis_cluster.addrs)):
        async with store:
            ref = f"{store.base_container}/{unique()}/k"
            await asyncio.gather(*(store.write_raw(ref, b"x") for _ in range(20)))
            await store.head(ref)
            await store.delete(ref)
        del store
        gc.collect()


# -- credentials ------------------------------------------------------------------------------


async def test_password_of_the_default_user(redis_auth_server: RedisServer) -> None:
    config = Config(type="redis", redis={"addr": redis_auth_server.addr, "password": AUTH_DEFAULT_PASSWORD})
    async with build(config) as store:
        ref = rref(redis_auth_server, f"{unique()}/k")
        await store.write_raw(ref, b"authed")
        assert await read(store, ref) == b"authed"


async def test_username_and_password(redis_auth_server: RedisServer) -> None:
    config = Config(
        type="redis",
        redis={"addr": redis_auth_server.addr, "username": AUTH_USER, "password": AUTH_USER_PASSWORD},
    )
    async with build(config) as store:
        ref = rref(redis_auth_server, f"{unique()}/k")
        await store.write_raw(ref, b"as flyte")
        assert await read(store, ref) == b"as flyte"


@pytest.mark.parametrize(
    ("username", "password"),
    [("", "wrong-password-1"), (AUTH_USER, "wrong-password-1"), ("", "")],
)
async def test_bad_credentials_are_permission_denied(
    redis_auth_server: RedisServer, username: str, password: str
) -> None:
    ref = rref(redis_auth_server, f"{unique()}/k")
    async with RedisStore(redis_auth_server.addr, username=username, password=password, retry=NO_RETRY) as store:
        with pytest.raises(PermissionDeniedError) as info:
            await store.write_raw(ref, b"x")
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value.__cause__, rex.RedisError)
    assert ref in str(info.value)
    if password:
        assert password not in str(info.value)


# -- Flyte's TestRedisStore_* ---------------------------------------------------------------------


async def test_write_read_round_trip_uses_the_path_as_the_key(
    store: RedisStore, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    key = f"{unique()}/flyte/runs/r1/a0/0/inputs.pb"
    ref = rref(redis_server, key)
    await store.write_raw(ref, b"serialized-literalmap", size=21)
    assert await read(store, ref) == b"serialized-literalmap"
    assert await raw.get(key) == b"serialized-literalmap"


async def test_read_missing(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/missing")
    for call in (store.read_raw(ref), store.read_raw(ref, offset=2), store.read_raw(ref, length=0)):
        with pytest.raises(NotFoundError) as info:
            await call
        assert is_not_found(info.value)
        assert ref in str(info.value)
    with pytest.raises(NotFoundError):
        await store.read_bytes(ref, max_size=10)


async def test_limit_exceeded_through_datastore(redis_server: RedisServer) -> None:
    config = Config(type="redis", redis={"addr": redis_server.addr}, limits={"maxDownloadMBs": 1})
    async with DataStore(config, scope=scope()) as ds:
        ref = rref(redis_server, f"{unique()}/big")
        await ds.write_raw(ref, b"x" * (MiB + 1))
        with pytest.raises(ExceedsLimitError) as info:
            await ds.read_raw(ref)
        assert is_exceeds_limit(info.value)
        with pytest.raises(ExceedsLimitError) as info:
            await ds.read_bytes(ref)
        assert (info.value.size, info.value.limit) == (MiB + 1, MiB)
        assert len(await ds.read_bytes(ref, offset=1)) == MiB


async def test_read_bytes_with_max_size(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/digits")
    await store.write_raw(ref, b"0123456789")
    assert await store.read_bytes(ref, max_size=10) == b"0123456789"
    assert await store.read_bytes(ref, offset=4, length=3, max_size=3) == b"456"
    assert await store.read_bytes(ref, offset=8, max_size=2) == b"89"
    assert await store.read_bytes(ref, offset=20, max_size=2) == b""
    with pytest.raises(ExceedsLimitError) as info:
        await store.read_bytes(ref, max_size=9)
    assert (info.value.size, info.value.limit) == (10, 9)
    with pytest.raises(ExceedsLimitError) as info:
        await store.read_bytes(ref, offset=2, length=5, max_size=4)
    assert info.value.size == 5
    with pytest.raises(ExceedsLimitError) as info:
        await store.read_bytes(ref, offset=7, max_size=2)
    assert info.value.size == 3


async def test_stream_longer_than_declared_writes_nothing(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/mismatched")
    with pytest.raises(SizeMismatchError) as info:
        await store.write_raw(ref, iter([b"longer-than-", b"declared"]), size=3)
    assert ref in str(info.value)
    assert not (await store.head(ref)).exists


async def test_declared_size_over_the_cap_is_refused_unread(store: RedisStore, redis_server: RedisServer) -> None:
    pulled = False

    async def never() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled = True
        yield b"x"

    with pytest.raises(InvalidArgumentError, match=r"exceeds the store.s cap") as info:
        await store.write_raw(rref(redis_server, f"{unique()}/huge"), never(), size=REDIS_MAX_VALUE + 1)
    assert str(REDIS_MAX_VALUE) in str(info.value)
    assert not pulled


async def test_stream_over_the_cap_writes_nothing(store: RedisStore, redis_server: RedisServer) -> None:
    store.max_value_size = 1000
    ref = rref(redis_server, f"{unique()}/capped")

    async def body(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 100

    with pytest.raises(InvalidArgumentError, match="cap"):
        await store.write_raw(ref, body(11))
    with pytest.raises(InvalidArgumentError, match="cap"):
        await store.write_raw(ref, bytearray(1001))
    assert not (await store.head(ref)).exists
    assert (await store.write_raw(ref, body(10))).size == 1000


async def test_failed_unknown_length_write_leaves_nothing(
    store: RedisStore, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Redis has no multipart upload to abort: the value is sent in one SET only once the whole
    # stream arrived, so a failure or a cancellation mid-stream sends nothing at all.
    prefix = unique()
    ref = rref(redis_server, f"{prefix}/unknown-length")
    before = (await raw.info("commandstats")).get("cmdstat_set", {}).get("calls", 0)

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MiB)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        await store.write_raw(ref, failing())

    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(MiB)
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.write_raw(ref, stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await raw.info("commandstats")).get("cmdstat_set", {}).get("calls", 0) == before
    assert [k async for k in raw.scan_iter(match=f"{prefix}*")] == []


async def test_head(store: RedisStore, redis_server: RedisServer) -> None:
    base = unique()
    assert not (await store.head(rref(redis_server, f"{base}/missing"))).exists
    ref = rref(redis_server, f"{base}/present")
    await store.write_raw(ref, b"abc", size=3)
    meta = await store.head(ref)
    assert meta.exists and meta.size == 3
    assert meta.etag == "" and meta.user_metadata == {} and meta.content_type is None


async def test_head_of_an_empty_value(store: RedisStore, redis_server: RedisServer) -> None:
    # A task with no inputs serializes to zero bytes; the key must still exist.
    ref = rref(redis_server, f"{unique()}/empty")
    await store.write_raw(ref, b"", size=0)
    meta = await store.head(ref)
    assert meta.exists and meta.size == 0
    assert await read(store, ref, offset=0, length=0) == b""
    assert await read(store, ref, offset=3) == b""


async def test_delete_twice(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/doomed")
    await store.write_raw(ref, b"x")
    await store.delete(ref)
    assert not (await store.head(ref)).exists
    with pytest.raises(NotFoundError) as info:
        await store.delete(ref)
    assert ref in str(info.value)


async def test_list_pages(store: RedisStore, redis_server: RedisServer) -> None:
    base = unique()
    for key in ("runs/r1/a.pb", "runs/r1/b.pb", "runs/r1/sub/c.pb", "runs/r2/d.pb"):
        await store.write_raw(rref(redis_server, f"{base}/{key}"), b"x")
    pages = []
    cursor = Cursor.start()
    while True:
        refs, cursor = await store.list_page(rref(redis_server, f"{base}/runs/r1"), max_items=2, cursor=cursor)
        pages.append(refs)
        if cursor.is_end():
            break
    assert pages == [
        [rref(redis_server, f"{base}/runs/r1/a.pb"), rref(redis_server, f"{base}/runs/r1/b.pb")],
        [rref(redis_server, f"{base}/runs/r1/sub/c.pb")],
    ]


async def test_list_cursor_is_stable_while_keys_change(store: RedisStore, redis_server: RedisServer) -> None:
    base = unique()
    for key in ("b", "d", "f", "h"):
        await store.write_raw(rref(redis_server, f"{base}/{key}"), b"x")
    prefix = rref(redis_server, base)
    first, cursor = await store.list_page(prefix, max_items=2)
    assert [r.split()[2] for r in first] == [f"{base}/b", f"{base}/d"]
    assert cursor == Cursor.at(f"{base}/d")
    # Keys appearing before the cursor, and the cursor's own key vanishing, shift nothing.
    await store.write_raw(rref(redis_server, f"{base}/a"), b"x")
    await store.delete(rref(redis_server, f"{base}/d"))
    await store.write_raw(rref(redis_server, f"{base}/e"), b"x")
    second, cursor = await store.list_page(prefix, max_items=2, cursor=cursor)
    assert [r.split()[2] for r in second] == [f"{base}/e", f"{base}/f"]
    third, cursor = await store.list_page(prefix, max_items=2, cursor=cursor)
    assert [r.split()[2] for r in third] == [f"{base}/h"] and cursor.is_end()


async def test_list_container_root(redis_server: RedisServer) -> None:
    db = 3  # nobody else uses it: a root listing lists the whole database
    raw = aioredis.Redis(host="127.0.0.1", port=redis_server.port, db=db)
    try:
        await raw.flushdb()
        async with RedisStore(redis_server.addr, db=db) as store:
            for key in ("runs/r1/a.pb", "runs/r2/b.pb", "loose"):
                await store.write_raw(rref(redis_server, key), b"x")
            await raw.hset("a-hash", "f", "v")  # not a string: not an object
            refs, cursor = await store.list_page(DataReference(f"redis://{redis_server.addr}"), max_items=10)
            assert cursor.is_end()
            assert refs == [
                rref(redis_server, "loose"),
                rref(redis_server, "runs/r1/a.pb"),
                rref(redis_server, "runs/r2/b.pb"),
            ]
            entries = [e async for e in store.list(f"redis://{redis_server.addr}/", page_size=2)]
            assert [e.ref for e in entries] == refs and [e.size for e in entries] == [1, 1, 1]
    finally:
        await raw.flushdb()
        await raw.aclose()


async def test_reference_host_is_advisory(
    store: RedisStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{unique()}/vantage"
    await store.write_raw(rref(redis_server, key), b"x")
    caplog.set_level(logging.WARNING, logger="flytestore.stores.redis")
    assert await read(store, f"redis://elsewhere.example:6379/{key}") == b"x"
    assert await read(store, f"redis://user:hunter2@other.example:6379/{key}") == b"x"
    warnings = [r for r in caplog.records if r.name == "flytestore.stores.redis"]
    assert len(warnings) == 1  # once per store
    assert "elsewhere.example:6379" in warnings[0].getMessage()
    assert redis_server.addr in warnings[0].getMessage()
    assert "hunter2" not in caplog.text


async def test_non_redis_and_keyless_references_are_rejected(store: RedisStore, redis_server: RedisServer) -> None:
    for ref in ("s3://bucket/key", "mem://c/k", "/no/scheme"):
        with pytest.raises(InvalidReferenceError, match="redis://"):
            await store.read_raw(ref)
    for call in (
        store.read_raw(f"redis://{redis_server.addr}"),
        store.write_raw(f"redis://{redis_server.addr}/", b"x"),
        store.head(f"redis://{redis_server.addr}//"),
        store.delete(f"redis://{redis_server.addr}"),
    ):
        with pytest.raises(InvalidReferenceError, match="empty key"):
            await call


async def test_base_container(store: RedisStore, redis_server: RedisServer) -> None:
    assert store.base_container == DataReference(f"redis://{redis_server.addr}")


async def test_signed_urls_are_unsupported(store: RedisStore, redis_server: RedisServer) -> None:
    for scope_ in ("GET", "PUT"):
        with pytest.raises(UnsupportedError, match=r"^signed URLs are unsupported by redis storage$"):
            await store.create_signed_url(rref(redis_server, "x"), SignedURLProperties(scope=scope_))
    with pytest.raises(InvalidReferenceError):
        await store.create_signed_url("s3://b/k", SignedURLProperties())


async def test_through_the_datastore(redis_server: RedisServer) -> None:
    config = Config(type="redis", redis={"addr": redis_server.addr})
    async with DataStore(config, scope=scope()) as ds:
        base = ds.base_container
        assert base == f"redis://{redis_server.addr}"
        run = unique()
        ref = ds.construct_reference(base, "metadata", run, "r1", "inputs.pb")
        assert ref == rref(redis_server, f"metadata/{run}/r1/inputs.pb")
        await ds.write_raw(ref, b"through the datastore", size=21)
        dest = rref(redis_server, f"metadata/{run}/r1/inputs-copy.pb")
        await ds.copy_raw(ref, dest)
        assert await read(ds, dest) == b"through the datastore"
        listed = [e.ref async for e in ds.list(ds.construct_reference(base, "metadata", run))]
        assert listed == [dest, ref]


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "decoys"),
    [
        ("a*b", ["aXb", "aXXb", "a*bc"]),
        ("q?", ["qq", "q"]),
        ("[x]", ["x", "[y]"]),
        ("r[a-c]", ["ra", "rb"]),
        ("back\\slash", ["back\\\\slash", "backslash"]),
        ("^caret", ["caret"]),
    ],
)
async def test_glob_metacharacters_in_listed_prefixes(
    store: RedisStore, redis_server: RedisServer, prefix: str, decoys: list[str]
) -> None:
    base = f"redis://{redis_server.addr}/{unique()}"
    wanted = construct_reference(base, quote(prefix), "1")
    await store.write_raw(wanted, b"wanted")
    for decoy in decoys:
        await store.write_raw(construct_reference(base, quote(decoy), "1"), b"decoy")
    listed = [e.ref async for e in store.list(construct_reference(base, quote(prefix)))]
    assert [r.split()[2] for r in listed] == [wanted.split()[2]]
    assert await read(store, listed[0]) == b"wanted"
    assert len([e async for e in store.list(base)]) == 1 + len(decoys)


async def test_values_of_other_types_are_not_objects(
    store: RedisStore, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    prefix = unique()
    await raw.hset(f"{prefix}/hash", "field", "value")
    await store.write_raw(rref(redis_server, f"{prefix}/string"), b"s")
    assert [e.ref async for e in store.list(rref(redis_server, prefix))] == [rref(redis_server, f"{prefix}/string")]
    with pytest.raises(StorageError, match="not a string") as info:
        await store.read_raw(rref(redis_server, f"{prefix}/hash"))
    assert isinstance(info.value.__cause__, rex.ResponseError)
    await raw.delete(f"{prefix}/hash")


# -- copy -------------------------------------------------------------------------------------


async def test_copy_onto_itself(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/same")
    with pytest.raises(NotFoundError):
        await store.copy_raw(ref, ref)
    await store.write_raw(ref, b"same")
    assert (await store.copy_raw(ref, ref)).size == 4
    with pytest.raises(AlreadyExistsError):
        await store.copy_raw(ref, ref, options=Options(if_not_exists=True))
    assert await read(store, ref) == b"same"


async def test_copy_without_the_copy_command() -> None:
    # Redis before 6.2 has no COPY: renaming it away makes this server answer "unknown command".
    with start_redis("--rename-command", "COPY", "") as server:
        async with RedisStore(server.addr) as store:
            src, dst = rref(server, "src"), rref(server, "dst")
            await store.write_raw(src, b"payload")
            assert (await store.copy_raw(src, dst)).size == 7
            assert not store._has_copy
            assert await read(store, dst) == b"payload"
            with pytest.raises(AlreadyExistsError):
                await store.copy_raw(src, dst, options=Options(if_not_exists=True))
            with pytest.raises(NotFoundError):
                await store.copy_raw(rref(server, "nope"), dst)


# -- cluster ----------------------------------------------------------------------------------


async def test_cluster_spreads_keys_and_lists_them_in_order(redis_cluster: RedisClusterInfo) -> None:
    async with RedisStore(addrs=redis_cluster.addrs) as store:
        base = f"{store.base_container}/{unique()}"
        keys = [f"k{i:03d}" for i in range(60)]
        await asyncio.gather(*(store.write_raw(f"{base}/{k}", k.encode()) for k in keys))
        client = store.client
        assert isinstance(client, RedisCluster)
        nodes = {getattr(client.get_node_from_key(f"{base.split('/', 3)[3]}/{k}"), "name", None) for k in keys}
        assert len(nodes) == 3  # the keys really live on every node
        entries = [e async for e in store.list(base, page_size=7)]
        assert [e.ref.split()[2].rsplit("/", 1)[1] for e in entries] == keys
        assert all(e.size == 4 for e in entries)
        await asyncio.gather(*(store.delete(e.ref) for e in entries))


async def test_cluster_copy_within_and_across_slots(redis_cluster: RedisClusterInfo) -> None:
    async with RedisStore(addrs=redis_cluster.addrs) as store:
        base = f"{store.base_container}/{unique()}"
        # A hash tag puts both keys in one slot: a server-side COPY.
        same_src, same_dst = f"{base}/{{tag}}src", f"{base}/{{tag}}dst"
        await store.write_raw(same_src, b"one slot")
        assert (await store.copy_raw(same_src, same_dst)).size == 8
        assert await read(store, same_dst) == b"one slot"
        with pytest.raises(AlreadyExistsError):
            await store.copy_raw(same_src, same_dst, options=Options(if_not_exists=True))
        # Different slots: COPY would be CROSSSLOT, so the store copies through the client.
        other = f"{base}/elsewhere"
        assert await _slot(store, same_src) != await _slot(store, other)
        assert (await store.copy_raw(same_src, other)).size == 8
        assert await read(store, other) == b"one slot"
        with pytest.raises(AlreadyExistsError):
            await store.copy_raw(same_src, other, options=Options(if_not_exists=True))
        with pytest.raises(NotFoundError):
            await store.copy_raw(f"{base}/missing", f"{base}/x")
        assert store._has_copy
        for ref in (same_src, same_dst, other):
            await store.delete(ref)


async def _slot(store: RedisStore, ref: str) -> int:
    client = store.client
    assert isinstance(client, RedisCluster)
    return int(client.keyslot(DataReference(ref).split()[2]))


# -- errors -----------------------------------------------------------------------------------


async def test_unreachable_server_is_transient() -> None:
    port = free_port()  # nothing listens there
    ref = f"redis://127.0.0.1:{port}/k"
    async with RedisStore(f"127.0.0.1:{port}", retry=NO_RETRY, timeout=2) as store:
        for call in (store.head(ref), store.read_raw(ref), store.write_raw(ref, b"x"), store.delete(ref)):
            with pytest.raises(TransientError) as info:
                await call
            assert isinstance(info.value.__cause__, rex.ConnectionError)
            assert ref in str(info.value)
        with pytest.raises(TransientError):
            await store.list_page(f"redis://127.0.0.1:{port}/p")


async def test_timeout_is_transient(redis_auth_server: RedisServer) -> None:
    admin = aioredis.Redis(host="127.0.0.1", port=redis_auth_server.port, password=AUTH_DEFAULT_PASSWORD)
    store = RedisStore(redis_auth_server.addr, password=AUTH_DEFAULT_PASSWORD, retry=NO_RETRY, timeout=0.2)
    try:
        async with store:
            ref = rref(redis_auth_server, f"{unique()}/k")
            await store.write_raw(ref, b"x")  # connected before the pause
            await admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
            try:
                with pytest.raises(TransientError) as info:
                    await store.read_raw(ref)
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
            assert isinstance(info.value.__cause__, rex.TimeoutError)
            assert await read(store, ref) == b"x"  # the store recovers
    finally:
        await admin.aclose()


async def test_cancelled_read_leaves_the_store_usable(store: RedisStore, redis_server: RedisServer) -> None:
    ref = rref(redis_server, f"{unique()}/big")
    data = os.urandom(16 * MiB)
    await store.write_raw(ref, data)
    task = asyncio.create_task(store.read_bytes(ref))
    await asyncio.sleep(0)
    task.cancel()
    # redis-py 8 drops the connection of a cancelled command; some 5.0.x releases shield the
    # command instead, so the read may still complete. Either way no reply may go astray.
    with contextlib.suppress(asyncio.CancelledError):
        assert await task == data
    assert await store.read_bytes(ref) == data
    assert (await store.head(ref)).size == len(data)


# -- routing (Flyte's TestRoutingStore_*) ---------------------------------------------------------


async def test_routing_dispatch_by_scheme(redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with DataStore(Config(type="mem", redis={"addr": redis_server.addr}), scope=scope()) as ds:
        key = f"{unique()}/meta/inputs.pb"
        redis_ref = rref(redis_server, key)
        mem_ref = DataReference("mem://container/raw/data.bin")
        await ds.write_raw(redis_ref, b"meta", size=4)
        await ds.write_raw(mem_ref, b"raw", size=3)
        assert await raw.get(key) == b"meta"  # landed in redis, keyed by the path
        assert await read(ds, redis_ref) == b"meta"
        assert await read(ds, mem_ref) == b"raw"
        meta = await ds.head(redis_ref)
        assert meta.exists and meta.size == 4
        assert isinstance(await ds.router.backend_for(mem_ref), MemoryStore)


async def test_routing_cross_backend_copies(redis_server: RedisServer, raw: aioredis.Redis, tmp_path: Path) -> None:
    config = Config(type="local", container="c", local={"path": str(tmp_path)}, redis={"addr": redis_server.addr})
    async with DataStore(config, scope=scope()) as ds:
        run = unique()
        mem_src, redis_dst = "mem://container/raw/src.bin", rref(redis_server, f"{run}/meta/dst.bin")
        await ds.write_raw(mem_src, b"hello", size=5)
        await ds.copy_raw(mem_src, redis_dst)
        assert await raw.get(f"{run}/meta/dst.bin") == b"hello"
        await ds.copy_raw(redis_dst, "mem://container/raw/back.bin")
        assert await read(ds, "mem://container/raw/back.bin") == b"hello"
        await ds.copy_raw(redis_dst, "file://c/from-redis.bin")
        assert (tmp_path / "c" / "from-redis.bin").read_bytes() == b"hello"
        await ds.write_raw("file://c/to-redis.bin", b"from disk")
        await ds.copy_raw("file://c/to-redis.bin", rref(redis_server, f"{run}/from-disk"))
        assert await raw.get(f"{run}/from-disk") == b"from disk"
        with pytest.raises(AlreadyExistsError):
            await ds.copy_raw(mem_src, redis_dst, options=Options(if_not_exists=True))
        with pytest.raises(NotFoundError):
            await ds.copy_raw(rref(redis_server, f"{run}/missing"), "mem://container/x")


async def test_routing_base_container_is_the_primarys(redis_server: RedisServer) -> None:
    async with DataStore(Config(type="mem", redis={"addr": redis_server.addr}), scope=scope()) as ds:
        assert ds.base_container == ""
        assert ds.construct_reference(ds.base_container, "a", "b") == "/a/b"
        redis_ref = rref(redis_server, f"{unique()}/x")
        backend = await ds.router.backend_for(redis_ref)
        assert backend.base_container == f"redis://{redis_server.addr}"
        ref = ds.construct_reference(backend.base_container, "meta", "inputs.pb")
        assert ref == rref(redis_server, "meta/inputs.pb")


async def test_routing_dials_the_reference_host_without_addr(redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with DataStore(Config(type="mem"), scope=scope()) as ds:
        key = f"{unique()}/meta/inputs.pb"
        await ds.write_raw(rref(redis_server, key), b"meta", size=4)
        assert await raw.get(key) == b"meta"
        # Without an address, each reference host is its own server (and backend)...
        by_ip = await ds.router.backend_for(rref(redis_server, key))
        by_name = await ds.router.backend_for(f"redis://localhost:{redis_server.port}/{key}")
        assert by_ip is not by_name
        assert by_name.base_container == f"redis://localhost:{redis_server.port}"
        assert await read(ds, f"redis://localhost:{redis_server.port}/{key}") == b"meta"
        # ...built once per host.
        assert await ds.router.backend_for(rref(redis_server, "other")) is by_ip


async def test_routing_shares_one_backend_when_an_addr_is_configured(redis_server: RedisServer) -> None:
    async with DataStore(Config(type="mem", redis={"addr": redis_server.addr}), scope=scope()) as ds:
        one = await ds.router.backend_for(rref(redis_server, "k"))
        other = await ds.router.backend_for("redis://elsewhere.example:6379/k")
        assert one is other
        assert other.base_container == f"redis://{redis_server.addr}"


async def test_routing_scheme_override_wins(redis_server: RedisServer) -> None:
    config = Config(
        type="mem",
        redis={"addr": "unreachable.invalid:1"},
        schemes={"redis": {"redis": {"addr": redis_server.addr}}},
    )
    async with DataStore(config, scope=scope()) as ds:
        ref = f"redis://elsewhere.example:6379/{unique()}/k"
        await ds.write_raw(ref, b"override")
        assert await read(ds, rref(redis_server, DataReference(ref).split()[2])) == b"override"


async def test_routing_credentials_without_addr_apply_to_the_reference_host(redis_auth_server: RedisServer) -> None:
    config = Config(type="mem", schemes={"redis": {"redis": {"password": AUTH_DEFAULT_PASSWORD}}})
    async with DataStore(config, scope=scope()) as ds:
        ref = rref(redis_auth_server, f"{unique()}/k")
        await ds.write_raw(ref, b"authed")
        assert await read(ds, ref) == b"authed"


async def test_routing_reference_without_host_or_addr() -> None:
    async with DataStore(Config(type="mem"), scope=scope()) as ds:
        with pytest.raises(ConfigError, match="cannot resolve a redis address") as info:
            await ds.head("redis:///meta/inputs.pb")
        assert "set redis.addr or include a host in the reference" in str(info.value)


async def test_routing_delete(redis_server: RedisServer) -> None:
    async with DataStore(Config(type="mem", redis={"addr": redis_server.addr}), scope=scope()) as ds:
        ref = rref(redis_server, f"{unique()}/meta/doomed.pb")
        await ds.write_raw(ref, b"x", size=1)
        await ds.delete(ref)
        assert not (await ds.head(ref)).exists
        with pytest.raises(NotFoundError):
            await ds.delete(ref)
