"""Session fixture for the azure backend: Azurite's blob service on a free 127.0.0.1 port.

Azurite comes from npm, pinned to 3.35.0 (3.36+ needs Node 22). It is installed by the fixture
itself into a cache directory (``$FLYTESTORE_CACHE_DIR/azurite``, default
``~/.cache/flytestore/azurite``) the first time it is needed, under a file lock so parallel
sessions do not install over each other. Without ``npm``/``node`` the azure tests are skipped.
``benchmarks/bench_azure.py`` reuses ``start_azurite`` and ``AzuriteServer`` from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from .servers import HOST, free_port, http_ready, run_server

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no install lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["azurite"]

AZURITE_VERSION = "3.35.0"
#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteServer:
    """What a client needs to reach the running Azurite blob service."""

    port: int
    account: str = ACCOUNT
    key: str = KEY

    @property
    def endpoint(self) -> str:
        """The blob endpoint (path-style: the account is the first path segment)."""
        return f"http://{HOST}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.endpoint};"
        )


def _cache_dir() -> str:
    root = os.environ.get("FLYTESTORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "flytestore"
    )
    return os.path.join(root, "azurite")


def _installed_version(prefix: str) -> str | None:
    try:
        with open(os.path.join(prefix, "node_modules", "azurite", "package.json"), encoding="utf-8") as f:
            version = json.load(f).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def azurite_blob() -> str:
    """The path of the pinned ``azurite-blob`` launcher, installing it on first use.

    Raises ``RuntimeError`` with the reason when it cannot be installed (callers skip on it).
    """
    prefix = _cache_dir()
    binary = os.path.join(prefix, "node_modules", ".bin", "azurite-blob")
    if _installed_version(prefix) == AZURITE_VERSION and os.path.exists(binary):
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Azurite needs node and npm on PATH (npm install azurite@" + AZURITE_VERSION + ")")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".install.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another session (xdist worker) may be installing now
        if _installed_version(prefix) != AZURITE_VERSION or not os.path.exists(binary):
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", prefix, f"azurite@{AZURITE_VERSION}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=600,
                check=False,
            )
            if result.returncode != 0 or not os.path.exists(binary):
                output = result.stdout.decode(errors="replace")[-2000:]
                raise RuntimeError(f"npm install azurite@{AZURITE_VERSION} failed ({result.returncode}):\n{output}")
    return binary


@contextlib.contextmanager
def start_azurite(binary: str | None = None, *, prefix: Sequence[str] = ()) -> Iterator[AzuriteServer]:
    """Run an in-memory Azurite blob service on a free loopback port until the block exits.

    ``prefix`` goes before the command (the benchmark pins the server with ``taskset``).
    """
    binary = binary or azurite_blob()
    port = free_port()
    argv = [
        *prefix,
        binary,
        "--blobHost",
        HOST,
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--silent",
        # Mandatory: the Python SDK sends a newer x-ms-version than Azurite 3.35 knows.
        "--skipApiVersionCheck",
        "--disableTelemetry",
    ]
    with run_server(argv, http_ready(f"http://{HOST}:{port}/"), port=port, cwd=os.path.dirname(binary)):
        yield AzuriteServer(port)


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """A running Azurite blob service for the whole session (tests use their own containers)."""
    try:
        binary = azurite_blob()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"Azurite is not available: {err}")
    with start_azurite(binary) as server:
        yield server
