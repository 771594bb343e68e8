"""Cache, limit and routing layers, each over a real MemoryStore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flytestore import (
    CachedStore,
    ExceedsLimitError,
    InvalidReferenceError,
    LimitedStore,
    MemoryStore,
    Metadata,
    NotFoundError,
    RawStore,
    RoutingStore,
    Scope,
    is_exceeds_limit,
)
from flytestore.errors import InvalidArgumentError
from flytestore.rawstore import ByteStream
from flytestore.stores.local import LocalStore

MiB = 1024 * 1024


def scope() -> Scope:
    return Scope("test:storage", registry=CollectorRegistry())


class CountingStore(MemoryStore):
    """A MemoryStore that counts backend calls, to see what the cache spares."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.heads = 0
        self.unknown_size = False

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        self.reads += 1
        stream = await super().read_raw(ref, offset=offset, length=length)
        if self.unknown_size:
            return ByteStream(stream.__aiter__(), metadata=stream.metadata)
        return stream

    async def head(self, ref: str) -> Metadata:
        self.heads += 1
        return await super().head(ref)


# -- cache ------------------------------------------------------------------------------------------


async def test_cache_serves_second_read_without_backend() -> None:
    backend = CountingStore()
    s = scope()
    cache = CachedStore(backend, max_size_mbs=1, scope=s)
    await backend.write_raw("mem://c/k", b"v" * 100)
    assert await (await cache.read_raw("mem://c/k")).read() == b"v" * 100
    assert await (await cache.read_raw("mem://c/k")).read() == b"v" * 100
    assert backend.reads == 1
    assert cache.hits.value == 1 and cache.misses.value == 1
    head = await cache.head("mem://c/k")
    assert head.exists and head.size == 100 and backend.heads == 0


async def test_cache_admission_rule_is_flytes() -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=1, scope=scope())
    # 1 MiB cache: an entry may hold len(key) + len(value) <= 1024 - 24 bytes.
    ref = "mem://c/k"
    limit = 1024 - 24 - len(ref)
    assert cache.admits(ref, limit)
    assert not cache.admits(ref, limit + 1)
    await cache.write_raw(ref, b"x" * (limit + 1))
    assert len(cache) == 0 and cache.write_errors.value == 1
    await cache.write_raw(ref, b"x" * limit)
    assert len(cache) == 1


async def test_cache_minimum_capacity_and_long_keys() -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=0.01, scope=scope())
    assert cache.capacity == 512 * 1024
    big = CachedStore(MemoryStore(), max_size_mbs=1024, scope=scope())
    assert not big.admits("mem://c/" + "k" * 70000, 1)


async def test_oversize_rewrite_does_not_leave_stale_value() -> None:
    """Go keeps the old entry when the new value is too big (FLYTE_BEHAVIOUR §16.3); we do not."""
    backend = CountingStore()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await cache.write_raw("mem://c/k", b"small")
    await cache.write_raw("mem://c/k", b"L" * 5000)
    assert await (await cache.read_raw("mem://c/k")).read() == b"L" * 5000


async def test_copy_and_delete_invalidate() -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=1, scope=scope())
    await cache.write_raw("mem://c/src", b"new")
    await cache.write_raw("mem://c/dst", b"old")
    assert await (await cache.read_raw("mem://c/dst")).read() == b"old"
    await cache.copy_raw("mem://c/src", "mem://c/dst")
    assert await (await cache.read_raw("mem://c/dst")).read() == b"new"
    await cache.delete("mem://c/dst")
    with pytest.raises(NotFoundError):
        await cache.read_raw("mem://c/dst")
    assert not (await cache.head("mem://c/dst")).exists


async def test_large_read_bypasses_cache_but_returns_bytes() -> None:
    backend = CountingStore()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await backend.write_raw("mem://c/big", b"b" * 1500 * 1024)
    for _ in range(2):
        assert len(await (await cache.read_raw("mem://c/big")).read()) == 1500 * 1024
    assert backend.reads == 2 and len(cache) == 0
    assert cache.write_errors.value == 2


async def test_unknown_size_read_is_teed_into_cache() -> None:
    backend = CountingStore()
    backend.unknown_size = True
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await backend.write_raw("mem://c/k", b"abc")
    assert await (await cache.read_raw("mem://c/k")).read() == b"abc"
    assert await (await cache.read_raw("mem://c/k")).read() == b"abc"
    assert backend.reads == 1


