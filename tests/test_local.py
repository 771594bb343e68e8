"""LocalStore specifics: atomic writes, path safety, listing order, directory hygiene, descriptors.

Behaviour every backend shares (round trips, ranges, pagination basics) lives in the conformance
suite; these tests cover what only a filesystem can get wrong.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import gc
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from flytestore.config import Config
from flytestore.errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    TransientError,
    UnsupportedError,
)
from flytestore.rawstore import Cursor, Options, SignedURLProperties
from flytestore.reference import escape_key
from flytestore.stores import local as local_module
from flytestore.stores.local import LocalStore, from_config

KiB = 1024
#: A small chunk size, so that a few KiB exercise the streaming paths (several chunks, temp files).
CHUNK = 4 * KiB


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest_asyncio.fixture
async def store(root: Path) -> AsyncIterator[LocalStore]:
    s = LocalStore(root, container="c", chunk_size=CHUNK)
    async with s:
        yield s


def ref(key: str, container: str = "c") -> str:
    return f"file://{container}/{escape_key(key)}"


async def read(store: LocalStore, reference: str, **kw: int) -> bytes:
    stream = await store.read_raw(reference, **kw)
    async with stream:
        return await stream.read()


def tree(path: Path) -> list[str]:
    """Every file and directory under ``path``, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def temp_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if ".flytestore-tmp-" in p.name]


# -- construction and lifecycle -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_open_creates_container_and_is_idempotent(root: Path) -> None:
    s = LocalStore(root, container="c")
    assert tree(root.parent) == []  # no I/O in the constructor
    await s.open()
    await s.open()
    assert (root / "c").is_dir()
    assert s.base_container == "file://c"
    await s.aclose()


@pytest.mark.asyncio
async def test_open_without_create_container_leaves_disk_alone(root: Path) -> None:
    s = LocalStore(root, container="c", create_container=False)
    async with s:
        assert tree(root.parent) == []
        with pytest.raises(NotFoundError, match="container directory"):
            await s.write_raw(ref("k"), b"x")
        assert not (await s.head(ref("k"))).exists


@pytest.mark.asyncio
async def test_open_refuses_a_container_path_that_is_a_file(root: Path) -> None:
    write(root / "c", b"not a directory")
    with pytest.raises(ConfigError, match="not a directory"):
        await LocalStore(root, container="c").open()


@pytest.mark.parametrize("container", ["a/b", "..", ".", "x\0y"])
def test_constructor_refuses_unsafe_containers(root: Path, container: str) -> None:
    with pytest.raises(InvalidArgumentError, match="container"):
        LocalStore(root, container=container)


@pytest.mark.parametrize("chunk_size", [0, -1, True, 1.5])
def test_constructor_refuses_bad_chunk_sizes(root: Path, chunk_size: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="chunk_size"):
        LocalStore(root, chunk_size=chunk_size)


def test_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalStore("data").root == str(tmp_path / "data")


def test_from_config(tmp_path: Path) -> None:
    config = Config(type="local", container="b", local={"path": str(tmp_path)})
    settings = {"path": str(tmp_path)}
    s = from_config(settings, container="b", multicontainer=False, config=config, field="stow.config")
    assert isinstance(s, LocalStore) and s.root == str(tmp_path)
    assert s.container == "b" and not s.multicontainer and s.create_container
    config = Config(type="local", container="b", local={"path": str(tmp_path)}, create_container=False)
    s = from_config(settings, container="b", multicontainer=False, config=config, field="stow.config")
    assert not s.create_container
    with pytest.raises(ConfigError, match=r"stow\.config\.path"):
        from_config({}, container="b", multicontainer=True, config=config, field="stow.config")


@pytest.mark.asyncio
async def test_multicontainer(root: Path) -> None:
    (root / "other").mkdir(parents=True)
    s = LocalStore(root, container="c")
    async with s:
        await s.write_raw(ref("k", "other"), b"elsewhere")
        assert (root / "other" / "k").read_bytes() == b"elsewhere"
    s = LocalStore(root, container="c", multicontainer=False)
    async with s:
        with pytest.raises(NotFoundError, match="enable-multicontainer"):
            await s.head(ref("k", "other"))


