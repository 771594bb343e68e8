"""Credentials never show: not in errors (nor anything chained to them), logs, reprs or metrics.

For each backend with a secret (S3 secret key and session token, GCS service-account private key
and the bearer token it is exchanged for, Azure account key and SAS token, Redis password), the
test drives successes and failures (wrong credentials, a missing object, the server gone) and
then looks for the secret in:

- ``str``/``repr`` of every error raised, of everything in its ``__cause__``/``__context__`` chain
  (and Azure's ``inner_exception``), its formatted traceback, and the request details a chained
  client error keeps (aiohttp ``ClientResponseError.request_info``: URL and request headers;
  azure-core's ``response.request``);
- every log record, at DEBUG, from every logger (the root logger, through ``caplog``);
- ``repr``/``str`` of the store, the DataStore and the Config;
- the Prometheus text of the metrics.

Third-party DEBUG logs: botocore logs the canonical request, the string to sign, the signature
and the ``Authorization`` header (access key id and signature), never the secret key; the
session token, a credential of its own, is checked too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from flytestore import (
    Config,
    DataStore,
    NotFoundError,
    PermissionDeniedError,
    Scope,
    StorageError,
    TransientError,
)

from .faultproxy import FaultProxy
from .servers_azure import AzuriteServer
from .servers_redis import AUTH_DEFAULT_PASSWORD, RedisServer
from .servers_s3 import MotoS3

NO_RETRIES = {"max_attempts": 1}


# ---------------------------------------------------------------------------------------------
# Where secrets could show


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "inner_exception", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def error_texts(err: BaseException) -> list[str]:
    """Everything a user (or their error tracker) gets to see of ``err``."""
    texts = ["".join(traceback.format_exception(err))]
    for e in _chain(err):
        texts += [str(e), repr(e), repr(e.args)]
        info = getattr(e, "request_info", None)  # aiohttp: the request's URL and headers
        if info is not None:
            texts += [repr(info), str(info.url), str(info.real_url), repr(info.headers), repr(dict(info.headers))]
        headers = getattr(e, "headers", None)
        if headers is not None:
            texts.append(repr(headers))
        response = getattr(e, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            texts.append(repr(response))
        elif response is not None:  # azure-core: the response and the request it answered
            request = getattr(response, "request", None)
            if request is not None:
                texts += [str(getattr(request, "url", "")), repr(dict(getattr(request, "headers", {}) or {}))]
    return texts


_PROBE = "tests.test_secrets.probe"


@dataclass
class Witness:
    """Collects everything that could show a secret, then checks it all."""

    secrets: dict[str, str]
    #: secret name -> third-party loggers whose DEBUG records are known to show it (reported,
    #: not ours to change); records of every other logger, and of these at INFO and up, count.
    known_debug_leaks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)
    errors: list[StorageError] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Proves the capture works at DEBUG (the GCS path logs nothing at all).
        logging.getLogger(_PROBE).debug("capturing DEBUG records")

    def see(self, where: str, *texts: str) -> None:
        self.texts.setdefault(where, []).extend(texts)

    async def fails(self, where: str, expected: type[StorageError], call: Callable[[], Awaitable[object]]) -> None:
        with pytest.raises(StorageError) as info:
            await call()
        err = info.value
        assert isinstance(err, expected), f"{where}: {err!r}"
        self.errors.append(err)
        self.see(f"error of {where}", *error_texts(err))

    def check(self, caplog: pytest.LogCaptureFixture, *objects: object, registry: CollectorRegistry | None) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for r in caplog.records:
            text = formatter.format(r)
            for name, loggers in self.known_debug_leaks.items():
                if r.levelno <= logging.DEBUG and r.name in loggers:
                    text = text.replace(self.secrets[name], "<known third-party DEBUG leak>")
            self.see("log records", text)
        for obj in objects:
            self.see(f"repr/str of {type(obj).__name__}", repr(obj), str(obj))
        if registry is not None:
            self.see("metrics", generate_latest(registry).decode())
        leaks = [
            f"{name} in {where}"
            for where, texts in self.texts.items()
            for name, secret in self.secrets.items()
            if any(secret in text for text in texts)
        ]
        assert not leaks, leaks
        assert any(r.name == _PROBE for r in caplog.records), "DEBUG records were not captured"


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    return caplog


def scope() -> tuple[Scope, CollectorRegistry]:
    registry = CollectorRegistry()
    return Scope("flyte:storage", registry=registry), registry


# ---------------------------------------------------------------------------------------------
# A server that refuses every request (wrong credentials), and a fake OAuth token endpoint


@dataclass
class FakeServer:
    endpoint: str
    #: What the token endpoint does: hand out ``bearer``, or refuse the assertion.
    token_ok: bool = True
    bearer: str = ""
    requests: list[str] = field(default_factory=list)


_S3_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request '
    b"signature we calculated does not match the signature you provided. Check your key and signing "
    b"method.</Message></Error>"
)
_AZURE_DENIED = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed '
    b"to authenticate the request.</Message></Error>"
)
_GCS_DENIED = json.dumps({"error": {"code": 403, "message": "Permission denied on the bucket."}}).encode()


@pytest_asyncio.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    server = FakeServer("", bearer=f"ya29.LEAKTEST-{uuid.uuid4().hex}")

    async def token(request: web.Request) -> web.Response:
        await request.read()
        server.requests.append("token")
        if not server.token_ok:
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return web.json_response(body, status=400)
        return web.json_response({"access_token": server.bearer, "expires_in": 3600, "token_type": "Bearer"})

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        server.requests.append(request.path)
        if request.path.startswith("/storage/") or request.path.startswith("/upload/"):
            return web.Response(status=403, body=_GCS_DENIED, content_type="application/json")
        if "x-ms-version" in request.headers:
            headers = {"x-ms-error-code": "AuthenticationFailed"}
            return web.Response(status=403, body=_AZURE_DENIED, content_type="application/xml", headers=headers)
        return web.Response(status=403, body=_S3_DENIED, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# S3: secret key and session token


async def test_s3_secret_key_and_session_token_never_show(
    s3_server: MotoS3, s3_proxy: FaultProxy, fake_server: FakeServer, caplog_debug: pytest.LogCaptureFixture
) -> None:
    secret = f"S3SECRET-{uuid.uuid4().hex}"
    token = f"S3TOKEN-{uuid.uuid4().hex}"
    # botocore's DEBUG records show the session token (the x-amz-security-token header in the
    # canonical request, and the request's headers); never the secret key.
    witness = Witness(
        {"secret key": secret, "session token": token},
        known_debug_leaks={"session token": ("botocore.auth", "botocore.endpoint")},
    )
    bucket = f"secrets-{uuid.uuid4().hex[:12]}"

    def config(endpoint: str) -> Config:
        settings = {**s3_server.stow_config(), "secret_key": secret, "token": token, "endpoint": endpoint}
        return Config(type="stow", container=bucket, stow={"kind": "s3", "config": settings}, retries=NO_RETRIES)

    good_scope, registry = scope()
    store = DataStore(config(s3_proxy.endpoint), scope=good_scope)
    refused = DataStore(config(fake_server.endpoint), scope=scope()[0])
    async with store, refused:
        ref = store.construct_reference(store.base_container, "k")
        await store.write_raw(ref, b"data")
        assert await store.read_bytes(ref) == b"data"
        signed = await store.create_signed_url(ref, _signed_get())
        witness.see("signed URL", signed.url)  # signs with the key; the token rides along, by design
        missing = store.construct_reference(store.base_container, "missing")
        await witness.fails("read of a missing object", NotFoundError, lambda: store.read_bytes(missing))
        await witness.fails("delete of a missing object", NotFoundError, lambda: store.delete(missing))
        await witness.fails("write refused", PermissionDeniedError, lambda: refused.write_raw(ref, b"x"))
        await witness.fails("read refused", PermissionDeniedError, lambda: refused.read_bytes(ref))
        s3_proxy.stop_listening()
        await witness.fails("read with the server gone", TransientError, lambda: store.read_bytes(ref))
        s3_proxy.start_listening()
        await store.delete(ref)
    # A presigned URL for temporary credentials must carry the session token: it is left out.
    witness.texts["signed URL"] = [t.replace(token, "") for t in witness.texts["signed URL"]]
    witness.check(caplog_debug, store, store.config, refused, registry=registry)


def _signed_get() -> Any:
    from datetime import timedelta

    from flytestore import SignedURLProperties

    return SignedURLProperties(scope="GET", expires_in=timedelta(minutes=5))


# ---------------------------------------------------------------------------------------------
# GCS: service-account private key, and the bearer token


def service_account(token_uri: str) -> dict[str, str]:
    from .conformance.backend_gcs import fake_service_account

    return {**fake_service_account(), "token_uri": token_uri}


def private_key_marker(account: dict[str, str]) -> str:
    """A line from the middle of the PEM body: found whether the key shows raw or escaped."""
    lines = [line for line in account["private_key"].splitlines() if line and "-----" not in line]
    return lines[len(lines) // 2]


async def test_gcs_private_key_and_bearer_token_never_show(
    gcs_server: str, gcs_proxy: FaultProxy, fake_server: FakeServer, caplog_debug: pytest.LogCaptureFixture
) -> None:
    from flytestore.layers.instrumented import InstrumentedStore
    from flytestore.stores.gcs import GCSStore

    account = service_account(f"{fake_server.endpoint}/token")
    witness = Witness({"private key": private_key_marker(account), "bearer token": fake_server.bearer})
    bucket = f"secrets-{uuid.uuid4().hex[:12]}"
    good_scope, registry = scope()

    def gcs(endpoint: str, container: str = bucket) -> GCSStore:
        # authenticate: send the bearer token to the emulator as to the real service.
        return GCSStore(
            container=container, endpoint=endpoint, service_account=account, project_id="test", authenticate=True
        )

    raw = gcs(gcs_proxy.endpoint)
    store = InstrumentedStore(raw, good_scope)
    refused_open = gcs(fake_server.endpoint)
    refused = InstrumentedStore(gcs(fake_server.endpoint, container=""), scope()[0])  # open() asks nothing
    no_token = InstrumentedStore(gcs(gcs_server, container=""), scope()[0])
    ref = f"gs://{bucket}/k"
    missing = f"gs://{bucket}/missing"
    async with contextlib.AsyncExitStack() as stack:
        await store.open()
        stack.push_async_callback(store.aclose)
        await store.write_raw(ref, b"data")
        assert await store.read_bytes(ref) == b"data"
        assert not (await store.head(missing)).exists
        assert fake_server.requests.count("token") >= 1  # requests did carry the bearer token
        signed = await store.create_signed_url(ref, _signed_get())
        witness.see("signed URL", signed.url)
        await witness.fails("read of a missing object", NotFoundError, lambda: store.read_bytes(missing))
        await witness.fails("delete of a missing object", NotFoundError, lambda: store.delete(missing))
        await witness.fails("copy of a missing object", NotFoundError, lambda: store.copy_raw(missing, ref))
        await witness.fails("open refused", PermissionDeniedError, refused_open.open)
        await refused.open()
        await witness.fails("write refused", PermissionDeniedError, lambda: refused.write_raw(ref, b"x"))
        await witness.fails("read refused", PermissionDeniedError, lambda: refused.read_bytes(ref))
        await witness.fails("list refused", PermissionDeniedError, lambda: refused.list_page(f"gs://{bucket}"))
        await refused.aclose()
        fake_server.token_ok = False  # a key the token endpoint does not accept
        await no_token.open()  # no bucket to look up: no token needed yet
        stack.push_async_callback(no_token.aclose)
        await witness.fails("head with a refused key", PermissionDeniedError, lambda: no_token.head(ref))
        await witness.fails("write with a refused key", PermissionDeniedError, lambda: no_token.write_raw(ref, b"x"))
        gcs_proxy.stop_listening()
        await witness.fails("read with the server gone", TransientError, lambda: store.read_bytes(ref))
        gcs_proxy.start_listening()
    witness.check(caplog_debug, store, raw, registry=registry)


async def test_gcs_read_with_a_refused_key_is_a_permission_error(gcs_server: str, fake_server: FakeServer) -> None:
    from flytestore.stores.gcs import GCSStore

    fake_server.token_ok = False
    account = service_account(f"{fake_server.endpoint}/token")
    store = GCSStore(endpoint=gcs_server, service_account=account, project_id="test", authenticate=True)
    async with store:
        with pytest.raises(PermissionDeniedError, match="token service refused the credentials") as info:
            await store.read_bytes("gs://any-bucket/k")
    assert not any(private_key_marker(account) in text for text in error_texts(info.value))


# ---------------------------------------------------------------------------------------------
# Azure: account key, and a SAS token


def azure_config(server: AzuriteServer, container: str, endpoint: str, **credentials: str) -> Config:
    settings = {"account": server.account, "endpoint": f"{endpoint}/{server.account}", **credentials}
    return Config(type="stow", container=container, stow={"kind": "azure", "config": settings}, retries=NO_RETRIES)


def account_sas(server: AzuriteServer, key: str | None = None) -> str:
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        server.account,
        key or server.key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )


def sas_signature(sas: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(sas)["sig"][0]


@pytest.mark.parametrize("credential", ["key", "sas_token"])
async def test_azure_account_key_and_sas_token_never_show(
    credential: str, azurite: AzuriteServer, azure_proxy: FaultProxy, caplog_debug: pytest.LogCaptureFixture
) -> None:
    container = f"secrets-{uuid.uuid4().hex[:12]}"
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    if credential == "key":
        good, bad = azurite.key, wrong_key
        secrets = {"account key": azurite.key, "wrong account key": wrong_key}
    else:
        good, bad = account_sas(azurite), account_sas(azurite, wrong_key)
        secrets = {
            "SAS token": good,
            "SAS signature": sas_signature(good),
            "wrong SAS signature": sas_signature(bad),
            # SAS signatures are URL-quoted in requests
            "quoted SAS signature": good.split("sig=", 1)[1].split("&", 1)[0],
        }
    witness = Witness(secrets)
    good_scope, registry = scope()
    store = DataStore(azure_config(azurite, container, azure_proxy.endpoint, **{credential: good}), scope=good_scope)
    direct = f"http://127.0.0.1:{azurite.port}"
    refused = DataStore(azure_config(azurite, container, direct, **{credential: bad}), scope=scope()[0])
    async with store:
        ref = store.construct_reference(store.base_container, "k")
        await store.write_raw(ref, b"data")
        assert await store.read_bytes(ref) == b"data"
        missing = store.construct_reference(store.base_container, "missing")
        await witness.fails("read of a missing object", NotFoundError, lambda: store.read_bytes(missing))
        await witness.fails("delete of a missing object", NotFoundError, lambda: store.delete(missing))
        await witness.fails("copy of a missing object", NotFoundError, lambda: store.copy_raw(missing, ref))
        await witness.fails("open with wrong credentials", PermissionDeniedError, refused.open)
        azure_proxy.stop_listening()
        await witness.fails("read with the server gone", TransientError, lambda: store.read_bytes(ref))
        azure_proxy.start_listening()
        azure_proxy.reset_connections()
        if credential == "key":
            signed = await store.create_signed_url(ref, _signed_get())  # a new SAS, signed with the key
            witness.see("signed URL", signed.url)
        await store.delete(ref)
    witness.check(caplog_debug, store, store.config, refused, refused.config, registry=registry)


# ---------------------------------------------------------------------------------------------
# Redis: password


async def test_redis_password_never_shows(
    redis_auth_server: RedisServer, caplog_debug: pytest.LogCaptureFixture
) -> None:
    wrong = f"wrong-pw-{uuid.uuid4().hex}"
    witness = Witness({"password": AUTH_DEFAULT_PASSWORD, "wrong password": wrong})
    with FaultProxy(redis_auth_server.port) as proxy:
        addr = f"127.0.0.1:{proxy.port}"

        def config(password: str) -> Config:
            return Config(type="redis", redis={"addr": addr, "password": password}, retries=NO_RETRIES)

        good_scope, registry = scope()
        store = DataStore(config(AUTH_DEFAULT_PASSWORD), scope=good_scope)
        refused = DataStore(config(wrong), scope=scope()[0])
        async with store, refused:
            ref = store.construct_reference(store.base_container, f"secrets-{uuid.uuid4().hex[:8]}", "k")
            await store.write_raw(ref, b"data")
            assert await store.read_bytes(ref) == b"data"
            missing = store.construct_reference(store.base_container, "missing", uuid.uuid4().hex)
            await witness.fails("read of a missing object", NotFoundError, lambda: store.read_bytes(missing))
            await witness.fails("delete of a missing object", NotFoundError, lambda: store.delete(missing))
            await witness.fails("read with a wrong password", PermissionDeniedError, lambda: refused.read_bytes(ref))
            # A reference carrying credentials of its own (they are not used, nor quoted).
            with_userinfo = f"redis://user:{wrong}@{addr}/missing"
            await witness.fails(
                "read of a reference with userinfo", NotFoundError, lambda: store.read_bytes(with_userinfo)
            )
            proxy.stop_listening()
            await witness.fails("read with the server gone", TransientError, lambda: store.read_bytes(ref))
            proxy.start_listening()
            await store.delete(ref)
        witness.check(caplog_debug, store, store.config, refused, refused.config, registry=registry)


# ---------------------------------------------------------------------------------------------
# errors.scrub, by itself


def test_scrub_masks_what_a_chained_aiohttp_error_keeps_of_its_request() -> None:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from flytestore.errors import map_exceptions, scrub

    url = URL("http://h/b/o/k?alt=media&sig=SIG-SECRET&token=TOK-SECRET&X-Amz-Signature=AMZ-SECRET", encoded=True)
    headers = CIMultiDictProxy(
        CIMultiDict(
            {
                "Authorization": "Bearer BEARER-SECRET",
                "X-Amz-Security-Token": "STS-SECRET",
                "x-ms-copy-source": "http://h/c/src?sv=1&sig=COPY-SECRET",
                "Range": "bytes=0-9",
            }
        )
    )
    info = aiohttp.RequestInfo(url, "GET", headers, url)
    cause = aiohttp.ClientResponseError(info, (), status=404, message="Not Found")
    with pytest.raises(NotFoundError) as caught, map_exceptions(lambda exc: NotFoundError("cannot read")):
        raise cause
    texts = error_texts(caught.value)
    for secret in ("SIG-SECRET", "TOK-SECRET", "AMZ-SECRET", "BEARER-SECRET", "STS-SECRET", "COPY-SECRET"):
        assert not any(secret in text for text in texts), secret
    kept = cause.request_info
    assert isinstance(kept, aiohttp.RequestInfo) and cause.args[0] is kept
    assert kept.method == "GET" and kept.url.path == "/b/o/k" and kept.url.query["alt"] == "media"
    assert kept.headers["Range"] == "bytes=0-9" and kept.headers["Authorization"] == "***"
    assert isinstance(kept.headers, CIMultiDictProxy)
    # Idempotent, and a no-op (same objects) for errors with nothing to mask.
    assert scrub(cause) is cause and cause.request_info is kept
    plain = ValueError("x")
    assert scrub(plain) is plain


def test_scrub_masks_the_request_an_azure_error_keeps() -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    from flytestore.errors import scrub

    request = HttpRequest(
        "PUT",
        "http://h/acct/c/k?sv=2024&sig=SAS-SECRET",
        headers={"Authorization": "SharedKey acct:SIGNATURE", "x-ms-copy-source": "http://h/c/s?sig=COPY-SECRET"},
    )

    class Response:
        status_code = 404
        reason = "Not Found"

        def __init__(self) -> None:
            self.request = request
            self.headers: dict[str, str] = {}

        def text(self) -> str:
            return ""

    err = HttpResponseError(message="boom", response=Response())  # type: ignore[arg-type]
    outer = StorageError("cannot write")
    outer.__cause__ = err
    scrub(outer)
    assert "SAS-SECRET" not in request.url and "sv=2024" in request.url
    assert request.headers["Authorization"] == "***"
    assert "COPY-SECRET" not in request.headers["x-ms-copy-source"]
