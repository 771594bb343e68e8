"""fsspec's own abstract test suite (``fsspec.tests.abstract``) against DataStoreFileSystem over
memory, local disk, S3 (moto), GCS (fake-gcs-server), Azure (Azurite) and Redis, wired as s3fs and
gcsfs wire it: ``fs``, ``fs_join`` and ``fs_path`` per backend, the local side from fsspec.

Object stores have no empty directories (``supports_empty_directories`` is False, as for s3fs):
a directory exists while an object is under it. Each test gets a fresh prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

fsspec = pytest.importorskip("fsspec")
abstract = pytest.importorskip("fsspec.tests.abstract")

from flytestore import Config  # noqa: E402
from flytestore.fsspec import DataStoreFileSystem  # noqa: E402

from .servers_azure import AzuriteServer  # noqa: E402
from .servers_redis import RedisServer  # noqa: E402
from .servers_s3 import MotoS3  # noqa: E402


def _unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class _Suite(
    abstract.AbstractCopyTests,
    abstract.AbstractGetTests,
    abstract.AbstractPutTests,
    abstract.AbstractOpenTests,
    abstract.AbstractPipeTests,
    abstract.AbstractFixtures,
):
    """The five abstract suites; subclasses give ``config`` and ``base``."""

    @pytest.fixture
    def backend(self) -> tuple[Config, str]:  # (config, base reference with its container)
        raise NotImplementedError

    @pytest.fixture
    def fs(self, backend: tuple[Config, str]) -> Iterator[DataStoreFileSystem]:
        fs = DataStoreFileSystem(config=backend[0], skip_instance_cache=True)
        yield fs
        fs._finalizer()  # close its sessions now, on fsspec's loop

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(str(p) for p in parts)

    @pytest.fixture
    def fs_path(self, backend: tuple[Config, str], fs: DataStoreFileSystem) -> Iterator[str]:
        path = f"{backend[1]}/{_unique()}"
        yield path
        if fs.exists(path):
            fs.rm(path, recursive=True)

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


class TestMemory(_Suite):
    @pytest.fixture
    def backend(self) -> tuple[Config, str]:
        return Config(type="mem"), f"mem://{_unique('b')}"


class TestLocal(_Suite):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> tuple[Config, str]:
        root = tmp_path / "root"
        root.mkdir()
        return Config(type="local", container="bucket", local={"path": str(root)}), "file://bucket"


class TestS3(_Suite):
    @pytest.fixture
    def backend(self, s3_server: MotoS3) -> tuple[Config, str]:
        bucket = _unique("fs")
        config = Config(type="stow", container=bucket, stow={"kind": "s3", "config": s3_server.stow_config()})
        return config, f"s3://{bucket}"


class TestGCS(_Suite):
    @pytest.fixture
    def backend(self, gcs_server: str) -> tuple[Config, str]:
        bucket = _unique("fs")
        config = Config(
            type="stow",
            container=bucket,
            stow={"kind": "google", "config": {"endpoint": gcs_server, "project_id": "test"}},
        )
        return config, f"gs://{bucket}"


class TestAzure(_Suite):
    @pytest.fixture
    def backend(self, azurite: AzuriteServer) -> tuple[Config, str]:
        container = _unique("fs")
        settings = {"connection_string": azurite.connection_string}
        config = Config(type="stow", container=container, stow={"kind": "azure", "config": settings})
        return config, f"abfs://{container}"


class TestRedis(_Suite):
    @pytest.fixture
    def backend(self, redis_server: RedisServer) -> tuple[Config, str]:
        return Config(type="redis", redis={"addr": redis_server.addr}), f"redis://{redis_server.addr}"


def _unused(_: Any) -> None:  # keeps the imports used for type checkers
    pass
