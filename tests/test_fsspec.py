"""DataStoreFileSystem's own behaviour: flytekit's s3fs arguments against moto, register(),
pickling, fork, threads, asynchronous use inside a running loop, the download limit, "xb", sign(),
and sessions closed at interpreter exit."""

from __future__ import annotations

import asyncio
import importlib
import pickle
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

fsspec = pytest.importorskip("fsspec")

from flytestore import Config, ConfigError, ExceedsLimitError  # noqa: E402
from flytestore.fsspec import DataStoreFileSystem, filesystem_for, register  # noqa: E402

from .servers_s3 import MotoS3  # noqa: E402


def _s3_args(server: MotoS3) -> dict[str, object]:
    """What flytekit's s3_setup_args passes to s3fs."""
    return {
        "key": server.access_key_id,
        "secret": server.secret_key,
        "client_kwargs": {"endpoint_url": server.endpoint, "region_name": server.region},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
        "cache_regions": False,
    }


@pytest.fixture
def s3fs_like(s3_server: MotoS3) -> DataStoreFileSystem:
    bucket = f"fs-{uuid.uuid4().hex[:12]}"
    cls = filesystem_for("s3")
    fs = cls(config=Config(type="mem", create_container=True), skip_instance_cache=True, **_s3_args(s3_server))
    fs.bucket = bucket
    return fs


def _create_bucket(server: MotoS3, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    ).create_bucket(Bucket=bucket)


def test_flytekit_s3_arguments_reach_moto(s3_server: MotoS3, s3fs_like: DataStoreFileSystem) -> None:
    _create_bucket(s3_server, s3fs_like.bucket)
    path = f"s3://{s3fs_like.bucket}/a/b.txt"
    s3fs_like.pipe_file(path, b"hello")
    assert s3fs_like.cat_file(path) == b"hello"
    assert s3fs_like.cat_file(f"{s3fs_like.bucket}/a/b.txt", start=1, end=3) == b"el"  # a bare path is s3://
    # read_ranges underneath: an open end reads to the end, an end past it is clipped.
    assert s3fs_like.cat_ranges([path] * 4, [0, 1, 3, -2], [2, None, 100, None]) == [b"he", b"ello", b"lo", b"lo"]
    assert s3fs_like.ls(f"s3://{s3fs_like.bucket}", detail=False) == [f"s3://{s3fs_like.bucket}/a"]
    assert s3fs_like.config.schemes["s3"].config["endpoint"] == s3_server.endpoint
    assert s3fs_like.config.schemes["s3"].config["addressing_style"] == "path"


def test_wrong_argument_values_are_clear_errors(s3_server: MotoS3) -> None:
    cls = filesystem_for("s3")
    with pytest.raises(ConfigError, match="addressing_style"):
        cls(skip_instance_cache=True, config_kwargs={"s3": {"addressing_style": "sideways"}})
    with pytest.raises(ConfigError, match="anon"):
        cls(skip_instance_cache=True, anon="yes")
    with pytest.raises(ConfigError, match="key"):
        cls(skip_instance_cache=True, key="only-a-key")
    with pytest.raises(ConfigError, match="no_such_option"):
        cls(skip_instance_cache=True, no_such_option=1)


@pytest.fixture
def saved_registries():  # type: ignore[no-untyped-def]
    reg = importlib.import_module("fsspec.registry")
    registry, known = dict(reg._registry), {k: dict(v) for k, v in reg.known_implementations.items()}
    yield reg
    reg._registry.clear()
    reg._registry.update(registry)
    reg.known_implementations.clear()
    reg.known_implementations.update(known)


def test_register_makes_fsspec_return_it(saved_registries) -> None:  # type: ignore[no-untyped-def]
    register(protocols=("mem",), clobber=True, config={"type": "mem"})
    try:
        fs = fsspec.filesystem("mem")
        assert isinstance(fs, DataStoreFileSystem)
        with fsspec.open("mem://bucket/x.txt", "wb") as f:
            f.write(b"via fsspec.open")
        assert fs.cat_file("mem://bucket/x.txt") == b"via fsspec.open"
    finally:
        from fsspec.implementations.memory import MemoryFileSystem

        fsspec.register_implementation("mem", MemoryFileSystem, clobber=True)


