"""Azure backend behaviour the conformance suite cannot express: config and credential forms,
SAS URLs used by a plain HTTP client, block uploads (and what a failed or cancelled one leaves),
bounded streamed reads, listing forms, server-side copy, error mapping and lifecycle."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import importlib.util
import os
import sys
import types
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    AccountSasPermissions,
    ResourceTypes,
    UserDelegationKey,
    generate_account_sas,
)
from azure.storage.blob.aio import BlobClient

from flytestore import (
    AlreadyExistsError,
    Config,
    ConfigError,
    DataStore,
    InvalidArgumentError,
    InvalidReferenceError,
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
from flytestore.stores import azure as azure_module
from flytestore.stores.azure import AzureStore, from_config

from .servers import free_port
from .servers_azure import AzuriteServer

KiB = 1024
MiB = 1024 * KiB
OTHER_KEY = base64.b64encode(b"not the account key, but valid base64 for all that").decode()


def _container() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _credential(server: AzuriteServer) -> dict[str, str]:
    return {"account_name": server.account, "account_key": server.key}


@contextlib.asynccontextmanager
async def azure_store(server: AzuriteServer, **kwargs: Any) -> AsyncIterator[AzureStore]:
    """An opened store on a fresh container, dropped afterwards."""
    kwargs.setdefault("container", _container())
    kwargs.setdefault("account_url", server.endpoint)
    kwargs.setdefault("credential", _credential(server))
    store = AzureStore(**kwargs)
    async with store:
        try:
            yield store
        finally:
            if store.container:
                await store.service.delete_container(store.container)


class Requests:
    """Records the requests a store sends (a ``raw_request_hook``/``raw_response_hook`` pair)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}

    def options(self) -> dict[str, Any]:
        return {"raw_request_hook": self.on_request, "raw_response_hook": self.on_response}

    @staticmethod
    def _kind(url: str) -> str:
        return parse_qs(urlsplit(url).query).get("comp", [""])[0]

    def on_request(self, request: Any) -> None:
        http = request.http_request
        self.sent.append((http.method, self._kind(http.url), dict(http.headers)))
        if self._kind(http.url) == "block":
            self.in_flight += 1
            self.max_in_flight["block"] = max(self.max_in_flight.get("block", 0), self.in_flight)

    def on_response(self, response: Any) -> None:
        if self._kind(response.http_request.url) == "block":
            self.in_flight -= 1

    def count(self, method: str, kind: str = "") -> int:
        return sum(1 for m, k, _ in self.sent if m == method and k == kind)


