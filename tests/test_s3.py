"""S3Store specifics, against moto's server: settings and credentials, signed URLs used by a plain
HTTP client, multipart uploads (and their clean-up on failure and cancellation), the missing-bucket
retry, server-side copies, listing cursors, error mapping and client lifecycle.

Behaviour every backend shares lives in the conformance suite. Multipart tests use 5 MiB parts
(S3's minimum) and ~11 MiB bodies, so that they stay quick while crossing part boundaries.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import os
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
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
from flytestore.rawstore import Cursor, Options, SignedURLProperties
from flytestore.stores import s3 as s3_module
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
    assert client_config.retries == {"mode": "standard", "max_attempts": 3}


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


async def test_default_headers_are_sent(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    store = S3Store(s3_server.settings(headers={"X-Flyte-Test": "yes"}), container=bucket)
    seen: list[str | None] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(request.headers.get("X-Flyte-Test"))

    async with store:
        store.api.client.meta.events.register("before-send.s3", capture)
        await store.write_raw(ref(store, "k"), b"v")
        signed = await store.create_signed_url(ref(store, "k"), SignedURLProperties(scope="GET"))
        await drop_bucket(store, bucket)
    assert seen and all(value in ("yes", b"yes") for value in seen)
    assert "x-flyte-test" not in signed.url.lower()  # never signed into URLs


async def test_v2_signing_works(s3_server: MotoS3) -> None:
    bucket = unique_bucket()
    store = S3Store(s3_server.settings(signature_version="s3"), container=bucket)
    async with store:
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


async def test_parts_in_flight_are_bounded(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.max_parts_in_flight = 2
    active = peak = 0
    original = s3_module._S3Api.upload_part

    async def counting(self: Any, *args: Any) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await original(self, *args)
        finally:
            active -= 1

    monkeypatch.setattr(s3_module._S3Api, "upload_part", counting)
    data = os.urandom(3 * PART + 1)
    meta = await store.write_raw(ref(store, "bounded"), data)
    assert meta.etag.endswith("-4")
    assert peak == 2
    assert await read(store, ref(store, "bounded")) == data


async def test_failed_part_aborts(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = s3_module._S3Api.upload_part

    async def failing(self: Any, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> Any:
        if number == 2:
            raise ClientError(
                {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "UploadPart"
            )
        return await original(self, bucket, key, upload_id, number, body)

    monkeypatch.setattr(s3_module._S3Api, "upload_part", failing)
    r = ref(store, "part-fails")
    with pytest.raises(TransientError) as info:
        await store.write_raw(r, blocks(BIG))
    assert isinstance(info.value.__cause__, ClientError)
    assert not (await store.head(r)).exists
    assert await uploads(store) == []


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
