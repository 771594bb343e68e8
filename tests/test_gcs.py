"""GCSStore behaviour the conformance suite cannot express: configuration and credential forms,
V4 signed URLs (fields, signature, use by a plain HTTP client), the chunked resumable upload path
(its requests, abort on failure and cancellation, partial persistence), error mapping, and the
session lifecycle.

Most tests run against fake-gcs-server (``gcs_server``). A few need answers the emulator never
gives (401/403/429/503, a token endpoint, a resumable session that keeps only part of a chunk):
those run against a small aiohttp application started in the test (``fake_api``).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flytestore import (
    AlreadyExistsError,
    Config,
    ConfigError,
    DataStore,
    ExceedsLimitError,
    InvalidArgumentError,
    NotFoundError,
    Options,
    PermissionDeniedError,
    PreconditionFailedError,
    SignedURLProperties,
    SizeMismatchError,
    StorageError,
    TransientError,
    UnsupportedError,
)
from flytestore.layers.resilient import ResilientStore
from flytestore.registry import create_backend
from flytestore.stores.gcs import _TIME, DEFAULT_SCOPES, GCSStore, _parse_time, from_config, sign_url_v4

from .conformance.backend_gcs import fake_service_account, fake_service_account_json
from .servers import HOST, free_port

KiB = 1024
CHUNK = 256 * KiB  # the smallest resumable chunk GCS allows: keeps these tests small


def _bucket() -> str:
    return f"flytestore-{uuid.uuid4().hex[:16]}"


def _config(**stow_config: str) -> Config:
    return Config(type="stow", container="bucket", stow={"kind": "google", "config": stow_config})


def _build(settings: dict[str, str], config: Config | None = None) -> GCSStore:
    """As the registry builds the primary store."""
    config = config or _config()
    return from_config(
        settings,
        container="bucket",
        multicontainer=False,
        config=config,
        field="stow.config",
        signed_url_override=config.signed_url.stow_config_override,
    )


@pytest.fixture
async def store(gcs_server: str) -> AsyncIterator[GCSStore]:
    """A store on a fresh bucket, with a small resumable chunk so the resumable path is cheap."""
    async with GCSStore(
        container=_bucket(), endpoint=gcs_server, service_account=fake_service_account(), part_size=CHUNK
    ) as s:
        yield s


def _ref(store: GCSStore, key: str) -> str:
    return f"gs://{store.container}/{key}"


async def _blocks(count: int, size: int, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for i in range(count):
        yield bytes([i % 256]) * size
    if gate is not None:
        await gate.wait()


def _expected(count: int, size: int) -> bytes:
    return b"".join(bytes([i % 256]) * size for i in range(count))


class Spy:
    """Records the store's own request helper calls (method, Content-Range) and aborts."""

    def __init__(self, store: GCSStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[tuple[str, str]] = []
        self.aborts: list[str] = []
        self.put = asyncio.Event()
        request, abort = store._request, store._abort

        async def spy_request(method: str, url: Any, **kw: Any) -> aiohttp.ClientResponse:
            self.requests.append((method, (kw.get("headers") or {}).get("Content-Range", "")))
            resp = await request(method, url, **kw)
            if method == "PUT":
                self.put.set()
            return resp

        async def spy_abort(url: Any) -> None:
            self.aborts.append(str(url))
            await abort(url)

        monkeypatch.setattr(store, "_request", spy_request)
        monkeypatch.setattr(store, "_abort", spy_abort)

    def ranges(self) -> list[str]:
        return [r for m, r in self.requests if m == "PUT"]


# -- configuration ---------------------------------------------------------------------------------


def test_from_config_reads_flyte_keys() -> None:
    store = _build(
        {
            "json": fake_service_account_json(),
            "project_id": "proj",
            "scopes": "https://a/scope1, https://a/scope2 https://a/scope3",
            "endpoint": "http://127.0.0.1:9/",
            "region": "us-east-1",  # Go's default stow.config: accepted and ignored
        }
    )
    assert store.container == "bucket" and not store.multicontainer
    assert store.project_id == "proj"
    assert store.scopes == ["https://a/scope1", "https://a/scope2", "https://a/scope3"]
    assert store.endpoint == "http://127.0.0.1:9" and store.emulator and store.anonymous
    assert store.base_container == "gs://bucket"


def test_defaults_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    store = _build({})
    assert store.endpoint is None and not store.emulator and not store.anonymous
    assert store.api_root == "https://storage.googleapis.com"
    assert store.scopes == list(DEFAULT_SCOPES)


def test_storage_emulator_host_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")  # without a scheme, as often set
    store = _build({})
    assert store.endpoint == "http://127.0.0.1:4443" and store.anonymous


def test_unknown_key_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        _build({"projectid": "typo"})
    assert info.value.field == "stow.config.projectid"


@pytest.mark.parametrize("endpoint", ["ftp://host", "http://"])
def test_bad_endpoint_names_the_field(endpoint: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build({"endpoint": endpoint})
    assert info.value.field == "stow.config.endpoint"


@pytest.mark.parametrize(
    "text",
    [
        "not json at all SECRET-MATERIAL",
        '["SECRET-MATERIAL"]',
        '{"private_key": "SECRET-MATERIAL"}',
        '{"type": "service_account", "private_key": "SECRET-MATERIAL"}',
    ],
)
def test_bad_credentials_never_quote_the_secret(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build({"json": text})
    assert info.value.field == "stow.config.json"
    assert "SECRET" not in str(info.value)


def test_secrets_stay_out_of_reprs() -> None:
    account = fake_service_account()
    config = _config(json=json.dumps(account), endpoint="http://127.0.0.1:9")
    store = _build(config.backend_config(), config)
    for text in (repr(store), repr(config), repr(store._signer)):
        assert "PRIVATE KEY" not in text and account["private_key"][40:80] not in text


def test_signed_url_override_supplies_the_signing_key() -> None:
    account = fake_service_account()
    config = Config(
        type="stow",
        container="bucket",
        stow={"kind": "google", "config": {"endpoint": "http://127.0.0.1:9"}},
        signed_url={"stowConfigOverride": {"json": json.dumps(account), "endpoint": "https://public.example"}},
    )
    store = _build(config.backend_config(), config)
    assert store._signer is not None
    assert store._signer.email == account["client_email"]
    assert store._signer.base_url == "https://public.example"


@pytest.mark.parametrize("part_size", [CHUNK + 1, CHUNK // 2, 0, -CHUNK, True, 1.5])
def test_part_size_must_suit_resumable_uploads(part_size: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        GCSStore(endpoint="http://127.0.0.1:9", part_size=part_size)


def test_upload_chunk_size_is_a_former_name_of_part_size() -> None:
    assert GCSStore(endpoint="http://127.0.0.1:9", upload_chunk_size=2 * CHUNK).part_size == 2 * CHUNK
    assert GCSStore(endpoint="http://127.0.0.1:9").part_size == 8 * 1024 * KiB
    assert GCSStore.max_parts_in_flight == 1  # a resumable upload takes its chunks in order


async def test_the_registry_builds_it_and_datastore_uses_it(gcs_server: str) -> None:
    bucket = _bucket()
    config = Config.from_dict(
        {
            "type": "stow",
            "container": bucket,
            "stow": {"kind": "google", "config": {"endpoint": gcs_server}},
            "defaultHttpClient": {"maxIdleConns": 7, "timeout": "30s"},
        }
    )
    wrapped = create_backend("google", config.backend_config(), config=config, scope=None, container=bucket)
    assert isinstance(wrapped, ResilientStore)  # retries and the concurrency budget
    backend = wrapped.inner
    assert isinstance(backend, GCSStore)
    async with DataStore(config) as ds:
        ref = ds.construct_reference(ds.base_container, "a", "b.txt")
        await ds.write_raw(ref, b"through the datastore")
        assert await ds.read_bytes(ref) == b"through the datastore"
    async with backend:
        # One session, sized and timed from defaultHttpClient, and gcloud-aio shares it.
        session = backend._http()
        assert isinstance(session.connector, aiohttp.TCPConnector) and session.connector.limit == 7
        assert session.timeout.total == 30
        assert backend._timeout is session.timeout
        assert backend.storage.session.session is session
        assert (await backend.head(f"gs://{bucket}/a/b.txt")).size == 21


# -- lifecycle -------------------------------------------------------------------------------------


async def test_open_creates_the_bucket_and_tolerates_an_existing_one(gcs_server: str) -> None:
    bucket = _bucket()
    async with GCSStore(container=bucket, endpoint=gcs_server) as first:
        await first.write_raw(f"gs://{bucket}/k", b"v")
    async with GCSStore(container=bucket, endpoint=gcs_server) as second:  # exists now: no error
        assert await second.read_bytes(f"gs://{bucket}/k") == b"v"


async def test_single_container_store_refuses_other_buckets(gcs_server: str) -> None:
    async with GCSStore(container=_bucket(), endpoint=gcs_server, multicontainer=False) as store:
        with pytest.raises(NotFoundError, match="enable-multicontainer"):
            await store.head("gs://some-other-bucket/key")


async def test_use_before_open_is_a_clear_error(gcs_server: str) -> None:
    store = GCSStore(container=_bucket(), endpoint=gcs_server)
    with pytest.raises(StorageError, match="not open"):
        await store.head(_ref(store, "k"))


def _assert_no_unclosed_warnings(caught: list[warnings.WarningMessage]) -> None:
    gc.collect()
    bad = [w for w in caught if issubclass(w.category, ResourceWarning) or "Unclosed" in str(w.message)]
    assert not bad, [str(w.message) for w in bad]


async def test_aclose_leaves_no_unclosed_session(gcs_server: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = GCSStore(container=_bucket(), endpoint=gcs_server)
        await store.open()
        await store.open()  # idempotent: still one session
        await store.write_raw(_ref(store, "k"), b"x" * 100)
        stream = await store.read_raw(_ref(store, "k"))
        await stream.__anext__()  # left unfinished: closing the store must not leak it
        await stream.aclose()
        await store.aclose()
        await store.aclose()  # idempotent
        del store, stream
        _assert_no_unclosed_warnings(caught)


async def test_failed_open_closes_its_session() -> None:
    port = free_port()  # nothing listens here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = GCSStore(container=_bucket(), endpoint=f"http://{HOST}:{port}")
        with pytest.raises(TransientError) as info:
            await store.open()
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
        assert store._session is None
        del store
        _assert_no_unclosed_warnings(caught)


# -- reads -----------------------------------------------------------------------------------------


async def test_streamed_read_has_bounded_chunks_size_and_metadata(store: GCSStore) -> None:
    ref = _ref(store, "r/big")
    data = bytes(range(256)) * (12 * KiB)  # 3 MiB
    await store.write_raw(ref, data, options=Options(content_type="application/x-test"))
    stream = await store.read_raw(ref)
    assert stream.size == len(data)
    assert stream.metadata is not None and stream.metadata.content_type == "application/x-test"
    sizes = []
    async with stream:
        parts = [bytes(c) async for c in stream]
        sizes = [len(p) for p in parts]
    assert b"".join(parts) == data
    assert max(sizes) <= 1024 * KiB
    ranged = await store.read_raw(ref, offset=10, length=1000)
    assert ranged.size == 1000 and await ranged.read() == data[10:1010]
    assert ranged.metadata is not None and ranged.metadata.size == len(data)  # the object's, not the range's


async def test_read_bytes_refuses_objects_over_max_size(store: GCSStore) -> None:
    ref = _ref(store, "limited")
    await store.write_raw(ref, b"x" * 5000)
    with pytest.raises(ExceedsLimitError):
        await store.read_bytes(ref, max_size=4999)
    assert await store.read_bytes(ref, max_size=5000) == b"x" * 5000
    assert await store.read_bytes(ref, offset=4990, max_size=10) == b"x" * 10


async def test_zero_length_read_still_checks_existence(store: GCSStore) -> None:
    with pytest.raises(NotFoundError):
        await store.read_raw(_ref(store, "missing"), offset=3, length=0)
    with pytest.raises(NotFoundError):
        await store.read_bytes(_ref(store, "missing"), length=0)
    await store.write_raw(_ref(store, "present"), b"abc")
    assert await store.read_bytes(_ref(store, "present"), offset=1, length=0) == b""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05.123Z", datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)),
        ("2024-01-02T03:04:05.123456789Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2024-01-02T03:04:05.5+02:00", datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=timezone.utc)),
        ("yesterday", None),
    ],
)
def test_timestamps_parse_on_every_python(text: str, expected: datetime | None) -> None:
    assert _parse_time(text) == expected
    match = _TIME.match(text)  # the 3.10 fallback agrees
    assert (match is not None) == (expected is not None)


# -- simple writes and metadata --------------------------------------------------------------------


async def test_metadata_round_trips_on_every_upload_kind(store: GCSStore) -> None:
    opts = Options(metadata={"owner": "me", "run": "42"}, content_type="text/csv")
    small = await store.write_raw(_ref(store, "m/small"), b"a,b\n", options=opts)  # multipart
    large = await store.write_raw(_ref(store, "m/large"), _blocks(3, 100 * KiB), options=opts)  # resumable
    for meta, ref in ((small, "m/small"), (large, "m/large")):
        head = await store.head(_ref(store, ref))
        assert head.content_type == "text/csv" and dict(head.user_metadata) == {"owner": "me", "run": "42"}
        assert head.etag == meta.etag and head.size == meta.size
        assert head.content_md5  # GCS's base64 MD5 of the content
        assert head.last_modified is not None and head.last_modified.tzinfo is not None
        assert head.version


async def test_media_upload_without_content_type_is_octet_stream(store: GCSStore) -> None:
    meta = await store.write_raw(_ref(store, "plain.json"), b"{}")
    # Not guessed from the name (gcloud-aio would say application/json).
    assert meta.content_type == "application/octet-stream"
    expected = base64.b64encode(hashlib.md5(b"{}").digest()).decode()
    assert meta.content_md5 == expected


# -- resumable uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [False, True])
async def test_large_writes_go_resumable_in_bounded_chunks(
    store: GCSStore, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    spy = Spy(store, monkeypatch)
    count, size = 9, 100 * KiB + 7  # 900 KiB + 63 bytes: three full 256 KiB chunks and a tail
    total = count * size
    ref = _ref(store, "resumable")
    meta = await store.write_raw(ref, _blocks(count, size), size=total if declared else None)
    assert meta.size == total
    assert await store.read_bytes(ref) == _expected(count, size)
    assert [m for m, _ in spy.requests] == ["POST", "PUT", "PUT", "PUT", "PUT"]
    assert spy.ranges() == [
        f"bytes 0-{CHUNK - 1}/*",
        f"bytes {CHUNK}-{2 * CHUNK - 1}/*",
        f"bytes {2 * CHUNK}-{3 * CHUNK - 1}/*",
        f"bytes {3 * CHUNK}-{total - 1}/{total}",
    ]
    assert not spy.aborts


async def test_a_body_of_one_chunk_is_one_request(store: GCSStore, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(store, monkeypatch)
    await store.write_raw(_ref(store, "one"), _blocks(2, CHUNK // 2))  # unknown length, exactly one chunk
    assert [m for m, _ in spy.requests] == ["POST"]
    # Bytes over one chunk: in memory already, so its own single part: one request, no session.
    big = b"z" * (3 * CHUNK + 1)
    await store.write_raw(_ref(store, "bytes"), big)
    await store.write_raw(_ref(store, "view"), memoryview(bytearray(big)), options=Options(metadata={"a": "b"}))
    assert [m for m, _ in spy.requests] == ["POST", "POST", "POST"]
    assert await store.read_bytes(_ref(store, "bytes")) == big
    assert await store.read_bytes(_ref(store, "view")) == big


@pytest.mark.parametrize("kind", [bytearray, memoryview])
@pytest.mark.parametrize("count", [2, 9])  # one part (a single request), several (resumable)
async def test_a_producer_reusing_one_buffer_stores_what_it_yielded(
    store: GCSStore, monkeypatch: pytest.MonkeyPatch, kind: type, count: int
) -> None:
    spy = Spy(store, monkeypatch)
    size = 100 * KiB + 3

    async def refilled() -> AsyncIterator[bytearray | memoryview]:
        buffer = bytearray(size)
        for i in range(count):
            buffer[:] = bytes([i + 1]) * size
            yield buffer if kind is bytearray else memoryview(buffer)

    ref = _ref(store, f"reused-{kind.__name__}-{count}")
    meta = await store.write_raw(ref, refilled())
    expected = b"".join(bytes([i + 1]) * size for i in range(count))
    assert meta.size == len(expected)
    assert await store.read_bytes(ref) == expected
    assert len(spy.ranges()) == (0 if count * size <= CHUNK else -(-count * size // CHUNK))


async def test_failed_resumable_write_is_aborted_and_leaves_nothing(
    store: GCSStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(store, monkeypatch)
    ref = _ref(store, "broken")

    async def broken() -> AsyncIterator[bytes]:
        async for block in _blocks(4, 100 * KiB):
            yield block
        await spy.put.wait()  # the first chunk is on the server
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        await store.write_raw(ref, broken())
    assert len(spy.ranges()) == 1 and len(spy.aborts) == 1
    assert "upload_id=" in spy.aborts[0]
    assert not (await store.head(ref)).exists


async def test_existing_object_survives_a_failed_resumable_overwrite(
    store: GCSStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _ref(store, "keep")
    await store.write_raw(ref, b"precious")
    spy = Spy(store, monkeypatch)
    with pytest.raises(SizeMismatchError):
        await store.write_raw(ref, _blocks(4, 100 * KiB), size=4 * 100 * KiB + 1)
    with pytest.raises(SizeMismatchError):
        await store.write_raw(ref, _blocks(4, 100 * KiB), size=4 * 100 * KiB - 1)
    assert len(spy.aborts) == 2
    assert all("/*" in r for r in spy.ranges())  # nothing was finalised
    assert await store.read_bytes(ref) == b"precious"


async def test_cancelled_resumable_write_is_aborted_and_leaves_nothing(
    store: GCSStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(store, monkeypatch)
    ref = _ref(store, "cancelled")
    task = asyncio.create_task(store.write_raw(ref, _blocks(3, 100 * KiB, gate=asyncio.Event())))
    await spy.put.wait()  # one chunk is on the server
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(spy.aborts) == 1
    assert not (await store.head(ref)).exists
    assert [e async for e in store.list(f"gs://{store.container}")] == []


async def test_create_only_resumable_write(store: GCSStore) -> None:
    ref = _ref(store, "once")
    create = Options(if_not_exists=True)
    await store.write_raw(ref, _blocks(4, 100 * KiB), options=create)
    with pytest.raises(AlreadyExistsError):
        await store.write_raw(ref, _blocks(5, 100 * KiB), options=create)
    assert await store.read_bytes(ref) == _expected(4, 100 * KiB)


# -- copy ------------------------------------------------------------------------------------------


async def test_copy_keeps_or_replaces_metadata(store: GCSStore) -> None:
    src = _ref(store, "c/src")
    await store.write_raw(src, b"data", options=Options(metadata={"a": "1"}, content_type="text/plain"))
    kept = await store.copy_raw(src, _ref(store, "c/kept"))
    assert kept.content_type == "text/plain" and dict(kept.user_metadata) == {"a": "1"}
    replaced = await store.copy_raw(
        src, _ref(store, "c/replaced"), options=Options(metadata={"b": "2"}, content_type="text/x")
    )
    assert replaced.content_type == "text/x" and dict(replaced.user_metadata) == {"b": "2"}
    assert await store.read_bytes(_ref(store, "c/replaced")) == b"data"


# -- signed URLs -----------------------------------------------------------------------------------


def _verify_signature(url: str, public_key: rsa.RSAPublicKey, method: str, headers: dict[str, str]) -> dict[str, str]:
    """Rebuild the canonical request from the URL as Google does and check the signature."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    fields = dict(query)
    signature = fields.pop("X-Goog-Signature")
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(fields.items()))
    signed = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    assert fields["X-Goog-SignedHeaders"] == ";".join(sorted(signed))
    canonical_request = "\n".join(
        [
            method,
            parts.path,
            canonical_query,
            "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
            fields["X-Goog-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = fields["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", fields["X-Goog-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    public_key.verify(bytes.fromhex(signature), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return fields


def _public_key() -> rsa.RSAPublicKey:
    key = serialization.load_pem_private_key(fake_service_account()["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key()


async def test_signed_url_fields_and_signature(store: GCSStore) -> None:
    ref = _ref(store, "dir/with space/ü~x.txt")
    signed = await store.create_signed_url(ref, SignedURLProperties(scope="GET", expires_in=timedelta(minutes=5)))
    fields = _verify_signature(signed.url, _public_key(), "GET", dict(signed.required_headers))
    assert fields["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    assert fields["X-Goog-Credential"] == f"{fake_service_account()['client_email']}/{today}/auto/storage/goog4_request"
    assert fields["X-Goog-Expires"] == "300"
    assert fields["X-Goog-SignedHeaders"] == "host"
    assert datetime.strptime(fields["X-Goog-Date"], "%Y%m%dT%H%M%SZ")
    assert urlsplit(signed.url).path == f"/{store.container}/dir/with%20space/%C3%BC~x.txt"


async def test_signed_urls_work_with_a_plain_http_client(store: GCSStore) -> None:
    ref = _ref(store, "signed/dir/report 1.txt")
    await store.write_raw(ref, b"signed content")
    get = await store.create_signed_url(ref, SignedURLProperties(scope="GET"))
    assert get.url.startswith(store.endpoint or "")
    body = b"uploaded through a signed URL"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    put_ref = _ref(store, "signed/put me.bin")
    put = await store.create_signed_url(
        put_ref, SignedURLProperties(scope="PUT", content_md5=md5, add_content_md5_metadata=True)
    )
    assert dict(put.required_headers) == {"Content-MD5": md5, "x-goog-meta-flytecontentmd5": md5}
    _verify_signature(put.url, _public_key(), "PUT", dict(put.required_headers))
    async with aiohttp.ClientSession() as http:
        async with http.get(get.url, headers=dict(get.required_headers)) as resp:
            assert resp.status == 200 and await resp.read() == b"signed content"
        async with http.put(put.url, data=body, headers=dict(put.required_headers)) as resp:
            assert resp.status == 200, await resp.text()
    assert await store.read_bytes(put_ref) == body
    assert (await store.head(put_ref)).user_metadata.get("flytecontentmd5") == md5


def test_sign_url_v4_is_deterministic_for_a_given_time() -> None:
    key = serialization.load_pem_private_key(fake_service_account()["private_key"].encode(), password=None)
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    url = sign_url_v4(method="GET", bucket="b", key="k/x y", email="e@x", private_key=key, expires_in=60, now=now)
    assert url.startswith(
        "https://storage.googleapis.com/b/k/x%20y?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=e%40x%2F20240102%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20240102T030405Z"
        "&X-Goog-Expires=60&X-Goog-SignedHeaders=host&X-Goog-Signature="
    )
    assert url == sign_url_v4(
        method="GET", bucket="b", key="k/x y", email="e@x", private_key=key, expires_in=60, now=now
    )
    _verify_signature(url, _public_key(), "GET", {})


async def test_unusable_private_key_is_a_config_error(gcs_server: str) -> None:
    account = {**fake_service_account(), "private_key": "-----BEGIN PRIVATE KEY-----\nSECRET-MATERIAL\n"}
    settings = {"json": json.dumps(account), "endpoint": gcs_server}
    store = from_config(settings, container="", multicontainer=True, config=_config(), field="schemes.gs.config")
    async with store:
        with pytest.raises(ConfigError) as info:
            await store.create_signed_url("gs://b/k", SignedURLProperties())
    assert info.value.field == "schemes.gs.config.json"
    assert "SECRET" not in str(info.value) and "SECRET" not in str(info.value.__cause__ or "")


async def test_signed_url_limits_and_missing_key(store: GCSStore, gcs_server: str) -> None:
    with pytest.raises(InvalidArgumentError, match="7 days"):
        await store.create_signed_url(_ref(store, "k"), SignedURLProperties(expires_in=timedelta(days=8)))
    async with GCSStore(endpoint=gcs_server) as keyless:
        with pytest.raises(UnsupportedError, match="service-account key"):
            await keyless.create_signed_url("gs://b/k", SignedURLProperties())


# -- listing -----------------------------------------------------------------------------------------


async def test_listing_cursor_is_the_page_token(store: GCSStore) -> None:
    for i in range(5):
        await store.write_raw(_ref(store, f"l/{i}"), b"x" * i)
    refs, cursor = await store.list_page(_ref(store, "l"), max_items=2)
    assert len(refs) == 2 and not cursor.is_end() and cursor.position
    entries = [e async for e in store.list(_ref(store, "l"), page_size=2)]
    assert [e.size for e in entries] == [0, 1, 2, 3, 4]
    assert all(e.etag and e.last_modified is not None for e in entries)


# -- errors ----------------------------------------------------------------------------------------


async def test_not_found_keeps_the_client_error_as_cause(store: GCSStore) -> None:
    ref = _ref(store, "nope")
    for op in (store.read_raw(ref), store.delete(ref), store.copy_raw(ref, _ref(store, "dst"))):
        with pytest.raises(NotFoundError) as info:
            await op
        assert isinstance(info.value.__cause__, aiohttp.ClientResponseError)
        assert info.value.__cause__.status == 404
        assert ref in str(info.value)


async def test_unreachable_server_is_transient() -> None:
    store = GCSStore(endpoint=f"http://{HOST}:{free_port()}")
    async with store:
        with pytest.raises(TransientError) as info:
            await store.head("gs://bucket/key")
        assert "gs://bucket/key" in str(info.value)
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeAPI:
    """A tiny HTTP server in the test's loop: tests add ``routes`` to answer what the emulator cannot."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.routes: dict[tuple[str, str], Handler] = {}  # (method, path or "*") -> handler

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.routes.get((request.method, request.path)) or self.routes.get((request.method, "*"))
        if handler is None:
            return web.json_response({"error": {"code": 404, "message": "no route"}}, status=404)
        return await handler(request)


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAPI]:
    port = free_port()
    api = FakeAPI(f"http://{HOST}:{port}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    try:
        yield api
    finally:
        await runner.cleanup()


def _gcs_error(status: int, message: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": status, "message": message}}, status=status)

    return handler


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, PermissionDeniedError),
        (403, PermissionDeniedError),
        (429, TransientError),
        (503, TransientError),
        (412, PreconditionFailedError),
        (400, InvalidArgumentError),
    ],
)
async def test_http_statuses_map_onto_the_error_tree(fake_api: FakeAPI, status: int, error: type[StorageError]) -> None:
    url, routes = fake_api.url, fake_api.routes
    routes[("GET", "*")] = _gcs_error(status, "the server's reason")
    routes[("POST", "*")] = _gcs_error(status, "the server's reason")
    async with GCSStore(endpoint=url) as store:
        for op in (store.read_raw("gs://b/k"), store.head("gs://b/k"), store.write_raw("gs://b/k", b"x")):
            with pytest.raises(error) as info:
                await op
            assert "gs://b/k" in str(info.value) and "the server's reason" in str(info.value)
            assert isinstance(info.value.__cause__, aiohttp.ClientResponseError)
            assert info.value.__cause__.status == status


async def test_create_only_precondition_failure_is_already_exists(fake_api: FakeAPI) -> None:
    url, routes = fake_api.url, fake_api.routes
    routes[("POST", "*")] = _gcs_error(412, "Precondition Failed")
    async with GCSStore(endpoint=url) as store:
        with pytest.raises(AlreadyExistsError):
            await store.write_raw("gs://b/k", b"x", options=Options(if_not_exists=True))


async def test_timeouts_come_from_config_and_are_transient(fake_api: FakeAPI) -> None:
    url, routes = fake_api.url, fake_api.routes

    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response()

    routes[("GET", "*")] = slow
    config = Config(type="mem", default_http_client={"timeout": "200ms"})
    try:
        async with GCSStore(endpoint=url, config=config) as store:
            for op in (store.read_raw("gs://b/k"), store.head("gs://b/k")):
                with pytest.raises(TransientError, match="timed out"):
                    await op
    finally:
        release.set()


async def test_service_account_token_is_sent_with_configured_scopes(fake_api: FakeAPI) -> None:
    """The credential form of Flyte's ``json`` key: gcloud-aio signs a JWT with the key, trades
    it at ``token_uri`` for an access token, and every request carries it."""
    url, routes = fake_api.url, fake_api.routes
    assertions: list[dict[str, Any]] = []
    seen: list[str | None] = []

    async def token(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        assertions.append(jwt.decode(str(form["assertion"]), options={"verify_signature": False}))
        return web.json_response({"access_token": "tok-123", "expires_in": 3600})

    async def media(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=b"payload")

    routes[("POST", "/token")] = token
    routes[("GET", "*")] = media
    account = {**fake_service_account(), "token_uri": f"{url}/token"}
    settings = {"json": json.dumps(account), "endpoint": url, "scopes": "https://scope/a,https://scope/b"}
    built = from_config(settings, container="", multicontainer=True, config=_config(), field="stow.config")
    authed = GCSStore(
        endpoint=url, service_account=account, scopes=built.scopes, authenticate=True, config=Config(type="mem")
    )
    async with authed:
        assert await authed.read_bytes("gs://b/k") == b"payload"
        assert await authed.read_bytes("gs://b/k") == b"payload"
    assert seen == ["Bearer tok-123", "Bearer tok-123"]
    assert len(assertions) == 1  # the token is cached
    assert assertions[0]["scope"] == "https://scope/a https://scope/b"
    assert assertions[0]["iss"] == account["client_email"]
    async with built:  # an emulator endpoint: no credentials at all
        assert await built.read_bytes("gs://b/k") == b"payload"
    assert seen[-1] is None


async def test_resumable_upload_resends_what_the_server_did_not_keep(fake_api: FakeAPI) -> None:
    """GCS may persist less than a chunk (308 with a shorter Range): the rest must be sent again."""
    url, routes = fake_api.url, fake_api.routes
    received = bytearray()
    ranges: list[str] = []

    async def start(request: web.Request) -> web.StreamResponse:
        assert request.query["uploadType"] == "resumable"
        return web.json_response({}, headers={"Location": f"{url}/session/1"})

    async def chunk(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        content_range = request.headers["Content-Range"]
        ranges.append(content_range)
        start = int(content_range.split(" ")[1].split("-")[0])
        assert start == len(received), "the client resent from the wrong offset"
        if len(ranges) == 1:
            body = body[: len(body) // 2]  # keep only half of the first chunk
        received.extend(body)
        if content_range.endswith("/*"):
            return web.Response(status=308, headers={"Range": f"bytes=0-{len(received) - 1}"})
        return web.json_response({"name": "k", "size": str(len(received)), "etag": "e", "generation": "1"})

    routes[("POST", "/upload/storage/v1/b/b/o")] = start
    routes[("PUT", "/session/1")] = chunk
    async with GCSStore(endpoint=url, part_size=2 * CHUNK) as store:
        meta = await store.write_raw("gs://b/k", _blocks(10, 100 * KiB))
    assert bytes(received) == _expected(10, 100 * KiB) and meta.size == len(received)
    # The rest of the part is sent again before the next part goes.
    assert ranges == [
        f"bytes 0-{2 * CHUNK - 1}/*",
        f"bytes {CHUNK}-{2 * CHUNK - 1}/*",
        f"bytes {2 * CHUNK}-{10 * 100 * KiB - 1}/{10 * 100 * KiB}",
    ]


async def test_resumable_upload_gives_up_on_a_chunk_the_server_never_keeps(fake_api: FakeAPI) -> None:
    url, routes = fake_api.url, fake_api.routes
    puts: list[str] = []
    deleted = asyncio.Event()

    async def start(request: web.Request) -> web.StreamResponse:
        return web.json_response({}, headers={"Location": f"{url}/session/3"})

    async def chunk(request: web.Request) -> web.StreamResponse:
        await request.read()
        puts.append(request.headers["Content-Range"])
        return web.Response(status=308)  # nothing persisted

    async def delete(request: web.Request) -> web.StreamResponse:
        deleted.set()
        return web.Response(status=499)

    routes[("POST", "/upload/storage/v1/b/b/o")] = start
    routes[("PUT", "/session/3")] = chunk
    routes[("DELETE", "/session/3")] = delete
    async with GCSStore(endpoint=url, part_size=CHUNK) as store:
        with pytest.raises(TransientError, match="persisted none"):
            await store.write_raw("gs://b/k", _blocks(3, 100 * KiB))
    assert puts == [f"bytes 0-{CHUNK - 1}/*"] * 3
    assert deleted.is_set()


async def test_abort_deletes_the_upload_session(fake_api: FakeAPI) -> None:
    url, routes = fake_api.url, fake_api.routes
    deleted = asyncio.Event()

    async def start(request: web.Request) -> web.StreamResponse:
        return web.json_response({}, headers={"Location": f"{url}/session/2"})

    async def chunk(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=308, headers={"Range": f"bytes=0-{CHUNK - 1}"})

    async def delete(request: web.Request) -> web.StreamResponse:
        deleted.set()
        return web.Response(status=499)

    routes[("POST", "/upload/storage/v1/b/b/o")] = start
    routes[("PUT", "/session/2")] = chunk
    routes[("DELETE", "/session/2")] = delete

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * (CHUNK + 10)
        raise RuntimeError("boom")

    async with GCSStore(endpoint=url, part_size=CHUNK) as store:
        with pytest.raises(RuntimeError, match="boom"):
            await store.write_raw("gs://b/k", failing())
    assert deleted.is_set()
