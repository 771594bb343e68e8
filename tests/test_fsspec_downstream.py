"""The Python data ecosystem through ``flytestore.fsspec``: pyarrow, pandas, dask and flytekit read
and write through a ``DataStoreFileSystem``, against moto (S3) and, where cheap, memory and local disk.

Each test checks the bytes through a second channel that does not go through the filesystem under
test (boto3 against moto, the file on disk), so a filesystem that silently wrote somewhere else, or
a library that silently fell back to its own filesystem (flytekit to s3fs, say), fails the test.
The optional libraries are skipped when absent, so the suite runs without them.
"""

from __future__ import annotations

import importlib.util
import io
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers_s3 import MotoS3

if importlib.util.find_spec("fsspec") is None:  # pragma: no cover - the test extra has it
    pytest.skip("fsspec is not installed", allow_module_level=True)
try:
    import flytestore.fsspec as ffs
except ModuleNotFoundError as err:  # until flytestore/fsspec.py exists; any other error is loud
    if err.name != "flytestore.fsspec":
        raise
    pytest.skip("flytestore.fsspec is not written yet", allow_module_level=True)

import fsspec

from flytestore import Config

#: fsspec's registry module (the package's ``fsspec.registry`` attribute is the read-only mapping).
fsreg = importlib.import_module("fsspec.registry")

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


# -- fixtures --------------------------------------------------------------------------------------


def _boto3(server: MotoS3) -> Any:
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


@pytest.fixture
def s3(s3_server: MotoS3) -> Any:
    """boto3 against moto: the second channel the tests check the bytes through."""
    pytest.importorskip("aiobotocore")
    return _boto3(s3_server)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"fsspec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_options(s3_server: MotoS3) -> dict[str, Any]:
    """The storage options a user of s3fs passes (and flytekit's ``s3_setup_args`` builds)."""
    return {
        "key": s3_server.access_key_id,
        "secret": s3_server.secret_key,
        "client_kwargs": {"endpoint_url": s3_server.endpoint, "region_name": s3_server.region},
    }


def s3_config(server: MotoS3, bucket: str) -> Config:
    return Config.from_dict(
        {
            "type": "s3",
            "container": bucket,
            "stow": {"kind": "s3", "config": server.stow_config()},
            "limits": {"maxDownloadMBs": 0},
        }
    )


@pytest.fixture
def registered() -> Iterator[None]:
    """``register`` for s3 and mem, undone afterwards (fsspec's registry is process-wide)."""
    saved_registry = dict(fsreg._registry)
    saved_known = {k: dict(v) for k, v in fsreg.known_implementations.items()}
    saved_config = ffs._registered_config
    ffs.DataStoreFileSystem.clear_instance_cache()
    ffs.register(protocols=("s3", "mem"), clobber=True)
    try:
        yield
    finally:
        ffs.DataStoreFileSystem.clear_instance_cache()
        fsreg._registry.clear()
        fsreg._registry.update(saved_registry)
        fsreg.known_implementations.clear()
        fsreg.known_implementations.update(saved_known)
        ffs._registered_config = saved_config


def sample_table(rows: int = 5_000) -> Any:
    import random

    rng = random.Random(7)
    return pa.table(
        {
            "id": pa.array(range(rows), type=pa.int64()),
            "value": pa.array([rng.random() for _ in range(rows)], type=pa.float64()),
            "part": pa.array([f"p{i % 3}" for i in range(rows)]),
        }
    )


class Place:
    """Where a test writes: a filesystem over one backend, a base reference, and a second channel
    that reads an object's bytes without the filesystem."""

    def __init__(self, fs: Any, base: str, raw: Any) -> None:
        self.fs, self.base, self.raw = fs, base, raw


