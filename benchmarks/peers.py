"""One small async interface over flytestore and the libraries a user would pick instead.

Every adapter does the same seven operations on keys relative to one bucket/container (``put``,
``get``, ``head``, ``list``, ``stream_write``, ``stream_read``, ``range_read``) the way a user of that
library would write them, plus ``delete`` for the suite's (unmeasured) cleanup and
``put_message``/``get_message`` for the protobuf scenario (serialise + ``put``, ``get`` + parse,
unless the library marshals itself). An operation a library cannot do is listed in ``missing``
with the reason; one it can only do in a way its name does not say (a "streaming" write that
buffers the whole object) is done that way and explained in ``notes``, so the report shows it.

Libraries are imported lazily, inside the adapters: the large-object child processes import only
the one they measure. A ``Target`` (plain strings, JSON-serialisable for those children) says
where the server is. ``flytestore_config`` builds flytestore's ``Config`` for a target; S3's goes
through ``s3_config`` alone, so that a variant of S3 settings (a request path selectable in the S3
config) is one keyword there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from flytestore.units import MiB

#: Read size asked of every library that takes one (flytestore's own default chunk).
CHUNK = MiB
#: Connections each client may open: above the suite's highest concurrency (64), so no library is
#: held back by a smaller default pool (botocore's is 10).
POOL = 100
OPS = ("put", "get", "head", "list", "stream_write", "stream_read", "range_read")

#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"


@dataclass
class Target:
    """Where one backend's server is, and the bucket (container, directory) the run uses."""

    backend: str
    bucket: str = "bench"
    endpoint: str = ""
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"
    account: str = ""
    account_key: str = ""
    #: local: the root directory (the bucket is a sub-directory); redis: unused.
    root: str = ""
    redis_port: int = 0
    #: Extra flytestore stow.config keys for S3 (``--s3-setting key=value``), e.g. a request-path variant.
    s3_settings: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Target:
        return cls(**json.loads(text))


# -- flytestore's configuration --------------------------------------------------------------------


def s3_config(t: Target, variant: Mapping[str, str] | None = None, **common: Any) -> Any:
    """flytestore's Config for the S3 server: the one place that builds it.

    ``t.s3_settings`` (the suite's ``--s3-setting key=value``) and ``variant`` are extra stow.config
    keys, for a variant of the S3 settings (a request path selected in the config, say): an
    adapter for a variant is a ``Flytestore`` subclass passing its keys here, added to ``ADAPTERS``.
    """
    from flytestore import Config

    stow = {
        "auth_type": "accesskey",
        "access_key_id": t.access_key,
        "secret_key": t.secret_key,
        "region": t.region,
        "endpoint": t.endpoint,
        "disable_ssl": "true",
        "addressing_style": "path",
        **t.s3_settings,
        **(variant or {}),
    }
    return Config(type="s3", container=t.bucket, stow={"kind": "s3", "config": stow}, **common)


def flytestore_config(t: Target, *, cache_mb: int = 0) -> Any:
    """flytestore's Config for ``t``: no download limit (the suite reads 256 MiB objects), the cache
    off unless ``cache_mb``, and a pool of ``POOL`` connections like the peers."""
    from flytestore import Config

    common: dict[str, Any] = {
        "limits": {"maxDownloadMBs": 0},
        "cache": {"max_size_mbs": cache_mb},
        "default_http_client": {"maxIdleConns": POOL},
    }
    if t.backend == "s3":
        return s3_config(t, **common)
    if t.backend == "gcs":
        return Config(
            type="stow", container=t.bucket, stow={"kind": "google", "config": {"endpoint": t.endpoint}}, **common
        )
    if t.backend == "azure":
        stow = {"account": t.account, "key": t.account_key, "endpoint": t.endpoint}
        return Config(type="stow", container=t.bucket, stow={"kind": "azure", "config": stow}, **common)
    if t.backend == "redis":
        return Config(type="redis", redis={"addr": f"127.0.0.1:{t.redis_port}"}, **common)
    if t.backend == "local":
        return Config(type="local", container=t.bucket, local={"path": t.root}, **common)
    if t.backend == "mem":
        return Config(type="mem", container=t.bucket, **common)
    raise ValueError(f"unknown backend {t.backend}")


def flytestore_base(t: Target) -> str:
    """The reference prefix of the run's bucket."""
    scheme = {"s3": "s3", "gcs": "gs", "azure": "abfs", "local": "file", "mem": "mem"}.get(t.backend)
    if t.backend == "redis":
        return f"redis://127.0.0.1:{t.redis_port}"
    return f"{scheme}://{t.bucket}"


