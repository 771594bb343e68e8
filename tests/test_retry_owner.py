"""One retry owner: the store stack. With ``retries.maxAttempts: 3``, a request the server keeps
throttling is sent exactly 3 times whichever way it is made: a DataStore call, ``copy_many``
(streamed across backends or copied server-side), ``sync``, the ``flytestore cp`` and ``sync``
commands. A 4xx is sent once.

The S3 server is the session's moto, behind a ``ThrottleProxy`` (``tests/throttle.py``) that
answers the PUTs of one key with the error under test and counts every request it receives; the
rest of the traffic (bucket checks, HEADs, GETs, other keys) reaches moto unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import yaml

from flytestore import Config, DataStore, PermissionDeniedError, StorageError, TransientError
from flytestore.cli import EXIT_FAILURES, EXIT_OK, EXIT_STORAGE, main
from flytestore.retry import DEFAULT_RETRIES
from flytestore.transfer import copy_many, sync

from .servers_s3 import MotoS3, drop_bucket
from .throttle import ThrottleProxy

pytest.importorskip("aiobotocore")

RETRIES = {"maxAttempts": 3, "baseDelay": "1ms", "maxDelay": "2ms"}

#: (status, S3 error code, requests the server receives, the error the caller gets)
OUTCOMES = [
    pytest.param(503, "SlowDown", 3, TransientError, id="503-SlowDown"),
    pytest.param(500, "InternalError", 3, TransientError, id="500-InternalError"),
    pytest.param(403, "AccessDenied", 1, PermissionDeniedError, id="403-AccessDenied"),
]


@pytest.fixture
def throttle(s3_server: MotoS3) -> Iterator[ThrottleProxy]:
    port = urlsplit(s3_server.endpoint).port
    assert port is not None
    with ThrottleProxy(port) as proxy:
        yield proxy


async def _make_bucket(server: MotoS3, bucket: str) -> None:
    from flytestore.stores.s3 import S3Store

    async with S3Store(server.settings(), container=bucket):
        pass  # opening creates the container


async def _drop_bucket(server: MotoS3, bucket: str) -> None:
    from flytestore.stores.s3 import S3Store

    async with S3Store(server.settings(), container=bucket, create_container=False) as direct:
        await drop_bucket(direct, bucket)


async def _read_direct(server: MotoS3, ref: str) -> bytes:
    from flytestore.stores.s3 import S3Store

    async with S3Store(server.settings(), create_container=False) as direct:
        return await direct.read_bytes(ref)


@pytest_asyncio.fixture
async def bucket(s3_server: MotoS3) -> AsyncIterator[str]:
    name = f"retries-{uuid.uuid4().hex[:12]}"
    await _make_bucket(s3_server, name)
    try:
        yield name
    finally:
        await _drop_bucket(s3_server, name)


def storage(server: MotoS3, proxy: ThrottleProxy, bucket: str, **extra: Any) -> dict[str, Any]:
    """Flyte's ``storage:`` section: S3 through the proxy, mem:// routed to memory."""
    section: dict[str, Any] = {
        "type": "s3",
        "container": bucket,
        "stow": {"kind": "s3", "config": server.stow_config(endpoint=proxy.endpoint)},
        "retries": RETRIES,
    }
    section.update(extra)
    return section


# -- a DataStore call ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "sent", "error"), OUTCOMES)
async def test_a_datastore_write_is_sent_max_attempts_times(
    s3_server: MotoS3, throttle: ThrottleProxy, bucket: str, status: int, code: str, sent: int, error: type[Exception]
) -> None:
    async with DataStore(Config.from_dict(storage(s3_server, throttle, bucket))) as store:
        throttle.refuse("PUT", f"/{bucket}/k", status, code)
        with pytest.raises(error):
            await store.write_raw(f"s3://{bucket}/k", b"payload")
        assert throttle.count("PUT", f"/{bucket}/k") == sent


async def test_a_datastore_write_throttled_twice_succeeds_on_the_third_attempt(
    s3_server: MotoS3, throttle: ThrottleProxy, bucket: str
) -> None:
    async with DataStore(Config.from_dict(storage(s3_server, throttle, bucket))) as store:
        throttle.refuse("PUT", f"/{bucket}/k", 503, "SlowDown", times=2)
        await store.write_raw(f"s3://{bucket}/k", b"payload")
    assert throttle.count("PUT", f"/{bucket}/k") == 3
    assert await _read_direct(s3_server, f"s3://{bucket}/k") == b"payload"


# -- copy_many and sync ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["streamed", "server-side"])
@pytest.mark.parametrize(("status", "code", "sent", "error"), OUTCOMES)
async def test_copy_many_sends_a_throttled_put_max_attempts_times(
    s3_server: MotoS3,
    throttle: ThrottleProxy,
    bucket: str,
    route: str,
    status: int,
    code: str,
    sent: int,
    error: type[Exception],
) -> None:
    """Streamed: mem:// -> s3:// (the stack cannot replay the stream; the whole copy is retried
    within the one budget). Server-side: s3:// -> s3:// (a CopyObject, retried by the stack)."""
    async with DataStore(Config.from_dict(storage(s3_server, throttle, bucket))) as store:
        src = "mem://src/k" if route == "streamed" else f"s3://{bucket}/src"
        await store.write_raw(src, b"payload")
        throttle.refuse("PUT", f"/{bucket}/dst", status, code)
        summary = await copy_many(store, [(src, f"s3://{bucket}/dst")])
        assert summary.copied == 0 and len(summary.failed) == 1
        assert isinstance(summary.failed[0].error, error)
        assert throttle.count("PUT", f"/{bucket}/dst") == sent