# -- atomic writes ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("before_failure", [10, 3 * CHUNK])
async def test_failing_payload_leaves_nothing(store: LocalStore, root: Path, before_failure: int) -> None:
    saw_temp: list[bool] = []

    async def payload() -> AsyncIterator[bytes]:
        yield b"x" * before_failure
        saw_temp.append(bool(temp_files(root)))
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        await store.write_raw(ref("dir/obj"), payload())
    # A payload larger than a chunk had reached a temp file, which is gone again.
    assert saw_temp == [before_failure > CHUNK]
    assert tree(root) == ["c"]


@pytest.mark.asyncio
async def test_failing_payload_keeps_the_previous_object(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("obj"), b"precious")
    before = await store.head(ref("obj"))

    async def payload() -> AsyncIterator[bytes]:
        yield b"y" * (3 * CHUNK)
        raise OSError(errno.EIO, "the producer's own disk failed")

    # The producer's own OSError is not mistaken for one of the store's.
    with pytest.raises(OSError, match="producer") as info:
        await store.write_raw(ref("obj"), payload())
    assert not isinstance(info.value, StorageError)
    assert await read(store, ref("obj")) == b"precious"
    assert (await store.head(ref("obj"))).etag == before.etag
    assert temp_files(root) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("existing", [False, True])