# -- the interface ---------------------------------------------------------------------------------


class Adapter:
    """One library on one backend. Keys are relative to the target's bucket."""

    #: Name in the report (the library, as a user would name it).
    lib: ClassVar[str] = ""
    #: ``flytestore``, ``raw`` (the client library flytestore wraps on that backend), ``peer``.
    role: ClassVar[str] = "peer"
    #: operation -> why this library cannot do it here.
    missing: ClassVar[dict[str, str]] = {}
    #: operation -> how it is done when that differs from what the operation's name promises.
    notes: ClassVar[dict[str, str]] = {}

    def __init__(self, target: Target) -> None:
        self.t = target

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def get(self, key: str) -> bytes:
        raise NotImplementedError

    async def head(self, key: str) -> int:
        """The object's size."""
        raise NotImplementedError

    async def list(self, prefix: str) -> int:
        """How many objects are under ``prefix/`` (recursively)."""
        raise NotImplementedError

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Write an object of unknown length from an async iterator."""
        raise NotImplementedError

    async def stream_read(self, key: str) -> int:
        """Read the object chunk by chunk; the number of bytes read."""
        raise NotImplementedError

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def delete_many(self, keys: list[str]) -> None:
        await bounded(keys, 32, self.delete)

    async def put_message(self, key: str, msg: Any) -> None:
        await self.put(key, msg.SerializeToString())

    async def get_message(self, key: str, msg: Any) -> Any:
        msg.ParseFromString(await self.get(key))
        return msg

    def supports(self, op: str) -> bool:
        return op not in self.missing


async def bounded(items: list[str], limit: int, fn: Callable[[str], Awaitable[Any]]) -> None:
    """``fn`` over ``items`` on ``limit`` workers."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)) or 1)))


async def _join(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([bytes(c) async for c in chunks])


# -- flytestore ---------------------------------------------------------------------------------------


class Flytestore(Adapter):
    """The full stack: ``flytestore.DataStore`` (protobuf, limits, routing, metrics; cache off)."""

    lib = "flytestore"
    role = "flytestore"

    def __init__(self, target: Target, *, cache_mb: int = 0) -> None:
        super().__init__(target)
        self.cache_mb = cache_mb
        self.base = flytestore_base(target) + "/"

    async def open(self) -> None:
        from prometheus_client import CollectorRegistry

        from flytestore import DataStore, Scope

        self.ds = DataStore(
            flytestore_config(self.t, cache_mb=self.cache_mb), scope=Scope("bench", registry=CollectorRegistry())
        )
        await self.ds.open()
        self.store: Any = self.ds

    async def close(self) -> None:
        await self.ds.aclose()

    async def put(self, key: str, data: bytes) -> None:
        await self.store.write_raw(self.base + key, data)

    async def get(self, key: str) -> bytes:
        data: bytes = await self.store.read_bytes(self.base + key)
        return data

    async def head(self, key: str) -> int:
        meta = await self.store.head(self.base + key)
        return int(meta.size)

    async def list(self, prefix: str) -> int:
        n = 0
        async for _ in self.store.list(self.base + prefix):
            n += 1
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.store.write_raw(self.base + key, chunks)

    async def stream_read(self, key: str) -> int:
        n = 0
        stream = await self.store.read_raw(self.base + key)
        async with stream:
            async for chunk in stream:
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        data: bytes = await self.store.read_bytes(self.base + key, offset, length)
        return data

    async def delete(self, key: str) -> None:
        await self.store.delete(self.base + key)

    async def put_message(self, key: str, msg: Any) -> None:
        await self.ds.write_protobuf(self.base + key, msg)

    async def get_message(self, key: str, msg: Any) -> Any:
        return await self.ds.read_protobuf(self.base + key, msg)


class FlytestoreBare(Flytestore):
    """The backend store alone (what ``DataStore`` builds at the bottom of its stack), no layers."""

    lib = "flytestore (bare store)"

    async def open(self) -> None:
        from flytestore.registry import build_primary

        self.store, _ = build_primary(flytestore_config(self.t), None)
        await self.store.open()

    async def close(self) -> None:
        await self.store.aclose()

    async def put_message(self, key: str, msg: Any) -> None:
        await self.put(key, msg.SerializeToString())

    async def get_message(self, key: str, msg: Any) -> Any:
        msg.ParseFromString(await self.get(key))
        return msg


# -- S3 -----------------------------------------------------------------------------------------------


def _aioconfig() -> Any:
    from aiobotocore.config import AioConfig

    return AioConfig(
        max_pool_connections=POOL,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 3},
    )