def test_register_points_known_implementations_at_it(saved_registries) -> None:  # type: ignore[no-untyped-def]
    # flytekit takes a registered s3/gs/abfs class only if it subclasses known_implementations' class.
    reg = saved_registries
    register(protocols=("s3", "gs"), clobber=False)
    for protocol in ("s3", "gs"):
        assert reg.known_implementations[protocol]["class"] == f"flytestore.fsspec.DataStoreFileSystem_{protocol}"
        assert fsspec.get_filesystem_class(protocol) is filesystem_for(protocol)
    register(protocols=("s3",), clobber=False)  # again: the same class, no conflict


def test_register_without_clobber_leaves_other_implementations_alone(saved_registries) -> None:  # type: ignore[no-untyped-def]
    reg = saved_registries
    from fsspec.implementations.memory import MemoryFileSystem

    reg._registry.pop("s3", None)
    fsspec.register_implementation("s3", MemoryFileSystem, clobber=True)
    with pytest.raises(ValueError, match="s3"):
        register(protocols=("gs", "s3"), clobber=False)
    assert reg._registry["s3"] is MemoryFileSystem
    assert "flytestore" not in reg.known_implementations["gs"]["class"]  # nothing registered
    reg._registry.pop("s3")
    reg.known_implementations["s3"] = {"class": "some.other.S3"}
    with pytest.raises(ValueError, match="known_implementations"):
        register(protocols=("s3",), clobber=False)
    register(protocols=("s3",), clobber=True)
    assert reg.known_implementations["s3"]["class"] == "flytestore.fsspec.DataStoreFileSystem_s3"


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="fsspec.specs")}
    assert names.get("flytestore") == "flytestore.fsspec:DataStoreFileSystem"


def test_pickled_copy_rebuilds_its_store(s3_server: MotoS3, s3fs_like: DataStoreFileSystem) -> None:
    _create_bucket(s3_server, s3fs_like.bucket)
    path = f"s3://{s3fs_like.bucket}/p"
    s3fs_like.pipe_file(path, b"pickled")
    copy = pickle.loads(pickle.dumps(s3fs_like))
    assert copy is not s3fs_like and copy._holder is not s3fs_like._holder
    assert copy.cat_file(path) == b"pickled"


def test_threads_share_the_sync_api() -> None:
    fs = DataStoreFileSystem(config={"type": "mem"}, skip_instance_cache=True)

    def work(i: int) -> bytes:
        fs.pipe_file(f"mem://b/t/{i}", str(i).encode())
        return bytes(fs.cat_file(f"mem://b/t/{i}"))

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(32))) == [str(i).encode() for i in range(32)]
    assert len(fs.find("mem://b/t")) == 32


async def test_asynchronous_inside_a_running_loop() -> None:
    async with DataStoreFileSystem(config={"type": "mem"}, asynchronous=True, skip_instance_cache=True) as fs:
        await fs._pipe_file("mem://b/x", b"async")
        assert await fs._cat_file("mem://b/x") == b"async"
        assert await fs._cat_ranges(["mem://b/x", "mem://b/x"], [0, 2], [2, 5]) == [b"as", b"ync"]
        assert await fs._ls("mem://b", detail=False) == ["mem://b/x"]


def test_a_read_past_the_limit_raises_exceeds_limit() -> None:
    fs = DataStoreFileSystem(config={"type": "mem", "limits": {"maxDownloadMBs": 1}}, skip_instance_cache=True)
    fs.pipe_file("mem://b/big", b"x" * (2 * 2**20))
    with pytest.raises(ExceedsLimitError) as err:
        fs.cat_file("mem://b/big")
    assert isinstance(err.value, OSError)
    with pytest.raises(ExceedsLimitError):
        fs.open("mem://b/big", "rb")
    assert fs.cat_file("mem://b/big", start=0, end=10) == b"x" * 10  # a range within the limit
    assert "maxDownloadMBs" in str(err.value) and "mem://b/big" in str(err.value)
    assert "register(config=" in str(err.value)  # how to lift it for a filesystem


