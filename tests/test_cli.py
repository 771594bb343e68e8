"""The ``flytestore`` command, run in-process through ``main`` against a local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flytestore.cli import EXIT_FAILURES, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORAGE, EXIT_USAGE, main

COMMANDS = ("ls", "cat", "stat", "cp", "rm", "sync", "url")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FLYTESTORE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "c" / "data" / "sub").mkdir(parents=True)
    (tmp_path / "c" / "data" / "a.txt").write_bytes(b"hello\n")
    (tmp_path / "c" / "data" / "sub" / "b.bin").write_bytes(b"\x00\x01" * 1000)
    (tmp_path / "c" / "top.txt").write_bytes(b"top")
    return tmp_path


def run(root: Path, *argv: str) -> int:
    return main(["--type", "local", "--container", "c", "--root", str(root), *argv])


def test_ls_plain(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "ls") == EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "file://c/data/a.txt",
        "file://c/data/sub/b.bin",
        "file://c/top.txt",
    ]
    assert run(root, "ls", "-l", "file://c/data/sub") == EXIT_OK
    size, modified, ref = capsys.readouterr().out.strip().split("\t")
    assert (size, ref) == ("2000", "file://c/data/sub/b.bin")
    assert modified.startswith("20")


def test_ls_json(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--json", "ls", "file://c/data") == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ref"], r["size"]) for r in rows] == [("file://c/data/a.txt", 6), ("file://c/data/sub/b.bin", 2000)]
    assert all(set(r) == {"ref", "size", "etag", "last_modified"} and r["etag"] for r in rows)


def test_ls_single_object_and_missing(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "ls", "file://c/top.txt") == EXIT_OK
    assert capsys.readouterr().out == "file://c/top.txt\n"
    assert run(root, "ls", "file://c/nothing") == EXIT_NOT_FOUND
    assert "not found" in capsys.readouterr().err


def test_cat(root: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run(root, "cat", "file://c/data/a.txt", "file://c/top.txt") == EXIT_OK
    assert capsysbinary.readouterr().out == b"hello\ntop"
    assert run(root, "cat", "file://c/data/sub/b.bin") == EXIT_OK
    assert capsysbinary.readouterr().out == b"\x00\x01" * 1000


def test_cat_download_limit(root: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    big = b"x" * (3 * 1024 * 1024)
    (root / "c" / "big.bin").write_bytes(big)
    assert run(root, "cat", "file://c/big.bin") == EXIT_STORAGE
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    assert b"limit exceeded" in captured.err
    assert run(root, "cat", "--no-limit", "file://c/big.bin") == EXIT_OK
    assert capsysbinary.readouterr().out == big


def test_stat(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "stat", "file://c/data/a.txt") == EXIT_OK
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["size"] == "6"
    assert lines["ref"] == "file://c/data/a.txt"
    assert {"etag", "content-type", "last-modified"} <= set(lines)
    assert run(root, "--json", "stat", "file://c/data/a.txt") == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 6 and info["etag"] and info["last_modified"]


def test_not_found_exit_code(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "stat", "file://c/missing") == EXIT_NOT_FOUND
    assert run(root, "cat", "file://c/missing") == EXIT_NOT_FOUND
    assert run(root, "cp", "file://c/missing", "file://c/x") == EXIT_NOT_FOUND
    assert run(root, "cp", "-r", "file://c/missing", "file://c/x") == EXIT_NOT_FOUND
    assert run(root, "rm", "file://c/missing") == EXIT_NOT_FOUND
    assert "missing" in capsys.readouterr().err


def test_cp_single(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "cp", "file://c/data/a.txt", "file://c/copy.txt") == EXIT_OK
    assert (root / "c" / "copy.txt").read_bytes() == b"hello\n"
    assert "1 copied" in capsys.readouterr().out
    # Into a "directory": several sources, or a destination ending in '/'.
    assert run(root, "cp", "file://c/data/a.txt", "file://c/top.txt", "file://c/into/") == EXIT_OK
    assert (root / "c" / "into" / "a.txt").read_bytes() == b"hello\n"
    assert (root / "c" / "into" / "top.txt").read_bytes() == b"top"


def test_cp_recursive(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--json", "cp", "-r", "file://c/data", "file://c/backup") == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["copied"] == 2 and summary["ok"] and summary["bytes"] == 2006
    assert (root / "c" / "backup" / "a.txt").read_bytes() == b"hello\n"
    assert (root / "c" / "backup" / "sub" / "b.bin").read_bytes() == b"\x00\x01" * 1000


def test_cp_partial_failure_exit_code(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(root, "cp", "file://c/data/a.txt", "file://c/missing", "file://c/out/")
    assert code == EXIT_FAILURES
    captured = capsys.readouterr()
    assert "1 copied" in captured.out and "1 failed" in captured.out
    assert "file://c/missing" in captured.err


def test_sync_twice(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--json", "sync", "file://c/data", "file://c/mirror") == EXIT_OK
    first = json.loads(capsys.readouterr().out)
    assert (first["copied"], first["skipped"]) == (2, 0)
    assert run(root, "--json", "sync", "file://c/data", "file://c/mirror") == EXIT_OK
    second = json.loads(capsys.readouterr().out)
    assert (second["copied"], second["skipped"]) == (0, 2)
    (root / "c" / "mirror" / "extra.txt").write_bytes(b"extra")
    assert run(root, "sync", "--delete", "file://c/data", "file://c/mirror") == EXIT_OK
    assert "1 deleted" in capsys.readouterr().out
    assert not (root / "c" / "mirror" / "extra.txt").exists()


def test_rm_single(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "rm", "file://c/top.txt") == EXIT_OK
    assert not (root / "c" / "top.txt").exists()


def test_rm_recursive_needs_yes(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert run(root, "rm", "-r", "file://c/data") == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
    assert (root / "c" / "data" / "a.txt").exists()
    assert run(root, "rm", "-r", "--yes", "file://c/data") == EXIT_OK
    assert "2 deleted" in capsys.readouterr().out
    assert not (root / "c" / "data" / "a.txt").exists()
    assert not (root / "c" / "data" / "sub" / "b.bin").exists()
    assert (root / "c" / "top.txt").exists()


def test_rm_recursive_interactive(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    assert run(root, "rm", "-r", "file://c/data") == EXIT_USAGE
    assert (root / "c" / "data" / "a.txt").exists()
    monkeypatch.setattr(sys, "stdin", Tty("yes\n"))
    assert run(root, "rm", "-r", "file://c/data") == EXIT_OK
    assert not (root / "c" / "data" / "a.txt").exists()
    assert "delete 2 objects" in capsys.readouterr().err


def test_url_unsupported_backend(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "url", "file://c/top.txt") == EXIT_STORAGE
    assert "unsupported" in capsys.readouterr().err


def test_bad_usage(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert main(["frobnicate"]) == EXIT_USAGE
    assert run(root, "cp", "file://c/top.txt") == EXIT_USAGE
    assert run(root, "url", "--method", "DELETE", "file://c/top.txt") == EXIT_USAGE
    assert run(root, "cp", "--concurrency", "0", "file://c/a", "file://c/b") == EXIT_USAGE
    capsys.readouterr()
    # An unknown scheme, or a bucket-less reference: a usage error that names it.
    assert main(["ls", "s4://bucket/key"]) == EXIT_USAGE
    assert "unknown scheme [s4://]" in capsys.readouterr().err
    assert main(["ls", "s3:///key"]) == EXIT_USAGE
    assert "names no bucket" in capsys.readouterr().err


def test_bad_config_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--type", "nonsense", "ls", "file://c"]) == EXIT_USAGE
    assert "type" in capsys.readouterr().err


def test_config_file_and_precedence(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = root / "flyte.yaml"
    config.write_text(f"storage:\n  type: local\n  container: other\n  stow:\n    config:\n      path: {root}\n")
    # No command creates a container: a missing one is not found.
    assert main(["--config", str(config), "ls", "file://other"]) == EXIT_NOT_FOUND
    assert not (root / "other").exists()
    (root / "other").mkdir()
    assert main(["--config", str(config), "ls", "file://other"]) == EXIT_OK
    capsys.readouterr()
    # The environment overrides the file, the flags override both.
    monkeypatch.setenv("FLYTESTORE_CONTAINER", "c")
    assert main(["--config", str(config), "cat", "file://c/top.txt"]) == EXIT_OK
    assert capsys.readouterr().out == "top"
    monkeypatch.setenv("FLYTESTORE_CONTAINER", "nope")
    assert main(["--config", str(config), "--container", "c", "cat", "file://c/top.txt"]) == EXIT_OK
    assert capsys.readouterr().out == "top"


def test_implicit_local_store(root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    assert main(["cat", "file://c/top.txt"]) == EXIT_OK
    assert capsys.readouterr().out == "top"


def test_implicit_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "mem://bucket/nothing"]) == EXIT_NOT_FOUND


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "flytestore " in out.split("examples:", 1)[1]


def test_python_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flytestore", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout
    assert "exit codes" in result.stdout


def test_progress_on_a_terminal(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert run(root, "cp", "-r", "file://c/data", "file://c/p") == EXIT_OK
    captured = capsys.readouterr()
    assert "\rcp " in captured.err and "2/2" in captured.err
    assert "\r" not in captured.out and "2 copied" in captured.out
    assert run(root, "sync", "--no-progress", "file://c/data", "file://c/p") == EXIT_OK
    assert "\r" not in capsys.readouterr().err


def test_plain_progress_lines_when_piped(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "sync", "file://c/data", "file://c/q") == EXIT_OK
    captured = capsys.readouterr()
    assert "\r" not in captured.err
    assert "sync: 2/2 objects (100%)" in captured.err.splitlines()[-1]
    assert captured.out.startswith("2 copied, 0 skipped, 0 failed")
    assert run(root, "sync", "--no-progress", "file://c/data", "file://c/r") == EXIT_OK
    assert capsys.readouterr().err == ""