class Aiobotocore(Adapter):
    lib = "aiobotocore"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "manual multipart upload, 8 MiB parts, one at a time",
    }
    PART = 8 * MiB

    async def open(self) -> None:
        from aiobotocore.session import AioSession

        self._cm = AioSession().create_client(
            "s3",
            region_name=self.t.region,
            endpoint_url=self.t.endpoint,
            aws_access_key_id=self.t.access_key,
            aws_secret_access_key=self.t.secret_key,
            config=_aioconfig(),
        )
        self.client = await self._cm.__aenter__()

    async def close(self) -> None:
        await self._cm.__aexit__(None, None, None)

    async def put(self, key: str, data: bytes) -> None:
        await self.client.put_object(Bucket=self.t.bucket, Key=key, Body=data)

    async def get(self, key: str) -> bytes:
        resp = await self.client.get_object(Bucket=self.t.bucket, Key=key)
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def head(self, key: str) -> int:
        resp = await self.client.head_object(Bucket=self.t.bucket, Key=key)
        return int(resp["ContentLength"])

    async def list(self, prefix: str) -> int:
        n = 0
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.t.bucket, Prefix=prefix + "/"):
            n += len(page.get("Contents", ()))
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        c, b = self.client, self.t.bucket
        upload = await c.create_multipart_upload(Bucket=b, Key=key)
        uid = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        buf = bytearray()

        async def send(data: bytes) -> None:
            resp = await c.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=len(parts) + 1, Body=data)
            parts.append({"ETag": resp["ETag"], "PartNumber": len(parts) + 1})

        try:
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= self.PART:
                    await send(bytes(buf))
                    buf.clear()
            if buf or not parts:
                await send(bytes(buf))
            await c.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await c.abort_multipart_upload(Bucket=b, Key=key, UploadId=uid)
            raise

    async def stream_read(self, key: str) -> int:
        n = 0
        resp = await self.client.get_object(Bucket=self.t.bucket, Key=key)
        async with resp["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        resp = await self.client.get_object(
            Bucket=self.t.bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.t.bucket, Key=key)

    async def delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[i : i + 1000]]
            await self.client.delete_objects(Bucket=self.t.bucket, Delete={"Objects": objects, "Quiet": True})

    async def presign(self, key: str) -> str:
        url: str = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.t.bucket, "Key": key}, ExpiresIn=3600
        )
        return url


class _Obstore(Adapter):
    lib = "obstore"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "put_async(async iterator): multipart, 5 MiB parts, 12 in flight"
    }

    def make_store(self) -> Any:
        raise NotImplementedError

    async def open(self) -> None:
        import obstore

        self.obs = obstore
        self.store = self.make_store()

    async def put(self, key: str, data: bytes) -> None:
        await self.obs.put_async(self.store, key, data)

    async def get(self, key: str) -> bytes:
        result = await self.obs.get_async(self.store, key)
        return bytes(await result.bytes_async())

    async def head(self, key: str) -> int:
        meta = await self.obs.head_async(self.store, key)
        return int(meta["size"])

    async def list(self, prefix: str) -> int:
        n = 0
        async for batch in self.obs.list(self.store, prefix + "/", chunk_size=1000):
            n += len(batch)
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.obs.put_async(self.store, key, chunks)

    async def stream_read(self, key: str) -> int:
        n = 0
        result = await self.obs.get_async(self.store, key)
        async for chunk in result.stream(min_chunk_size=CHUNK):
            n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        return bytes(await self.obs.get_range_async(self.store, key, start=offset, length=length))

    async def delete(self, key: str) -> None:
        await self.obs.delete_async(self.store, key)

    async def delete_many(self, keys: list[str]) -> None:
        if keys:
            await self.obs.delete_async(self.store, keys)


class ObstoreS3(_Obstore):
    def make_store(self) -> Any:
        from obstore.store import S3Store

        return S3Store(
            self.t.bucket,
            endpoint=self.t.endpoint,
            access_key_id=self.t.access_key,
            secret_access_key=self.t.secret_key,
            region=self.t.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "pool_max_idle_per_host": str(POOL)},
        )


