"""Run the ``flytestore`` command as users do: ``python -m flytestore ...`` in a subprocess.

Shared by ``tests/test_cli_*.py``: the command's environment holds no ``FLYTESTORE_*`` variable
but those a test passes; ``s3_config`` writes a Flyte ``storage:`` file for the moto server;
``tree`` writes a local tree of many small files; ``S3Bucket`` makes and drops a bucket.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .servers_s3 import MotoS3, drop_bucket

__all__ = ["Run", "S3Bucket", "flytestore", "s3_bucket", "s3_config", "tree"]

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # what a failed assertion shows
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def flytestore(
    *argv: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300,
) -> Run:
    """``python -m flytestore *argv`` in ``cwd``; nothing of the test's own FLYTESTORE_* leaks in."""
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLYTESTORE_")}
    environ.pop("COLUMNS", None)
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "flytestore", *argv],
        cwd=cwd,
        env=environ,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def tree(root: Path, n: int, *, size: int = 16) -> dict[str, bytes]:
    """``n`` files below ``root`` in 10 sub-directories; returns {relative path: content}."""
    files: dict[str, bytes] = {}
    for i in range(n):
        rel = f"d{i % 10}/f{i:05d}.bin"
        data = f"{i:08d}".encode() * (size // 8)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


def s3_config(server: MotoS3, path: Path, bucket: str, **extra: Any) -> Path:
    """A Flyte ``storage:`` YAML for the moto server (primary S3, base container ``bucket``)."""
    section: dict[str, Any] = {
        "type": "s3",
        "container": bucket,
        "stow": {"kind": "s3", "config": server.stow_config()},
        **extra,
    }
    path.write_text(yaml.safe_dump({"storage": section}))
    return path


@dataclass(frozen=True)
class S3Bucket:
    server: MotoS3
    name: str

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: {key: size}, listed directly with the S3 client."""
        return asyncio.run(self._call(lambda store: _sizes(store, f"s3://{self.name}/{prefix}")))

    def read(self, key: str) -> bytes:
        return asyncio.run(self._call(lambda store: store.read_bytes(f"s3://{self.name}/{key}")))

    def write(self, key: str, data: bytes) -> None:
        asyncio.run(self._call(lambda store: store.write_raw(f"s3://{self.name}/{key}", data)))

    async def _call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        from flytestore.stores.s3 import S3Store

        async with S3Store(self.server.settings(), container=self.name, create_container=False) as store:
            return await fn(store)


async def _sizes(store: Any, prefix: str) -> dict[str, int]:
    return {str(entry.ref).split("/", 3)[3]: entry.size async for entry in store.list(prefix)}


def s3_bucket(server: MotoS3) -> Iterator[S3Bucket]:
    """A fresh bucket for the block (the generator behind the tests' bucket fixtures)."""
    from flytestore.stores.s3 import S3Store

    name = f"cli-{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        async with S3Store(server.settings(), container=name):
            pass  # opening creates it

    async def drop() -> None:
        async with S3Store(server.settings(), container=name, create_container=False) as store:
            await drop_bucket(store, name)

    asyncio.run(make())
    try:
        yield S3Bucket(server, name)
    finally:
        asyncio.run(drop())
