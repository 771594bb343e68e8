"""The rules that keep a bulk transfer from losing an object, and sync's rclone-like notion of
change, on local disk and on S3 (moto), on trees of 2,000 files where a rule is about scale."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from flytestore import Config, DataStore, Metadata, NotFoundError, Options, PermissionDeniedError, Scope
from flytestore.errors import InvalidArgumentError
from flytestore.layers.base import Layer
from flytestore.mtime import format_mtime, mtime_of, parse_mtime
from flytestore.transfer import (
    DELETE_BATCH,
    Action,
    Progress,
    copy_many,
    copy_tree,
    delete_refs,
    delete_tree,
    du,
    move_many,
    move_tree,
    overlaps,
    prefix_pairs,
    sync,
)

from .servers_s3 import MotoS3

BIG = 2000


def scope() -> Scope:
    return Scope("flyte:storage", registry=CollectorRegistry())


def write_tree(root: Path, n: int, size: int = 64, stamp: float | None = None) -> None:
    """``n`` files ``f-<i>`` (every tenth under ``sub/``) of ``size`` bytes, straight to disk."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    for i in range(n):
        path = root / ("sub" if i % 10 == 0 else "") / f"f-{i:05d}"
        path.write_bytes(f"{i:08d}".encode() * (size // 8))
        if stamp is not None:
            os.utime(path, (stamp, stamp))


def files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below ``root``."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def keys(store: Any, prefix: str) -> dict[str, int]:
    return {str(e.ref): e.size async for e in store.list(prefix)}


@pytest_asyncio.fixture
async def disk(tmp_path: Path) -> AsyncIterator[tuple[DataStore, Path]]:
    """A local DataStore over ``tmp_path`` (container ``c``) and the container's directory."""
    config = Config(type="local", container="c", local={"path": str(tmp_path)})
    async with DataStore(config, scope=scope()) as store:
        yield store, tmp_path / "c"


@pytest_asyncio.fixture
async def s3(s3_server: MotoS3, tmp_path: Path) -> AsyncIterator[tuple[DataStore, str, Path]]:
    """An S3 DataStore on moto (a fresh bucket) with ``file://c/...`` routed to local disk."""
    bucket = f"sync-{uuid.uuid4().hex[:12]}"
    config = Config.from_dict(
        {
            "type": "s3",
            "container": bucket,
            "stow": {"kind": "s3", "config": s3_server.stow_config()},
            "schemes": {"file": {"kind": "local", "config": {"path": str(tmp_path)}}},
        }
    )
    (tmp_path / "c").mkdir()
    async with DataStore(config, scope=scope()) as store:
        yield store, f"s3://{bucket}", tmp_path / "c"


class FailOne(Layer):
    """Fails the copy of one source reference (a permission error: not retried)."""

    def __init__(self, inner: Any, victim: str) -> None:
        super().__init__(inner)
        self.victim = victim

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        if src == self.victim:
            raise PermissionDeniedError(f"copy of [{src}] refused (simulated)")
        return await self.inner.copy_raw(src, dst, options=options)


class CountingDeletes(Layer):
    """Counts the calls and batch sizes of ``delete_many`` (single deletes of the inner store)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.batches: list[int] = []

    async def delete_many(self, refs: Sequence[str]) -> list[BaseException | None]:
        self.batches.append(len(refs))
        out: list[BaseException | None] = []
        for ref in refs:
            try:
                await self.inner.delete(ref)
                out.append(None)
            except NotFoundError:
                out.append(None)
            except Exception as err:
                out.append(err)
        return out


class SingleDeletes:
    """A store with single deletes only (no ``delete_many``), counting them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.deletes = 0

    async def delete(self, ref: str) -> None:
        self.deletes += 1
        await self.inner.delete(ref)

    def __getattr__(self, name: str) -> Any:
        if name == "delete_many":
            raise AttributeError(name)
        return getattr(self.inner, name)


# ---------------------------------------------------------------------------------------------
# Never lose an object: a missing or empty source


async def test_sync_delete_from_a_missing_source_deletes_nothing_on_disk(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "victim", BIG)
    before = files(root / "victim")
    for delete in (True, False):
        with pytest.raises(NotFoundError, match=r"file://c/srcc"):
            await sync(store, "file://c/srcc", "file://c/victim", delete=delete)
    with pytest.raises(NotFoundError, match=r"file://c/srcc"):
        await copy_tree(store, "file://c/srcc", "file://c/victim")
    with pytest.raises(NotFoundError, match=r"file://c/srcc"):
        [pair async for pair in prefix_pairs(store, "file://c/srcc", "file://c/victim")]
    with pytest.raises(NotFoundError, match=r"file://c/srcc"):
        await delete_tree(store, "file://c/srcc")
    (root / "empty" / "dir").mkdir(parents=True)  # directories, but no object: empty
    with pytest.raises(NotFoundError, match=r"file://c/empty"):
        await sync(store, "file://c/empty", "file://c/victim", delete=True)
    assert files(root / "victim") == before


async def test_sync_delete_from_a_missing_source_deletes_nothing_on_s3(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "data", BIG)
    assert (await copy_tree(store, "file://c/data", f"{bucket}/victim")).copied == BIG
    before = await keys(store, f"{bucket}/victim")
    with pytest.raises(NotFoundError, match=rf"{bucket}/srcc"):
        await sync(store, f"{bucket}/srcc", f"{bucket}/victim", delete=True)
    with pytest.raises(NotFoundError, match="file://c/nope"):
        await sync(store, "file://c/nope", f"{bucket}/victim", delete=True)
    assert await keys(store, f"{bucket}/victim") == before and len(before) == BIG


async def test_a_single_object_is_not_a_prefix(disk: tuple[DataStore, Path]) -> None:
    store, _ = disk
    await store.write_raw("file://c/one.txt", b"x")
    with pytest.raises(InvalidArgumentError, match=r"\[file://c/one.txt\] is an object, not a prefix"):
        await sync(store, "file://c/one.txt", "file://c/out", delete=True)
    summary = await copy_many(store, [("file://c/one.txt", "file://c/out/one.txt")])  # cp of one object
    assert summary.copied == 1 and await store.read_bytes("file://c/out/one.txt") == b"x"


# -- a destination inside the source -----------------------------------------------------------


async def test_a_copy_into_its_own_subprefix_terminates_on_disk(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", BIG)
    original = files(root / "src")
    assert overlaps("file://c/src", "file://c/src/zz")
    summary = await copy_tree(store, "file://c/src", "file://c/src/zz", concurrency=16)
    assert summary.ok and summary.copied == BIG
    assert files(root / "src" / "zz") == original
    assert len(files(root / "src")) == 2 * BIG
    again = await sync(store, "file://c/src", "file://c/src/zz/", delete=True)  # the copy is not its source
    assert again.ok and (again.copied, again.skipped, again.deleted) == (0, BIG, 0)
    assert len(files(root / "src")) == 2 * BIG


async def test_a_copy_into_its_own_subprefix_terminates_on_s3(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "data", BIG)
    assert (await copy_tree(store, "file://c/data", f"{bucket}/src")).copied == BIG
    summary = await copy_tree(store, f"{bucket}/src", f"{bucket}/src/zz")
    assert summary.ok and summary.copied == BIG
    listed = await keys(store, f"{bucket}/src")
    assert len(listed) == 2 * BIG
    assert len([k for k in listed if k.startswith(f"{bucket}/src/zz/")]) == BIG


async def test_overwriting_the_source_or_deleting_it_is_refused(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "a" / "sub", 20)
    (root / "a" / "sub" / "sub").mkdir(exist_ok=True)
    (root / "a" / "sub" / "sub" / "deeper").write_bytes(b"would land on a/sub/deeper")
    (root / "a" / "sub" / "deeper").write_bytes(b"a source object")
    before = files(root)
    with pytest.raises(InvalidArgumentError, match="overwrite its own source object"):
        await copy_tree(store, "file://c/a/sub", "file://c/a")
    with pytest.raises(InvalidArgumentError, match="would delete the source"):
        await sync(store, "file://c/a/sub/sub", "file://c/a", delete=True)
    with pytest.raises(InvalidArgumentError, match="same prefix"):
        await sync(store, "file://c/a", "file://c/a/")
    assert files(root) == before


def test_overlaps() -> None:
    assert overlaps("s3://b/a", "s3://b/a/sub") and overlaps("s3://b/a/sub/", "s3://b/a")
    assert overlaps("s3://b/a", "s3://b/a/") and overlaps("s3://b", "s3://b/x")
    assert overlaps("abfs://c/k", "abfss://c@acct.dfs.core.windows.net/k/x")
    assert overlaps("file://c/a%20b", "file://c/a b/x")
    assert not overlaps("s3://b/a", "s3://b/ab")
    assert not overlaps("s3://b/a", "s3://other/a")
    assert not overlaps("s3://b/a", "gs://b/a")
    assert not overlaps("file://c/a", "mem://c/a")


# -- delete only after every copy succeeded ------------------------------------------------------


async def test_a_failed_copy_withholds_every_delete(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", BIG)
    write_tree(root / "dst", 50)
    for i in range(30):
        (root / "dst" / f"extra-{i}").write_bytes(b"only in the destination")
    before = files(root / "dst")
    failing = FailOne(store, "file://c/src/f-00007")
    summary = await sync(failing, "file://c/src", "file://c/dst", delete=True)
    assert [f.src for f in summary.failed] == ["file://c/src/f-00007"]
    assert summary.deleted == 0 and summary.deletes_withheld == 30
    assert summary.copied == BIG - 1
    after = files(root / "dst")
    assert all(after[name] == content for name, content in before.items() if name.startswith("extra"))
    summary = await sync(store, "file://c/src", "file://c/dst", delete=True)  # fixed: now it deletes
    assert summary.ok and summary.copied == 1 and summary.deleted == 30 and summary.deletes_withheld == 0
    assert files(root / "dst") == files(root / "src")


# ---------------------------------------------------------------------------------------------
# Sync decides change as rclone does


async def test_a_second_sync_copies_nothing_on_disk(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", 600, stamp=float(int(time.time())))  # all in one second
    write_tree(root / "src2", 600)  # just written: the same second as their copies
    for src in ("src", "src2"):
        first = await sync(store, f"file://c/{src}", f"file://c/m-{src}")
        assert first.ok and first.copied == 600
        second = await sync(store, f"file://c/{src}", f"file://c/m-{src}")
        assert second.ok and (second.copied, second.skipped) == (0, 600)
        for name in ("f-00001", "sub/f-00010"):
            assert (
                os.stat(root / src / name).st_mtime_ns // 1000 == os.stat(root / f"m-{src}" / name).st_mtime_ns // 1000
            )


async def test_a_second_sync_copies_nothing_local_to_s3(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "src", 600)
    first = await sync(store, "file://c/src", f"{bucket}/m")
    assert first.ok and first.copied == 600
    meta = await store.head(f"{bucket}/m/f-00001")
    assert parse_mtime(meta.user_metadata["mtime"]) == os.stat(root / "src" / "f-00001").st_mtime_ns // 1000 * 1000
    second = await sync(store, "file://c/src", f"{bucket}/m")
    assert second.ok and (second.copied, second.skipped) == (0, 600)
    back = await sync(store, f"{bucket}/m", "file://c/back")  # and the time comes back to disk
    assert back.copied == 600
    assert (await sync(store, f"{bucket}/m", "file://c/back")).copied == 0
    assert (
        os.stat(root / "back" / "f-00001").st_mtime_ns // 1000 == os.stat(root / "src" / "f-00001").st_mtime_ns // 1000
    )


async def older_mtime_is_copied(store: DataStore, root: Path, dst: str) -> None:
    write_tree(root / "src", 10)
    assert (await sync(store, "file://c/src", dst)).copied == 10
    path = root / "src" / "f-00003"
    old = path.stat().st_mtime - 3600
    path.write_bytes(path.read_bytes()[::-1])  # same size, new content ...
    os.utime(path, (old, old))  # ... and a modification time moved back
    summary = await sync(store, "file://c/src", dst)
    assert (summary.copied, summary.skipped) == (1, 9)
    assert await store.read_bytes(f"{dst}/f-00003") == path.read_bytes()


async def test_same_size_with_an_older_mtime_is_copied_on_disk(disk: tuple[DataStore, Path]) -> None:
    await older_mtime_is_copied(*disk, "file://c/mirror")


async def test_same_size_with_an_older_mtime_is_copied_to_s3(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    await older_mtime_is_copied(store, root, f"{bucket}/mirror")


async def test_checksum_compares_content_not_times(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "src", 10)
    assert (await sync(store, "file://c/src", f"{bucket}/m")).copied == 10
    for path in (root / "src").rglob("f-*"):
        os.utime(path, (1_000_000, 1_000_000))  # every time changed, no content
    target = root / "src" / "f-00004"
    stamp = target.stat().st_mtime
    target.write_bytes(target.read_bytes()[::-1])
    os.utime(target, (stamp, stamp))
    summary = await sync(store, "file://c/src", f"{bucket}/m", checksum=True)
    assert (summary.copied, summary.skipped) == (1, 9)
    assert await store.read_bytes(f"{bucket}/m/f-00004") == target.read_bytes()
    assert (await sync(store, "file://c/src", f"{bucket}/m")).copied == 9  # without: the times differ


async def test_sync_filters_select_both_sides(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    for rel in ("a.csv", "x/b.csv", "x/c.txt", "logs/1.log", "logs/deep/2.log", "top.txt"):
        (root / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / rel).write_bytes(rel.encode())
    (root / "dst").mkdir()
    (root / "dst" / "keep.bin").write_bytes(b"excluded: never deleted")
    (root / "dst" / "gone.csv").write_bytes(b"selected and not in the source: deleted")
    summary = await sync(
        store, "file://c/src", "file://c/dst", include=["*.csv", "logs/**"], exclude=["/logs/deep/"], delete=True
    )
    assert summary.ok and (summary.copied, summary.deleted) == (3, 1)
    assert sorted(files(root / "dst")) == ["a.csv", "keep.bin", "logs/1.log", "x/b.csv"]
    assert await du(store, "file://c/src", include=["*.txt"]) == (2, len("x/c.txt") + len("top.txt"))
    with pytest.raises(InvalidArgumentError):
        await sync(store, "file://c/src", "file://c/dst", include=[""])


def test_mtime_text_is_rclones() -> None:
    assert format_mtime(1_733_250_000_123_456_789) == "1733250000.123456789"
    assert format_mtime(1_733_250_000_500_000_000) == "1733250000.5"
    assert format_mtime(1_733_250_000_000_000_000) == "1733250000"
    assert parse_mtime("1733250000.123456789") == 1_733_250_000_123_456_789
    assert parse_mtime("nope") is None and parse_mtime("inf") is None
    meta = Metadata(exists=True, user_metadata={"Mtime": "1733250000.5"})
    when = mtime_of(meta)
    assert when is not None and when.ns == 1_733_250_000_500_000_000


async def test_a_local_write_with_mtime_metadata_sets_the_files_mtime(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    options = Options(metadata={"mtime": "1733250000.123456789"})
    await store.write_raw("file://c/w", b"x", options=options)
    await store.write_raw("file://c/stream", (b"y" * 1000 for _ in range(300)), options=options)
    await store.copy_raw("file://c/w", "file://c/copy", options=options)
    for name in ("w", "stream", "copy"):
        assert (root / name).stat().st_mtime_ns == 1_733_250_000_123_456_789


# ---------------------------------------------------------------------------------------------
# Dry runs change nothing


async def test_dry_runs_change_nothing(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", BIG)
    write_tree(root / "dst", 100)
    (root / "dst" / "extra").write_bytes(b"x")
    assert (await sync(store, "file://c/src", "file://c/dst")).copied == BIG  # dst now mirrors src
    for i in range(5):
        (root / "src" / f"new-{i}").write_bytes(b"new")
    (root / "src" / "f-00001").write_bytes(b"changed")
    before = files(root)

    plan = await sync(store, "file://c/src", "file://c/dst", delete=True, dry_run=True)
    assert plan.dry_run and (plan.copied, plan.skipped, plan.deleted) == (6, BIG - 1, 1)
    kinds = [a.kind for a in plan.actions]
    assert kinds.count("copy") == 6 and kinds.count("skip") == BIG - 1
    assert Action("delete", "", "file://c/dst/extra", 0) in plan.actions
    assert Action("copy", "file://c/src/f-00001", "file://c/dst/f-00001", 7) in plan.actions

    assert (await copy_tree(store, "file://c/src", "file://c/other", dry_run=True)).copied == BIG + 5
    moved = await move_tree(store, "file://c/src", "file://c/moved", dry_run=True)
    assert (moved.copied, moved.deleted) == (BIG + 5, BIG + 5) and {a.kind for a in moved.actions} == {"move"}
    removed = await delete_tree(store, "file://c/dst", dry_run=True)
    assert removed.deleted == BIG + 1 and len(removed.actions) == BIG + 1
    assert (await copy_many(store, [("file://c/src/new-1", "file://c/x")], dry_run=True)).copied == 1
    assert (await delete_refs(store, ["file://c/src/new-1"], dry_run=True)).deleted == 1
    assert files(root) == before


# ---------------------------------------------------------------------------------------------
# mv, du, rm


async def test_move_tree_deletes_verified_sources(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "src", 50, size=1000)
    original = files(root / "src")
    summary = await move_tree(store, "file://c/src", f"{bucket}/moved")
    assert summary.ok and (summary.copied, summary.deleted) == (50, 50)
    assert files(root / "src") == {}
    for rel, content in original.items():
        assert await store.read_bytes(f"{bucket}/moved/{rel}") == content
    back = await move_tree(store, f"{bucket}/moved", "file://c/back")
    assert back.ok and await keys(store, f"{bucket}/moved") == {} and files(root / "back") == original


async def test_move_keeps_a_source_whose_copy_failed(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", 10)
    failing = FailOne(store, "file://c/src/f-00002")
    pairs = [(f"file://c/src/f-{i:05d}", f"file://c/dst/f-{i:05d}") for i in range(1, 10)]
    summary = await move_many(failing, pairs)
    assert [f.src for f in summary.failed] == ["file://c/src/f-00002"]
    assert (summary.copied, summary.deleted) == (8, 8)
    assert sorted(files(root / "src")) == ["f-00002", "sub/f-00000"]


async def test_du(s3: tuple[DataStore, str, Path]) -> None:
    store, bucket, root = s3
    write_tree(root / "src", 30, size=80)
    assert await du(store, "file://c/src") == (30, 30 * 80)
    await copy_tree(store, "file://c/src", f"{bucket}/d")
    assert await du(store, f"{bucket}/d") == (30, 30 * 80)
    assert await du(store, f"{bucket}/d/sub") == (3, 3 * 80)
    assert await du(store, f"{bucket}/nothing") == (0, 0)


async def test_deletes_go_in_batches_with_progress(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    n = 2 * DELETE_BATCH + 500
    write_tree(root / "big", n, size=8)
    counting = CountingDeletes(store)
    seen: list[Progress] = []
    summary = await delete_tree(counting, "file://c/big", progress=seen.append)
    assert summary.ok and summary.deleted == n and files(root / "big") == {}
    assert counting.batches == [DELETE_BATCH, DELETE_BATCH, 500]
    deletes = [(p.objects_done, p.objects_total) for p in seen if p.phase == "delete"]
    assert deletes == [(0, n), (DELETE_BATCH, n), (2 * DELETE_BATCH, n), (n, n)]
    write_tree(root / "few", 5, size=8)
    refs = [f"file://c/few/f-{i:05d}" for i in range(1, 5)] + ["file://c/few/missing"]
    single = SingleDeletes(store)  # a store without delete_many: one delete per object
    summary = await delete_refs(single, refs, concurrency=2)
    assert summary.ok and summary.deleted == 5 and sorted(files(root / "few")) == ["sub/f-00000"]
    assert single.deletes == 5


# ---------------------------------------------------------------------------------------------
# Progress: the total as soon as the listing knows it


async def test_the_total_is_reported_before_the_first_copy(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", 2500, size=16)
    seen: list[Progress] = []
    summary = await copy_tree(store, "file://c/src", "mem://out/x", progress=seen.append)
    assert summary.ok and summary.copied == 2500
    listing = [p for p in seen if p.phase == "list"]
    assert [p.listed for p in listing] == [1000, 2000]
    assert all(p.objects_total is None for p in listing)
    copies = [p for p in seen if p.phase == "copy"]
    assert (copies[0].objects_done, copies[0].objects_total, copies[0].bytes_total) == (0, 2500, 2500 * 16)
    assert all(p.objects_total == 2500 and p.bytes_total == 2500 * 16 for p in copies)
    assert copies[-1].objects_done == 2500 and copies[-1].bytes_done == 2500 * 16


async def test_cancelling_a_sync_before_the_delete_phase_deletes_nothing(disk: tuple[DataStore, Path]) -> None:
    store, root = disk
    write_tree(root / "src", 200)
    (root / "dst").mkdir()
    (root / "dst" / "extra").write_bytes(b"x")
    started = asyncio.Event()

    def on_progress(p: Progress) -> None:
        if p.phase == "copy" and p.objects_done > 0:
            started.set()

    task = asyncio.create_task(
        sync(store, "file://c/src", "file://c/dst", delete=True, concurrency=2, progress=on_progress)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (root / "dst" / "extra").read_bytes() == b"x"