class _Fsspec(Adapter):
    """An fsspec async filesystem (``asynchronous=True``), its coroutine API (``_pipe_file`` ...)."""

    notes: ClassVar[dict[str, str]] = {
        "stream_write": "buffers the whole object, then _pipe_file (no async writer: open_async is read-only)",
    }

    def make_fs(self) -> Any:
        raise NotImplementedError

    def path(self, key: str) -> str:
        return f"{self.t.bucket}/{key}"

    async def open(self) -> None:
        self.fs = self.make_fs()

    async def put(self, key: str, data: bytes) -> None:
        await self.fs._pipe_file(self.path(key), data)

    async def get(self, key: str) -> bytes:
        data: bytes = await self.fs._cat_file(self.path(key))
        return data

    async def head(self, key: str) -> int:
        info = await self.fs._info(self.path(key))
        return int(info["size"])

    async def list(self, prefix: str) -> int:
        self.fs.invalidate_cache()  # fsspec keeps listings: each run must ask the server
        return len(await self.fs._find(self.path(prefix)))

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.fs._pipe_file(self.path(key), await _join(chunks))

    async def stream_read(self, key: str) -> int:
        n = 0
        f = await self.fs.open_async(self.path(key), "rb")
        try:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        finally:
            await f.close()
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        data: bytes = await self.fs._cat_file(self.path(key), start=offset, end=offset + length)
        return data

    async def delete(self, key: str) -> None:
        await self.fs._rm_file(self.path(key))

    async def delete_many(self, keys: list[str]) -> None:
        await bounded(keys, 32, self.delete)


class S3fs(_Fsspec):
    lib = "s3fs"

    def make_fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.t.access_key,
            secret=self.t.secret_key,
            endpoint_url=self.t.endpoint,
            client_kwargs={"region_name": self.t.region},
            config_kwargs={"max_pool_connections": POOL},
            asynchronous=True,
            skip_instance_cache=True,
        )

    async def open(self) -> None:
        await super().open()
        self.session = await self.fs.set_session()

    async def close(self) -> None:
        await self.session.close()


class _Opendal(Adapter):
    lib = "opendal"
    notes: ClassVar[dict[str, str]] = {"stream_write": "AsyncOperator.open(path, 'wb') and write() per chunk"}

    def make_op(self) -> Any:
        raise NotImplementedError

    async def open(self) -> None:
        self.op = self.make_op()

    async def put(self, key: str, data: bytes) -> None:
        await self.op.write(key, data)

    async def get(self, key: str) -> bytes:
        return bytes(await self.op.read(key))

    async def head(self, key: str) -> int:
        meta = await self.op.stat(key)
        return int(meta.content_length)

    async def list(self, prefix: str) -> int:
        n = 0
        async for entry in await self.op.list(prefix + "/", recursive=True):
            if not entry.path.endswith("/"):
                n += 1
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        f = await self.op.open(key, "wb")
        try:
            async for chunk in chunks:
                await f.write(chunk)
        finally:
            await f.close()

    async def stream_read(self, key: str) -> int:
        n = 0
        f = await self.op.open(key, "rb")
        try:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        finally:
            await f.close()
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        return bytes(await self.op.read(key, offset=offset, size=length))

    async def delete(self, key: str) -> None:
        await self.op.delete(key)


class OpendalS3(_Opendal):
    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator(
            "s3",
            bucket=self.t.bucket,
            endpoint=self.t.endpoint,
            region=self.t.region,
            access_key_id=self.t.access_key,
            secret_access_key=self.t.secret_key,
            disable_config_load="true",
            disable_ec2_metadata="true",
        )


