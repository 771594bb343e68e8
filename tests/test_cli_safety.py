"""The command never loses an object: each data-safety rule of ``flytestore``, end to end, on
trees of 2,000 files (local disk and moto's S3).

- a missing or empty source is exit 3 for cp, sync and sync --delete, and deletes nothing;
- --delete deletes only after every copy succeeded;
- a destination inside the source is refused (exit 2), nothing written;
- no command creates a bucket; a missing one is an error naming it;
- --dry-run on cp, sync, rm and mv changes nothing;
- mv keeps every source whose copy failed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_run import S3Bucket, flytestore, s3_bucket, s3_config, tree
from .servers_s3 import MotoS3

N = 2000


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``root``: content and mtime (what "changed nothing" compares)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory holding ``src/`` (2,000 files) and ``victim/`` (2,000 files), which no
    test may change."""
    work = tmp_path_factory.mktemp("safety")
    tree(work / "src", N)
    tree(work / "victim", N)
    return work


@pytest.fixture(scope="module")
def s3(s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Bucket, dict[str, str]]]:
    """A bucket with ``src/`` and ``victim/`` of 2,000 objects each, and the env naming its config."""
    work = tmp_path_factory.mktemp("s3safety")
    tree(work / "src", N)
    for bucket in s3_bucket(s3_server):
        env = {"FLYTESTORE_CONFIG": str(s3_config(s3_server, work / "s3.yaml", bucket.name))}
        for prefix in ("src", "victim"):
            run = flytestore("cp", "-r", "-q", str(work / "src"), f"s3://{bucket.name}/{prefix}", cwd=work, env=env)
            assert run.code == 0, run
        yield bucket, env


# -- a missing or empty source ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["sync", "--delete", "srcc", "victim"], ["sync", "srcc", "victim"], ["cp", "-r", "srcc", "victim"]],
    ids=["sync-delete", "sync", "cp-r"],
)
def test_a_misspelled_local_source_is_not_found_and_deletes_nothing(local_tree: Path, argv: list[str]) -> None:
    before = snapshot(local_tree / "victim")
    run = flytestore(*argv, cwd=local_tree)
    assert run.code == 3, run
    assert "srcc" in run.err and "Traceback" not in run.err
    assert snapshot(local_tree / "victim") == before


def test_an_empty_source_directory_is_not_found(local_tree: Path) -> None:
    (local_tree / "empty").mkdir(exist_ok=True)
    before = snapshot(local_tree / "victim")
    for argv in (["sync", "--delete", "empty", "victim"], ["cp", "-r", "empty", "victim"], ["mv", "-r", "empty", "x"]):
        run = flytestore(*argv, cwd=local_tree)
        assert run.code == 3, (argv, run)
        assert "empty" in run.err
    assert snapshot(local_tree / "victim") == before


def test_a_misspelled_s3_source_deletes_nothing(s3: tuple[S3Bucket, dict[str, str]], tmp_path: Path) -> None:
    bucket, env = s3
    run = flytestore(
        "sync", "--delete", f"s3://{bucket.name}/srcc", f"s3://{bucket.name}/victim", cwd=tmp_path, env=env
    )
    assert run.code == 3, run
    assert f"s3://{bucket.name}/srcc" in run.err
    assert len(bucket.sizes("victim/")) == N


# -- --delete only after a successful copy phase ------------------------------------------------------


def test_sync_delete_withholds_deletes_when_a_copy_fails(tmp_path: Path) -> None:
    """A destination file where the source has a directory makes one copy fail: the objects
    --delete would remove stay, and the exit code says something failed."""
    tree(tmp_path / "src", N)
    dst = tmp_path / "dst"
    tree(dst, 50)
    for i in range(5):
        (dst / f"extra{i}.txt").write_bytes(b"keep me")
    (dst / "d0").rename(tmp_path / "d0-moved")
    (dst / "d0").write_bytes(b"a file where src has a directory")
    before = snapshot(dst)
    run = flytestore("sync", "--delete", "src", "dst", "--json", cwd=tmp_path)
    assert run.code == 1, run
    summary = json.loads(run.out)
    assert summary["deleted"] == 0 and summary["deletes_withheld"] >= 5
    assert len(summary["failed"]) == N // 10
    assert all(f["src"].startswith("src/d0/") for f in summary["failed"])
    after = snapshot(dst)
    assert {rel for rel in before if rel not in after} == set()  # nothing deleted
    assert "not deleted" in run.err

    (dst / "d0").unlink()  # fixed: now the deletes happen
    run = flytestore("sync", "--delete", "src", "dst", "--json", cwd=tmp_path)
    assert run.code == 0, run
    assert json.loads(run.out)["deleted"] == 5
    assert snapshot(dst).keys() == snapshot(tmp_path / "src").keys()


# -- a destination inside the source --------------------------------------------------------------


@pytest.mark.parametrize("command", [["cp", "-r"], ["sync"], ["sync", "--delete"], ["mv", "-r"]])
def test_a_local_destination_inside_the_source_is_refused(local_tree: Path, command: list[str]) -> None:
    before = snapshot(local_tree / "src")
    for dst in ("src/zz", "src", f"file://{local_tree}/src/d1/deeper"):
        run = flytestore(*command, "src", dst, cwd=local_tree)
        assert run.code == 2, (dst, run)
        assert "overlap" in run.err
    assert snapshot(local_tree / "src") == before


def test_an_s3_destination_inside_the_source_is_refused(s3: tuple[S3Bucket, dict[str, str]], tmp_path: Path) -> None:
    bucket, env = s3
    run = flytestore("cp", "-r", f"s3://{bucket.name}/src", f"s3://{bucket.name}/src/zz", cwd=tmp_path, env=env)
    assert run.code == 2, run
    assert len(bucket.sizes("src/")) == N