async def _chunks(total: int, chunk: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield bytes([sent // chunk % 251]) * n
        sent += n


def _expected(total: int, chunk: int) -> bytes:
    return b"".join(bytes([i % 251]) * min(chunk, total - i * chunk) for i in range((total + chunk - 1) // chunk))


async def _read(store: AzureStore, ref: str, **kw: int) -> bytes:
    async with await store.read_raw(ref, **kw) as stream:
        return await stream.read()


# -- configuration --------------------------------------------------------------------------------


def _build(settings: dict[str, str], container: str = "c", **config: Any) -> AzureStore:
    # container="" builds a store that creates no container on open() (as lazily routed ones are).
    cfg = Config(type="stow", container=container or "c", stow={"kind": "azure", "config": settings}, **config)
    return from_config(cfg.backend_config(), container=container, multicontainer=False, config=cfg, field="stow.config")


def test_account_and_key_address_the_public_endpoint() -> None:
    key = base64.b64encode(b"secret-account-key-bytes").decode()
    store = _build({"account": "acct", "key": key})
    assert store.account_url == "https://acct.blob.core.windows.net"
    assert key not in repr(store)
    china = _build({"account": "acct", "key": key, "domain_suffix": "core.chinacloudapi.cn"})
    assert china.account_url == "https://acct.blob.core.chinacloudapi.cn"
    emulator = _build({"account": "devstoreaccount1", "key": key, "endpoint": "http://127.0.0.1:1/devstoreaccount1/"})
    assert emulator.account_url == "http://127.0.0.1:1/devstoreaccount1"
    # Go's default stow.config (region: us-east-1) is accepted and ignored; Flyte's upload_concurrency
    # sets the blocks in flight.
    assert (
        _build({"account": "a", "key": key, "region": "us-east-1", "upload_concurrency": "7"}).max_parts_in_flight == 7
    )


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"account": "a", "key": OTHER_KEY, "bogus": "x"}, "stow.config.bogus"),
        (
            {"connection_string": "AccountName=a;AccountKey=" + OTHER_KEY, "key": OTHER_KEY},
            "stow.config.connection_string",
        ),
        ({"endpoint": "http://127.0.0.1:1/acct", "key": OTHER_KEY}, "stow.config.account"),
        ({"key": OTHER_KEY}, "stow.config.account"),
        ({"account": "a", "key": "this is not base64!"}, "stow.config.key"),
        ({"account": "a", "key": OTHER_KEY, "sas_token": "sv=2020&sig=abc"}, "stow.config.sas_token"),
        ({"account": "a", "endpoint": "ftp://host/a", "sas_token": "sv=1&sig=2"}, "stow.config.endpoint"),
        ({"account": "a", "key": OTHER_KEY, "upload_concurrency": "0"}, "stow.config.upload_concurrency"),
        ({"account": "a", "key": OTHER_KEY, "upload_concurrency": "many"}, "stow.config.upload_concurrency"),
        ({"connection_string": "no pairs in here"}, "stow.config.connection_string"),
        (
            {"connection_string": "DefaultEndpointsProtocol=https;AccountKey=" + OTHER_KEY},
            "stow.config.connection_string",
        ),
    ],
)
def test_bad_settings_name_the_field_and_hide_secrets(settings: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build(settings)
    assert info.value.field == field
    for name in ("key", "sas_token", "connection_string"):
        if name in settings:
            assert settings[name] not in str(info.value)


def test_no_credentials_without_azure_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("azure.identity") else real(name, *a)
    )
    with pytest.raises(ConfigError) as info:
        _build({"account": "acct"})
    assert info.value.field == "stow.config.key"
    for hint in ("key", "sas_token", "connection_string", "azure-identity"):
        assert hint in str(info.value)


class _FakeTokenCredential:
    """Stands in for azure.identity.aio.DefaultAzureCredential (no I/O is made with it)."""

    instances: ClassVar[list[_FakeTokenCredential]] = []

    def __init__(self) -> None:
        self.closed = False
        self.instances.append(self)

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no request should need a token here")

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_identity(monkeypatch: pytest.MonkeyPatch) -> type[_FakeTokenCredential]:
    identity = types.ModuleType("azure.identity")
    aio = types.ModuleType("azure.identity.aio")
    aio.DefaultAzureCredential = _FakeTokenCredential  # type: ignore[attr-defined]
    identity.aio = aio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity", identity)
    monkeypatch.setitem(sys.modules, "azure.identity.aio", aio)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: importlib.machinery.ModuleSpec(name, None) if name == "azure.identity" else real(name, *a),
    )
    _FakeTokenCredential.instances.clear()
    return _FakeTokenCredential


async def test_default_credential_is_created_on_open_and_closed(fake_identity: type[_FakeTokenCredential]) -> None:
    store = _build({"account": "acct"}, container="")  # no container: open() sends nothing
    assert not fake_identity.instances, "no credential before open()"
    async with store:
        (credential,) = fake_identity.instances
        assert store.service.credential is credential
    assert credential.closed