async def test_streamed_write_is_cached_when_small() -> None:
    backend = CountingStore()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())

    async def gen() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    await cache.write_raw("mem://c/k", gen())
    assert await (await cache.read_raw("mem://c/k")).read() == b"abcd"
    assert backend.reads == 0


async def test_cache_is_byte_bounded_lru() -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=0.5, scope=scope())  # 512 KiB, entries <= 488 B
    value = b"v" * 400
    for i in range(2000):
        await cache.write_raw(f"mem://c/{i:05d}", value)
    assert cache.used_bytes <= cache.capacity
    assert 1000 < len(cache) < 2000
    assert await (await cache.read_raw("mem://c/01999")).read() == value  # newest kept
    hits = cache.hits.value
    await (await cache.read_raw("mem://c/00000")).read()  # oldest evicted
    assert cache.hits.value == hits


async def test_read_racing_with_write_does_not_cache_stale_value() -> None:
    gate = asyncio.Event()

    class SlowStore(MemoryStore):
        async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
            stream = await super().read_raw(ref, offset=offset, length=length)
            data = await stream.read()
            await gate.wait()  # the old value is in hand; a write lands meanwhile
            return ByteStream.from_bytes(data)

    cache = CachedStore(SlowStore(), max_size_mbs=1, scope=scope())
    await cache.inner.write_raw("mem://c/k", b"old")
    reader = asyncio.create_task(cache.read_raw("mem://c/k"))
    await asyncio.sleep(0)
    await cache.write_raw("mem://c/k", b"new")
    gate.set()
    assert await (await reader).read() == b"old"
    assert await (await cache.read_raw("mem://c/k")).read() == b"new"


async def test_cache_range_reads() -> None:
    backend = CountingStore()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await cache.write_raw("mem://c/k", b"0123456789")
    assert await (await cache.read_raw("mem://c/k", offset=2, length=3)).read() == b"234"
    assert backend.reads == 0


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1), (-2, 1)])
async def test_cache_hit_refuses_bad_ranges_as_the_store_does(offset: int, length: int | None) -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=1, scope=scope())
    await cache.write_raw("mem://c/k", b"abc")
    assert len(cache) == 1
    with pytest.raises(InvalidArgumentError):
        await cache.read_raw("mem://c/k", offset=offset, length=length)
    with pytest.raises(InvalidArgumentError):
        await cache.read_bytes("mem://c/k", offset=offset, length=length)


# -- one entry per object, whatever the spelling ----------------------------------------------------

#: Spellings of one memory object: percent-escaped, upper-case scheme, trailing and doubled
#: slashes, a query and a fragment, userinfo, and no scheme at all (the memory store takes it).
MEM_SPELLINGS = [
    "mem://c/dir/k",
    "mem://c/dir/%6B",
    "mem://c/%64ir%2Fk",
    "MEM://c/dir/k/",
    "mem://c//dir/k",
    "mem://c/dir/k?v=1#frag",
    "mem://user@c/dir/k",
    "//c/dir/k",
]


class AzureLikeStore(CountingStore):
    """A memory store serving Azure's schemes, so the cache sees Azure's spellings of one blob."""

    schemes = ("abfs", "abfss")


AZURE_SPELLINGS = [
    "abfs://c/dir/k",
    "abfss://c/dir/k",
    "abfs://c@account/dir/k",
    "abfs://c@account.dfs.core.windows.net/dir/k",
    "abfss://c@account.dfs.core.windows.net/dir/%6B",
]


def spelling_pairs(spellings: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in spellings for b in spellings if a != b and spellings[0] in (a, b)]


