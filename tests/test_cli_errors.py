"""Bad input to the ``flytestore`` command, as a subprocess: the exit code (2 usage, 3 not found,
4 other storage errors) and one line naming the problem, never a traceback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .cli_run import flytestore


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_bytes(b"a")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["ls", "s4://bucket/key"], "unknown scheme [s4://]"),
        (["cp", "data/a.txt", "ftp://host/x"], "unknown scheme [ftp://]"),
        (["ls", "s3://"], "names no bucket"),
        (["cp", "data/a.txt", "s3:///key"], "names no bucket"),
        (["cat", "file://data/../../etc/passwd"], "leaves the local root"),
        (["ls", "file://../x"], "leaves the local root"),
        (["--config", "missing.yaml", "ls", "data"], "missing.yaml"),
        (["cp", "data/a.txt"], "needs a source and a destination"),
        (["frobnicate"], "invalid choice"),
        (["cp", "--concurrency", "0", "data/a.txt", "b"], "at least 1"),
    ],
)
def test_usage_errors(work: Path, argv: list[str], names: str) -> None:
    run = flytestore(*argv, cwd=work)
    assert run.code == 2, run
    assert names in run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("storage: [unclosed", "invalid YAML"),
        ("storage:\n  type: local\n  contianer: c\n", "contianer"),
        ("storage:\n  type: local\n  container: c\n  local:\n    path: /tmp\n    pth: /x\n", "pth"),
        ("storage:\n  type: nonsense\n", "type"),
    ],
    ids=["invalid-yaml", "unknown-key", "unknown-local-key", "bad-type"],
)
def test_bad_config_files(work: Path, text: str, names: str) -> None:
    (work / "bad.yaml").write_text(text)
    for env in ({"FLYTESTORE_CONFIG": str(work / "bad.yaml")}, {}):
        argv = ["ls", "data"] if env else ["--config", "bad.yaml", "ls", "data"]
        run = flytestore(*argv, cwd=work, env=env)
        assert run.code == 2, run
        assert names in one_line(run.err)


def test_an_unreadable_config_file(work: Path) -> None:
    (work / "dir.yaml").mkdir()  # exists, cannot be read as a file (even by root)
    run = flytestore("--config", "dir.yaml", "ls", "data", cwd=work)
    assert run.code == 2, run
    assert "dir.yaml" in one_line(run.err)


@pytest.mark.parametrize(
    "argv",
    [
        ["cat", "data/missing.txt"],
        ["stat", "data/missing.txt"],
        ["cp", "data/missing.txt", "out.txt"],
        ["mv", "data/missing.txt", "out.txt"],
        ["rm", "data/missing.txt"],
        ["ls", "data/missing.txt"],
        ["du", "data/missing.txt"],
        ["cp", "-r", "missing-dir", "out"],
    ],
)
def test_not_found_names_the_reference(work: Path, argv: list[str]) -> None:
    run = flytestore(*argv, cwd=work)
    assert run.code == 3, run
    assert ("missing-dir" if "-r" in argv else "data/missing.txt") in one_line(run.err)


def test_the_help_example_tunes_the_download_limit(work: Path) -> None:
    (work / "data" / "big.bin").write_bytes(b"x" * (3 * 1024 * 1024))
    run = flytestore("cat", "data/big.bin", cwd=work)
    assert run.code == 4 and "limit" in one_line(run.err), run
    run = flytestore("cat", "data/big.bin", cwd=work, env={"FLYTESTORE_LIMITS__MAXDOWNLOADMBS": "0"})
    assert (run.code, len(run.out)) == (0, 3 * 1024 * 1024), run.err


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_silent_endpoint_fails_within_the_configured_timeout(work: Path, silent_endpoint: str) -> None:
    section = {
        "type": "s3",
        "container": "bucket",
        "stow": {
            "kind": "s3",
            "config": {"auth_type": "accesskey", "access_key_id": "k", "secret_key": "s", "endpoint": silent_endpoint},
        },
        "defaultHttpClient": {"timeout": "1s"},
        "retries": {"maxAttempts": 1},
    }
    (work / "s3.yaml").write_text(yaml.safe_dump({"storage": section}))
    start = time.monotonic()
    run = flytestore("--config", "s3.yaml", "ls", "s3://bucket/x", cwd=work, timeout=60)
    elapsed = time.monotonic() - start
    assert run.code == 4, run
    assert "timed out" in one_line(run.err).lower() or "timeout" in run.err.lower()
    assert elapsed < 15, elapsed  # the 1 s timeout (and start-up), not botocore's 60 s