async def test_signed_url_with_azure_ad_uses_a_cached_user_delegation_key(
    fake_identity: type[_FakeTokenCredential], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _build({"account": "acct"}, container="")
    calls: list[tuple[datetime, datetime]] = []

    async def delegation_key(start: datetime, expiry: datetime, **kwargs: Any) -> UserDelegationKey:
        calls.append((start, expiry))
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid = str(uuid.uuid4()), str(uuid.uuid4())
        key.signed_start, key.signed_expiry = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
        key.signed_service, key.signed_version = "b", "2025-11-05"
        key.value = base64.b64encode(b"delegation-secret").decode()
        return key

    async with store:
        monkeypatch.setattr(store.service, "get_user_delegation_key", delegation_key)
        first = await store.create_signed_url("abfs://c/a.txt", SignedURLProperties(scope="GET"))
        second = await store.create_signed_url("abfs://c/b.txt", SignedURLProperties(scope="PUT"))
    assert len(calls) == 1, "the delegation key is reused while valid"
    for signed in (first, second):
        query = parse_qs(urlsplit(signed.url).query)
        assert {"sv", "se", "sp", "sig", "skoid", "sktid"} <= set(query)
    assert second.required_headers["x-ms-blob-type"] == "BlockBlob"


async def test_config_through_datastore_and_lazy_scheme(azurite: AzuriteServer) -> None:
    container = _container()
    settings = {"account": azurite.account, "key": azurite.key, "endpoint": azurite.endpoint}
    primary = Config(type="stow", container=container, stow={"kind": "azure", "config": settings})
    async with DataStore(primary) as store:
        ref = store.construct_reference(store.base_container, "meta", "x.pb")
        assert ref == f"abfs://{container}/meta/x.pb"
        await store.write_raw(ref, b"payload")
        assert await store.read_bytes(ref) == b"payload"
        # A mem primary reaching azure through the schemes section (the container exists now).
        routed = Config(type="mem", schemes={"abfss": {"kind": "azure", "config": settings}})
        async with DataStore(routed) as other:
            adls = f"abfss://{container}@{azurite.account}.dfs.core.windows.net/meta/x.pb"
            assert await other.read_bytes(adls) == b"payload"
            assert [e.ref async for e in other.list(f"abfss://{container}/meta")] == [f"abfss://{container}/meta/x.pb"]
        await store.delete(ref)
    async with AzureStore(account_url=azurite.endpoint, credential=_credential(azurite)) as admin:
        await admin.service.delete_container(container)


async def test_connection_string(azurite: AzuriteServer) -> None:
    container = _container()
    store = _build({"connection_string": azurite.connection_string}, container=container)
    assert azurite.key not in repr(store)
    async with store:
        ref = f"abfs://{container}/k"
        await store.write_raw(ref, b"via connection string")
        assert await _read(store, ref) == b"via connection string"
        signed = await store.create_signed_url(ref, SignedURLProperties(scope="GET"))
        async with aiohttp.ClientSession() as http, http.get(signed.url) as resp:
            assert resp.status == 200 and await resp.read() == b"via connection string"
        await store.service.delete_container(container)


async def test_sas_token(azurite: AzuriteServer) -> None:
    sas = generate_account_sas(
        azurite.account,
        azurite.key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    container = _container()
    store = _build(
        {"account": azurite.account, "endpoint": azurite.endpoint, "sas_token": "?" + sas}, container=container
    )
    assert sas not in repr(store)
    async with store:
        ref = f"abfs://{container}/k"
        await store.write_raw(ref, b"via sas")
        assert await _read(store, ref) == b"via sas"
        assert [e.ref async for e in store.list(f"abfs://{container}")] == [ref]
        with pytest.raises(UnsupportedError, match="account key"):
            await store.create_signed_url(ref, SignedURLProperties(scope="GET"))
        await store.service.delete_container(container)


# -- signed URLs ------------------------------------------------------------------------------------


async def test_signed_get_and_put_work_with_plain_aiohttp(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        ref = f"abfs://{store.container}/dir/file name.txt"
        await store.write_raw(ref, b"hello")
        before = datetime.now(timezone.utc)
        get = await store.create_signed_url(ref, SignedURLProperties(scope="GET", expires_in=timedelta(minutes=5)))
        query = parse_qs(urlsplit(get.url).query)
        assert {"sv", "se", "sp", "sig"} <= set(query)
        assert query["sp"] == ["r"]
        expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
        assert before + timedelta(minutes=4) < expiry <= before + timedelta(minutes=5, seconds=2)
        put = await store.create_signed_url(ref, SignedURLProperties(scope="PUT"))
        assert set(parse_qs(urlsplit(put.url).query)["sp"][0]) == {"c", "w"}
        assert dict(put.required_headers) == {"x-ms-blob-type": "BlockBlob"}
        async with aiohttp.ClientSession() as http:
            async with http.get(get.url) as resp:
                assert resp.status == 200 and await resp.read() == b"hello"
            async with http.put(put.url, data=b"uploaded", headers=dict(put.required_headers)) as resp:
                assert resp.status == 201, await resp.text()
            # A read-only URL cannot write.
            async with http.put(get.url, data=b"nope", headers=dict(put.required_headers)) as resp:
                assert resp.status == 403
        assert await _read(store, ref) == b"uploaded"


async def test_signed_put_with_content_md5(azurite: AzuriteServer) -> None:
    body = b"checked content"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    async with azure_store(azurite) as store:
        ref = f"abfs://{store.container}/md5"
        props = SignedURLProperties(scope="PUT", content_md5=md5, add_content_md5_metadata=True)
        signed = await store.create_signed_url(ref, props)
        assert signed.required_headers["Content-MD5"] == md5
        async with aiohttp.ClientSession() as http:
            async with http.put(signed.url, data=b"other content", headers=dict(signed.required_headers)) as resp:
                assert resp.status == 400  # the service checks the body against Content-MD5
            async with http.put(signed.url, data=body, headers=dict(signed.required_headers)) as resp:
                assert resp.status == 201
        assert (await store.head(ref)).content_md5 == md5


async def test_signed_url_for_adls_reference_and_bad_references(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        await store.write_raw(f"abfs://{store.container}/p/q", b"adls")
        adls = f"abfss://{store.container}@{azurite.account}.dfs.core.windows.net/p/q"
        signed = await store.create_signed_url(adls, SignedURLProperties())
        assert urlsplit(signed.url).path == f"/{azurite.account}/{store.container}/p/q"
        async with aiohttp.ClientSession() as http, http.get(signed.url) as resp:
            assert await resp.read() == b"adls"
        for bad in ("s3://bucket/key", f"abfs://{store.container}/"):
            with pytest.raises(InvalidReferenceError):
                await store.create_signed_url(bad, SignedURLProperties())


# -- block uploads ----------------------------------------------------------------------------------


async def test_small_writes_are_one_put_blob(azurite: AzuriteServer) -> None:
    requests = Requests()
    async with azure_store(azurite, client_options=requests.options()) as store:
        requests.sent.clear()
        await store.write_raw(f"abfs://{store.container}/a", b"x" * 1000)
        await store.write_raw(f"abfs://{store.container}/b", _chunks(MiB, 100 * KiB))  # unknown length
        assert requests.count("PUT") == 2 and len(requests.sent) == 2


async def test_unknown_length_write_is_staged_in_bounded_blocks(azurite: AzuriteServer) -> None:
    requests = Requests()
    async with azure_store(
        azurite, part_size=256 * KiB, max_parts_in_flight=2, client_options=requests.options()
    ) as store:
        ref = f"abfs://{store.container}/blocks"
        total = 5 * 256 * KiB + 17
        meta = await store.write_raw(ref, _chunks(total, 100 * KiB), options=Options(content_type="text/x-test"))
        assert meta.size == total
        assert await _read(store, ref) == _expected(total, 100 * KiB)
        head = await store.head(ref)
        assert head.etag == meta.etag and head.content_type == "text/x-test"
        committed, uncommitted = await store.service.get_blob_client(store.container, "blocks").get_block_list("all")
        assert len(committed) == 6 and not uncommitted
        assert max(b.size for b in committed) == 256 * KiB
        assert requests.count("PUT", "block") == 6 and requests.count("PUT", "blocklist") == 1
        assert requests.max_in_flight["block"] <= 2


async def test_large_known_size_write_is_staged(azurite: AzuriteServer) -> None:
    async with azure_store(azurite, part_size=MiB) as store:
        ref = f"abfs://{store.container}/known"
        data = os.urandom(3 * MiB + 5)
        assert (await store.write_raw(ref, data, size=len(data))).size == len(data)
        committed, _ = await store.service.get_blob_client(store.container, "known").get_block_list("committed")
        assert [b.size for b in committed] == [MiB, MiB, MiB, 5]
        assert await _read(store, ref) == data
        with pytest.raises(SizeMismatchError):
            await store.write_raw(ref, _chunks(3 * MiB, MiB), size=3 * MiB + 1)
        assert await _read(store, ref) == data


@pytest.mark.parametrize("total", [300 * KiB, MiB + 7, 3 * MiB + 5], ids=["put-blob", "one-block", "blocks"])
@pytest.mark.parametrize("view", [False, True], ids=["bytearray", "memoryview"])
async def test_a_producer_refilling_one_buffer_stores_what_it_yielded(
    azurite: AzuriteServer, total: int, view: bool
) -> None:
    piece = 100 * KiB + 3  # chunks straddle block boundaries

    async def refilling() -> AsyncIterator[bytearray | memoryview]:
        buffer = bytearray(piece)
        sent = 0
        while sent < total:
            n = min(piece, total - sent)
            buffer[:n] = bytes([sent // piece % 251]) * n
            yield memoryview(buffer)[:n] if view else (buffer if n == piece else buffer[:n])
            sent += n

    async with azure_store(azurite, part_size=MiB + 512 * KiB, max_parts_in_flight=2) as store:
        ref = f"abfs://{store.container}/refilled"
        assert (await store.write_raw(ref, refilling())).size == total
        assert await _read(store, ref) == _expected(total, piece)
        assert (await store.write_raw(ref, refilling(), size=total)).size == total
        assert await _read(store, ref) == _expected(total, piece)


def test_part_size_and_parts_in_flight_are_checked_and_have_their_former_names() -> None:
    base = {"account_url": "http://127.0.0.1:1/acct"}
    store = AzureStore(**base, part_size=3 * MiB, max_parts_in_flight=5)
    assert (store.part_size, store.max_parts_in_flight) == (3 * MiB, 5)
    store = AzureStore(**base, block_size=2 * MiB, upload_concurrency=3)  # deprecated names
    assert (store.part_size, store.max_parts_in_flight) == (2 * MiB, 3)
    for bad in ({"part_size": 0}, {"part_size": 4001 * MiB}, {"max_parts_in_flight": 0}, {"chunk_size": 0}):
        with pytest.raises(InvalidArgumentError):
            AzureStore(**base, **bad)


async def _uncommitted_names(store: AzureStore) -> list[str]:
    client = store.service.get_container_client(store.container)
    return [b.name async for b in client.list_blobs(include=["uncommittedblobs"])]


async def test_failed_block_upload_commits_nothing(azurite: AzuriteServer) -> None:
    staged: list[int] = []
    two_staged = [asyncio.Event()]
    requests = Requests()
    hook = requests.on_response

    def on_response(response: Any) -> None:
        hook(response)
        if requests._kind(response.http_request.url) == "block":
            staged.append(response.http_response.status_code)
            if len(staged) >= 2:
                two_staged[0].set()

    options = {"raw_request_hook": requests.on_request, "raw_response_hook": on_response}
    async with azure_store(azurite, part_size=256 * KiB, client_options=options) as store:
        kept, fresh = f"abfs://{store.container}/kept", f"abfs://{store.container}/fresh"
        await store.write_raw(kept, b"precious")

        async def broken() -> AsyncIterator[bytes]:
            staged.clear()
            two_staged[0] = asyncio.Event()
            async for chunk in _chunks(700 * KiB, 64 * KiB):
                yield chunk
            await two_staged[0].wait()  # let two blocks reach the service before failing
            raise RuntimeError("source failed")

        for ref in (kept, fresh):
            with pytest.raises(RuntimeError, match="source failed"):
                await store.write_raw(ref, broken())
        assert await _read(store, kept) == b"precious"
        assert not (await store.head(fresh)).exists
        assert [e.ref async for e in store.list(f"abfs://{store.container}")] == [kept]
        # The staged blocks stay uncommitted (Azure drops them after a week, or on the next commit).
        assert "fresh" in await _uncommitted_names(store)
        await store.write_raw(fresh, _chunks(600 * KiB, 64 * KiB))
        _, uncommitted = await store.service.get_blob_client(store.container, "fresh").get_block_list("all")
        assert not uncommitted


async def test_cancelled_block_upload_commits_nothing_and_stops_staging(azurite: AzuriteServer) -> None:
    async with azure_store(azurite, part_size=256 * KiB, max_parts_in_flight=2) as store:
        ref = f"abfs://{store.container}/cancelled"
        staged = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            async for chunk in _chunks(600 * KiB, 100 * KiB):
                yield chunk
            staged.set()
            await asyncio.Event().wait()
            yield b"never"

        task = asyncio.create_task(store.write_raw(ref, slow()))
        await staged.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not [t for t in asyncio.all_tasks() if "put_part" in repr(t.get_coro())]
        assert not (await store.head(ref)).exists
        assert [e async for e in store.list(f"abfs://{store.container}")] == []


async def test_create_only_block_commit(azurite: AzuriteServer) -> None:
    async with azure_store(azurite, part_size=128 * KiB) as store:
        ref = f"abfs://{store.container}/once"
        create = Options(if_not_exists=True)
        await store.write_raw(ref, _chunks(300 * KiB, 64 * KiB), options=create)
        with pytest.raises(AlreadyExistsError) as info:
            await store.write_raw(ref, _chunks(400 * KiB, 64 * KiB), options=create)
        assert isinstance(info.value.__cause__, (ResourceExistsError, ResourceModifiedError))
        assert (await store.head(ref)).size == 300 * KiB
        race = f"abfs://{store.container}/race"
        results = await asyncio.gather(
            *(store.write_raw(race, _chunks(300 * KiB, 64 * KiB), options=create) for _ in range(4)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, AlreadyExistsError) for r in results if isinstance(r, BaseException))


# -- reads ------------------------------------------------------------------------------------------


async def test_reads_stream_in_bounded_ranged_gets(azurite: AzuriteServer) -> None:
    requests = Requests()
    async with azure_store(azurite, chunk_size=256 * KiB, client_options=requests.options()) as store:
        ref = f"abfs://{store.container}/big"
        data = os.urandom(MiB + 3)
        await store.write_raw(ref, data)
        requests.sent.clear()
        stream = await store.read_raw(ref)
        sizes = []
        async with stream:
            assert stream.size == len(data)
            parts = []
            async for chunk in stream:
                sizes.append(len(chunk))
                parts.append(chunk)
        assert b"".join(parts) == data
        assert max(sizes) <= 256 * KiB and len(sizes) == 5
        assert requests.count("GET") == 5
        assert await _read(store, ref, offset=300 * KiB, length=300 * KiB) == data[300 * KiB : 600 * KiB]


async def test_read_of_a_blob_replaced_mid_stream_fails(azurite: AzuriteServer) -> None:
    async with azure_store(azurite, chunk_size=128 * KiB) as store:
        ref = f"abfs://{store.container}/moving"
        await store.write_raw(ref, os.urandom(MiB))
        stream = await store.read_raw(ref)
        async with stream:
            await stream.__anext__()
            await store.write_raw(ref, os.urandom(MiB))
            with pytest.raises(PreconditionFailedError) as info:
                async for _ in stream:
                    pass
        assert isinstance(info.value.__cause__, (ResourceModifiedError, HttpResponseError))
        assert ref in str(info.value)


async def test_empty_range_of_missing_blob_and_dot_segments(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        with pytest.raises(NotFoundError):
            await store.read_raw(f"abfs://{store.container}/missing", offset=3, length=0)
        for key in ("a/../b", "./a", "a/.", ".."):
            with pytest.raises(InvalidReferenceError, match="segment"):
                await store.write_raw(f"abfs://{store.container}/{key}", b"x")
        await store.write_raw(f"abfs://{store.container}/a/..b/c.", b"dots inside names are fine")


# -- listing and copy -------------------------------------------------------------------------------


async def test_listing_keeps_the_scheme_and_adls_form(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        c = store.container
        for key in ("d/1", "d/sub/2", "e"):
            await store.write_raw(f"abfs://{c}/{key}", b"x")
        host = f"{azurite.account}.dfs.core.windows.net"
        assert [e.ref async for e in store.list(f"abfs://{c}/d")] == [f"abfs://{c}/d/1", f"abfs://{c}/d/sub/2"]
        assert [e.ref async for e in store.list(f"abfss://{c}/d")] == [f"abfss://{c}/d/1", f"abfss://{c}/d/sub/2"]
        refs, cursor = await store.list_page(f"abfss://{c}@{host}/d", max_items=1)
        assert refs == [f"abfss://{c}@{host}/d/1"] and not cursor.is_end()
        refs, cursor = await store.list_page(f"abfss://{c}@{host}/d", max_items=1, cursor=cursor)
        assert refs == [f"abfss://{c}@{host}/d/sub/2"]
        entries = [e async for e in store.list(f"abfs://{c}")]
        assert [e.size for e in entries] == [1, 1, 1] and all(e.etag and e.last_modified for e in entries)


async def test_listing_a_missing_container_is_not_found(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        with pytest.raises(NotFoundError, match="no-such-container"):
            await store.list_page("abfs://no-such-container/x")


async def test_copy_with_options_and_across_containers(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store, azure_store(azurite) as other:
        src = f"abfs://{store.container}/src"
        await store.write_raw(src, b"data", options=Options(metadata={"a": "1"}, content_type="text/plain"))
        same = await store.copy_raw(src, f"abfs://{store.container}/same")
        assert same.size == 4 and dict(same.user_metadata) == {"a": "1"} and same.content_type == "text/plain"
        dst = f"abfs://{other.container}/dst"
        meta = await store.copy_raw(src, dst, options=Options(metadata={"b": "2"}, content_type="application/json"))
        assert dict(meta.user_metadata) == {"b": "2"} and meta.content_type == "application/json"
        assert await _read(store, dst) == b"data"
        with pytest.raises(NotFoundError, match="nope"):
            await store.copy_raw(f"abfs://{store.container}/nope", dst)


async def test_copy_polls_a_pending_copy(azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = BlobClient.start_copy_from_url
    real_props = BlobClient.get_blob_properties
    polls: list[int] = []

    async def start(self: BlobClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = dict(await real_start(self, *args, **kwargs))
        result["copy_status"] = "pending"  # as a cross-account or large copy would answer
        return result

    async def props(self: BlobClient, **kwargs: Any) -> Any:
        found = await real_props(self, **kwargs)
        polls.append(1)
        if len(polls) == 1:
            found.copy.status = "pending"
        return found

    async with azure_store(azurite) as store:
        src = f"abfs://{store.container}/src"
        await store.write_raw(src, b"slow copy")
        monkeypatch.setattr(BlobClient, "start_copy_from_url", start)
        monkeypatch.setattr(BlobClient, "get_blob_properties", props)
        meta = await store.copy_raw(src, f"abfs://{store.container}/dst")
        assert meta.size == 9 and len(polls) == 2


# -- errors -----------------------------------------------------------------------------------------


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers: dict[str, str] = {}
        self.content_type = "text/plain"

    def text(self, encoding: str | None = None) -> str:
        return ""


@pytest.mark.parametrize(
    ("exc", "create", "expected"),
    [
        (ResourceNotFoundError("gone"), False, NotFoundError),
        (ResourceExistsError("there"), False, AlreadyExistsError),
        (ResourceModifiedError("etag"), False, PreconditionFailedError),
        (ResourceModifiedError("etag"), True, AlreadyExistsError),
        (HttpResponseError("412", response=_Response(412)), True, AlreadyExistsError),
        (ClientAuthenticationError("denied"), False, PermissionDeniedError),
        (HttpResponseError("forbidden", response=_Response(403)), False, PermissionDeniedError),
        (ServiceRequestError("refused"), False, TransientError),
        (ServiceResponseError("reset"), False, TransientError),
        (HttpResponseError("busy", response=_Response(503)), False, TransientError),
        (HttpResponseError("slow down", response=_Response(429)), False, TransientError),
        (HttpResponseError("bad", response=_Response(400)), False, InvalidArgumentError),
        (HttpResponseError("odd", response=_Response(409)), False, StorageError),
        (asyncio.TimeoutError(), False, TransientError),
    ],
)
def test_error_mapping_keeps_the_cause(exc: BaseException, create: bool, expected: type[StorageError]) -> None:
    with pytest.raises(expected) as info, azure_module._errors("read [abfs://c/k]", create=create):
        raise exc
    assert type(info.value) is expected or expected is StorageError
    assert info.value.__cause__ is exc
    assert "abfs://c/k" in str(info.value)


def test_error_messages_mask_signatures_and_pass_unknown_errors() -> None:
    with pytest.raises(TransientError) as info, azure_module._errors("read [abfs://c/k]"):
        raise ServiceRequestError("GET https://a.blob.core.windows.net/c/k?sv=1&sig=SECRET failed")
    assert "SECRET" not in str(info.value) and "sig=***" in str(info.value)
    with pytest.raises(KeyError), azure_module._errors("read [abfs://c/k]"):
        raise KeyError("not a client error")


async def test_wrong_account_key_is_permission_denied(azurite: AzuriteServer) -> None:
    store = AzureStore(
        account_url=azurite.endpoint,
        credential={"account_name": azurite.account, "account_key": OTHER_KEY},
        container=_container(),
    )
    with pytest.raises(PermissionDeniedError) as info:
        await store.open()
    assert isinstance(info.value.__cause__, HttpResponseError)
    assert OTHER_KEY not in str(info.value)
    assert store._session is None and store._service is None


async def test_unreachable_server_is_transient(azurite: AzuriteServer) -> None:
    port = free_port()  # nothing listens there
    store = AzureStore(
        account_url=f"http://127.0.0.1:{port}/{azurite.account}",
        credential=_credential(azurite),
        client_options={"retry_total": 0},
    )
    async with store:
        with pytest.raises(TransientError) as info:
            await store.head("abfs://c/some/key")
        assert isinstance(info.value.__cause__, ServiceRequestError)
        assert "abfs://c/some/key" in str(info.value)


async def test_missing_blob_keeps_the_cause(azurite: AzuriteServer) -> None:
    async with azure_store(azurite) as store:
        with pytest.raises(NotFoundError) as info:
            await store.read_raw(f"abfs://{store.container}/missing")
        assert isinstance(info.value.__cause__, ResourceNotFoundError)
        with pytest.raises(NotFoundError):
            await store.delete(f"abfs://{store.container}/missing")


# -- lifecycle and HTTP settings ----------------------------------------------------------------------


async def test_lifecycle(azurite: AzuriteServer) -> None:
    container = _container()
    first = AzureStore(account_url=azurite.endpoint, credential=_credential(azurite), container=container)
    second = AzureStore(account_url=azurite.endpoint, credential=_credential(azurite), container=container)
    with pytest.raises(StorageError, match="not open"):
        await first.head(f"abfs://{container}/k")
    await first.open()
    session = first._session
    await first.open()  # idempotent
    assert first._session is session
    async with second:  # the container exists already: fine
        await second.write_raw(f"abfs://{container}/k", b"v")
    await first.service.delete_container(container)
    await first.aclose()
    await first.aclose()
    assert session is not None and session.closed
    with pytest.raises(StorageError, match="not open"):
        await first.head(f"abfs://{container}/k")


async def test_no_unclosed_resources(azurite: AzuriteServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with azure_store(azurite) as store:
            ref = f"abfs://{store.container}/k"
            await store.write_raw(ref, os.urandom(3 * MiB))
            stream = await store.read_raw(ref)
            await stream.__anext__()
            await stream.aclose()  # closed early, with a chunk fetched ahead
        del store, stream
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_http_settings_come_from_default_http_client(azurite: AzuriteServer) -> None:
    container = _container()
    seen: list[dict[str, str]] = []
    settings = {"account": azurite.account, "key": azurite.key, "endpoint": azurite.endpoint}
    config = Config(
        type="stow",
        container=container,
        stow={"kind": "azure", "config": settings},
        default_http_client={
            "maxIdleConns": 7,
            "maxConnsPerHost": 3,
            "timeout": "5s",
            "headers": {"X-Flyte-Test": ["a", "b"]},
        },
    )
    store = from_config(config.backend_config(), container=container, multicontainer=False, config=config, field="f")
    store._client_options["raw_request_hook"] = lambda request: seen.append(dict(request.http_request.headers))
    async with store:
        assert store._session is not None
        connector = store._session.connector
        assert connector is not None and connector.limit == 7 and connector.limit_per_host == 3
        transport = store.service._pipeline._transport  # type: ignore[attr-defined]
        assert transport.connection_config.timeout == 5 and transport.connection_config.read_timeout == 5
        await store.write_raw(f"abfs://{container}/k", b"v")  # headers are added before signing
        await store.service.delete_container(container)
    assert seen and all(h.get("X-Flyte-Test") == "a, b" for h in seen)