class _Aiohttp(Adapter):
    """Raw aiohttp GETs of a URL that needs no client-side signing per request (presigned, SAS or
    unauthenticated): the floor for a streamed read against the same server."""

    lib = "aiohttp"
    missing: ClassVar[dict[str, str]] = dict.fromkeys(
        ("put", "get", "head", "list", "stream_write"),
        "a read-only baseline: GETs of a presigned / SAS / unauthenticated URL",
    )

    async def open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
        self.urls: dict[str, str] = {}

    async def close(self) -> None:
        await self.session.close()

    async def url(self, key: str) -> str:
        raise NotImplementedError

    async def _url(self, key: str) -> str:
        # Signed once per key, outside what a read costs (the URL is what the caller was handed).
        if key not in self.urls:
            self.urls[key] = await self.url(key)
        return self.urls[key]

    async def prepare(self, key: str) -> None:
        await self._url(key)

    async def stream_read(self, key: str) -> int:
        n = 0
        async with self.session.get(await self._url(key)) as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_chunked(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        async with self.session.get(await self._url(key), headers=headers) as resp:
            resp.raise_for_status()
            return await resp.read()


class AiohttpS3(_Aiohttp):
    async def open(self) -> None:
        await super().open()
        self.signer = Aiobotocore(self.t)
        await self.signer.open()

    async def close(self) -> None:
        await self.signer.close()
        await super().close()

    async def url(self, key: str) -> str:
        return await self.signer.presign(key)


# -- GCS ----------------------------------------------------------------------------------------------


class GcloudAio(Adapter):
    lib = "gcloud-aio-storage"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "buffers the whole object: upload() takes bytes or a seekable stream of known length",
    }

    async def open(self) -> None:
        import aiohttp
        from gcloud.aio.storage import Storage

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
        self.storage = Storage(session=self.session, api_root=self.t.endpoint)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.storage.close()
        await self.session.close()

    async def put(self, key: str, data: bytes) -> None:
        await self.storage.upload(self.t.bucket, key, data)

    async def get(self, key: str) -> bytes:
        data: bytes = await self.storage.download(self.t.bucket, key)
        return data

    async def head(self, key: str) -> int:
        meta = await self.storage.download_metadata(self.t.bucket, key)
        return int(meta["size"])

    async def list(self, prefix: str) -> int:
        n, token = 0, None
        while True:
            params = {"prefix": prefix + "/", "maxResults": "1000"}
            if token:
                params["pageToken"] = token
            page = await self.storage.list_objects(self.t.bucket, params=params)
            n += len(page.get("items", ()))
            token = page.get("nextPageToken")
            if not token:
                return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.storage.upload(self.t.bucket, key, await _join(chunks), timeout=600)

    async def stream_read(self, key: str) -> int:
        n = 0
        resp = await self.storage.download_stream(self.t.bucket, key, timeout=600)
        async with resp:
            while chunk := await resp.read(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        data: bytes = await self.storage.download(self.t.bucket, key, headers=headers)
        return data

    async def delete(self, key: str) -> None:
        await self.storage.delete(self.t.bucket, key)


def fake_gcs_service_account(endpoint: str) -> str:
    """What object_store's own tests give it for fake-gcs-server: its base URL, no OAuth."""
    return json.dumps(
        {"gcs_base_url": endpoint, "disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""}
    )


class ObstoreGCS(_Obstore):
    missing: ClassVar[dict[str, str]] = dict.fromkeys(
        ("put", "stream_write"),
        "fake-gcs-server 1.54 answers obstore's XML-API upload (PUT /<bucket>/<key>) with 400 "
        "'invalid uploadType' (object_store's own CI runs a custom fake-gcs-server image); reads work",
    )

    def make_store(self) -> Any:
        from obstore.store import GCSStore

        return GCSStore(
            self.t.bucket,
            service_account_key=fake_gcs_service_account(self.t.endpoint),
            client_options={"allow_http": True, "pool_max_idle_per_host": str(POOL)},
        )


class Gcsfs(_Fsspec):
    lib = "gcsfs"
    notes: ClassVar[dict[str, str]] = {
        **_Fsspec.notes,
        "stream_read": "buffers the whole object: _cat_file (gcsfs has no open_async)",
    }

    def make_fs(self) -> Any:
        # gcsfs >= 2026.10 defaults to ExtendedGcsFileSystem, which first asks the bucket's type over
        # gRPC with TLS: against a plain-http emulator that is a 60 s timeout per bucket, then a
        # fallback to the plain GCSFileSystem, which this selects directly.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        return gcsfs.GCSFileSystem(
            endpoint_url=self.t.endpoint, token="anon", asynchronous=True, skip_instance_cache=True
        )

    async def open(self) -> None:
        await super().open()
        await self.fs._set_session()

    async def close(self) -> None:
        await self.fs.session.close()

    async def stream_read(self, key: str) -> int:
        return len(await self.fs._cat_file(self.path(key)))


class OpendalGCS(_Opendal):
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "buffers the whole object, then one write(): opendal's chunked writer uses the XML "
        "multipart API (POST /<bucket>/<key>?uploads), which fake-gcs-server 1.54 answers 400 'invalid uploadType'",
    }

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.op.write(key, await _join(chunks))

    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator(
            "gcs",
            bucket=self.t.bucket,
            endpoint=self.t.endpoint,
            allow_anonymous="true",
            disable_vm_metadata="true",
            disable_config_load="true",
        )


class AiohttpGCS(_Aiohttp):
    async def url(self, key: str) -> str:
        return f"{self.t.endpoint}/download/storage/v1/b/{self.t.bucket}/o/{quote(key, safe='')}?alt=media"


# -- Azure --------------------------------------------------------------------------------------------


