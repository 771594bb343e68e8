"""S3Store specifics, against moto's server: settings and credentials, signed URLs used by a plain
HTTP client, multipart uploads (and their clean-up on failure and cancellation), the missing-bucket
retry, server-side copies, listing cursors, error mapping and client lifecycle; and the lean request
path (``lean_requests``) against the full aiobotocore one: escaped keys, ranges, error and retry
parity (moto, and a scripted server for the errors moto will not produce), rotating credentials,
streamed bodies and their checks.

Behaviour every backend shares lives in the conformance suite. Multipart tests use 5 MiB parts
(S3's minimum) and ~11 MiB bodies, so that they stay quick while crossing part boundaries.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import gc
import hashlib
import os
import sys
import uuid
import warnings
import zlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import aiohttp
import aiohttp.web
import pytest
import pytest_asyncio

pytest.importorskip("aiobotocore")

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from flytestore import Config, DataStore
from flytestore.errors import (
    AlreadyExistsError,
    ConfigError,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    SizeMismatchError,
    StorageError,
    TransientError,
)
from flytestore.layers import CachedStore, LimitedStore
from flytestore.rawstore import Cursor, Options, SignedURLProperties
from flytestore.stores import _s3lean
from flytestore.stores import s3 as s3_module
from flytestore.stores.base import COALESCE_MAX_REQUEST
from flytestore.stores.s3 import FLYTE_CONTENT_MD5 as FLYTE_MD5
from flytestore.stores.s3 import S3Settings, S3Store, _map_error, from_config, parse_settings

from .servers import free_port
from .servers_s3 import MotoS3, drop_bucket

KiB = 1024
MiB = 1024 * KiB
PART = 5 * MiB
#: Three parts of PART: 5 + 5 + 1 MiB and a few bytes.
BIG = 2 * PART + MiB + 7


def unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest_asyncio.fixture
async def store(s3_server: MotoS3) -> AsyncIterator[S3Store]:
    bucket = unique_bucket()
    s = S3Store(s3_server.settings(), container=bucket, part_size=PART)
    async with s:
        yield s
        await drop_bucket(s, bucket)


@pytest_asyncio.fixture(params=["lean", "full"])
async def either(request: pytest.FixtureRequest, s3_server: MotoS3) -> AsyncIterator[S3Store]:
    """A store on each request path."""
    lean = request.param == "lean"
    bucket = unique_bucket()
    s = S3Store(s3_server.settings(lean_requests=lean), container=bucket, part_size=PART)
    async with s:
        assert isinstance(s.api, s3_module._LeanS3Api) is lean
        yield s
        await drop_bucket(s, bucket)


@pytest_asyncio.fixture
async def pair(s3_server: MotoS3) -> AsyncIterator[tuple[S3Store, S3Store]]:
    """A lean and a full store on the same bucket."""
    bucket = unique_bucket()
    lean = S3Store(s3_server.settings(), container=bucket, part_size=PART, multicontainer=True)
    full = S3Store(s3_server.settings(lean_requests=False), container=bucket, part_size=PART, multicontainer=True)
    async with lean, full:
        assert isinstance(lean.api, s3_module._LeanS3Api) and not isinstance(full.api, s3_module._LeanS3Api)
        yield lean, full
        await drop_bucket(full, bucket)


def capture_requests(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request either path of the store sends (both go through the client's HTTP session)."""
    http = store.api.client._endpoint.http_session
    original = http.send
    sent: list[Any] = []

    async def send(request: Any) -> Any:
        sent.append(request)
        return await original(request)

    monkeypatch.setattr(http, "send", send)
    return sent


def ref(store: S3Store, key: str) -> str:
    return f"s3://{store.container}/{key}"


async def read(store: S3Store, r: str) -> bytes:
    stream = await store.read_raw(r)
    async with stream:
        return await stream.read()


async def uploads(store: S3Store, bucket: str | None = None) -> list[dict[str, Any]]:
    resp = await store.api.client.list_multipart_uploads(Bucket=bucket or store.container)
    return list(resp.get("Uploads", []))