# -- no bucket is ever created -----------------------------------------------------------------------------


def test_no_command_creates_a_bucket(s3_server: MotoS3, tmp_path: Path) -> None:
    missing = f"no-such-bukcet-{os.getpid()}"
    env = {"FLYTESTORE_CONFIG": str(s3_config(s3_server, tmp_path / "s3.yaml", missing))}
    (tmp_path / "a.txt").write_bytes(b"a")
    for argv in (
        ["ls"],
        ["ls", f"s3://{missing}/x"],
        ["cp", "a.txt", f"s3://{missing}/a.txt"],
        ["du", f"s3://{missing}"],
    ):
        run = flytestore(*argv, cwd=tmp_path, env=env)
        assert run.code == 3, (argv, run)
        assert missing in run.err and "Traceback" not in run.err
    check = flytestore("ls", f"s3://{missing}", cwd=tmp_path, env=env)
    assert check.code == 3, check  # still missing


# -- dry runs change nothing ----------------------------------------------------------------------------


def test_dry_runs_change_nothing_locally(tmp_path: Path) -> None:
    tree(tmp_path / "src", N)
    assert flytestore("sync", "-q", "src", "victim", cwd=tmp_path).code == 0
    (tmp_path / "victim" / "extra.txt").write_bytes(b"extra")
    (tmp_path / "victim" / "d1" / "f00001.bin").write_bytes(b"changed!" * 2)
    before_src, before_dst = snapshot(tmp_path / "src"), snapshot(tmp_path / "victim")
    cases = {
        ("cp", "-r", "--dry-run", "src", "out"): ("copy", N),
        ("sync", "--delete", "--dry-run", "src", "victim"): ("copy", 1),
        ("mv", "-r", "--dry-run", "src", "out"): ("move", N),
        ("rm", "-r", "--dry-run", "victim"): ("delete", N + 1),
        ("mv", "--dry-run", "src/d1/f00001.bin", "out.bin"): ("move", 1),
        ("cp", "--dry-run", "src/d1/f00001.bin", "out.bin"): ("copy", 1),
    }
    for argv, (verb, n) in cases.items():
        run = flytestore(*argv, cwd=tmp_path)
        assert run.code == 0, (argv, run)
        assert sum(line.startswith(f"(dry run) {verb}: ") for line in run.out.splitlines()) == n, argv
        assert "nothing changed" in run.out
    run = flytestore("sync", "--delete", "--dry-run", "--json", "src", "victim", cwd=tmp_path)
    plan = json.loads(run.out)
    assert plan["dry_run"] and (plan["copied"], plan["skipped"], plan["deleted"]) == (1, N - 1, 1)
    assert [(a["action"], a["dst"]) for a in plan["actions"]] == [
        ("copy", "victim/d1/f00001.bin"),
        ("delete", "victim/extra.txt"),
    ]
    assert snapshot(tmp_path / "src") == before_src
    assert snapshot(tmp_path / "victim") == before_dst
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.bin").exists()


def test_dry_runs_change_nothing_on_s3(s3: tuple[S3Bucket, dict[str, str]], tmp_path: Path) -> None:
    bucket, env = s3
    b = f"s3://{bucket.name}"
    for argv in (["rm", "-r", "--dry-run", f"{b}/victim"], ["mv", "-r", "--dry-run", f"{b}/victim", f"{b}/moved"]):
        run = flytestore(*argv, cwd=tmp_path, env=env)
        assert run.code == 0, run
        assert sum(line.startswith("(dry run) ") for line in run.out.splitlines()) == N
    assert len(bucket.sizes("victim/")) == N
    assert bucket.sizes("moved/") == {}


# -- mv keeps what it could not copy ----------------------------------------------------------------------


def test_mv_keeps_the_sources_whose_copy_failed(tmp_path: Path) -> None:
    files = tree(tmp_path / "src", N)
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "d3").write_bytes(b"a file where the move needs a directory")
    run = flytestore("mv", "-r", "src", "dst", "--json", cwd=tmp_path)
    assert run.code == 1, run
    summary = json.loads(run.out)
    assert len(summary["failed"]) == N // 10
    left = snapshot(tmp_path / "src")
    assert sorted(left) == sorted(rel for rel in files if rel.startswith("d3/"))  # kept, unchanged
    assert all(left[rel][0] == files[rel] for rel in left)
    moved = snapshot(tmp_path / "dst")
    assert all(moved[rel][0] == files[rel] for rel in files if not rel.startswith("d3/"))


def test_rm_r_of_2000_s3_objects(s3_server: MotoS3, tmp_path: Path) -> None:
    tree(tmp_path / "src", N)
    for bucket in s3_bucket(s3_server):
        env = {"FLYTESTORE_CONFIG": str(s3_config(s3_server, tmp_path / "s3.yaml", bucket.name))}
        assert flytestore("cp", "-r", "-q", "src", f"s3://{bucket.name}/gone", cwd=tmp_path, env=env).code == 0
        bucket.write("gone-not/kept", b"a sibling prefix")
        run = flytestore("rm", "-r", f"s3://{bucket.name}/gone", cwd=tmp_path, env=env)
        assert run.code == 2 and "--yes" in run.err, run  # stdin is not a terminal
        run = flytestore("rm", "-r", "--yes", f"s3://{bucket.name}/gone", cwd=tmp_path, env=env)
        assert run.code == 0, run
        assert f"{N} deleted, 0 failed" in run.out
        assert bucket.sizes() == {"gone-not/kept": 16}