class AzureBlob(Adapter):
    lib = "azure-storage-blob"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "upload_blob(async iterator): staged 4 MiB blocks",
        "stream_read": "download_blob().chunks() with the SDK's default sizes (32 MiB first GET, then 4 MiB)",
    }

    async def open(self) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        credential = {"account_name": self.t.account, "account_key": self.t.account_key}
        self.service = BlobServiceClient(self.t.endpoint, credential=credential)
        await self.service.__aenter__()
        self.container = self.service.get_container_client(self.t.bucket)

    async def close(self) -> None:
        await self.service.close()

    def blob(self, key: str) -> Any:
        return self.container.get_blob_client(key)

    async def put(self, key: str, data: bytes) -> None:
        await self.blob(key).upload_blob(data, overwrite=True)

    async def get(self, key: str) -> bytes:
        data: bytes = await (await self.blob(key).download_blob()).readall()
        return data

    async def head(self, key: str) -> int:
        props = await self.blob(key).get_blob_properties()
        return int(props.size)

    async def list(self, prefix: str) -> int:
        n = 0
        async for _ in self.container.list_blobs(name_starts_with=prefix + "/", results_per_page=1000):
            n += 1
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.blob(key).upload_blob(chunks, overwrite=True, max_concurrency=4)

    async def stream_read(self, key: str) -> int:
        n = 0
        async for chunk in (await self.blob(key).download_blob()).chunks():
            n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        data: bytes = await (await self.blob(key).download_blob(offset=offset, length=length)).readall()
        return data

    async def delete(self, key: str) -> None:
        await self.blob(key).delete_blob()

    def sas_url(self, key: str) -> str:
        from datetime import datetime, timedelta, timezone

        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        sas = generate_blob_sas(
            self.t.account,
            self.t.bucket,
            key,
            account_key=self.t.account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=2),
        )
        return f"{self.t.endpoint}/{self.t.bucket}/{quote(key)}?{sas}"


class ObstoreAzure(_Obstore):
    def make_store(self) -> Any:
        from obstore.store import AzureStore

        return AzureStore(
            self.t.bucket,
            account_name=self.t.account,
            account_key=self.t.account_key,
            endpoint=self.t.endpoint,
            client_options={"allow_http": True, "pool_max_idle_per_host": str(POOL)},
        )


class Adlfs(_Fsspec):
    lib = "adlfs"
    notes: ClassVar[dict[str, str]] = {
        **_Fsspec.notes,
        "stream_read": "buffers the whole object: _cat_file (adlfs has no open_async)",
    }

    def make_fs(self) -> Any:
        import adlfs

        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={self.t.account};AccountKey={self.t.account_key};"
            f"BlobEndpoint={self.t.endpoint};"
        )
        return adlfs.AzureBlobFileSystem(connection_string=conn, asynchronous=True, skip_instance_cache=True)

    async def close(self) -> None:
        await self.fs.service_client.close()
        # adlfs registers finalizers that run its close on this (by then finished) event loop at
        # exit, which only prints a traceback: the client is closed already.
        for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
            info = finalizer.peek()
            if info is not None and info[0] is self.fs:
                finalizer.detach()

    async def stream_read(self, key: str) -> int:
        return len(await self.fs._cat_file(self.path(key)))


class OpendalAzure(_Opendal):
    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator(
            "azblob",
            container=self.t.bucket,
            endpoint=self.t.endpoint,
            account_name=self.t.account,
            account_key=self.t.account_key,
        )


class AiohttpAzure(_Aiohttp):
    async def url(self, key: str) -> str:
        return AzureBlob(self.t).sas_url(key)


# -- Redis --------------------------------------------------------------------------------------------


class RedisPy(Adapter):
    lib = "redis-py"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "buffers the whole value, then one SET (a Redis string has no partial writes)",
        "stream_read": "one GET of the whole value",
        "list": "SCAN MATCH prefix* COUNT 1000 (unsorted)",
    }

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.Redis(host="127.0.0.1", port=self.t.redis_port)

    async def close(self) -> None:
        await self.r.aclose()

    async def put(self, key: str, data: bytes) -> None:
        await self.r.set(key, data)

    async def get(self, key: str) -> bytes:
        data = await self.r.get(key)
        if data is None:
            raise FileNotFoundError(key)
        return bytes(data)

    async def head(self, key: str) -> int:
        return int(await self.r.strlen(key))

    async def list(self, prefix: str) -> int:
        n = 0
        async for _ in self.r.scan_iter(match=prefix + "/*", count=1000):
            n += 1
        return n

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.r.set(key, await _join(chunks))

    async def stream_read(self, key: str) -> int:
        return len(await self.get(key))

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        return bytes(await self.r.getrange(key, offset, offset + length - 1))

    async def delete(self, key: str) -> None:
        await self.r.unlink(key)

    async def delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            await self.r.unlink(*keys[i : i + 1000])