async def blocks(total: int, block: int = 256 * KiB) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield bytes([sent // block % 251]) * n
        sent += n


def expected(total: int, block: int = 256 * KiB) -> bytes:
    return b"".join(bytes([i // block % 251]) * min(block, total - i) for i in range(0, total, block))


# -- settings and credentials -----------------------------------------------------------------------


def test_parse_accesskey_settings(tmp_path: Path) -> None:
    s = parse_settings(
        {
            "auth_type": "accesskey",
            "access_key_id": "AKID",
            "secret_key": "s3cr3t-value",
            "token": "tok-value",
            "region": "eu-west-1",
            "endpoint": "http://127.0.0.1:9000",
            "disable_ssl": "true",
        }
    )
    assert (s.access_key_id, s.secret_access_key, s.session_token) == ("AKID", "s3cr3t-value", "tok-value")
    assert s.region == "eu-west-1" and s.endpoint_url == "http://127.0.0.1:9000"
    assert s.addressing_style == "path"  # the default with an endpoint
    assert not s.use_ssl and s.signature_version == "s3v4"
    assert "s3cr3t" not in repr(s) and "tok-value" not in repr(s)
    store = S3Store(s, container="bucket")
    assert "s3cr3t" not in repr(store) and "tok-value" not in repr(store)


def test_secret_key_path_is_read_and_trimmed(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("  from-a-file\n")
    s = parse_settings({"access_key_id": "AKID", "secret_key": "ignored", "secret_key_path": str(secret_file)})
    assert s.secret_access_key == "from-a-file"


def test_missing_secret_key_path_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"access_key_id": "AKID", "secret_key_path": str(tmp_path / "nope")}, field="stow.config")
    assert info.value.field == "stow.config.secret_key_path"


def test_iam_uses_the_credential_chain() -> None:
    s = parse_settings({"auth_type": "iam", "access_key_id": "AKID", "secret_key": "ignored"})
    assert s.access_key_id is None and s.secret_access_key is None
    # Without auth_type, keys select accesskey and their absence the credential chain.
    assert parse_settings({"region": "us-east-1"}).access_key_id is None
    assert parse_settings({"access_key_id": "A", "secret_key": "B"}).access_key_id == "A"


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"auth_type": "password"}, "auth_type"),
        ({"auth_type": "accesskey", "secret_key": "x"}, "access_key_id"),
        ({"auth_type": "accesskey", "access_key_id": "x"}, "secret_key"),
        ({"endpoint_url": "http://x"}, "endpoint_url"),
        ({"disable_ssl": "maybe"}, "disable_ssl"),
        ({"addressing_style": "diagonal"}, "addressing_style"),
        ({"endpoint": "ftp://host"}, "endpoint"),
        ({"v2_signing": "perhaps"}, "v2_signing"),
        ({"lean_requests": "sometimes"}, "lean_requests"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(settings, field="schemes.s3.config")
    assert info.value.field == f"schemes.s3.config.{field}"


def test_bare_endpoint_gets_a_scheme_from_disable_ssl() -> None:
    assert parse_settings({"endpoint": "minio:9000", "disable_ssl": "true"}).endpoint_url == "http://minio:9000"
    secure = parse_settings({"endpoint": "minio:9000"})
    assert secure.endpoint_url == "https://minio:9000" and secure.use_ssl
    assert parse_settings({}).addressing_style == "auto"
    assert parse_settings({"addressing_style": "virtual", "endpoint": "h:1"}).addressing_style == "virtual"
    assert parse_settings({"v2_signing": "true"}).signature_version == "s3"


def test_lean_requests_setting() -> None:
    assert parse_settings({}).lean_requests is True  # the default
    assert parse_settings({"lean_requests": ""}).lean_requests is True
    assert parse_settings({"lean_requests": "false"}).lean_requests is False
    assert parse_settings({"lean_requests": False}).lean_requests is False
    assert parse_settings({"lean_requests": "on"}).lean_requests is True
    with pytest.raises(ConfigError, match="expected true or false") as info:
        parse_settings({"lean_requests": "fast"})
    assert info.value.field == "stow.config.lean_requests"
    config = Config(type="s3", container="b", stow={"kind": "s3", "config": {"lean_requests": "maybe"}})
    with pytest.raises(ConfigError) as info:
        from_config(config.backend_config(), container="b", multicontainer=False, config=config, field="stow.config")
    assert info.value.field == "stow.config.lean_requests"


def test_http_client_settings_come_from_default_http_client() -> None:
    config = Config(
        type="s3",
        container="b",
        default_http_client={"maxIdleConns": 7, "timeout": "5s", "idleConnTimeout": "30s", "headers": {"X-A": ["1"]}},
    )
    s = parse_settings({}, config=config)
    assert (s.pool_size, s.connect_timeout, s.read_timeout, s.keepalive_timeout) == (7, 5.0, 5.0, 30.0)
    assert dict(s.headers) == {"X-A": "1"}
    client_config = s.client_config()
    assert client_config.max_pool_connections == 7
    assert client_config.signature_version == "s3v4"
    # Built from a config: botocore retries nothing; the DataStore's `retries` section does.
    assert client_config.retries == {"mode": "standard", "max_attempts": 0}


@pytest.mark.parametrize("kind", ["s3", "minio"])
async def test_datastore_from_flyte_config(s3_server: MotoS3, kind: str) -> None:
    bucket = unique_bucket()
    config = Config(type=kind, container=bucket, stow={"kind": "s3", "config": s3_server.stow_config()})
    async with DataStore(config) as ds:
        r = ds.construct_reference(ds.base_container, "a", "b.txt")
        assert r == f"s3://{bucket}/a/b.txt"
        await ds.write_raw(r, b"through the whole stack")
        assert await ds.read_bytes(r) == b"through the whole stack"
        with pytest.raises(NotFoundError):  # multicontainer is off: other buckets are refused
            await ds.head(f"s3://other-{bucket}/x")


async def test_secret_key_path_against_the_server(s3_server: MotoS3, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(s3_server.secret_key + "\n")
    settings = {**s3_server.stow_config(), "secret_key_path": str(secret_file)}
    del settings["secret_key"]
    bucket = unique_bucket()
    store = from_config(
        settings, container=bucket, multicontainer=False, config=Config(type="mem"), field="stow.config"
    )
    async with store:
        await store.write_raw(ref(store, "k"), b"v")
        assert await read(store, ref(store, "k")) == b"v"
        await drop_bucket(store, bucket)


async def test_iam_credentials_from_the_environment(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    settings = {"auth_type": "iam", "endpoint": s3_server.endpoint, "region": "us-east-1"}
    bucket = unique_bucket()
    store = from_config(
        settings, container=bucket, multicontainer=False, config=Config(type="mem"), field="stow.config"
    )
    async with store:
        await store.write_raw(ref(store, "k"), b"v")
        credentials = await store.api.client._get_credentials().get_frozen_credentials()
        assert credentials.access_key == "env-key"
        await drop_bucket(store, bucket)


async def test_no_credentials_is_permission_denied(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    store = S3Store(S3Settings(endpoint_url=s3_server.endpoint, region="us-east-1", addressing_style="path"))
    async with store:
        with pytest.raises(PermissionDeniedError, match=r"s3://some-bucket/k") as info:
            await store.head("s3://some-bucket/k")
    assert isinstance(info.value.__cause__, NoCredentialsError)


@pytest.mark.parametrize("lean", [True, False])
async def test_default_headers_are_sent(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, lean: bool) -> None:
    bucket = unique_bucket()
    store = S3Store(s3_server.settings(headers={"X-Flyte-Test": "yes"}, lean_requests=lean), container=bucket)
    async with store:
        sent = capture_requests(store, monkeypatch)
        await store.write_raw(ref(store, "k"), b"v")
        assert await store.read_bytes(ref(store, "k")) == b"v"
        assert (await store.head(ref(store, "k"))).exists
        await store.list_page(ref(store, ""))
        signed = await store.create_signed_url(ref(store, "k"), SignedURLProperties(scope="GET"))
        await drop_bucket(store, bucket)
    assert [r.method for r in sent[:4]] == ["PUT", "GET", "HEAD", "GET"]
    for request in sent:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        assert headers["x-flyte-test"] == "yes"
        assert "x-flyte-test" in headers["authorization"]  # signed with the request
    assert "x-flyte-test" not in signed.url.lower()  # never signed into URLs


async def test_v2_signing_works(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    store = S3Store(s3_server.settings(signature_version="s3"), container=bucket)
    async with store:
        assert not isinstance(store.api, s3_module._LeanS3Api)  # the lean path signs SigV4 only
        await store.write_raw(ref(store, "k"), b"v2")
        assert await read(store, ref(store, "k")) == b"v2"
        await drop_bucket(store, bucket)


# -- lifecycle -------------------------------------------------------------------------------------


async def test_open_creates_the_bucket_and_tolerates_an_existing_one(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    async with S3Store(s3_server.settings(), container=bucket) as first:
        await first.api.head_bucket(bucket)
        async with S3Store(s3_server.settings(), container=bucket) as second:
            await second.write_raw(f"s3://{bucket}/k", b"x")
        await drop_bucket(first, bucket)


async def test_open_without_create_container(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    async with S3Store(s3_server.settings(), container=bucket, create_container=False) as store:
        with pytest.raises(ClientError):
            await store.api.head_bucket(bucket)
        with pytest.raises(NotFoundError):
            await store.read_raw(ref(store, "k"))


async def test_closed_store_refuses_calls_and_close_is_idempotent(s3_server: MotoS3) -> None:
    store = S3Store(s3_server.settings())
    with pytest.raises(StorageError, match="not open"):
        await store.head("s3://bucket/k")
    await store.open()
    await store.open()  # idempotent: still one client
    await store.aclose()
    await store.aclose()
    with pytest.raises(StorageError, match="not open"):
        await store.head("s3://bucket/k")


async def test_close_releases_every_session(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = S3Store(s3_server.settings(), container=bucket, signing=s3_server.settings())
        async with store:
            await store.write_raw(ref(store, "k"), b"x")
            stream = await store.read_raw(ref(store, "k"))  # left unread: closing the store still works
            await stream.aclose()
            await drop_bucket(store, bucket)
        del store, stream
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_unreachable_server_is_transient_and_leaks_nothing() -> None:
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=1,
        connect_timeout=2,
    )
    store = S3Store(settings, container="unreachable-bucket")
    with pytest.raises(TransientError) as info:
        await store.open()  # the client it created is closed again (-W error would catch a leak)
    assert isinstance(info.value.__cause__, EndpointConnectionError)
    assert "unreachable-bucket" in str(info.value)
    async with S3Store(settings) as bare:
        with pytest.raises(TransientError, match=r"s3://b/k"):
            await bare.write_raw("s3://b/k", b"x")


# -- signed URLs -------------------------------------------------------------------------------------


async def test_signed_get_url_works_with_plain_aiohttp(store: S3Store) -> None:
    r = ref(store, "dir/signed file.txt")
    await store.write_raw(r, b"signed content")
    signed = await store.create_signed_url(r, SignedURLProperties(scope="GET", expires_in=timedelta(minutes=5)))
    query = parse_qs(urlsplit(signed.url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"][0]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert dict(signed.required_headers) == {}
    async with aiohttp.ClientSession() as session, session.get(signed.url) as resp:
        assert resp.status == 200
        assert await resp.read() == b"signed content"


async def test_signed_put_url_with_content_md5(store: S3Store) -> None:
    r = ref(store, "uploads/data.bin")
    body = os.urandom(1000)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    props = SignedURLProperties(scope="PUT", content_md5=md5, add_content_md5_metadata=True)
    signed = await store.create_signed_url(r, props)
    assert dict(signed.required_headers) == {"Content-MD5": md5, "x-amz-meta-flytecontentmd5": md5}
    signed_headers = parse_qs(urlsplit(signed.url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-md5", "x-amz-meta-flytecontentmd5"} <= set(signed_headers)
    # The signature covers the MD5: real S3 refuses the URL without these headers (moto does not
    # check signatures, so only the happy path is asserted here).
    headers = dict(signed.required_headers)
    async with aiohttp.ClientSession() as session, session.put(signed.url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    head = await store.head(r)
    assert head.size == 1000 and head.content_md5 == md5
    assert head.user_metadata["flytecontentmd5"] == md5
    assert await read(store, r) == body


async def test_signed_put_url_without_md5(store: S3Store) -> None:
    r = ref(store, "plain-put")
    signed = await store.create_signed_url(r, SignedURLProperties(scope="PUT"))
    assert dict(signed.required_headers) == {}
    async with aiohttp.ClientSession() as session, session.put(signed.url, data=b"hello") as resp:
        assert resp.status == 200
    assert await read(store, r) == b"hello"


async def test_signed_url_expiry_is_bounded(store: S3Store) -> None:
    with pytest.raises(InvalidArgumentError, match="7 days"):
        await store.create_signed_url(ref(store, "k"), SignedURLProperties(expires_in=timedelta(days=8)))


async def test_signed_url_override_endpoint(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    config = Config(
        type="s3",
        container=bucket,
        stow={"kind": "s3", "config": s3_server.stow_config()},
        signed_url={"stowConfigOverride": {"endpoint": "https://public.example.com"}},
    )
    store = from_config(
        config.backend_config(),
        container=bucket,
        multicontainer=False,
        config=config,
        field="stow.config",
        signed_url_override=config.signed_url.stow_config_override,
    )
    assert store.signing is not None and store.signing.endpoint_url == "https://public.example.com"
    async with store:
        signed = await store.create_signed_url(f"s3://{bucket}/k", SignedURLProperties())
        assert signed.url.startswith(f"https://public.example.com/{bucket}/k?")
        await drop_bucket(store, bucket)
    # Only the primary store signs with the override.
    lazily = from_config(
        config.backend_config(), container="", multicontainer=True, config=config, field="schemes.s3.config"
    )
    assert lazily.signing is None
    with pytest.raises(ConfigError, match=r"signedUrl\.stowConfigOverride\.bogus"):
        bad = Config(type="s3", container=bucket, signed_url={"stowConfigOverride": {"bogus": "1"}})
        from_config(
            {},
            container=bucket,
            multicontainer=False,
            config=bad,
            field="stow.config",
            signed_url_override=bad.signed_url.stow_config_override,
        )


# -- multipart writes ------------------------------------------------------------------------------


async def test_unknown_length_stream_becomes_multipart(store: S3Store) -> None:
    r = ref(store, "big-stream")
    meta = await store.write_raw(r, blocks(BIG))
    assert meta.size == BIG
    assert meta.etag.endswith("-3")  # 5 MiB + 5 MiB + the rest
    head = await store.head(r)
    assert head.size == BIG and head.etag == meta.etag
    assert await read(store, r) == expected(BIG)
    assert await uploads(store) == []


async def test_large_bytes_with_declared_size(store: S3Store) -> None:
    r = ref(store, "big-bytes")
    data = os.urandom(BIG)
    meta = await store.write_raw(r, data, size=BIG, options=Options(metadata={"Owner": "me"}, content_type="x/y"))
    assert meta.etag.endswith("-3") and meta.size == BIG
    head = await store.head(r)
    assert head.content_type == "x/y" and dict(head.user_metadata) == {"owner": "me"}
    assert await store.read_bytes(r, offset=PART - 3, length=6) == data[PART - 3 : PART + 3]


async def test_one_part_stream_is_a_single_put(store: S3Store) -> None:
    r = ref(store, "exactly-one-part")
    meta = await store.write_raw(r, blocks(PART))
    assert "-" not in meta.etag  # a plain PutObject etag
    assert await read(store, r) == expected(PART)


async def test_multipart_longer_than_declared_leaves_nothing(store: S3Store) -> None:
    r = ref(store, "too-long")
    with pytest.raises(SizeMismatchError):
        await store.write_raw(r, blocks(BIG), size=BIG - 1)
    assert not (await store.head(r)).exists
    assert await uploads(store) == []


async def test_multipart_shorter_than_declared_leaves_nothing(store: S3Store) -> None:
    r = ref(store, "too-short")
    with pytest.raises(SizeMismatchError):
        await store.write_raw(r, blocks(BIG), size=BIG + 1)
    assert not (await store.head(r)).exists
    assert await uploads(store) == []


async def test_failing_source_aborts_the_upload(store: S3Store) -> None:
    r = ref(store, "keep-me")
    await store.write_raw(r, b"precious")

    async def broken() -> AsyncIterator[bytes]:
        async for block in blocks(2 * PART + MiB):
            yield block
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        await store.write_raw(r, broken())
    assert await read(store, r) == b"precious"
    assert await uploads(store) == []


async def test_cancelled_multipart_write_leaves_no_parts(store: S3Store) -> None:
    r = ref(store, "cancelled")
    parked = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        async for block in blocks(PART + MiB):
            yield block
        parked.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.write_raw(r, slow()))
    await parked.wait()
    assert len(await uploads(store)) == 1  # a part is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await uploads(store) == []
    assert not (await store.head(r)).exists


async def test_create_only_multipart(store: S3Store) -> None:
    r = ref(store, "once")
    await store.write_raw(r, b"first")
    with pytest.raises(AlreadyExistsError):
        await store.write_raw(r, blocks(BIG), options=Options(if_not_exists=True))
    assert await read(store, r) == b"first"
    assert await uploads(store) == []


async def test_create_only_multipart_loses_a_race_at_completion(store: S3Store) -> None:
    r = ref(store, "race")

    async def racing() -> AsyncIterator[bytes]:
        async for block in blocks(BIG):
            yield block
        await store.write_raw(r, b"the other writer")  # lands while our parts are uploaded

    with pytest.raises(AlreadyExistsError) as info:
        await store.write_raw(r, racing(), options=Options(if_not_exists=True))
    assert isinstance(info.value.__cause__, ClientError)  # If-None-Match refused by the server
    assert await read(store, r) == b"the other writer"
    assert await uploads(store) == []


async def test_parts_in_flight_are_bounded(either: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = either
    store.max_parts_in_flight = 2
    active = peak = 0
    api_class = type(store.api)
    original = api_class.upload_part

    async def counting(self: Any, *args: Any) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await original(self, *args)
        finally:
            active -= 1

    monkeypatch.setattr(api_class, "upload_part", counting)
    data = os.urandom(3 * PART + 1)
    meta = await store.write_raw(ref(store, "bounded"), data)
    assert meta.etag.endswith("-4")
    assert peak == 2
    assert await read(store, ref(store, "bounded")) == data


async def test_failed_part_aborts(either: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = either
    api_class = type(store.api)
    original = api_class.upload_part

    async def failing(self: Any, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> Any:
        if number == 2:
            raise ClientError(
                {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "UploadPart"
            )
        return await original(self, bucket, key, upload_id, number, body)

    monkeypatch.setattr(api_class, "upload_part", failing)
    r = ref(store, "part-fails")
    with pytest.raises(TransientError) as info:
        await store.write_raw(r, blocks(BIG))
    assert isinstance(info.value.__cause__, ClientError)
    assert not (await store.head(r)).exists
    assert await uploads(store) == []


def record_part_sizes(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every UploadPart the store sends, in the order they are sent."""
    sizes: list[int] = []
    api_class = type(store.api)
    original = api_class.upload_part

    async def recording(self: Any, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> Any:
        sizes.append(len(body))
        return await original(self, bucket, key, upload_id, number, body)

    monkeypatch.setattr(api_class, "upload_part", recording)
    return sizes


async def test_reused_producer_buffer_is_stored_as_yielded(store: S3Store) -> None:
    """A producer refilling one bytearray (and read-only views of it) across part boundaries."""
    buf = bytearray(700 * KiB)
    sent: list[bytes] = []

    async def refilling() -> AsyncIterator[bytearray | memoryview]:
        for i in range(16):  # ~11 MiB: three parts
            buf[:] = bytes([i]) * len(buf)
            sent.append(bytes(buf))
            yield buf if i % 2 else memoryview(buf).toreadonly()

    r = ref(store, "refilled")
    meta = await store.write_raw(r, refilling())
    assert meta.etag.endswith("-3") and meta.size == 16 * 700 * KiB
    assert await read(store, r) == b"".join(sent)


async def test_unknown_length_parts_grow_to_fit_the_part_limit(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "MAX_PARTS", 4)  # the size doubles every part
    sizes = record_part_sizes(store, monkeypatch)
    r = ref(store, "growing")
    total = PART + 2 * PART + MiB
    meta = await store.write_raw(r, blocks(total))
    assert sizes == [PART, 2 * PART, MiB]
    assert meta.size == total and meta.etag.endswith("-3")
    assert await read(store, r) == expected(total)
    assert await uploads(store) == []


async def test_stream_past_the_part_limit_is_refused_and_leaves_nothing(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "MAX_PARTS", 2)
    r = ref(store, "too-many-parts")
    with pytest.raises(InvalidArgumentError, match="more than 2 parts"):
        await store.write_raw(r, blocks(PART + 2 * PART + MiB))
    assert not (await store.head(r)).exists
    assert await uploads(store) == []


async def test_declared_size_fixes_parts_that_fit_the_limit(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "MAX_PARTS", 2)
    sizes = record_part_sizes(store, monkeypatch)
    r = ref(store, "declared-fits")
    meta = await store.write_raw(r, blocks(BIG), size=BIG)  # half of BIG, rounded up to a MiB: 6 MiB
    assert sizes == [6 * MiB, BIG - 6 * MiB]
    assert meta.etag.endswith("-2") and meta.size == BIG
    assert await read(store, r) == expected(BIG)


async def test_cancelled_completion_still_commits_whole(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the parts are up, a cancellation does not cut CompleteMultipartUpload short: the
    object is committed whole, no upload is left, and the cancellation is raised afterwards."""
    api_class = type(store.api)
    original = api_class.complete
    completing = asyncio.Event()

    async def slow_complete(self: Any, *args: Any) -> Any:
        completing.set()
        await asyncio.sleep(0.2)
        return await original(self, *args)

    monkeypatch.setattr(api_class, "complete", slow_complete)
    r = ref(store, "completing")
    task = asyncio.create_task(store.write_raw(r, blocks(BIG)))
    await completing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.head(r)).size == BIG
    assert await read(store, r) == expected(BIG)
    assert await uploads(store) == []


async def test_part_copies_are_bounded_and_a_failed_one_aborts(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_bucket()
    store = S3Store(
        s3_server.settings(), container=bucket, copy_threshold=PART, copy_part_size=PART, max_parts_in_flight=2
    )
    async with store:
        src = ref(store, "src")
        data = os.urandom(3 * PART + 1)
        await store.write_raw(src, data)
        api_class = type(store.api)
        original = api_class.upload_part_copy
        active = peak = 0
        fail_part: int | None = None

        async def counting(self: Any, bucket: str, key: str, upload_id: str, number: int, *rest: Any) -> Any:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                await asyncio.sleep(0.01)
                if number == fail_part:
                    raise ClientError(
                        {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                        "UploadPartCopy",
                    )
                return await original(self, bucket, key, upload_id, number, *rest)
            finally:
                active -= 1

        monkeypatch.setattr(api_class, "upload_part_copy", counting)
        meta = await store.copy_raw(src, ref(store, "copied"))
        assert meta.size == len(data) and meta.etag.endswith("-4")
        assert peak == 2
        assert await read(store, ref(store, "copied")) == data

        fail_part = 3
        with pytest.raises(TransientError):
            await store.copy_raw(src, ref(store, "not-copied"))
        assert not (await store.head(ref(store, "not-copied"))).exists
        assert await uploads(store) == []
        await drop_bucket(store, bucket)


# -- missing buckets ---------------------------------------------------------------------------------


async def test_write_recreates_the_configured_bucket(store: S3Store) -> None:
    """Flyte's Go store creates the bucket and silently drops the write; this one retries it."""
    await store.api.client.delete_bucket(Bucket=store.container)
    r = ref(store, "after-delete")
    await store.write_raw(r, b"not lost")
    assert await read(store, r) == b"not lost"

    await drop_bucket(store, store.container)
    await store.write_raw(ref(store, "big"), blocks(BIG))  # the multipart path too
    assert (await store.head(ref(store, "big"))).size == BIG


async def test_write_to_another_missing_bucket_is_not_found(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    other = unique_bucket()
    async with S3Store(s3_server.settings(), container=bucket, multicontainer=True) as store:
        with pytest.raises(NotFoundError, match=other) as info:
            await store.write_raw(f"s3://{other}/k", b"x")
        assert isinstance(info.value.__cause__, ClientError)
        with pytest.raises(ClientError):
            await store.api.head_bucket(other)  # not created
        await drop_bucket(store, bucket)


async def test_vanished_bucket_is_not_recreated_without_create_container(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    async with S3Store(s3_server.settings(), container=bucket, part_size=PART) as creator:
        await drop_bucket(creator, bucket)  # open() made it; now it is gone
    async with S3Store(s3_server.settings(), container=bucket, part_size=PART, create_container=False) as store:
        for payload in (b"x", blocks(BIG)):  # PutObject and CreateMultipartUpload
            with pytest.raises(NotFoundError, match=rf"bucket \[{bucket}\] does not exist"):
                await store.write_raw(ref(store, "k"), payload)
        with pytest.raises(ClientError):
            await store.api.head_bucket(bucket)  # not created


# -- bulk deletes ------------------------------------------------------------------------------------


async def test_delete_many_sends_deleteobjects_of_a_thousand_keys(store: S3Store) -> None:
    """2,500 objects in the store's bucket and 3 in a missing one: three DeleteObjects requests
    for the first (1,000 + 1,000 + 500 keys), one for the other, whose keys fail with an error
    naming the bucket; results in order. (Both request paths run the shared contract.)"""
    refs = [ref(store, f"many/{i:05d}") for i in range(2500)]
    await asyncio.gather(*(store.write_raw(r, b"x") for r in refs[:2400]))  # the last 100 never existed
    keep = ref(store, "many-keep")
    await store.write_raw(keep, b"keep")
    missing_bucket = unique_bucket()
    elsewhere = [f"s3://{missing_bucket}/k{i}" for i in range(3)]
    sizes: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["Delete"]["Objects"]))

    events = store.api.client.meta.events
    events.register("provide-client-params.s3.DeleteObjects", count)
    try:
        results = await store.delete_many([*refs[:1200], *elsewhere, *refs[1200:]])
    finally:
        events.unregister("provide-client-params.s3.DeleteObjects", count)
    assert sorted(sizes) == [3, 500, 1000, 1000]
    assert results[:1200] == [None] * 1200 and results[1203:] == [None] * 1300
    for error in results[1200:1203]:
        assert isinstance(error, NotFoundError)
        assert f"bucket [{missing_bucket}] does not exist" in str(error)
    refs_left, _ = await store.list_page(ref(store, ""), max_items=10)
    assert refs_left == [keep]


# -- reads ---------------------------------------------------------------------------------------------


async def test_read_missing_keeps_the_cause(store: S3Store) -> None:
    r = ref(store, "nothing/here")
    with pytest.raises(NotFoundError, match="nothing/here") as info:
        await store.read_raw(r)
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(NotFoundError):
        await store.read_bytes(r)
    with pytest.raises(NotFoundError):
        await store.read_raw(r, length=0)


async def test_read_bytes_limit_is_checked_before_download(store: S3Store) -> None:
    r = ref(store, "limited")
    await store.write_raw(r, b"x" * 5000)
    with pytest.raises(ExceedsLimitError) as info:
        await store.read_bytes(r, max_size=4999)
    assert info.value.size == 5000
    assert await store.read_bytes(r, max_size=5000) == b"x" * 5000
    assert await store.read_bytes(r, offset=4990, max_size=10) == b"x" * 10


async def test_stream_chunks_are_bounded_and_metadata_complete(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    async with S3Store(s3_server.settings(), container=bucket, chunk_size=16 * KiB) as store:
        r = ref(store, "chunks")
        data = os.urandom(MiB)
        await store.write_raw(r, data, options=Options(metadata={"a": "1"}, content_type="text/plain"))
        stream = await store.read_raw(r, offset=10, length=MiB)
        sizes = []
        async with stream:
            assert stream.size == MiB - 10
            assert stream.metadata is not None
            assert stream.metadata.size == MiB  # the object's size, not the range's
            assert stream.metadata.content_type == "text/plain"
            assert dict(stream.metadata.user_metadata) == {"a": "1"}
            parts = []
            async for chunk in stream:
                sizes.append(len(chunk))
                parts.append(chunk)
        assert b"".join(parts) == data[10:]
        assert max(sizes) <= 16 * KiB
        await drop_bucket(store, bucket)


# -- copy ------------------------------------------------------------------------------------------------


async def test_copy_keeps_or_replaces_metadata(store: S3Store) -> None:
    src, dst = ref(store, "src"), ref(store, "dst")
    await store.write_raw(src, b"data", options=Options(metadata={"k": "v"}, content_type="text/csv"))
    meta = await store.copy_raw(src, dst)
    assert meta.size == 4 and meta.etag
    head = await store.head(dst)
    assert head.content_type == "text/csv" and dict(head.user_metadata) == {"k": "v"}
    assert meta.etag == head.etag
    await store.copy_raw(src, dst, options=Options(metadata={"n": "w"}, content_type="text/plain"))
    head = await store.head(dst)
    assert head.content_type == "text/plain" and dict(head.user_metadata) == {"n": "w"}


async def test_large_copy_goes_part_by_part(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    store = S3Store(s3_server.settings(), container=bucket, copy_threshold=PART, copy_part_size=PART)
    async with store:
        src, dst = ref(store, "src"), ref(store, "dst")
        data = os.urandom(BIG)
        await store.write_raw(src, data, options=Options(metadata={"k": "v"}, content_type="a/b"))
        meta = await store.copy_raw(src, dst)
        assert meta.size == BIG and meta.etag.endswith("-3")
        assert await read(store, dst) == data
        head = await store.head(dst)
        assert head.content_type == "a/b" and dict(head.user_metadata) == {"k": "v"}
        with pytest.raises(AlreadyExistsError):
            await store.copy_raw(src, dst, options=Options(if_not_exists=True))
        assert await uploads(store) == []
        await drop_bucket(store, bucket)


async def test_copy_between_buckets(s3_server: MotoS3) -> None:
    a, b = unique_bucket(), unique_bucket()
    async with S3Store(s3_server.settings(), container=a) as store:
        await store._create_bucket(store.api, b)
        await store.write_raw(f"s3://{a}/k", b"across")
        await store.copy_raw(f"s3://{a}/k", f"s3://{b}/k")
        assert await read(store, f"s3://{b}/k") == b"across"
        with pytest.raises(NotFoundError, match="source"):
            await store.copy_raw(f"s3://{a}/missing", f"s3://{b}/x")
        await drop_bucket(store, a)
        await drop_bucket(store, b)


# -- listing -------------------------------------------------------------------------------------------------


async def test_list_cursor_is_the_last_key(store: S3Store) -> None:
    for key in ("p/a", "p/b", "p/c"):
        await store.write_raw(ref(store, key), b"x")
    refs, cursor = await store.list_page(ref(store, "p"), max_items=2)
    assert [r.split()[2] for r in refs] == ["p/a", "p/b"]
    assert cursor == Cursor.at("p/b")
    # A cursor is just a key: a new process (or a hand-written key) can resume from it.
    refs, cursor = await store.list_page(ref(store, "p"), max_items=2, cursor=Cursor.at("p/a"))
    assert [r.split()[2] for r in refs] == ["p/b", "p/c"] and cursor.is_end()
    entries, _ = await store.list_entries_page(ref(store, "p"), max_items=1)
    assert entries[0].size == 1 and entries[0].etag and entries[0].last_modified is not None


async def test_large_pages_take_several_requests(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "_LIST_REQUEST_MAX", 2)
    keys = [f"q/{i}" for i in range(5)]
    await asyncio.gather(*(store.write_raw(ref(store, k), b"x") for k in keys))
    refs, cursor = await store.list_page(ref(store, "q"), max_items=4)
    assert [r.split()[2] for r in refs] == keys[:4] and cursor == Cursor.at("q/3")
    refs, cursor = await store.list_page(ref(store, "q"), max_items=4, cursor=cursor)
    assert [r.split()[2] for r in refs] == keys[4:] and cursor.is_end()


async def test_list_of_missing_bucket_is_not_found(s3_server: MotoS3) -> None:
    async with S3Store(s3_server.settings()) as store:
        with pytest.raises(NotFoundError):
            await store.list_page(f"s3://{unique_bucket()}/")


# -- error mapping ----------------------------------------------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "create", "expected_type"),
    [
        (client_error("NoSuchKey", 404), False, NotFoundError),
        (client_error("NoSuchBucket", 404), False, NotFoundError),
        (client_error("404", 404), False, NotFoundError),
        (client_error("PreconditionFailed", 412), True, AlreadyExistsError),
        (client_error("PreconditionFailed", 412), False, PreconditionFailedError),
        (client_error("AccessDenied", 403), False, PermissionDeniedError),
        (client_error("InvalidAccessKeyId", 403), False, PermissionDeniedError),
        (client_error("SlowDown", 503), False, TransientError),
        (client_error("InternalError", 500), False, TransientError),
        (client_error("TooManyRequests", 429), False, TransientError),
        (client_error("ConditionalRequestConflict", 409), True, TransientError),
        (client_error("InvalidBucketName", 400), False, InvalidReferenceError),
        (client_error("MalformedXML", 400), False, StorageError),
        (NoCredentialsError(), False, PermissionDeniedError),
        (ReadTimeoutError(endpoint_url="http://x"), False, TransientError),
        (EndpointConnectionError(endpoint_url="http://x"), False, TransientError),
        (aiohttp.ClientPayloadError("cut"), False, TransientError),
        (asyncio.TimeoutError(), False, TransientError),
    ],
)
def test_error_mapping(exc: BaseException, create: bool, expected_type: type[StorageError]) -> None:
    mapped = _map_error(exc, what="read [s3://b/k]", create=create)
    assert type(mapped) is expected_type
    assert "s3://b/k" in str(mapped)


def test_unknown_exceptions_pass_through() -> None:
    assert _map_error(RuntimeError("user code"), what="x") is None
    assert _map_error(KeyError("k"), what="x") is None


async def test_secrets_stay_out_of_errors(s3_server: MotoS3) -> None:
    secret = "do-not-print-me-3141"
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="AKID",
        secret_access_key=secret,
        max_attempts=1,
    )
    async with S3Store(settings) as store:
        assert secret not in repr(store)
        with pytest.raises(TransientError) as info:
            await store.read_raw("s3://b/k")
        assert secret not in str(info.value) and secret not in repr(info.value)


# -- the lean request path against the full one ------------------------------------------------------------

#: Keys whose URL needs escaping, or that S3 / botocore treat specially.
ODD_KEYS = [
    "with space/and  two",
    "unicodé/日本語/emoji-😀",
    "plus+sign",
    "percent%20literal%",
    "question?mark",
    "hash#tag",
    "double//slash",
    "tilde~star*quote'dq\"",
    "eq=amp&semi;colon,comma",
    "brackets[]{}|^`<>",
    "dots/./and/../kept",
    "control\ttab",
]


async def test_hot_operations_bypass_botocore(pair: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch) -> None:
    lean, full = pair
    counts = {"lean": 0, "full": 0}
    for name, s in (("lean", lean), ("full", full)):
        client = s.api.client
        original = client._make_api_call

        async def counting(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            counts[_name] += 1
            return await _original(*args, **kwargs)

        monkeypatch.setattr(client, "_make_api_call", counting)
        r = ref(s, f"hot-{name}")
        await s.write_raw(r, b"data", options=Options(metadata={"a": "b"}, content_type="text/plain"))
        assert await s.read_bytes(r) == b"data"
        assert await s.read_bytes(r, offset=1, length=2) == b"at"
        assert (await s.head(r)).size == 4
        assert not (await s.head(r + "-missing")).exists
        assert [e.ref async for e in s.list(ref(s, f"dir-{name}"))] == []
        await s.write_raw(ref(s, f"multi-{name}"), blocks(PART + 1))  # create/complete are full-path calls
    # put, get, ranged get, head, head of a missing key, a listing, and a 2-part upload (create,
    # 2 parts, complete): the lean path leaves only the upload's create and complete to botocore.
    assert counts == {"lean": 2, "full": 10}


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_escaped_keys_match_botocore(
    pair: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    lean, full = pair
    r = lean.make_ref(lean.container, key)
    assert lean.locate(r) == (lean.container, key)
    lean_sent = capture_requests(lean, monkeypatch)
    full_sent = capture_requests(full, monkeypatch)
    body = key.encode()
    await full.write_raw(r, body, options=Options(metadata={"k": "v"}))
    await lean.write_raw(r, body, options=Options(metadata={"k": "v"}))
    assert lean_sent[0].url == full_sent[0].url  # the same escaping as botocore's serializer
    # What one path wrote, the other reads, under the same key.
    assert await full.read_bytes(r) == body
    assert await lean.read_bytes(r) == body
    assert await read(lean, r) == body
    lean_head, full_head = await lean.head(r), await full.head(r)
    assert lean_head == full_head and lean_head.user_metadata == {"k": "v"}
    entries, _ = await full.list_entries_page(f"s3://{lean.container}/")
    assert key in [lean.locate(e.ref)[1] for e in entries]


async def test_lean_listing_matches_botocore(pair: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch) -> None:
    lean, full = pair
    keys = [f"dir/{key}" for key in ODD_KEYS] + [f"dir/k{i:03d}" for i in range(25)] + ["dir\u00ff-after", "dirx"]
    await asyncio.gather(*(full.write_raw(full.make_ref(full.container, k), k.encode()) for k in keys))
    calls: list[str] = []
    original = lean.api.client._make_api_call

    async def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await original(name, *args, **kwargs)

    monkeypatch.setattr(lean.api.client, "_make_api_call", counting)
    lean_sent = capture_requests(lean, monkeypatch)
    root = f"s3://{lean.container}/dir"
    for max_items in (7, 1000, 5000):
        cursor: Cursor | None = None
        while cursor is None or not cursor.is_end():
            got, lean_next = await lean.list_entries_page(root, max_items=max_items, cursor=cursor)
            want, full_next = await full.list_entries_page(root, max_items=max_items, cursor=cursor)
            assert got == want and lean_next == full_next
            for entry in got:
                assert isinstance(entry.last_modified, datetime) and entry.last_modified.utcoffset() == timedelta(0)
            cursor = lean_next
    listed = [e async for e in lean.list(root, page_size=7)]
    assert listed == [e async for e in full.list(root, page_size=7)]
    assert sorted(lean.locate(e.ref)[1] for e in listed) == sorted(k for k in keys if k.startswith("dir/"))
    assert [e.size for e in listed] == [len(lean.locate(e.ref)[1].encode()) for e in listed]
    assert calls == [] and lean_sent  # every listing request went the lean way
    assert all("encoding-type=url" in str(r.url) for r in lean_sent)


@pytest.mark.parametrize("parse", ["scan", "etree"])
def test_list_response_parsing(parse: str) -> None:
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {ns}><Name>b</Name><Prefix>a%2Bb</Prefix>'
        "<IsTruncated>true</IsTruncated><Contents><Key>a%2Bb/c+d%25e%0A</Key>"
        "<LastModified>2026-11-23T21:44:33.123Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>12</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents><Contents><Key>z</Key><Size>0</Size></Contents>"
        "<EncodingType>url</EncodingType></ListBucketResult>"
    ).encode()
    parser = _s3lean.parse_list_objects if parse == "scan" else _s3lean._etree_list_objects
    if parse == "scan":
        assert _s3lean._scan_list_objects(body.decode()) is not None  # not left to xml.etree
    objects, truncated = parser(body)
    assert truncated is True
    (key, size, etag, modified), second = objects
    assert (key, size, etag) == ("a+b/c d%e\n", 12, '"abc"')  # botocore's unquote_str: '+' is a space
    assert modified == datetime(2026, 11, 23, 21, 44, 33, 123000, tzinfo=timezone.utc)
    assert second == ("z", 0, "", None)
    # Without EncodingType the keys are taken as they are; no namespace is fine too.
    plain = b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a%2Bb+c</Key></Contents>"
    plain += b"<Contents><Key>&lt;&amp;&gt;&apos;&#x1F600;&#9;</Key><ETag>&quot;x&amp;&quot;</ETag></Contents>"
    plain += b"</ListBucketResult>\n"
    want = ([("a%2Bb+c", 0, "", None), ("<&>'\U0001f600\t", 0, '"x&"', None)], False)
    assert parser(plain) == want


@pytest.mark.parametrize(
    "body",
    [
        b"<ListBucketResult><Contents><Key><![CDATA[a<b]]></Key></Contents></ListBucketResult>",
        b"<ListBucketResult><!-- <Contents><Key>no</Key></Contents> --></ListBucketResult>",
        b"<s3:ListBucketResult xmlns:s3='u'><s3:Contents><s3:Key>k</s3:Key></s3:Contents></s3:ListBucketResult>",
        b"<ListBucketResult><Contents><Key>a\r\nb</Key></Contents></ListBucketResult>",
        b"<ListBucketResult><Contents><Key xml:space='preserve'>k</Key></Contents></ListBucketResult>",
    ],
)
def test_unusual_list_documents_are_parsed_by_etree(body: bytes) -> None:
    assert _s3lean._scan_list_objects(body.decode()) is None
    assert _s3lean.parse_list_objects(body) == _s3lean._etree_list_objects(body)


def test_a_cut_list_document_is_an_error() -> None:
    body = b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key></Contents>"
    with pytest.raises(ElementTree.ParseError):
        _s3lean.parse_list_objects(body)


@pytest.mark.parametrize("lean", [True, False])
async def test_list_fetches_the_next_page_while_the_caller_consumes(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, lean: bool
) -> None:
    bucket = unique_bucket()
    async with S3Store(s3_server.settings(lean_requests=lean), container=bucket) as store:
        try:
            await asyncio.gather(*(store.write_raw(ref(store, f"p/{i}"), b"x") for i in range(5)))
            http = store.api.client._endpoint.http_session
            original = http.send
            lists: list[str] = []
            second_sent = asyncio.Event()

            async def send(request: Any) -> Any:
                if "list-type=2" in str(request.url):
                    lists.append(str(request.url))
                    if len(lists) == 2:
                        second_sent.set()
                return await original(request)

            monkeypatch.setattr(http, "send", send)
            listing = store.list(ref(store, "p"), page_size=2)
            first = await listing.__anext__()
            assert first.ref == ref(store, "p/0") and len(lists) == 1
            # The caller holds the first entry and asks for nothing: the second page goes out anyway.
            await asyncio.wait_for(second_sent.wait(), timeout=10)
            rest = [e.ref async for e in listing]
            assert rest == [ref(store, f"p/{i}") for i in range(1, 5)]
            assert len(lists) == 3

            # A caller that stops early leaves no request behind.
            tasks_before = asyncio.all_tasks()
            listing = store.list(ref(store, "p"), page_size=2)
            assert (await listing.__anext__()).ref == ref(store, "p/0")
            await listing.aclose()
            assert asyncio.all_tasks() <= tasks_before
        finally:
            await drop_bucket(store, bucket)


async def test_lean_listing_errors_name_the_bucket(s3_server: MotoS3) -> None:
    missing = unique_bucket()
    async with S3Store(s3_server.settings()) as store:
        assert isinstance(store.api, s3_module._LeanS3Api)
        with pytest.raises(NotFoundError, match=missing):
            await store.list_page(f"s3://{missing}/some/prefix")
        with pytest.raises(NotFoundError, match=missing):
            [e async for e in store.list(f"s3://{missing}/")]


async def test_metadata_and_results_match(pair: tuple[S3Store, S3Store]) -> None:
    lean, _ = pair
    options = Options(metadata={"Owner": "me", FLYTE_MD5: "abc=="}, content_type="application/x-test")
    written = [await s.write_raw(ref(s, f"m-{i}"), b"0123456789", options=options) for i, s in enumerate(pair)]
    assert written[0].etag == written[1].etag and written[0] == dataclasses.replace(written[1])
    for i in range(2):
        r = ref(lean, f"m-{i}")
        heads = [await s.head(r) for s in pair]
        assert heads[0] == heads[1]
        assert heads[0].content_md5 == "abc==" and heads[0].content_type == "application/x-test"
        assert isinstance(heads[0].last_modified, datetime) and heads[0].last_modified.tzinfo is not None
        streams = [await s.read_raw(r, offset=2, length=5) for s in pair]
        for stream in streams:
            async with stream:
                assert await stream.read() == b"23456"
        assert streams[0].size == streams[1].size == 5
        assert streams[0].metadata == streams[1].metadata
        assert streams[0].metadata is not None and streams[0].metadata.size == 10


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, None), (0, 1), (5, None), (5, 3), (9, 1), (9, 100), (10, None), (10, 5), (11, None), (0, 0), (4, 0)],
)
async def test_ranged_reads_match(pair: tuple[S3Store, S3Store], offset: int, length: int | None) -> None:
    full = pair[1]
    r = ref(full, "ranged")
    await full.write_raw(r, b"0123456789")
    expected = b"0123456789"[offset : None if length is None else offset + length]
    for s in pair:
        assert await s.read_bytes(r, offset=offset, length=length) == expected
        assert await read_range(s, r, offset, length) == expected


async def read_range(store: S3Store, r: str, offset: int, length: int | None) -> bytes:
    stream = await store.read_raw(r, offset=offset, length=length)
    async with stream:
        return await stream.read()


async def test_error_mapping_parity_on_moto(pair: tuple[S3Store, S3Store]) -> None:
    lean, full = pair
    other = unique_bucket()

    async def outcome(call: Any) -> tuple[Any, ...]:
        try:
            result = await call
        except StorageError as exc:
            cause = exc.__cause__
            code = cause.response["Error"].get("Code") if isinstance(cause, ClientError) else None
            return type(exc), str(exc), type(cause).__name__, code
        return ("ok", result)

    cases = {
        "read missing key": lambda s: s.read_raw(ref(s, "missing")),
        "read_bytes missing key": lambda s: s.read_bytes(ref(s, "missing")),
        "range of missing key": lambda s: s.read_bytes(ref(s, "missing"), offset=3),
        "head missing key": lambda s: s.head(ref(s, "missing")),
        "read missing bucket": lambda s: s.read_raw(f"s3://{other}/k"),
        "head missing bucket": lambda s: s.head(f"s3://{other}/k"),
        "write missing bucket": lambda s: s.write_raw(f"s3://{other}/k", b"x"),
        "create-only over existing": lambda s: s.write_raw(ref(s, "exists"), b"y", options=Options(if_not_exists=True)),
        "invalid bucket name": lambda s: s.head("s3://Bad_Bucket!/k"),
    }
    await full.write_raw(ref(full, "exists"), b"x")
    for name, case in cases.items():
        lean_outcome, full_outcome = await outcome(case(lean)), await outcome(case(full))
        assert lean_outcome == full_outcome, name
    assert (await outcome(cases["read missing key"](lean)))[0] is NotFoundError
    assert (await outcome(cases["create-only over existing"](lean)))[:1] == (AlreadyExistsError,)
    assert (await outcome(cases["write missing bucket"](lean)))[0] is NotFoundError
    assert await read(lean, ref(lean, "exists")) == b"x"


async def test_non_ascii_metadata_is_refused_alike(pair: tuple[S3Store, S3Store]) -> None:
    for s in pair:
        with pytest.raises(InvalidArgumentError, match="ascii"):
            await s.write_raw(ref(s, "meta"), b"x", options=Options(metadata={"k": "välue"}))


async def test_lean_get_checks_the_servers_checksum(store: S3Store) -> None:
    r = ref(store, "crc")
    await store.write_raw(r, b"checked")
    bucket, key = store.locate(r)
    resp = await store.api.get(bucket, key)
    body = resp["Body"]
    assert body._checksum is not None and body._expected_checksum  # moto returns the CRC32
    assert await body.read() == b"checked"
    body.close()
    ranged = await store.api.get(bucket, key, "bytes=1-2")
    assert ranged["Body"]._checksum is None  # no checksum for a range
    assert await ranged["Body"].read() == b"he"


class _FakeContent:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            data, self.chunks = b"".join(self.chunks), []
            return data
        return self.chunks.pop(0) if self.chunks else b""


class _FakeRaw:
    url = "http://fake/b/k"

    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _FakeContent(chunks)
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_lean_body_checks_length_and_checksum() -> None:
    good = base64.b64encode(zlib.crc32(b"abcdef").to_bytes(4, "big")).decode()
    body = _s3lean.LeanBody(_FakeRaw([b"abc", b"def"]), 6, (_s3lean._Crc32(), good))  # type: ignore[arg-type]
    assert b"".join([chunk async for chunk in s3_module._Body(body, 4, "s3://b/k")]) == b"abcdef"

    bad = _s3lean.LeanBody(_FakeRaw([b"abc", b"deX"]), 6, (_s3lean._Crc32(), good))  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="did not match") as info:
        [chunk async for chunk in s3_module._Body(bad, 4, "s3://b/k")]
    assert type(info.value.__cause__).__name__ == "FlexibleChecksumError"

    short = _s3lean.LeanBody(_FakeRaw([b"abc"]), 6, None)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="total bytes expected is 6"):
        [chunk async for chunk in s3_module._Body(short, 4, "s3://b/k")]
    raw = _FakeRaw([b"abc", b"def"])
    closing = _s3lean.LeanBody(raw, 6, None)  # type: ignore[arg-type]
    await s3_module._Body(closing, 4, "s3://b/k").aclose()
    assert raw.closed


async def test_streamed_get_releases_its_connection(either: S3Store) -> None:
    r = ref(either, "stream")
    await either.write_raw(r, os.urandom(4 * MiB), size=4 * MiB)
    sessions = either.api.client._endpoint.http_session._sessions

    def acquired() -> int:
        return sum(len(session.connector._acquired) for session in sessions.values())

    stream = await either.read_raw(r)
    first = await stream.__anext__()
    assert 0 < len(first) <= either.chunk_size
    assert acquired() == 1  # streaming: the body is not buffered whole
    await stream.aclose()
    assert acquired() == 0

    started = asyncio.Event()

    async def slow_reader() -> None:
        stream = await either.read_raw(r)
        async with stream:
            async for _ in stream:
                started.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(slow_reader())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acquired() == 0


async def test_rotating_credentials_are_used(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Refreshable credentials (here a credential_process whose credentials expire within
    botocore's mandatory-refresh window, so every request refreshes them) reach the lean path."""
    key_file = tmp_path / "key-id"
    key_file.write_text("key-one")
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"key = pathlib.Path({str(key_file)!r}).read_text().strip()\n"
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
        'print(json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": "s", '
        '"Expiration": expires.isoformat()}))\n'
    )
    config = tmp_path / "config"
    config.write_text(f"[profile rotating]\ncredential_process = {sys.executable} {script}\n")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "rotating")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = unique_bucket()
    store = S3Store(S3Settings(endpoint_url=s3_server.endpoint, region="us-east-1", addressing_style="path"))
    async with store:
        assert isinstance(store.api, s3_module._LeanS3Api)
        await store._create_bucket(store.api, bucket)
        sent = capture_requests(store, monkeypatch)

        def key_ids() -> list[str]:
            ids = [str(r.headers["Authorization"]).split("Credential=")[1].split("/")[0] for r in sent]
            sent.clear()
            return ids

        r = f"s3://{bucket}/k"
        await store.write_raw(r, b"v")
        assert await store.read_bytes(r) == b"v"
        assert key_ids() == ["key-one", "key-one"]
        key_file.write_text("key-two")
        await store.write_raw(r, b"w")
        assert await store.read_bytes(r) == b"w"
        assert (await store.head(r)).size == 1
        assert key_ids() == ["key-two", "key-two", "key-two"]
        await drop_bucket(store, bucket)


# -- a scripted S3 for the errors moto does not produce ---------------------------------------------------------


class ScriptedS3:
    """Answers every request with ``status`` and an S3 ``<Error>`` document; counts requests."""

    def __init__(self) -> None:
        self.status = 500
        self.code = "InternalError"
        self.headers: dict[str, str] = {}
        #: ``"stall"`` or ``"cut"``: a GET answers 200 with 3 of 10 bytes, then stops or hangs up.
        self.body_fault = ""
        self.requests = 0
        self.endpoint = ""

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.requests += 1
        if self.body_fault and request.method == "GET":
            headers = {"Content-Length": "10", "ETag": '"e"', "Last-Modified": "Mon, 23 Nov 2026 21:44:33 GMT"}
            response = aiohttp.web.StreamResponse(status=200, headers=headers)
            await response.prepare(request)
            await response.write(b"abc")
            if self.body_fault == "cut":
                assert request.transport is not None
                request.transport.close()
            else:
                await asyncio.sleep(5)
            return response
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
            f"<Message>scripted {self.code}</Message><RequestId>r-1</RequestId><HostId>h-1</HostId></Error>"
        )
        return aiohttp.web.Response(status=self.status, text=body, content_type="application/xml", headers=self.headers)


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[ScriptedS3]:
    server = ScriptedS3()
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = aiohttp.web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "SlowDown", TransientError),
        (500, "InternalError", TransientError),
        (429, "TooManyRequests", TransientError),
        (403, "AccessDenied", PermissionDeniedError),
        (403, "SignatureDoesNotMatch", PermissionDeniedError),
        (404, "NoSuchBucket", NotFoundError),
        (412, "PreconditionFailed", PreconditionFailedError),
        (400, "InvalidArgument", StorageError),
        (409, "ConditionalRequestConflict", TransientError),
    ],
)
async def test_error_and_retry_parity(
    scripted: ScriptedS3, monkeypatch: pytest.MonkeyPatch, status: int, code: str, expected: type[StorageError]
) -> None:
    real_sleep = asyncio.sleep

    async def quick_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        return await real_sleep(min(delay, 0.001), *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", quick_sleep)  # botocore's backoff, on both paths
    scripted.status, scripted.code = status, code
    settings = S3Settings(
        endpoint_url=scripted.endpoint,
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        addressing_style="path",
        max_attempts=2,
    )
    outcomes: dict[bool, list[tuple[Any, ...]]] = {}
    for lean in (True, False):
        store = S3Store(dataclasses.replace(settings, lean_requests=lean), container="bucket", create_container=False)
        async with store:
            assert isinstance(store.api, s3_module._LeanS3Api) is lean
            results = []
            calls = (
                functools.partial(store.read_bytes, "s3://bucket/k"),
                functools.partial(store.read_bytes, "s3://bucket/k", offset=2, length=2),
                functools.partial(store.write_raw, "s3://bucket/k", b"x"),
                functools.partial(store.write_raw, "s3://bucket/k", b"x", options=Options(if_not_exists=True)),
                functools.partial(store.list_page, "s3://bucket/p"),
                functools.partial(store.head, "s3://bucket/k"),
            )
            for call in calls:
                scripted.requests = 0
                try:
                    result: Any = await call()
                except StorageError as exc:
                    cause = exc.__cause__
                    assert isinstance(cause, ClientError)
                    result = (type(exc), str(exc), type(cause).__name__, cause.response["Error"]["Code"])
                results.append((result, scripted.requests))
            outcomes[lean] = results
    if status == 400:
        # A HEAD answered 400 goes the full way too (botocore asks HeadBucket for a region).
        (result, requests), (_, full_requests) = outcomes[True][-1], outcomes[False][-1]
        assert requests == full_requests + 1
        outcomes[True][-1] = (result, full_requests)
    assert outcomes[True] == outcomes[False]
    (read_error, read_requests) = outcomes[True][0]
    assert read_error[0] is expected and read_error[3] == code
    retried = code in ("SlowDown", "InternalError") or status >= 500  # botocore's standard mode
    assert read_requests == (3 if retried else 1)  # max_attempts=2: botocore's total of 3


async def test_region_redirect_goes_to_the_full_path(scripted: ScriptedS3) -> None:
    scripted.status, scripted.code = 301, "PermanentRedirect"
    scripted.headers = {"x-amz-bucket-region": "eu-west-1"}  # else botocore's redirector recurses
    settings = S3Settings(
        endpoint_url=scripted.endpoint, region="us-east-1", access_key_id="a", secret_access_key="b", max_attempts=0
    )
    async with S3Store(settings, container="bucket", create_container=False) as store:
        api = store.api
        assert isinstance(api, s3_module._LeanS3Api)
        with pytest.raises(StorageError):
            await store.read_bytes("s3://bucket/k")
        assert "bucket" in api.lean._full_path_buckets  # botocore's redirector owns this bucket now
        scripted.requests = 0
        with pytest.raises(StorageError):
            await store.head("s3://bucket/k")
        assert scripted.requests >= 1


@pytest.mark.parametrize(
    ("endpoint", "checksums", "payload"),
    [
        ("http://127.0.0.1:1", "when_supported", "sha256"),  # payloads are always signed over http
        ("https://127.0.0.1:1", "when_supported", "UNSIGNED-PAYLOAD"),  # TLS + a CRC32 header
        ("https://127.0.0.1:1", "when_required", "sha256"),  # TLS without a checksum: signed
    ],
)
async def test_lean_payload_signing_follows_botocore(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, checksums: str, payload: str
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", checksums)
    settings = S3Settings(
        endpoint_url=endpoint, region="us-east-1", access_key_id="a", secret_access_key="b", max_attempts=0
    )
    body = b"payload"
    async with S3Store(settings, container="bucket", create_container=False) as store:
        assert isinstance(store.api, s3_module._LeanS3Api)
        sent: list[Any] = []

        async def refuse(request: Any) -> Any:
            sent.append(request)
            raise EndpointConnectionError(endpoint_url=request.url)

        monkeypatch.setattr(store.api.client._endpoint.http_session, "send", refuse)
        with pytest.raises(TransientError):
            await store.write_raw("s3://bucket/k", body)
        with pytest.raises(TransientError):
            await store.read_bytes("s3://bucket/k")
    put, get = sent
    assert put.headers["X-Amz-Content-SHA256"] == (hashlib.sha256(body).hexdigest() if payload == "sha256" else payload)
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert put.headers.get("x-amz-checksum-crc32") == (crc if checksums == "when_supported" else None)
    assert "x-amz-checksum-crc32" in put.headers["Authorization"] or checksums == "when_required"
    assert get.headers["X-Amz-Content-SHA256"] == hashlib.sha256(b"").hexdigest()
    assert get.headers["x-amz-checksum-mode"] == "ENABLED"
    assert put.url == get.url == f"{endpoint}/bucket/k"


@pytest.mark.parametrize("fault", ["stall", "cut"])
async def test_body_fault_parity(scripted: ScriptedS3, fault: str) -> None:
    """A body that stops arriving (read timeout) or is cut short: the same errors on both paths."""
    scripted.body_fault = fault
    settings = S3Settings(
        endpoint_url=scripted.endpoint,
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        addressing_style="path",
        read_timeout=0.3,
        max_attempts=0,
    )
    outcomes = []
    for lean in (True, False):
        store = S3Store(dataclasses.replace(settings, lean_requests=lean), container="bucket", create_container=False)
        async with store:
            for call in (
                functools.partial(store.read_bytes, "s3://bucket/k"),
                functools.partial(read, store, "s3://bucket/k"),
            ):
                with pytest.raises(TransientError) as info:
                    await call()
                outcomes.append((lean, type(info.value.__cause__).__name__))
    lean_causes = [name for lean, name in outcomes if lean]
    assert lean_causes == [name for lean, name in outcomes if not lean]
    assert lean_causes == (["AioReadTimeoutError"] * 2 if fault == "stall" else ["ClientPayloadError"] * 2)


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (503, "SlowDown", True),
        (500, "InternalError", True),
        (429, "TooManyRequests", True),
        (403, "AccessDenied", False),
        (404, "NoSuchKey", False),
        (400, "InvalidArgument", False),
    ],
)
async def test_a_store_built_from_a_config_retries_per_the_retries_section(
    scripted: ScriptedS3, status: int, code: str, retried: bool
) -> None:
    """Throttling and 5xx are retried exactly ``retries.maxAttempts`` times in all (botocore's own
    retries are off under a config), a 4xx never."""
    from flytestore.registry import create_backend

    config = Config(
        type="s3",
        container="bucket",
        stow={
            "kind": "s3",
            "config": {
                "endpoint": scripted.endpoint,
                "access_key_id": "a",
                "secret_key": "b",
                "auth_type": "accesskey",
            },
        },
        retries={"max_attempts": 3, "base_delay": "1ms", "max_delay": "2ms"},
    )
    scripted.status = 200  # the bucket exists
    store = create_backend("s3", config.backend_config(), config=config, scope=None, container="bucket")
    async with store:
        scripted.status, scripted.code = status, code
        for call in (lambda: store.read_bytes("s3://bucket/k"), lambda: store.write_raw("s3://bucket/k", b"x")):
            scripted.requests = 0
            with pytest.raises(StorageError):
                await call()
            assert scripted.requests == (3 if retried else 1)


# -- read_ranges ----------------------------------------------------------------------------------


async def test_read_ranges_coalesces_nearby_ranges_into_few_gets(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 adjacent 64 KiB ranges (64 MiB) take a handful of GETs, not 1,000: requests absorb
    ranges up to COALESCE_MAX_REQUEST each, and run in parallel. With coalesce=0 each range is
    its own GET."""
    r = ref(store, "ranges/big")
    data = os.urandom(64 * MiB)
    await store.write_raw(r, data)
    ranges = [(i * 64 * KiB, (i + 1) * 64 * KiB) for i in range(1000)]
    sent = capture_requests(store, monkeypatch)
    results = await store.read_ranges(r, ranges)
    gets = [req for req in sent if req.method == "GET"]
    assert len(results) == 1000 and b"".join(results) == data[: 1000 * 64 * KiB]
    assert len(gets) == -(-1000 * 64 * KiB // COALESCE_MAX_REQUEST) == 8
    sent.clear()
    spread = [(i * MiB, i * MiB + 10) for i in range(20)]  # 1 MiB - 10 apart: within the default gap
    assert await store.read_ranges(r, spread) == [data[s:e] for s, e in spread]
    assert len([req for req in sent if req.method == "GET"]) == 3  # 20 MiB spans in 8 MiB requests
    sent.clear()
    assert await store.read_ranges(r, spread, coalesce=MiB - 11) == [data[s:e] for s, e in spread]
    assert len([req for req in sent if req.method == "GET"]) == 20
    sent.clear()
    assert await store.read_ranges(r, ranges[:50], coalesce=0) == results[:50]
    assert len([req for req in sent if req.method == "GET"]) == 50


async def test_read_ranges_are_pinned_to_one_version(store: S3Store) -> None:
    """An object replaced between two of one call's requests is PreconditionFailedError, never
    ranges of two versions."""
    r = ref(store, "ranges/changing")
    await store.write_raw(r, b"a" * 100)
    original = store.read_raw
    calls = 0
    replaced = asyncio.Event()

    async def read_then_replace(ref_: str, offset: int = 0, length: int | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            stream = await original(ref_, offset, length)
            await store.write_raw(r, b"b" * 100)
            replaced.set()
            return stream
        await replaced.wait()  # the later request reads the new version
        return await original(ref_, offset, length)

    store.read_raw = read_then_replace  # type: ignore[method-assign]
    with pytest.raises(PreconditionFailedError, match="changed"):
        await store.read_ranges(r, [(0, 10), (90, 100)], coalesce=0)
    assert calls == 2
    del store.read_raw
    assert await store.read_ranges(r, [(0, 10), (90, 100)], coalesce=0) == [b"b" * 10] * 2


async def test_read_ranges_through_the_download_limit(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download limit bounds the total of one call, refused before any range is read."""
    r = ref(store, "ranges/limited")
    data = os.urandom(4 * KiB)
    await store.write_raw(r, data)
    limited = LimitedStore(store, max_download_mbs=2 * KiB / MiB)
    assert await limited.read_ranges(r, [(0, KiB), (3 * KiB, 4 * KiB)]) == [data[:KiB], data[3 * KiB :]]
    sent = capture_requests(store, monkeypatch)
    with pytest.raises(ExceedsLimitError) as info:
        await limited.read_ranges(r, [(0, KiB), (2 * KiB, 4 * KiB)])
    assert isinstance(info.value, OSError) and (info.value.size, info.value.limit) == (3 * KiB, 2 * KiB)
    assert [req.method for req in sent] == ["HEAD"]  # nothing downloaded
    assert await limited.read_ranges(r, [(3 * KiB, 9 * KiB)]) == [data[3 * KiB :]]  # clipped: 1 KiB


async def test_read_ranges_of_a_cached_object_send_no_request(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    r = ref(store, "ranges/cached")
    data = os.urandom(10 * KiB)
    cached = CachedStore(store, max_size_mbs=64)
    await cached.write_raw(r, data)
    assert await cached.read_bytes(r) == data  # cached now
    sent = capture_requests(store, monkeypatch)
    assert await cached.read_ranges(r, [(5, 10), (0, 3), (10 * KiB - 1, 20 * KiB)]) == [
        data[5:10],
        data[0:3],
        data[-1:],
    ]
    assert sent == []
