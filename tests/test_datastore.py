"""The assembled DataStore: config to stack, protobuf, metrics, refresh, Flyte's examples."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from prometheus_client import CollectorRegistry, generate_latest

from flytestore import (
    CachedStore,
    Config,
    ConfigError,
    CorruptObjectError,
    DataStore,
    ExceedsLimitError,
    InvalidArgumentError,
    NotFoundError,
    Scope,
    StorageError,
)

MiB = 1024 * 1024


def scope() -> Scope:
    return Scope("flyte:storage", registry=CollectorRegistry())


def metric(s: Scope, name: str, labels: dict[str, str] | None = None) -> float:
    value = s.registry.get_sample_value(f"flyte:storage:{name}", labels or {})
    return value or 0.0


async def test_flyte_example_new_datastore() -> None:
    """ExampleNewDataStore: a mem store, ConstructReference("root", ...) and a write."""
    async with DataStore(Config(type="mem"), scope=scope()) as store:
        ref = store.construct_reference("root", "subkey", "subkey2")
        assert ref == "/root/subkey/subkey2"
        await store.write_raw(ref, b"hello")
        assert await store.read_bytes(ref) == b"hello"
        assert store.base_container == ""


async def test_local_datastore_creates_init_container(tmp_path: Path) -> None:
    config = Config(type="local", container="my-bucket", local={"path": str(tmp_path)})
    store = DataStore(config, scope=scope())
    assert not (tmp_path / "my-bucket").exists()  # no I/O in the constructor
    async with store:
        assert (tmp_path / "my-bucket").is_dir()
        assert store.base_container == "file://my-bucket"
        ref = store.construct_reference(store.base_container, "metadata", "proj", "dom", "id")
        assert ref == "file://my-bucket/metadata/proj/dom/id"
        await store.write_raw(ref, b"data")
        assert (tmp_path / "my-bucket" / "metadata" / "proj" / "dom" / "id").read_bytes() == b"data"
        entries = [e.ref async for e in store.list(store.base_container)]
        assert entries == [ref]


async def test_protobuf_round_trip_and_metrics() -> None:
    s = scope()
    async with DataStore(Config(type="mem"), scope=s) as store:
        msg = struct_pb2.Struct()
        msg.update({"name": "flyte", "count": 3})
        await store.write_protobuf("mem://c/msg.pb", msg)
        back = await store.read_protobuf("mem://c/msg.pb", struct_pb2.Struct())
        assert back == msg
    assert metric(s, "marshal_ms_count") == 1
    assert metric(s, "unmarshal_ms_count") == 1


async def test_protobuf_bad_input() -> None:
    s = scope()
    async with DataStore(Config(type="mem"), scope=s) as store:
        with pytest.raises(InvalidArgumentError, match="protobuf Message"):
            await store.write_protobuf("mem://c/x", {"not": "a message"})  # type: ignore[arg-type]
        assert not (await store.head("mem://c/x")).exists
        await store.write_raw("mem://c/corrupt", b"\xff\xff\xff\xff garbage")
        with pytest.raises(CorruptObjectError, match=r"google\.protobuf\.StringValue"):
            await store.read_protobuf("mem://c/corrupt", wrappers_pb2.StringValue())
        with pytest.raises(NotFoundError):
            await store.read_protobuf("mem://c/missing", wrappers_pb2.StringValue())
    assert metric(s, "unmarshal_failure_total") == 1
    assert metric(s, "read_failure_unrelated_to_cache_total") == 1


async def test_big_protobuf_with_small_cache() -> None:
    """TestDefaultProtobufStore_BigDataReadAfterWrite: 1.5 MB message, 1 MB cache, no error."""
    s = scope()
    config = Config(type="mem", cache={"max_size_mbs": 1})
    async with DataStore(config, scope=s) as store:
        msg = wrappers_pb2.BytesValue(value=b"x" * 1_500_000)
        await store.write_protobuf("mem://c/big.pb", msg)
        assert (await store.read_protobuf("mem://c/big.pb", wrappers_pb2.BytesValue())).value == msg.value
    assert metric(s, "cache_write_err_total") >= 1


async def test_download_limit_from_config() -> None:
    config = Config(type="mem", limits={"max_download_mbs": 1})
    async with DataStore(config, scope=scope()) as store:
        await store.write_raw("mem://c/big", b"x" * (MiB + 1))
        with pytest.raises(ExceedsLimitError):
            await store.read_bytes("mem://c/big")
        with pytest.raises(ExceedsLimitError):
            await store.read_protobuf("mem://c/big", wrappers_pb2.BytesValue())


async def test_cache_layer_in_stack() -> None:
    s = scope()
    async with DataStore(Config(type="mem", cache={"max_size_mbs": 1}), scope=s) as store:
        assert isinstance(store.cache, CachedStore)
        await store.write_raw("mem://c/k", b"v")
        assert await store.read_bytes("mem://c/k") == b"v"
    assert metric(s, "cache_hit_total") == 1


async def test_backend_metrics_labelled_by_failure_type(tmp_path: Path) -> None:
    s = scope()
    config = Config(type="local", container="c", local={"path": str(tmp_path)})
    async with DataStore(config, scope=s) as store:
        await store.write_raw("file://c/a", b"x")
        with pytest.raises(NotFoundError):
            await store.read_raw("file://c/missing")
        with pytest.raises(NotFoundError):
            await store.delete("file://c/missing")
    assert metric(s, "write_ms_count") == 1
    assert metric(s, "read_failure_total", {"failure_type": "NotFound"}) == 1
    assert metric(s, "delete_failure_total", {"failure_type": "NotFound"}) == 1
    text = generate_latest(s.registry).decode()
    assert 'flyte:storage:write_bucket{le="0.005"}' in text


async def test_refresh_config_swaps_stack_and_keeps_metrics(tmp_path: Path) -> None:
    s = scope()
    store = DataStore(Config(type="mem"), scope=s)
    async with store:
        await store.write_raw("mem://c/k", b"old store")
        stream_on_old = await store.read_raw("mem://c/k")
        await store.refresh_config(Config(type="local", container="c", local={"path": str(tmp_path)}))
        assert store.base_container == "file://c"
        # An operation in flight on the old stack still completes.
        assert await stream_on_old.read() == b"old store"
        await store.write_raw("file://c/k", b"new store")
        assert (tmp_path / "c" / "k").read_bytes() == b"new store"
    assert metric(s, "write_ms_count") == 1


async def test_refresh_does_not_break_concurrent_operations() -> None:
    store = DataStore(Config(type="mem"), scope=scope())
    async with store:

        async def worker(i: int) -> None:
            for j in range(50):
                ref = f"mem://c/{i}/{j}"
                await store.write_raw(ref, b"x")
                await store.head(ref)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(worker(i)) for i in range(10)]
        for _ in range(5):
            await asyncio.sleep(0.001)
            await store.refresh_config(Config(type="mem"))
        await asyncio.gather(*tasks)


async def test_routing_mem_to_secondary_mem_scheme(tmp_path: Path) -> None:
    config = Config(type="local", container="c", local={"path": str(tmp_path)})
    async with DataStore(config, scope=scope()) as store:
        await store.write_raw("mem://x/k", b"in memory")
        await store.copy_raw("mem://x/k", "file://c/copied")
        assert (tmp_path / "c" / "copied").read_bytes() == b"in memory"


async def test_lazy_file_scheme_needs_path() -> None:
    async with DataStore(Config(type="mem"), scope=scope()) as store:
        with pytest.raises(ConfigError, match="path"):
            await store.head("file://c/k")


async def test_not_open_is_a_clear_error() -> None:
    store = DataStore(Config(type="mem"), scope=scope())
    with pytest.raises(StorageError, match="not open"):
        await store.head("mem://c/k")


async def test_two_datastores_share_metric_names() -> None:
    registry = CollectorRegistry()
    a = DataStore(Config(type="mem", cache={"max_size_mbs": 1}), scope=Scope("flyte:storage", registry=registry))
    b = DataStore(Config(type="mem", cache={"max_size_mbs": 1}), scope=Scope("flyte:storage", registry=registry))
    async with a, b:
        await a.write_raw("mem://c/k", b"1")
        await b.write_raw("mem://c/k", b"2")
        await a.read_bytes("mem://c/k")
        await b.read_bytes("mem://c/k")
    assert registry.get_sample_value("flyte:storage:cache_hit_total") == 2