class OpendalRedis(_Opendal):
    missing: ClassVar[dict[str, str]] = {"list": "opendal's redis service cannot list (capability list = false)"}

    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator("redis", endpoint=f"tcp://127.0.0.1:{self.t.redis_port}")


# -- local disk -----------------------------------------------------------------------------------------


class _Files(Adapter):
    def path(self, key: str) -> str:
        return os.path.join(self.t.root, self.t.bucket, key)

    def _parent(self, key: str) -> str:
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    async def delete(self, key: str) -> None:
        os.unlink(self.path(key))

    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(key))


class Aiofiles(_Files):
    lib = "aiofiles"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "put": "writes the file in place (flytestore writes a temporary file and renames it)",
        "list": "recursive aiofiles.os.scandir",
    }

    async def open(self) -> None:
        import aiofiles
        import aiofiles.os

        self.aiofiles = aiofiles

    async def put(self, key: str, data: bytes) -> None:
        async with self.aiofiles.open(self._parent(key), "wb") as f:
            await f.write(data)

    async def get(self, key: str) -> bytes:
        async with self.aiofiles.open(self.path(key), "rb") as f:
            data: bytes = await f.read()
        return data

    async def head(self, key: str) -> int:
        return int((await self.aiofiles.os.stat(self.path(key))).st_size)

    async def list(self, prefix: str) -> int:
        async def walk(path: str) -> int:
            n = 0
            for entry in await self.aiofiles.os.scandir(path):
                n += await walk(entry.path) if entry.is_dir() else 1
            return n

        return await walk(self.path(prefix))

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        async with self.aiofiles.open(self._parent(key), "wb") as f:
            async for chunk in chunks:
                await f.write(chunk)

    async def stream_read(self, key: str) -> int:
        n = 0
        async with self.aiofiles.open(self.path(key), "rb") as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        async with self.aiofiles.open(self.path(key), "rb") as f:
            await f.seek(offset)
            data: bytes = await f.read(length)
        return data