@pytest.fixture(params=["mem", "local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    name = f"b{uuid.uuid4().hex[:10]}"
    if request.param == "mem":
        fs = ffs.DataStoreFileSystem(config=Config(type="mem", container=name), skip_instance_cache=True)
        # No second process can see memory: read back through a second, independent code path
        # (the DataStore under the filesystem, not the filesystem's file objects).
        yield Place(fs, f"mem://{name}", lambda ref: fs.cat_file(ref))
    elif request.param == "local":
        config = Config(type="local", container=name, local={"path": str(tmp_path)})
        fs = ffs.DataStoreFileSystem(config=config, skip_instance_cache=True)
        yield Place(fs, f"file://{name}", lambda ref: (tmp_path / ref.split("://", 1)[1]).read_bytes())
    else:
        server: MotoS3 = request.getfixturevalue("s3_server")
        pytest.importorskip("aiobotocore")
        client = _boto3(server)
        client.create_bucket(Bucket=name)
        fs = ffs.DataStoreFileSystem(config=s3_config(server, name), skip_instance_cache=True)

        def raw(ref: str) -> bytes:
            key = ref.split("://", 1)[1].split("/", 1)[1]
            body: bytes = client.get_object(Bucket=name, Key=key)["Body"].read()
            return body

        yield Place(fs, f"s3://{name}", raw)


# -- pyarrow ---------------------------------------------------------------------------------------


def test_pyarrow_write_table_and_read_table_through_the_filesystem(place: Place) -> None:
    table = sample_table()
    ref = f"{place.base}/tables/sample.parquet"

    pq.write_table(table, ref, filesystem=place.fs)

    # The object is a Parquet file where the reference says, read without the filesystem.
    assert pq.read_table(io.BytesIO(place.raw(ref))).equals(table)
    # And pyarrow reads it back through the filesystem, whole and by column (range reads).
    assert pq.read_table(ref, filesystem=place.fs).equals(table)
    assert pq.read_table(ref, filesystem=place.fs, columns=["value"]).column("value").equals(table.column("value"))
    with place.fs.open(ref, "rb") as f:
        assert pq.ParquetFile(f).metadata.num_rows == table.num_rows


def test_pyarrow_dataset_discovers_files_listed_by_the_filesystem(place: Place) -> None:
    import pyarrow.dataset as ds

    table = sample_table(3_000)
    root = f"{place.base}/dataset"
    pq.write_to_dataset(table, root, partition_cols=["part"], filesystem=place.fs)

    dataset = ds.dataset(root, filesystem=place.fs, format="parquet", partitioning="hive")
    assert len(dataset.files) == 3
    assert all(f.startswith(root + "/part=p") for f in dataset.files), dataset.files
    got = dataset.to_table().sort_by("id")
    assert got.column("id").equals(table.column("id"))
    assert got.column("value").equals(table.column("value"))
    assert sorted(set(got.column("part").to_pylist())) == ["p0", "p1", "p2"]


def test_recursive_put_and_get_keep_names_with_spaces(place: Place, tmp_path: Path) -> None:
    # What every downstream directory copy (dask outputs, flytekit's get_data) relies on.
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "d e.txt").write_bytes(b"space")
    (src / "sub" / "x.txt").write_bytes(b"x")
    place.fs.put(str(src) + "/", f"{place.base}/t/", recursive=True)
    assert place.raw(f"{place.base}/t/d e.txt") == b"space"

    out = tmp_path / "out"
    place.fs.get(f"{place.base}/t/", str(out) + "/", recursive=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["d e.txt", "sub/x.txt"]


#: Key names that are URL syntax in a reference: an fsspec path names them literally, as s3fs does.
SPECIAL_NAMES = ["d e.txt", "p%q.txt", "a%20b.txt", "h#sh.txt", "q?x.txt", "pl+us.txt", "ünï €.txt"]


def test_special_characters_in_names_are_literal(place: Place, tmp_path: Path) -> None:
    fs, base = place.fs, f"{place.base}/sp"
    for i, name in enumerate(SPECIAL_NAMES):
        fs.pipe_file(f"{base}/{name}", f"body {i}".encode())
        assert place.raw(f"{base}/{name}") == f"body {i}".encode()  # stored under the literal name
        assert fs.cat_file(f"{base}/{name}") == f"body {i}".encode()
        assert fs.cat_file(f"{base}/{name}", start=0, end=4) == b"body"
        assert fs.info(f"{base}/{name}")["name"] == f"{base}/{name}"
    fs.pipe_file(f"{base}/sub dir/ü%#?.bin", b"deep")
    names = sorted([*(f"{base}/{n}" for n in SPECIAL_NAMES), f"{base}/sub dir/ü%#?.bin"])
    assert fs.find(base) == names
    assert fs.ls(base, detail=False) == sorted([*(f"{base}/{n}" for n in SPECIAL_NAMES), f"{base}/sub dir"])
    assert fs.ls(f"{base}/sub dir", detail=False) == [f"{base}/sub dir/ü%#?.bin"]
    assert fs.isdir(f"{base}/sub dir") and fs.isfile(f"{base}/p%q.txt") and not fs.exists(f"{base}/p q.txt")

    out = tmp_path / "got"
    fs.get(f"{base}/", str(out) + "/", recursive=True)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {**{n: f"body {i}".encode() for i, n in enumerate(SPECIAL_NAMES)}, "sub dir/ü%#?.bin": b"deep"}

    fs.put(str(out) + "/", f"{place.base}/again/", recursive=True)
    assert fs.find(f"{place.base}/again") == [n.replace(f"{base}/", f"{place.base}/again/") for n in names]
    assert place.raw(f"{place.base}/again/sub dir/ü%#?.bin") == b"deep"

    fs.rm_file(f"{base}/p%q.txt")
    fs.rm(f"{base}/d e.txt")
    assert not fs.exists(f"{base}/p%q.txt") and not fs.exists(f"{base}/d e.txt")
    assert fs.exists(f"{base}/a%20b.txt")
    fs.rm(f"{place.base}/again", recursive=True)
    assert fs.find(f"{place.base}/again") == []
    fs.rm(base, recursive=True)
    assert fs.find(base) == []


# -- pandas ----------------------------------------------------------------------------------------


def test_pandas_to_parquet_and_read_parquet_with_storage_options_on_s3(
    registered: None, bucket: str, s3: Any, s3_options: dict[str, Any]
) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": range(1000), "b": [i / 7 for i in range(1000)], "c": [f"s{i}" for i in range(1000)]})
    url = f"s3://{bucket}/frames/df.parquet"

    # pandas resolves s3:// through fsspec's registry: the registered DataStoreFileSystem.
    fs, _ = fsspec.core.url_to_fs(url, **s3_options)
    assert isinstance(fs, ffs.DataStoreFileSystem)

    df.to_parquet(url, storage_options=s3_options)
    body = s3.get_object(Bucket=bucket, Key="frames/df.parquet")["Body"].read()
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(body)), df)

    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=s3_options), df)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=s3_options, columns=["b"]), df[["b"]])