async def test_cancelled_write_leaves_nothing(store: LocalStore, root: Path, existing: bool) -> None:
    if existing:
        await store.write_raw(ref("obj"), b"old")
    waiting = asyncio.Event()

    async def payload() -> AsyncIterator[bytes]:
        yield b"z" * (3 * CHUNK)  # enough to open the temp file and write to it
        waiting.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.write_raw(ref("obj"), payload()))
    await waiting.wait()
    assert len(temp_files(root)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(root) == []
    if existing:
        assert await read(store, ref("obj")) == b"old"
    else:
        assert tree(root) == ["c"]


@pytest.mark.asyncio
async def test_if_not_exists_keeps_content_and_fails_before_reading(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("once"), b"first")
    pulled = []

    async def payload() -> AsyncIterator[bytes]:
        pulled.append(True)
        yield b"second"

    with pytest.raises(AlreadyExistsError, match=r"file://c/once"):
        await store.write_raw(ref("once"), payload(), options=Options(if_not_exists=True))
    assert pulled == []  # failed fast, before consuming the payload
    with pytest.raises(AlreadyExistsError):
        await store.write_raw(ref("once"), b"second", options=Options(if_not_exists=True))
    assert await read(store, ref("once")) == b"first"
    assert temp_files(root) == []


@pytest.mark.asyncio
async def test_if_not_exists_loses_to_a_writer_that_commits_first(store: LocalStore, root: Path) -> None:
    # The up-front check passes, then another writer commits while the payload streams: the
    # hard-link commit must refuse rather than replace.
    async def payload() -> AsyncIterator[bytes]:
        yield b"a" * (2 * CHUNK)
        await store.write_raw(ref("race"), b"winner")
        yield b"b"

    with pytest.raises(AlreadyExistsError):
        await store.write_raw(ref("race"), payload(), options=Options(if_not_exists=True))
    assert await read(store, ref("race")) == b"winner"
    assert temp_files(root) == []


@pytest.mark.asyncio
async def test_metadata_and_content_type_are_ignored(store: LocalStore) -> None:
    options = Options(metadata={"a": "b"}, content_type="application/json")
    meta = await store.write_raw(ref("m"), b"{}", options=options)
    head = await store.head(ref("m"))
    assert head.content_type is None and dict(head.user_metadata) == {}
    assert meta == head


@pytest.mark.asyncio
async def test_head_metadata(store: LocalStore, root: Path) -> None:
    first = await store.write_raw(ref("h"), b"one")
    head = await store.head(ref("h"))
    assert head.exists and head.size == 3 and head.etag == first.etag
    assert head.last_modified is not None and head.last_modified.utcoffset() is not None
    assert abs(head.last_modified.timestamp() - (root / "c" / "h").stat().st_mtime) < 1e-3
    await store.write_raw(ref("h"), b"two!")
    assert (await store.head(ref("h"))).etag != first.etag
    assert not (await store.head(ref("nothing"))).exists


# -- references and path safety --------------------------------------------------------------------

ESCAPES = [
    "file://c/../x",
    "file://c/a/../../x",
    "file://c/%2e%2e/x",
    "file://c/%2E%2E/%2e%2e/x",
    "file://c/a%2f..%2f..%2fx",
    "file://c/a/%2e%2e%2f%2e%2e%2fx",
    "file://c/./x",
    "file://c/a//b",
    "file://c/a%00b",
    "file://../x",
    "file://./x",
    "file://../../x",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ESCAPES)
async def test_traversal_and_ambiguous_keys_are_refused(store: LocalStore, tmp_path: Path, bad: str) -> None:
    before = tree(tmp_path)
    operations: list[Callable[[], Any]] = [
        lambda: store.head(bad),
        lambda: store.read_raw(bad),
        lambda: store.write_raw(bad, b"x"),
        lambda: store.write_raw(bad, iter([b"x" * 3 * CHUNK])),
        lambda: store.delete(bad),
        lambda: store.copy_raw(ref("src"), bad),
        lambda: store.copy_raw(bad, ref("dst")),
    ]
    await store.write_raw(ref("src"), b"source")
    for op in operations:
        with pytest.raises(InvalidReferenceError):
            await op()
    await store.delete(ref("src"))
    assert tree(tmp_path) == before


@pytest.mark.asyncio
async def test_empty_container_explains_the_reference_form(store: LocalStore) -> None:
    with pytest.raises(InvalidReferenceError, match=r"file://<container>/<key>"):
        await store.write_raw("file:///x", b"x")
    with pytest.raises(InvalidReferenceError, match=r"file://<container>/<key>"):
        await store.list_page("file:///x")


@pytest.mark.asyncio
async def test_leading_slashes_stay_inside_the_container(store: LocalStore, root: Path) -> None:
    # The parser trims them (Go semantics): an "absolute-looking" key is relative to the container.
    await store.write_raw("file://c//etc/passwd-like", b"x")
    await store.write_raw("file://c/%2fetc%2fother", b"y")
    assert tree(root) == ["c", "c/etc", "c/etc/other", "c/etc/passwd-like"]


@pytest.mark.parametrize("key", ["/etc/passwd", "a//b", "a/./b", "..", "a\0b", ".k.flytestore-tmp-1"])
def test_key_segments_refuse_what_the_parser_lets_through(key: str) -> None:
    with pytest.raises(InvalidReferenceError):
        local_module._key_segments("file://c/?", key)


@pytest.mark.asyncio
async def test_temp_names_are_reserved(store: LocalStore) -> None:
    with pytest.raises(InvalidReferenceError, match="reserved"):
        await store.write_raw(ref("d/.x.flytestore-tmp-0123"), b"x")


@pytest.mark.asyncio
async def test_symlink_pointing_outside_is_refused(store: LocalStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "c" / "link").symlink_to(outside, target_is_directory=True)
    (root / "c" / "filelink").symlink_to(outside / "secret")

    for key in ("link/secret", "link/new", "link/sub/new", "filelink"):
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.head(ref(key))
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.read_raw(ref(key))
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.write_raw(ref(key), b"pwned")
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.write_raw(ref(key), iter([b"p" * 3 * CHUNK]))
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.delete(ref(key))
        with pytest.raises(InvalidReferenceError, match="symbolic link"):
            await store.copy_raw(ref(key), ref("copy"))
    with pytest.raises(InvalidReferenceError, match="symbolic link"):
        await store.list_page(ref("link"))
    assert tree(outside) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    # Listing the container does not follow the links.
    assert await store.list_page("file://c") == ([], Cursor.end())


@pytest.mark.asyncio
async def test_symlinks_inside_the_container_work(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("real/obj"), b"data")
    (root / "c" / "alias").symlink_to(root / "c" / "real", target_is_directory=True)
    assert await read(store, ref("alias/obj")) == b"data"
    await store.write_raw(ref("alias/new"), b"new")
    assert (root / "c" / "real" / "new").read_bytes() == b"new"


@pytest.mark.asyncio
async def test_object_used_as_directory_is_refused(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("a"), b"file")
    for key in ("a/b", "a/b/c"):
        with pytest.raises(InvalidReferenceError, match=r"\[a\] is an object"):
            await store.write_raw(ref(key), b"x")
        with pytest.raises(NotFoundError):
            await store.read_raw(ref(key))
        assert not (await store.head(ref(key))).exists
        with pytest.raises(NotFoundError):
            await store.delete(ref(key))
    await store.write_raw(ref("d/e"), b"nested")
    with pytest.raises(InvalidReferenceError, match="directory"):
        await store.write_raw(ref("d"), b"x")
    with pytest.raises(InvalidReferenceError, match="directory"):
        await store.copy_raw(ref("a"), ref("d"))
    # A directory is not an object.
    assert not (await store.head(ref("d"))).exists
    with pytest.raises(NotFoundError):
        await store.read_raw(ref("d"))
    with pytest.raises(NotFoundError):
        await store.delete(ref("d"))
    assert (root / "c" / "a").read_bytes() == b"file"
    assert temp_files(root) == []


@pytest.mark.asyncio
async def test_a_fifo_is_not_an_object_and_does_not_hang(store: LocalStore, root: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(root / "c" / "fifo")
    assert not (await asyncio.wait_for(store.head(ref("fifo")), 5)).exists
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(store.read_raw(ref("fifo")), 5)
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(store.copy_raw(ref("fifo"), ref("x")), 5)
    assert await store.list_page("file://c") == ([], Cursor.end())


@pytest.mark.asyncio
async def test_signed_urls_are_unsupported(store: LocalStore) -> None:
    with pytest.raises(UnsupportedError):
        await store.create_signed_url(ref("k"), SignedURLProperties())


# -- error mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, NotFoundError),
        (errno.EEXIST, AlreadyExistsError),
        (errno.EACCES, PermissionDeniedError),
        (errno.EPERM, PermissionDeniedError),
        (errno.ENOTDIR, InvalidReferenceError),
        (errno.EISDIR, InvalidReferenceError),
        (errno.ETIMEDOUT, TransientError),
        (errno.EIO, StorageError),
    ],
)
def test_os_errors_are_mapped_in_one_place(code: int, expected: type[StorageError]) -> None:
    original = OSError(code, os.strerror(code))
    mapping = local_module._os_errors("read [file://c/k]")
    with pytest.raises(expected, match=r"cannot read \[file://c/k\]") as info, mapping:
        raise original
    assert type(info.value) is expected
    assert info.value.__cause__ is original