class PlainFiles(_Files):
    """Blocking file calls on the event loop: the floor (it would stall a real event loop)."""

    lib = "plain files (sync)"
    role = "raw"
    notes: ClassVar[dict[str, str]] = {
        "put": "writes the file in place, blocking the event loop",
        "list": "os.walk, blocking the event loop",
    }

    async def put(self, key: str, data: bytes) -> None:
        with open(self._parent(key), "wb") as f:  # noqa: ASYNC230 (blocking on purpose)
            f.write(data)

    async def get(self, key: str) -> bytes:
        with open(self.path(key), "rb") as f:  # noqa: ASYNC230 (blocking on purpose)
            return f.read()

    async def head(self, key: str) -> int:
        return os.stat(self.path(key)).st_size

    async def list(self, prefix: str) -> int:
        return sum(len(files) for _, _, files in os.walk(self.path(prefix)))

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        with open(self._parent(key), "wb") as f:  # noqa: ASYNC230 (blocking on purpose)
            async for chunk in chunks:
                f.write(chunk)

    async def stream_read(self, key: str) -> int:
        n = 0
        with open(self.path(key), "rb") as f:  # noqa: ASYNC230 (blocking on purpose)
            while chunk := f.read(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        with open(self.path(key), "rb") as f:  # noqa: ASYNC230 (blocking on purpose)
            f.seek(offset)
            return f.read(length)


class ObstoreLocal(_Obstore):
    def make_store(self) -> Any:
        from obstore.store import LocalStore

        root = os.path.join(self.t.root, self.t.bucket)
        os.makedirs(root, exist_ok=True)
        return LocalStore(root)


class FsspecLocal(_Fsspec):
    """fsspec's LocalFileSystem through fsspec's own async wrapper (a thread hop per call)."""

    lib = "fsspec (local)"
    notes: ClassVar[dict[str, str]] = {
        "stream_write": "sync file object from fs.open(), blocking the event loop (the wrapper has no async writer)",
        "stream_read": "sync file object from fs.open(), blocking the event loop (the wrapper has no async reader)",
    }

    def make_fs(self) -> Any:
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        from fsspec.implementations.local import LocalFileSystem

        self.sync_fs = LocalFileSystem(auto_mkdir=True)
        return AsyncFileSystemWrapper(self.sync_fs)

    def path(self, key: str) -> str:
        return os.path.join(self.t.root, self.t.bucket, key)

    async def list(self, prefix: str) -> int:
        return len(await self.fs._find(self.path(prefix)))

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        with self.sync_fs.open(self.path(key), "wb") as f:
            async for chunk in chunks:
                f.write(chunk)

    async def stream_read(self, key: str) -> int:
        n = 0
        with self.sync_fs.open(self.path(key), "rb") as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
        return n


class OpendalLocal(_Opendal):
    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator("fs", root=os.path.join(self.t.root, self.t.bucket))


# -- memory -------------------------------------------------------------------------------------------


class ObstoreMemory(_Obstore):
    def make_store(self) -> Any:
        from obstore.store import MemoryStore

        return MemoryStore()


class FsspecMemory(_Fsspec):
    """fsspec's MemoryFileSystem (synchronous; called directly, it never blocks)."""

    lib = "fsspec (memory)"
    notes: ClassVar[dict[str, str]] = {"stream_write": "sync file object from fs.open(), written chunk by chunk"}

    def make_fs(self) -> Any:
        from fsspec.implementations.memory import MemoryFileSystem

        return MemoryFileSystem(skip_instance_cache=True)

    def path(self, key: str) -> str:
        return f"/{self.t.bucket}/{key}"

    async def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(key), data)

    async def get(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self.path(key))
        return data

    async def head(self, key: str) -> int:
        return int(self.fs.info(self.path(key))["size"])

    async def list(self, prefix: str) -> int:
        return len(self.fs.find(self.path(prefix)))

    async def stream_write(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        with self.fs.open(self.path(key), "wb") as f:
            async for chunk in chunks:
                f.write(chunk)

    async def stream_read(self, key: str) -> int:
        n = 0
        with self.fs.open(self.path(key), "rb") as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
        return n

    async def range_read(self, key: str, offset: int, length: int) -> bytes:
        data: bytes = self.fs.cat_file(self.path(key), start=offset, end=offset + length)
        return data

    async def delete(self, key: str) -> None:
        self.fs.rm_file(self.path(key))


class OpendalMemory(_Opendal):
    def make_op(self) -> Any:
        import opendal

        return opendal.AsyncOperator("memory")


# -- the registry -------------------------------------------------------------------------------------

#: backend -> the adapters run against it, flytestore first.
ADAPTERS: dict[str, list[type[Adapter]]] = {
    "s3": [Flytestore, FlytestoreBare, Aiobotocore, ObstoreS3, S3fs, OpendalS3, AiohttpS3],
    "gcs": [Flytestore, FlytestoreBare, GcloudAio, ObstoreGCS, Gcsfs, OpendalGCS, AiohttpGCS],
    "azure": [Flytestore, FlytestoreBare, AzureBlob, ObstoreAzure, Adlfs, OpendalAzure, AiohttpAzure],
    "redis": [Flytestore, FlytestoreBare, RedisPy, OpendalRedis],
    "local": [Flytestore, FlytestoreBare, Aiofiles, PlainFiles, ObstoreLocal, FsspecLocal, OpendalLocal],
    "mem": [Flytestore, FlytestoreBare, ObstoreMemory, FsspecMemory, OpendalMemory],
}

#: backend -> {peer: why it is not in the run at all}. Every peer family appears in every backend's
#: tables, either measured or with its reason.
UNAVAILABLE: dict[str, dict[str, str]] = {
    "redis": {
        "obstore": "no Redis store (object_store has none)",
        "fsspec": "no Redis filesystem in fsspec or its known implementations",
        "aiohttp": "Redis speaks RESP, not HTTP",
    },
    "local": {"aiohttp": "no HTTP server for local disk"},
    "mem": {
        "raw client": "no client library under flytestore's memory store (a dict)",
        "aiohttp": "no HTTP server for memory",
    },
}


def family(adapter: type[Adapter]) -> str:
    """The column family of a library (the charts' colours, the report's grouping)."""
    name = adapter.lib
    if name.startswith("flytestore"):
        return name
    if name.startswith("plain files"):
        return "plain files"
    if adapter.role == "raw":
        return "raw client"
    for fam in ("obstore", "opendal", "aiohttp"):
        if name.startswith(fam):
            return fam
    return "fsspec"


def slug(lib: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in lib).strip("-")


async def chunks_of(total: int, block: int = MiB) -> AsyncIterator[bytes]:
    """``total`` bytes in ``block``-sized chunks of random data, each chunk a new object (as from a
    socket or a file): a library that keeps references to the chunks it was given pays for them in
    memory, as it would in real use, instead of holding the same object many times."""
    view = memoryview(os.urandom(block))
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield bytes(view[:n])
        sent += n


def wipe_local(root: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