def test_pandas_csv_round_trip_on_memory(registered: None) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    url = f"mem://b{uuid.uuid4().hex[:10]}/frames/df.csv"
    options = {"config": {"type": "mem", "container": url.split("/")[2]}}

    df.to_csv(url, index=False, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_csv(url, storage_options=options), df)
    fs, _ = fsspec.core.url_to_fs(url, **options)
    assert isinstance(fs, ffs.DataStoreFileSystem)
    assert fs.cat_file(url) == b"x,y\n1,a\n2,b\n3,c\n"


# -- dask ------------------------------------------------------------------------------------------


# dask's own set_index/reset_index(inplace=True) under pandas >= 3.1 (not ours).
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame")
def test_dask_reads_a_partitioned_parquet_dataset_on_s3(
    registered: None, bucket: str, s3: Any, s3_options: dict[str, Any]
) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame(
        {"id": range(2_000), "value": [i * 0.5 for i in range(2_000)], "part": [f"p{i % 4}" for i in range(2_000)]}
    )
    url = f"s3://{bucket}/ds"
    # Written through the filesystem by dask itself, one directory per partition value.
    dd.from_pandas(df, npartitions=3).to_parquet(url, partition_on=["part"], storage_options=s3_options)

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ds/")["Contents"])
    assert {k.split("/")[1] for k in keys if k.endswith(".parquet")} == {"part=p0", "part=p1", "part=p2", "part=p3"}

    ddf = dd.read_parquet(url, storage_options=s3_options)
    assert ddf.npartitions >= 4  # at least one per directory: the dataset was discovered, not one file
    got = ddf.compute().sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == df["id"].tolist()
    assert got["value"].tolist() == df["value"].tolist()
    assert got["part"].astype(str).tolist() == df["part"].tolist()

    # A filter on the partition column prunes directories.
    only = dd.read_parquet(url, storage_options=s3_options, filters=[("part", "==", "p2")]).compute()
    assert sorted(only["id"].tolist()) == list(range(2, 2_000, 4))


# -- flytekit --------------------------------------------------------------------------------------


def _flytekit() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flytekit's own imports warn; not what is tested here
        pytest.importorskip("flytekit")
        from flytekit.core import data_persistence
    return data_persistence


