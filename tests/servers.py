"""Shared plumbing for the real servers the tests start: free loopback ports, process start,
readiness polling (never sleeps), and teardown of only the processes we started, by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_ready(url: str) -> Callable[[], bool]:
    """Ready once ``url`` answers any HTTP status."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return check


def tcp_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            return False

    return check


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: str

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]


@contextlib.contextmanager
def run_server(
    argv: Sequence[str],
    ready: Callable[[], bool],
    *,
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    cwd: str | None = None,
) -> Iterator[Server]:
    """Start ``argv``, poll ``ready`` every 20 ms until it holds (or fail with the server's log),
    yield, then stop the process we started: SIGTERM, wait, SIGKILL if it lingers."""
    with tempfile.NamedTemporaryFile(prefix="flytestore-server-", suffix=".log") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        server = Server(process, port, log.name)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if process.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {process.returncode}:\n{server.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{argv[0]} not ready after {timeout}s:\n{server.log()}")
                time.sleep(0.02)  # polling interval, not a wait for readiness
            yield server
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, with its process group (npx spawns node as a child)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