@pytest.mark.parametrize("route", ["streamed", "server-side"])
async def test_copy_many_throttled_twice_succeeds_on_the_third_attempt(
    s3_server: MotoS3, throttle: ThrottleProxy, bucket: str, route: str
) -> None:
    async with DataStore(Config.from_dict(storage(s3_server, throttle, bucket))) as store:
        src = "mem://src/k" if route == "streamed" else f"s3://{bucket}/src"
        await store.write_raw(src, b"payload")
        throttle.refuse("PUT", f"/{bucket}/dst", 503, "SlowDown", times=2)
        summary = await copy_many(store, [(src, f"s3://{bucket}/dst")])
        assert summary.ok and summary.copied == 1
    assert throttle.count("PUT", f"/{bucket}/dst") == 3
    assert await _read_direct(s3_server, f"s3://{bucket}/dst") == b"payload"


async def test_without_a_retries_section_the_one_default_applies(
    s3_server: MotoS3, throttle: ThrottleProxy, bucket: str
) -> None:
    section = storage(s3_server, throttle, bucket)
    del section["retries"]
    config = Config.from_dict(section).with_overrides(retries={"base_delay": 0.001, "max_delay": 0.002})
    assert config.retries.max_attempts == DEFAULT_RETRIES.attempts
    async with DataStore(config) as store:
        await store.write_raw("mem://src/k", b"payload")
        throttle.refuse("PUT", f"/{bucket}/dst", 503, "SlowDown")
        summary = await copy_many(store, [("mem://src/k", f"s3://{bucket}/dst")])
        assert len(summary.failed) == 1
        assert throttle.count("PUT", f"/{bucket}/dst") == DEFAULT_RETRIES.attempts


@pytest.mark.parametrize(("status", "code", "sent", "error"), OUTCOMES)
async def test_sync_sends_a_throttled_put_max_attempts_times(
    s3_server: MotoS3, throttle: ThrottleProxy, bucket: str, status: int, code: str, sent: int, error: type[Exception]
) -> None:
    async with DataStore(Config.from_dict(storage(s3_server, throttle, bucket))) as store:
        await store.write_raw("mem://src/p/a", b"throttled")
        await store.write_raw("mem://src/p/b", b"fine")
        throttle.refuse("PUT", f"/{bucket}/mirror/a", status, code)
        summary = await sync(store, "mem://src/p", f"s3://{bucket}/mirror")
        assert summary.copied == 1 and len(summary.failed) == 1
        failure = summary.failed[0]
        assert failure.dst == f"s3://{bucket}/mirror/a" and isinstance(failure.error, error)
        assert throttle.count("PUT", f"/{bucket}/mirror/a") == sent
        assert throttle.count("PUT", f"/{bucket}/mirror/b") == 1
        assert throttle.count("HEAD", f"/{bucket}/mirror/a") == 1  # sync's look at the destination


# -- the command ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["cp", "sync"])
@pytest.mark.parametrize(("status", "code", "sent", "error"), OUTCOMES)
def test_the_command_sends_a_throttled_put_max_attempts_times(
    tmp_path: Path,
    s3_server: MotoS3,
    throttle: ThrottleProxy,
    command: str,
    status: int,
    code: str,
    sent: int,
    error: type[Exception],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``flytestore cp``/``sync`` of a local file into S3 (a streamed cross-backend copy)."""
    bucket = f"retries-{uuid.uuid4().hex[:12]}"
    asyncio.run(_make_bucket(s3_server, bucket))
    try:
        (tmp_path / "data" / "c" / "in").mkdir(parents=True)
        (tmp_path / "data" / "c" / "in" / "a.txt").write_bytes(b"payload")
        section = storage(
            s3_server, throttle, bucket, schemes={"file": {"kind": "local", "config": {"path": str(tmp_path / "data")}}}
        )
        config = tmp_path / "storage.yaml"
        config.write_text(yaml.safe_dump({"storage": section}))
        throttle.refuse("PUT", f"/{bucket}/out/a.txt", status, code)
        if command == "cp":
            argv = ["cp", "--no-progress", "file://c/in/a.txt", f"s3://{bucket}/out/a.txt"]
            expected = EXIT_STORAGE  # one object: its own error decides
        else:
            argv = ["sync", "--no-progress", "file://c/in", f"s3://{bucket}/out"]
            expected = EXIT_FAILURES
        assert main(["--config", str(config), *argv]) == expected
        assert throttle.count("PUT", f"/{bucket}/out/a.txt") == sent
        assert code in capsys.readouterr().err

        throttle.clear()  # the server recovers: the same command now succeeds in one request
        throttle.reset_counts()
        assert main(["--config", str(config), *argv]) == EXIT_OK
        assert throttle.count("PUT", f"/{bucket}/out/a.txt") == 1
        assert asyncio.run(_read_direct(s3_server, f"s3://{bucket}/out/a.txt")) == b"payload"
    finally:
        asyncio.run(_drop_bucket(s3_server, bucket))
    assert issubclass(error, StorageError)