@pytest.mark.parametrize(
    ("store_type", "one", "other"),
    [(CountingStore, a, b) for a, b in spelling_pairs(MEM_SPELLINGS)]
    + [(AzureLikeStore, a, b) for a, b in spelling_pairs(AZURE_SPELLINGS)],
)
async def test_every_spelling_of_an_object_is_one_entry(store_type: type[CountingStore], one: str, other: str) -> None:
    backend = store_type()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await cache.write_raw(one, b"first")
    # Served from the entry the other spelling filled: the backend is not read.
    assert await (await cache.read_raw(other)).read() == b"first"
    assert await cache.read_bytes(other) == b"first"
    assert (await cache.head(other)).size == 5
    assert backend.reads == backend.heads == 0 and len(cache) == 1
    # An overwrite through either spelling replaces what both read.
    await cache.write_raw(other, b"second")
    assert await cache.read_bytes(one) == b"second"
    assert await (await cache.read_raw(one)).read() == b"second"
    await cache.write_raw(one, b"third")
    assert await cache.read_bytes(other) == b"third"
    assert len(cache) == 1
    # So do a copy onto it and a delete.
    source = one.split("://")[0] + "://c/src" if "://" in one else "//c/src"
    await backend.write_raw(source, b"copied")
    await cache.copy_raw(source, other)
    assert await cache.read_bytes(one) == b"copied"
    await cache.delete(other)
    with pytest.raises(NotFoundError):
        await cache.read_bytes(one)
    assert not (await cache.head(one)).exists


async def test_invalidating_one_spelling_forgets_them_all() -> None:
    backend = CountingStore()
    cache = CachedStore(backend, max_size_mbs=1, scope=scope())
    await cache.write_raw("mem://c/k", b"cached")
    await backend.write_raw("mem://c/k", b"changed behind the cache")
    assert await cache.read_bytes("mem://c/%6B") == b"cached"
    cache.invalidate("mem://c/%6B")
    assert len(cache) == 0
    assert await cache.read_bytes("mem://c/k") == b"changed behind the cache"


@pytest.mark.parametrize(
    ("store_type", "refs"),
    [
        # Other containers, other keys, key case, an escaped space that is part of the key.
        (CountingStore, ["mem://c/a/k", "mem://c/ak", "mem://d/a/k", "mem://c/A/k", "mem://c/a/k%20"]),
        # A container holding an escaped "/" (an abfs user name) against a key holding that "/".
        (AzureLikeStore, ["abfs://c/a/k", "abfs://c%2Fa@host/k", "abfs://d@host/a/k"]),
    ],
)
async def test_distinct_objects_stay_distinct(store_type: type[CountingStore], refs: list[str]) -> None:
    cache = CachedStore(store_type(), max_size_mbs=1, scope=scope())
    for i, ref in enumerate(refs):
        await cache.write_raw(ref, str(i).encode())
    assert len(cache) == len(refs)
    await cache.write_raw(refs[0], b"new")
    assert await cache.read_bytes(refs[0]) == b"new"
    for i, ref in enumerate(refs[1:], 1):
        assert await cache.read_bytes(ref) == str(i).encode(), ref


@pytest.mark.parametrize("reader", ["mem://c/k", "mem://c/%6B"])
async def test_read_racing_with_a_write_through_another_spelling_does_not_cache_stale_value(reader: str) -> None:
    gate = asyncio.Event()

    class SlowStore(MemoryStore):
        async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
            stream = await super().read_raw(ref, offset=offset, length=length)
            data = await stream.read()
            await gate.wait()  # the old value is in hand; a write lands meanwhile
            return ByteStream.from_bytes(data)

    cache = CachedStore(SlowStore(), max_size_mbs=1, scope=scope())
    await cache.inner.write_raw("mem://c/k", b"old")
    task = asyncio.create_task(cache.read_raw(reader))
    await asyncio.sleep(0)
    await cache.write_raw("mem://c/k" if reader != "mem://c/k" else "mem://c/%6B", b"new")
    gate.set()
    assert await (await task).read() == b"old"
    assert await cache.read_bytes(reader) == b"new"
    assert await cache.read_bytes("mem://c/k") == b"new"


async def test_references_that_do_not_parse_pass_through_to_the_store() -> None:
    cache = CachedStore(MemoryStore(), max_size_mbs=1, scope=scope())
    for ref in ("mem://c/%zz", "://c/k", "mem://c:abc/k"):
        with pytest.raises(InvalidReferenceError):
            await cache.write_raw(ref, b"x")
        with pytest.raises(InvalidReferenceError):
            await cache.read_bytes(ref)
        with pytest.raises(InvalidReferenceError):
            await cache.read_raw(ref)
        with pytest.raises(InvalidReferenceError):
            await cache.delete(ref)
        cache.invalidate(ref)
    assert len(cache) == 0