@pytest.mark.asyncio
async def test_permission_denied(store: LocalStore, root: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    (root / "c" / "locked").mkdir()
    (root / "c" / "locked").chmod(0o500)
    try:
        with pytest.raises(PermissionDeniedError, match=r"file://c/locked/k"):
            await store.write_raw(ref("locked/k"), b"x")
    finally:
        (root / "c" / "locked").chmod(0o700)


# -- reads ---------------------------------------------------------------------------------------------

DATA = bytes(range(256)) * 50  # 12800 bytes: several chunks of CHUNK


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, None),
        (0, 0),
        (1, None),
        (CHUNK - 1, 2),
        (CHUNK, CHUNK),
        (100, 2 * CHUNK + 3),
        (len(DATA) - 1, None),
        (len(DATA) - 5, 100),
        (len(DATA), None),
        (len(DATA) + 10, 5),
        (0, 10 * len(DATA)),
    ],
)
async def test_range_reads(store: LocalStore, offset: int, length: int | None) -> None:
    await store.write_raw(ref("r"), DATA)
    expected = DATA[offset : None if length is None else offset + length]
    stream = await store.read_raw(ref("r"), offset=offset, length=length)
    async with stream:
        assert stream.size == len(expected)
        assert stream.metadata is not None and stream.metadata.size == len(DATA)
        chunks = [bytes(c) async for c in stream]
    assert b"".join(chunks) == expected
    assert all(0 < len(c) <= CHUNK for c in chunks)