def test_exclusive_open_and_pipe() -> None:
    fs = DataStoreFileSystem(config={"type": "mem"}, skip_instance_cache=True)
    with fs.open("mem://b/x", "xb") as f:
        f.write(b"first")
    with pytest.raises(FileExistsError):
        fs.open("mem://b/x", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file("mem://b/x", b"again", mode="create")
    assert fs.cat_file("mem://b/x") == b"first"


def test_large_write_streams_in_blocks_and_reads_back_with_ranges() -> None:
    fs = DataStoreFileSystem(config={"type": "mem", "limits": {"maxDownloadMBs": 0}}, skip_instance_cache=True)
    block = bytes(range(256)) * 4096  # 1 MiB
    with fs.open("mem://b/big", "wb", block_size=2**20) as f:
        for _ in range(12):
            f.write(block)
    assert fs.size("mem://b/big") == 12 * len(block)
    with fs.open("mem://b/big", "rb", block_size=2**20, cache_type="readahead") as f:
        f.seek(5 * len(block) + 3)
        assert f.read(4) == block[3:7]


def test_sign_modified_checksum_ukey(s3_server: MotoS3, s3fs_like: DataStoreFileSystem) -> None:
    import urllib.request

    _create_bucket(s3_server, s3fs_like.bucket)
    path = f"s3://{s3fs_like.bucket}/signed"
    s3fs_like.pipe_file(path, b"signed body")
    url = s3fs_like.sign(path, expiration=60)
    with urllib.request.urlopen(url) as response:  # a loopback moto URL
        assert response.read() == b"signed body"
    assert s3fs_like.modified(path).tzinfo is not None
    before = s3fs_like.checksum(path), s3fs_like.ukey(path)
    s3fs_like.pipe_file(path, b"changed")
    assert (s3fs_like.checksum(path), s3fs_like.ukey(path)) != before


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_fork_child_rebuilds_and_never_reuses_the_parent_store(s3_server: MotoS3) -> None:
    bucket = f"fork-{uuid.uuid4().hex[:12]}"
    _create_bucket(s3_server, bucket)
    run = _run(
        f"""
        import os
        from flytestore.fsspec import filesystem_for
        fs = filesystem_for("s3")(**{_s3_args(s3_server)!r})
        fs.pipe_file("s3://{bucket}/x", b"parent")
        parent_store = fs._holder.store
        pid = os.fork()
        if pid == 0:
            ok = fs.cat_file("s3://{bucket}/x") == b"parent" and fs._holder.store is not parent_store
            fs.pipe_file("s3://{bucket}/child", b"child")
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert fs._holder.store is parent_store
        assert fs.cat_file("s3://{bucket}/child") == b"child"
        print("ok")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_no_unclosed_session_at_exit(s3_server: MotoS3) -> None:
    bucket = f"exit-{uuid.uuid4().hex[:12]}"
    _create_bucket(s3_server, bucket)
    run = _run(
        f"""
        import fsspec
        from flytestore.fsspec import register
        register(protocols=("s3",), clobber=True)
        fs = fsspec.filesystem("s3", **{_s3_args(s3_server)!r})
        fs.pipe_file("s3://{bucket}/x", b"bye")
        assert fs.cat_file("s3://{bucket}/x") == b"bye"
        print("ok")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert "Unclosed" not in run.stderr, run.stderr
    assert run.stderr == "", run.stderr


def test_asyncio_run_twice_rebuilds_on_the_new_loop() -> None:
    fs = DataStoreFileSystem(config={"type": "mem"}, asynchronous=True, skip_instance_cache=True)

    async def once(value: bytes) -> bytes:
        await fs._pipe_file("mem://b/x", value)
        data: bytes = await fs._cat_file("mem://b/x")
        await fs.aclose()
        return data

    assert asyncio.run(once(b"1")) == b"1"
    assert asyncio.run(once(b"2")) == b"2"