# -- limits -----------------------------------------------------------------------------------------


async def test_limit_refuses_before_first_byte() -> None:
    backend = MemoryStore()
    store = LimitedStore(backend)  # default 2 MiB
    await backend.write_raw("mem://c/big", b"x" * (2 * MiB + 1))
    with pytest.raises(ExceedsLimitError) as info:
        await store.read_raw("mem://c/big")
    err = info.value
    assert is_exceeds_limit(err)
    assert err.size == 2 * MiB + 1 and err.limit == 2 * MiB
    assert "2.000001mb > 2mb" in str(err) and "maxDownloadMBs" in str(err)
    await backend.write_raw("mem://c/ok", b"x" * (2 * MiB))
    assert len(await (await store.read_raw("mem://c/ok")).read()) == 2 * MiB


async def test_limit_zero_is_unlimited_and_limits_are_per_store() -> None:
    backend = MemoryStore()
    await backend.write_raw("mem://c/big", b"x" * (3 * MiB))
    unlimited = LimitedStore(backend, max_download_mbs=0)
    strict = LimitedStore(backend, max_download_mbs=1)
    assert len(await (await unlimited.read_raw("mem://c/big")).read()) == 3 * MiB
    with pytest.raises(ExceedsLimitError):
        await strict.read_raw("mem://c/big")


async def test_limit_applies_to_range_length() -> None:
    backend = MemoryStore()
    await backend.write_raw("mem://c/big", b"x" * (3 * MiB))
    store = LimitedStore(backend, max_download_mbs=1)
    assert len(await (await store.read_raw("mem://c/big", offset=0, length=MiB)).read()) == MiB


async def test_limit_aborts_unknown_size_stream_mid_way() -> None:
    backend = CountingStore()
    backend.unknown_size = True
    await backend.write_raw("mem://c/big", b"x" * (3 * MiB))
    store = LimitedStore(backend, max_download_mbs=2)
    stream = await store.read_raw("mem://c/big")
    got = 0
    with pytest.raises(ExceedsLimitError):
        async for chunk in stream:
            got += len(chunk)
    assert got <= 2 * MiB


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError):
        LimitedStore(MemoryStore(), max_download_mbs=-1)


# -- routing ----------------------------------------------------------------------------------------


class CountingFactory:
    def __init__(self) -> None:
        self.created: list[str] = []

    def cache_key(self, scheme: str, ref: str) -> str | None:
        return scheme if scheme in ("mem", "other") else None

    async def create(self, scheme: str, ref: str) -> RawStore:
        await asyncio.sleep(0.01)  # a slow dial widens the race window
        self.created.append(scheme)
        store = MemoryStore()
        store.schemes = (scheme,)
        return store


async def test_routing_by_scheme_and_fallback_to_primary() -> None:
    primary = MemoryStore(container="c")
    primary.schemes = ("prim",)
    factory = CountingFactory()
    router = RoutingStore(primary, ("prim",), factory)
    await router.write_raw("prim://c/a", b"primary")
    await router.write_raw("other://c/a", b"other")
    assert await (await router.read_raw("prim://c/a")).read() == b"primary"
    assert await (await router.read_raw("other://c/a")).read() == b"other"
    assert factory.created == ["other"]
    # Unknown schemes and unparsable references go to the primary, which judges them.
    with pytest.raises(InvalidReferenceError):
        await router.head("https://c/a")
    assert router.base_container == "prim://c"


async def test_backend_built_once_under_concurrent_first_use() -> None:
    factory = CountingFactory()
    router = RoutingStore(MemoryStore(), ("mem",), factory)
    await asyncio.gather(*(router.write_raw(f"other://c/{i}", b"x") for i in range(50)))
    assert factory.created == ["other"]
    refs, _ = await router.list_page("other://c")
    assert len(refs) == 50


async def test_failed_creation_is_retried() -> None:
    class Flaky(CountingFactory):
        fail = True

        async def create(self, scheme: str, ref: str) -> RawStore:
            if self.fail:
                self.fail = False
                raise ConnectionError("dial failed")
            return await super().create(scheme, ref)

    router = RoutingStore(MemoryStore(), ("mem",), Flaky())
    with pytest.raises(ConnectionError):
        await router.head("other://c/x")
    assert not (await router.head("other://c/x")).exists