@pytest.mark.asyncio
@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1), (1.5, None), (True, None)])
async def test_bad_ranges(store: LocalStore, offset: Any, length: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        await store.read_raw(ref("r"), offset=offset, length=length)


@pytest.mark.asyncio
async def test_read_missing_names_the_reference(store: LocalStore) -> None:
    with pytest.raises(NotFoundError, match=r"file://c/nope/x"):
        await store.read_raw(ref("nope/x"))
    with pytest.raises(NotFoundError, match=r"file://c/nope/x"):
        await store.delete(ref("nope/x"))
    with pytest.raises(NotFoundError, match=r"file://c/nope/x"):
        await store.copy_raw(ref("nope/x"), ref("y"))


@pytest.mark.asyncio
async def test_open_stream_keeps_its_snapshot_across_a_rewrite(store: LocalStore) -> None:
    await store.write_raw(ref("snap"), DATA)
    stream = await store.read_raw(ref("snap"))
    async with stream:
        first = bytes(await stream.__anext__())
        await store.write_raw(ref("snap"), b"replaced")  # renamed over: the open inode lives on
        rest = b"".join([bytes(c) async for c in stream])
    assert first + rest == DATA


def _fds() -> int:
    return int(psutil.Process().num_fds())


def _open_paths() -> list[str]:
    return [f.path for f in psutil.Process().open_files()]


@pytest.mark.asyncio
async def test_read_streams_close_their_file(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("fd"), DATA)
    path = str(root / "c" / "fd")
    baseline = _fds()

    stream = await store.read_raw(ref("fd"))  # closed early
    await stream.__anext__()
    assert path in _open_paths()
    await stream.aclose()
    assert _fds() == baseline and path not in _open_paths()

    stream = await store.read_raw(ref("fd"))  # exhausted without closing
    assert len(b"".join([bytes(c) async for c in stream])) == len(DATA)
    assert _fds() == baseline

    async with await store.read_raw(ref("fd"), length=10) as small:  # one hop, no file held open
        assert path not in _open_paths()
        assert await small.read() == DATA[:10]

    stream = await store.read_raw(ref("fd"))  # abandoned
    await stream.__anext__()
    with pytest.warns(ResourceWarning, match="unclosed read stream"):
        del stream
        gc.collect()
    assert _fds() == baseline


@pytest.mark.asyncio
async def test_read_stream_close_while_a_read_is_in_flight(store: LocalStore) -> None:
    await store.write_raw(ref("busy"), DATA)
    baseline = _fds()
    for _ in range(20):
        stream = await store.read_raw(ref("busy"))
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # the read is now in a worker thread
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
    assert _fds() == baseline


# -- delete ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delete_prunes_empty_parents_up_to_the_container(store: LocalStore, root: Path) -> None:
    await store.write_raw(ref("a/b/c/d"), b"1")
    await store.write_raw(ref("a/x"), b"2")
    await store.delete(ref("a/b/c/d"))
    assert tree(root) == ["c", "c/a", "c/a/x"]
    await store.delete(ref("a/x"))
    assert tree(root) == ["c"]
    assert (await store.list_page("file://c")) == ([], Cursor.end())


@pytest.mark.asyncio
async def test_delete_and_write_race_in_the_same_directory(store: LocalStore) -> None:
    # Writers recreate a directory a concurrent delete prunes; nothing may fail.
    async def churn(i: int) -> None:
        for j in range(20):
            await store.write_raw(ref(f"deep/dir/{i}-{j}"), b"x")
            await store.delete(ref(f"deep/dir/{i}-{j}"))

    await asyncio.gather(*(churn(i) for i in range(6)))
    assert (await store.list_page(ref("deep"))) == ([], Cursor.end())


# -- copy ----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("copy_file_range", [True, False])
async def test_copy(
    store: LocalStore,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    copy_file_range: bool,
) -> None:
    if not copy_file_range:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    elif not hasattr(os, "copy_file_range"):
        pytest.skip("no copy_file_range here")
    data = os.urandom(3 * 1024 * KiB + 7)
    await store.write_raw(ref("src"), data)
    meta = await store.copy_raw(ref("src"), ref("new/dst"))
    assert meta.size == len(data) and meta == await store.head(ref("new/dst"))
    assert (root / "c" / "new" / "dst").read_bytes() == data
    await store.copy_raw(ref("src"), ref("src"))  # onto itself
    assert await read(store, ref("src")) == data
    empty = await store.write_raw(ref("empty"), b"")
    assert (await store.copy_raw(ref("empty"), ref("empty2"))).size == empty.size == 0
    with pytest.raises(AlreadyExistsError):
        await store.copy_raw(ref("empty"), ref("new/dst"), options=Options(if_not_exists=True))
    assert await read(store, ref("new/dst")) == data
    assert temp_files(root) == []


@pytest.mark.asyncio
async def test_copy_falls_back_when_copy_file_range_refuses(
    store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    data = os.urandom(100 * KiB)
    await store.write_raw(ref("src"), data)
    await store.copy_raw(ref("src"), ref("dst"))
    assert (root / "c" / "dst").read_bytes() == data


@pytest.mark.asyncio
async def test_cancelled_copy_leaves_nothing(
    store: LocalStore,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = threading.Event()

    def slow_copy(src: int, dst: int, count: int) -> int:
        started.set()
        time.sleep(0.05)
        return os.write(dst, os.read(src, 1))

    monkeypatch.setattr(os, "copy_file_range", slow_copy, raising=False)
    await store.write_raw(ref("src"), b"x" * 1000)
    task = asyncio.create_task(store.copy_raw(ref("src"), ref("dst")))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The copy thread saw the cancellation and removed its temp file before the task ended.
    assert tree(root) == ["c", "c/src"]


# -- listing -------------------------------------------------------------------------------------------------

TRICKY = [
    "a/b",
    "a-c",
    "a.b",
    "a0",
    "a/b0/x",
    "a b/c",
    "a%20b",
    "100%",
    "A",
    "é",
    "日本/語",
    "\U0001f600",
    "z/\uff5e",
    "~",
]


async def _fill(store: LocalStore, keys: list[str]) -> None:
    for k in keys:
        await store.write_raw(ref(k), k.encode())


def _keys(entries_refs: Sequence[str]) -> list[str]:
    from flytestore.reference import split_reference

    return [split_reference(r)[2] for r in entries_refs]


@pytest.mark.asyncio
async def test_listing_is_in_utf8_key_order(store: LocalStore) -> None:
    await _fill(store, TRICKY)
    entries = [e async for e in store.list("file://c")]
    expected = sorted(TRICKY, key=lambda k: k.encode("utf-8"))
    assert expected == sorted(TRICKY)  # code point order is UTF-8 byte order
    assert _keys([e.ref for e in entries]) == expected
    assert [e.size for e in entries] == [len(k.encode()) for k in expected]
    for e in entries:
        head = await store.head(e.ref)
        assert (e.etag, e.last_modified) == (head.etag, head.last_modified)
    # Directory-aware: "a" lists a/..., not a-c or a.b.
    assert _keys([e.ref async for e in store.list(ref("a"))]) == ["a/b", "a/b0/x"]


@pytest.mark.asyncio
@pytest.mark.parametrize("page", [1, 2, 3, 5, 100])
async def test_pagination_resumes_strictly_after_the_cursor(store: LocalStore, page: int) -> None:
    await _fill(store, TRICKY)
    expected = sorted(TRICKY)
    got: list[str] = []
    cursor = Cursor.start()
    pages = 0
    while not cursor.is_end():
        refs, cursor = await store.list_page("file://c", max_items=page, cursor=cursor)
        assert len(refs) <= page
        if not cursor.is_end():
            assert len(refs) == page and cursor == Cursor.at(_keys(refs)[-1])
        got += _keys(refs)
        pages += 1
    assert got == expected
    # The page that exhausts the listing says so (no empty trailing page when it can be avoided).
    assert pages == max(1, -(-len(expected) // page))


@pytest.mark.asyncio
async def test_cursor_positions_need_not_be_keys(store: LocalStore) -> None:
    await _fill(store, TRICKY)
    expected = sorted(TRICKY)

    async def after(position: str) -> list[str]:
        refs, cursor = await store.list_page("file://c", max_items=1000, cursor=Cursor.at(position))
        assert cursor.is_end()
        return _keys(refs)

    assert await after("") == expected
    assert await after("a/") == [k for k in expected if k > "a/"]
    assert await after("a/b/zzz") == [k for k in expected if k > "a/b/zzz"]  # inside a skipped sub-tree
    assert await after("a/b0") == ["a/b0/x", *[k for k in expected if k > "a/b0/x"]]
    assert await after("\U0010ffff") == []
    await store.delete(ref("a0"))  # resuming after a key deleted since
    assert await after("a0") == [k for k in expected if k > "a0"]


@pytest.mark.asyncio
async def test_bad_cursors(store: LocalStore) -> None:
    await _fill(store, ["k"])
    with pytest.raises(InvalidArgumentError):
        await store.list_page("file://c", cursor=Cursor.end())
    with pytest.raises(InvalidArgumentError, match="cursor position"):
        await store.list_page("file://c", cursor=Cursor.at(42))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await store.list_page("file://c", max_items=0)


@pytest.mark.asyncio
async def test_listing_hides_temp_files_and_in_flight_writes(store: LocalStore, root: Path) -> None:
    await _fill(store, ["d/visible"])
    (root / "c" / ".stray.flytestore-tmp-deadbeef").write_bytes(b"left by a crash")
    (root / "c" / "d" / ".x.flytestore-tmp-0").write_bytes(b"left by a crash")
    waiting = asyncio.Event()

    async def payload() -> AsyncIterator[bytes]:
        yield b"w" * (3 * CHUNK)
        waiting.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.write_raw(ref("d/in-flight"), payload()))
    await waiting.wait()
    try:
        assert len(temp_files(root)) == 3
        assert _keys([e.ref async for e in store.list("file://c")]) == ["d/visible"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_listing_missing_prefixes_and_containers(store: LocalStore, root: Path) -> None:
    await _fill(store, ["file"])
    assert await store.list_page(ref("missing/prefix")) == ([], Cursor.end())
    assert await store.list_page(ref("file")) == ([], Cursor.end())  # a file is not a prefix
    with pytest.raises(NotFoundError, match=r"container \[no-such-container\] does not exist"):
        await store.list_page("file://no-such-container")  # as listing a missing bucket is


@pytest.mark.asyncio
async def test_listing_skips_names_that_are_not_utf8(store: LocalStore, root: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX byte file names")
    await _fill(store, ["ok"])
    try:
        write(Path(os.fsdecode(bytes(root / "c") + b"/bad\xff")), b"?")
    except OSError:
        pytest.skip("the filesystem refuses non-UTF-8 names")
    assert _keys([e.ref async for e in store.list("file://c")]) == ["ok"]


@pytest.mark.asyncio
async def test_listing_a_deep_tree_in_pages(store: LocalStore) -> None:
    keys = [f"{a}/{b}/{c}" for a in "xyz" for b in ("p", "p-q", "p.q", "pq") for c in range(5)]
    await asyncio.gather(*(store.write_raw(ref(k), b"") for k in keys))
    got = [e.ref async for e in store.list("file://c", page_size=7)]
    assert _keys(got) == sorted(keys)


# -- thread hops ------------------------------------------------------------------------------------------


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.calls = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


@pytest.mark.asyncio
async def test_thread_hops_per_operation(root: Path) -> None:
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)  # shut down with the test's loop
    store = LocalStore(root, container="c", chunk_size=CHUNK)
    await store.open()

    async def count(coro: Any) -> int:
        before = executor.calls
        await coro
        return executor.calls - before

    assert await count(store.write_raw(ref("small"), b"x" * 100)) == 1
    assert await count(store.head(ref("small"))) == 1
    assert await count(read(store, ref("small"))) == 1
    assert await count(store.copy_raw(ref("small"), ref("copy"))) == 1
    assert await count(store.delete(ref("copy"))) == 1
    assert await count(store.list_page("file://c")) == 1
    # Streaming: one hop to open, one per chunk (the last read stops at the known size).
    assert await count(store.write_raw(ref("big"), DATA)) == 1 + 3 + 1  # prepare, 3 full batches, commit
    assert await count(read(store, ref("big"))) == 1 + -(-len(DATA) // CHUNK)


# -- the cancellation helper ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_run_settled_waits_for_the_thread_before_propagating_cancellation() -> None:
    started = threading.Event()
    finished = threading.Event()
    stop_asked = threading.Event()
    undone: list[str] = []

    def work() -> str:
        started.set()
        stop_asked.wait(5)
        time.sleep(0.02)
        finished.set()
        return "resource"

    task = asyncio.create_task(local_module._run_settled(work, on_cancel=stop_asked.set, undo=undone.append))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set() and undone == ["resource"]