@pytest.fixture
def provider(registered: None, s3_server: MotoS3, bucket: str, tmp_path: Path) -> Any:
    """flytekit's FileAccessProvider as a Flyte task builds it, its raw output prefix on moto: the
    s3 arguments are flytekit's own (``s3_setup_args``: key, secret, client_kwargs endpoint_url,
    cache_regions), handed to whatever fsspec has registered for s3."""
    dp = _flytekit()
    from flytekit.configuration import DataConfig, S3Config

    # The default config's download limit is Flyte's (2 MB): a flytekit user who downloads files
    # lifts it, as here; the s3 settings still come from flytekit's own arguments.
    ffs.register(protocols=("s3",), clobber=True, config={"type": "mem", "limits": {"maxDownloadMBs": 0}})

    data_config = DataConfig(
        s3=S3Config(
            endpoint=s3_server.endpoint,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_key,
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fap = dp.FileAccessProvider(
            local_sandbox_dir=str(tmp_path / "sandbox"),
            raw_output_prefix=f"s3://{bucket}/raw",
            data_config=data_config,
        )
    return fap


def test_flytekit_uses_the_registered_filesystem_for_s3(provider: Any) -> None:
    # flytekit only takes a registered s3 implementation it considers canonical: if it fell back to
    # s3fs, every other flytekit test would pass without flytestore.
    assert isinstance(provider.raw_output_fs, ffs.DataStoreFileSystem)
    assert isinstance(provider.get_filesystem("s3"), ffs.DataStoreFileSystem)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_flytekit_put_data_and_get_data_of_a_file(provider: Any, bucket: str, s3: Any, tmp_path: Path) -> None:
    assert isinstance(provider.raw_output_fs, ffs.DataStoreFileSystem)
    src = tmp_path / "in.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(payload)
    remote = f"s3://{bucket}/flyte/file/in.bin"

    assert provider.put_data(str(src), remote) == remote
    assert s3.get_object(Bucket=bucket, Key="flyte/file/in.bin")["Body"].read() == payload

    dst = tmp_path / "out" / "in.bin"
    provider.get_data(remote, str(dst))
    assert dst.read_bytes() == payload


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_flytekit_put_data_and_get_data_of_a_directory(provider: Any, bucket: str, s3: Any, tmp_path: Path) -> None:
    assert isinstance(provider.raw_output_fs, ffs.DataStoreFileSystem)
    src = tmp_path / "tree"
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(70_000), "sub/deeper/c.txt": b"", "d e.txt": b"space"}
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    remote = f"s3://{bucket}/flyte/dir"

    provider.put_data(str(src), remote, is_multipart=True)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="flyte/dir/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(f"flyte/dir/{n}" for n in files)
    for name, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"flyte/dir/{name}")["Body"].read() == data

    out = tmp_path / "out"
    provider.get_data(remote, str(out), is_multipart=True)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_flytekit_put_raw_data(provider: Any, bucket: str, s3: Any, tmp_path: Path) -> None:
    assert isinstance(provider.raw_output_fs, ffs.DataStoreFileSystem)

    def body(ref: str) -> bytes:
        assert ref.startswith(f"s3://{bucket}/raw/"), ref
        data: bytes = s3.get_object(Bucket=bucket, Key=ref.split("/", 3)[3])["Body"].read()
        return data

    # bytes, written through fs.open(..., "wb")
    ref = provider.put_raw_data(b"raw bytes", upload_prefix="p1", file_name="blob")
    assert ref == f"s3://{bucket}/raw/p1/blob"
    assert body(ref) == b"raw bytes"

    # a buffered reader, in chunks of read_chunk_size_bytes
    data = os.urandom(200_000)
    ref = provider.put_raw_data(io.BytesIO(data), upload_prefix="p2", read_chunk_size_bytes=4096)
    assert body(ref) == data

    # a file path: put
    f = tmp_path / "raw.txt"
    f.write_bytes(b"from a file")
    ref = provider.put_raw_data(str(f), upload_prefix="p3")
    assert ref == f"s3://{bucket}/raw/p3/raw.txt"
    assert body(ref) == b"from a file"

    # a directory: recursive put
    d = tmp_path / "rawdir"
    (d / "x").mkdir(parents=True)
    (d / "x" / "one").write_bytes(b"1")
    (d / "two").write_bytes(b"22")
    ref = provider.put_raw_data(str(d), upload_prefix="p4")
    assert ref.rstrip("/") == f"s3://{bucket}/raw/p4/rawdir"  # as with s3fs: the directory's name kept
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="raw/p4/")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["raw/p4/rawdir/two", "raw/p4/rawdir/x/one"]