async def test_cross_scheme_copy_streams() -> None:
    factory = CountingFactory()
    router = RoutingStore(MemoryStore(), ("mem",), factory)
    await router.write_raw("mem://c/src", b"payload" * 1000)
    await router.copy_raw("mem://c/src", "other://c/dst")
    assert await (await router.read_raw("other://c/dst")).read() == b"payload" * 1000


async def test_no_primary_and_unknown_scheme_is_a_clear_error() -> None:
    router = RoutingStore(None, (), CountingFactory())
    with pytest.raises(InvalidReferenceError, match="no store serves"):
        await router.head("gopher://c/k")
    with pytest.raises(InvalidReferenceError, match="no store serves"):
        await router.head("/no/scheme")


async def test_delete_many_goes_to_each_backend_in_one_call_and_keeps_the_order(tmp_path: Path) -> None:
    class Recording(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[str]] = []

        async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
            self.batches.append(list(refs))
            return await super().delete_many(refs)

    primary = Recording()

    class LocalFactory:
        def cache_key(self, scheme: str, ref: str) -> str | None:
            return scheme if scheme == "file" else None

        async def create(self, scheme: str, ref: str) -> RawStore:
            store = LocalStore(tmp_path, container="c")
            await store.open()
            return store

    router = RoutingStore(primary, ("mem",), LocalFactory())
    refs = ["mem://c/a", "file://c/a", "gopher://c/x", "mem://c/b", "file://c/missing", "file://c/b"]
    for r in ("mem://c/a", "mem://c/b", "file://c/a", "file://c/b"):
        await router.write_raw(r, b"x")
    results = await router.delete_many(refs)
    assert results[:2] == [None, None] and results[3:] == [None, None, None]
    assert isinstance(results[2], InvalidReferenceError)  # an unknown scheme: the primary judges it
    assert primary.batches == [["mem://c/a", "gopher://c/x", "mem://c/b"]]  # one call for its refs
    for r in ("mem://c/a", "mem://c/b", "file://c/a", "file://c/b"):
        assert not (await router.head(r)).exists
    assert await router.delete_many([]) == []


async def test_resilient_delete_many_retries_only_the_transient_slots() -> None:
    from flytestore import ResilientStore, RetryPolicy, TransientError

    class Flaky(MemoryStore):
        def __init__(self, failures: int) -> None:
            super().__init__()
            self.failures = failures
            self.calls: list[list[str]] = []

        async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
            self.calls.append(list(refs))
            results = await super().delete_many(refs)
            if self.failures:
                self.failures -= 1
                # The server deleted "b" but its answer was lost.
                return [
                    TransientError("dropped") if r.endswith("/b") else res for r, res in zip(refs, results, strict=True)
                ]
            return results

    fast = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, total_timeout=None)
    inner = Flaky(failures=1)
    for k in "abc":
        await inner.write_raw(f"mem://c/{k}", b"x")
    store = ResilientStore(inner, retries=fast)
    assert await store.delete_many(["mem://c/a", "mem://c/b", "nope://c/x", "mem://c/c"]) == [
        None,
        None,
        ANY_REF_ERROR,
        None,
    ]
    assert inner.calls[1] == ["mem://c/b"]  # only the transient slot was sent again

    always = Flaky(failures=99)
    await always.write_raw("mem://c/b", b"x")
    results = await ResilientStore(always, retries=fast).delete_many(["mem://c/b"])
    assert isinstance(results[0], TransientError) and len(always.calls) == 3  # the attempts are spent


class _AnyRefError:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, InvalidReferenceError)


ANY_REF_ERROR: Any = _AnyRefError()


async def test_instrumented_delete_many_counts_each_failed_object() -> None:
    from flytestore import InstrumentedStore

    registry = CollectorRegistry()
    store = InstrumentedStore(MemoryStore(), Scope("t", registry=registry))
    await store.write_raw("mem://c/a", b"x")
    assert await store.delete_many(["mem://c/a", "mem://c/missing"]) == [None, None]
    results = await store.delete_many(["nope://c/a", "mem://c/"])
    assert all(isinstance(r, InvalidReferenceError) for r in results)
    assert registry.get_sample_value("t:bad_key_total") == 2
    assert registry.get_sample_value("t:delete_many_ms_count") == 2
