"""AzureStore: Azure Blob Storage (``abfs://``, ``abfss://``) over the azure-storage-blob aio client.

Owns: building one ``BlobServiceClient`` per store from Flyte's ``stow.config`` keys (account key,
connection string, SAS token, or ``DefaultAzureCredential``), on one aiohttp session sized by
``defaultHttpClient``; the mapping of blob operations onto the RawStore protocol; block uploads for
large and unknown-length writes; SAS signed URLs; and the one table from azure-core errors to ours.

References. ``abfs://<container>/<key>`` and the ADLS Gen2 form
``abfs[s]://<container>@<account>.dfs.core.windows.net/<key>`` name the same blob: the container is
the user name of the ADLS form, and the account in its host is advisory (the configured account is
authoritative, as in Flyte's stow store). ``abfss`` asks for TLS, which the endpoint's own scheme
already decides. Listed references keep the scheme and the form of the reference that was listed:
``abfs://c/<key>`` for the short form, ``abfss://c@acct.dfs.core.windows.net/<key>`` for the ADLS one.
Keys with ``.`` or ``..`` segments are refused: HTTP clients resolve them in the URL, so the blob
written would not be the one named.

Reads stream in ranged GETs of ``chunk_size`` (4 MiB), one fetched ahead, so memory stays bounded
whatever the blob size; later GETs are pinned to the first one's etag, so a blob replaced mid-read
fails with ``PreconditionFailedError`` instead of mixing two versions.

Writes go through the one write pipeline (``flytestore.parts.write_multipart``): the stream is cut
into blocks of ``part_size`` (8 MiB; grown for a declared size past 50,000 blocks, and every 5,000
blocks of a stream of unknown length, up to Azure's 4000 MiB per block), at most
``max_parts_in_flight`` staged at once (so a write holds about ``(max_parts_in_flight + 1) *
part_size``), then committed by one Put Block List, so a reader sees the old blob or the whole new
one. What a producer yields is copied before it may refill its buffer. A stream that fits one block
is a single Put Blob when it holds at most 1 MiB, of known or unknown length (larger bytes bodies
would go out as plain bytes, see ``_SINGLE_PUT_LIMIT``), else one staged block and its commit. A
write that fails, is cancelled or does not match its declared size commits nothing: the blocks it
staged stay uncommitted, invisible to reads and listings, and the service discards them when the
next write of that name commits or after seven days (Azure offers no call to drop them sooner;
Rust ``object_store`` makes the same choice). Block ids carry a random per-write prefix, so
concurrent writers of one blob never mix blocks. Create-only writes and copies send
``If-None-Match: *``, so the service decides the race atomically.

The SDK's retry policy stays in force for a store built directly (``client_options`` may replace
it, e.g. ``retry_total=0``); ``from_config`` turns it off, as the DataStore's ``retries`` apply.
Etags are the service's, quotes included. aiohttp's ``trust_env`` is set only when the environment
holds proxy settings or a netrc file, since otherwise it costs every request a thread hop for nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib
import importlib.util
import io
import os
import re
import secrets
import urllib.request
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import BlobBlock, BlobProperties, BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from ..backends import BY_KIND
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StorageError,
    TransientError,
    UnsupportedError,
    map_exceptions,
)
from ..parts import PartSizes, write_multipart
from ..payload import Payload, check_declared, iter_payload
from ..rawstore import (
    DEFAULT_OPTIONS,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    SignedURLProperties,
    SignedURLResponse,
    check_range,
)
from ..reference import DataReference, escape_key, split_reference
from ..units import MiB
from ._http import HttpSettings, http_settings
from .base import BaseStore

if TYPE_CHECKING:
    from azure.storage.blob import UserDelegationKey

    from ..config import Config

__all__ = ["AZURE_BLOCK_SIZE", "AZURE_CHUNK_SIZE", "AZURE_PART_SIZE", "AzureStore", "from_config"]

#: Bytes per ranged GET of a streamed read, and so the most a read buffers per chunk (plus one
#: chunk fetched ahead). Larger GETs stream faster (against Azurite 8 MiB ones were about twice as
#: fast), but each GET is buffered whole by the SDK, so a 6 MiB object would no longer stream.
AZURE_CHUNK_SIZE = 4 * MiB
#: Bytes per staged block of a write (``part_size``); a write holds at most
#: ``max_parts_in_flight`` blocks in flight plus the one being filled.
AZURE_PART_SIZE = 8 * MiB
#: The former name of ``AZURE_PART_SIZE``.
AZURE_BLOCK_SIZE = AZURE_PART_SIZE
#: Azure's limits on one block blob: committed blocks, and bytes per block.
MAX_BLOCKS = 50_000
MAX_BLOCK_SIZE = 4000 * MiB
#: Largest body sent as plain bytes, so the largest single Put Blob: aiohttp warns (ResourceWarning)
#: about larger bytes bodies, and the SDK turns any single-put body into bytes. Longer writes are
#: staged as blocks, whose bodies go out as ``BytesIO`` (streamed by aiohttp without the warning).
_SINGLE_PUT_LIMIT = MiB
#: The SDK's own transport defaults (it applies them only to transports it creates itself): seconds
#: to connect, seconds per socket read, and the piece size response bodies are read in (azure-core
#: alone would read in 4 KiB pieces, doubling the CPU of a large download).
_CONNECT_TIMEOUT = 20.0
_READ_TIMEOUT = 60.0
_READ_BLOCK = 256 * 1024
#: Blocks staged concurrently by one write (Flyte's ``upload_concurrency``).
DEFAULT_PARTS_IN_FLIGHT = 4
_DEFAULT_DOMAIN_SUFFIX = "core.windows.net"
#: What the service stores when a write names no content type.
_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_NO_METADATA: Mapping[str, str] = MappingProxyType({})
#: The user metadata key Flyte stores a content MD5 under (read case-insensitively).
_MD5_KEY = "flytecontentmd5"
#: Random hex chars in a block id; ids of one blob must all have the same length.
_BLOCK_PREFIX_BYTES = 8
#: Longest wait between polls of a pending server-side copy.
_MAX_COPY_POLL = 1.0
#: A user delegation key is requested for a day (Azure allows seven) and reused while it stays
#: valid this much longer than the URL it signs.
_DELEGATION_VALIDITY = timedelta(days=1)
_DELEGATION_MARGIN = timedelta(minutes=5)
_MAX_DELEGATION = timedelta(days=7)

_DROPPED = (ServiceRequestError, ServiceResponseError, IncompleteReadError)
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")
_SIG_RE = re.compile(r"(?i)\b(sig|signature|accountkey|sharedaccesssignature)=[^&;\s'\"]*")


# ---------------------------------------------------------------------------------------------
# Errors: the one place azure-core exceptions become flytestore errors.


def _detail(exc: BaseException) -> str:
    """A one-line description of a client error, with anything signature-like masked."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code = getattr(exc, "error_code", None) or exc.reason or ""
        code = getattr(code, "value", code)  # StorageErrorCode members print as their enum name
        message = (exc.message or "").strip().splitlines()
        text = f"{exc.status_code} {code}".strip() + (f": {message[0]}" if message else "")
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return _SIG_RE.sub(r"\1=***", text)


def _map_error(what: str, exc: BaseException, create: bool, container: str | None = None) -> StorageError | None:
    message = f"cannot {what}: {_detail(exc)}"
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if container is not None and getattr(exc, "error_code", None) == "ContainerNotFound":
            return NotFoundError(f"cannot {what}: container [{container}] does not exist")
        return NotFoundError(message)
    if isinstance(exc, ResourceExistsError):
        return AlreadyExistsError(message)
    if isinstance(exc, ResourceModifiedError) or status == 412:
        # On a create-only request the only precondition is "does not exist yet".
        return AlreadyExistsError(message) if create else PreconditionFailedError(message)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return PermissionDeniedError(message)
    if isinstance(exc, _DROPPED) or isinstance(getattr(exc, "inner_exception", None), _DROPPED):
        # Connection failures, timeouts and bodies cut short (also when the SDK's own download
        # retries gave up and wrapped the last one).
        return TransientError(message)
    if status is not None and (status in (408, 429) or status >= 500):
        return TransientError(message)
    if status == 400:
        return InvalidArgumentError(message)
    if isinstance(exc, (AzureError, aiohttp.ClientError)):
        return StorageError(message)
    if isinstance(exc, asyncio.TimeoutError):
        return TransientError(message)
    return None


def _errors(
    what: str, *, create: bool = False, container: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """``map_exceptions`` for one operation; ``what`` names it and its reference(s), ``container``
    the one container it touches (named when it is missing)."""
    return map_exceptions(lambda exc: _map_error(what, exc, create, container))


# ---------------------------------------------------------------------------------------------
# Helpers


def _metadata(props: BlobProperties) -> Metadata:
    user = props.metadata or {}
    settings = props.content_settings
    return Metadata(
        exists=True,
        size=props.size,
        etag=props.etag or "",
        content_md5=_content_md5(user),
        content_type=settings.content_type if settings is not None else None,
        last_modified=props.last_modified,
        user_metadata=user,
        version=props.version_id,
    )


def _content_md5(user: Mapping[str, str]) -> str:
    if not user:
        return ""
    for key, value in user.items():
        if key.lower() == _MD5_KEY:
            return value
    return ""


def _written(result: Mapping[str, Any], size: int, opts: Options) -> Metadata:
    return Metadata(
        exists=True,
        size=size,
        etag=result.get("etag") or "",
        content_md5=_content_md5(opts.metadata),
        content_type=opts.content_type or _DEFAULT_CONTENT_TYPE,
        last_modified=result.get("last_modified"),
        user_metadata=dict(opts.metadata) if opts.metadata else _NO_METADATA,
        version=result.get("version_id"),
    )


async def _stream(chunks: AsyncIterator[bytes], what: str) -> AsyncIterator[bytes]:
    with _errors(what):
        async for chunk in chunks:
            yield chunk


async def _prefetched(chunks: AsyncIterator[bytes], what: str) -> AsyncIterator[bytes]:
    """Like ``_stream``, with the next chunk's GET under way while the caller handles this one
    (at most two chunks in memory): a consumer that writes elsewhere overlaps with the download."""
    with _errors(what):
        pending: asyncio.Future[bytes] = asyncio.ensure_future(chunks.__anext__())
        try:
            while True:
                try:
                    chunk = await pending
                except StopAsyncIteration:
                    return
                pending = asyncio.ensure_future(chunks.__anext__())
                yield chunk
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


def _valid_account_key(key: str) -> bool:
    try:
        return bool(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        return False


def _environment_matters() -> bool:
    """Whether aiohttp's ``trust_env`` would change anything here: proxies set in the environment,
    or a netrc file. The SDK always sets it, which costs every request a thread hop to look for
    ``~/.netrc``; without proxies or netrc that hop finds nothing, so it is skipped."""
    if urllib.request.getproxies():
        return True
    return os.path.exists(os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc"))


class _BlockUpload:
    """One block upload (the pipeline's ``Upload``): a part is a staged block, completion one Put
    Block List. Block ids are a random per-write prefix and the part number, all of one length."""

    __slots__ = ("_blob", "_commit", "_opts", "_prefix")

    def __init__(self, blob: BlobClient, commit: Mapping[str, Any], opts: Options) -> None:
        self._blob = blob
        self._commit = commit
        self._opts = opts
        self._prefix = secrets.token_hex(_BLOCK_PREFIX_BYTES)

    async def put_part(self, number: int, data: bytes, last: bool) -> tuple[str, int]:
        block_id = f"{self._prefix}{number:08d}"
        # As a stream: aiohttp warns about bytes bodies over 1 MiB.
        await self._blob.stage_block(block_id, io.BytesIO(data), length=len(data))
        return block_id, len(data)

    async def complete(self, parts: list[tuple[str, int]]) -> Metadata:
        result = await self._blob.commit_block_list([BlobBlock(block_id) for block_id, _ in parts], **self._commit)
        return _written(result, sum(size for _, size in parts), self._opts)

    async def abort(self) -> None:
        """Nothing to send: Azure has no call to drop staged blocks. They stay uncommitted,
        invisible, until the name's next commit or for seven days (see the module doc)."""


# ---------------------------------------------------------------------------------------------
# The store


class AzureStore(BaseStore):
    """Azure Blob Storage behind the RawStore protocol; see the module docstring."""

    schemes = BY_KIND["azure"].schemes

    def __init__(
        self,
        *,
        account_url: str | None = None,
        credential: Any = None,
        connection_string: str | None = None,
        container: str = "",
        multicontainer: bool = True,
        http: HttpSettings | None = None,
        chunk_size: int = AZURE_CHUNK_SIZE,
        part_size: int = AZURE_PART_SIZE,
        max_parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
        default_credential: bool = False,
        client_options: Mapping[str, Any] | None = None,
        block_size: int | None = None,
        upload_concurrency: int | None = None,
        create_container: bool = True,
    ) -> None:
        """``account_url`` with a ``credential`` (account key dict, SAS string, token credential,
        or None for anonymous access), or a ``connection_string``; ``default_credential`` builds
        ``azure.identity.aio.DefaultAzureCredential`` on ``open()`` and closes it on ``aclose()``.
        ``client_options`` go to ``BlobServiceClient`` as keyword arguments (e.g. ``retry_total``).
        ``part_size`` is the size of a staged block, ``max_parts_in_flight`` how many one write
        stages at once; ``block_size`` and ``upload_concurrency`` are their deprecated former names
        (taken over them when given). ``create_container`` (the config's ``createContainer``):
        ``open()`` creates the configured container when it is missing; without it nothing is
        created, and operations on a missing container are ``NotFoundError`` naming it.
        """
        super().__init__(container=container, multicontainer=multicontainer)
        if (account_url is None) == (connection_string is None):
            raise InvalidArgumentError("give exactly one of account_url and connection_string")
        if block_size is not None:
            part_size = block_size
        if upload_concurrency is not None:
            max_parts_in_flight = upload_concurrency
        for name, value in (("chunk_size", chunk_size), ("max_parts_in_flight", max_parts_in_flight)):
            if value < 1:
                raise InvalidArgumentError(f"{name} must be positive, got {value}")
        if not 1 <= part_size <= MAX_BLOCK_SIZE:
            raise InvalidArgumentError(f"part_size must be between 1 and {MAX_BLOCK_SIZE} (4000 MiB), got {part_size}")
        self.account_url = account_url
        self._credential = credential
        self._connection_string = connection_string
        self._default_credential = default_credential
        self._http = http
        self.chunk_size = chunk_size
        self.part_size = part_size
        self.max_parts_in_flight = max_parts_in_flight
        self.create_container = create_container
        self._client_options = dict(client_options or {})
        self._service: BlobServiceClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._owned_credential: Any = None
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_expiry: datetime | None = None

    def __repr__(self) -> str:
        where = self.account_url if self.account_url is not None else "<connection string>"
        return f"AzureStore(account_url={where!r}, container={self.container!r})"

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def service(self) -> BlobServiceClient:
        """The store's one ``BlobServiceClient`` (after ``open()``)."""
        if self._service is None:
            raise StorageError("the azure store is not open: use `async with store:` or `await store.open()`")
        return self._service

    async def open(self) -> None:
        if self._service is not None:
            return
        http = self._http or HttpSettings(pool_size=100, per_host=0, keepalive=90.0, timeout=None, headers={})
        # The session the SDK would make (no cookies, bodies as stored), with the pool sized by
        # defaultHttpClient and trust_env only where it matters (see _environment_matters).
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=http.pool_size, limit_per_host=http.per_host, keepalive_timeout=http.keepalive
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=_environment_matters(),
        )
        try:
            # The transport sets per-request socket timeouts (overriding any session-wide total),
            # so defaultHttpClient.timeout bounds connecting and each socket read; without it, the
            # SDK's defaults. Response bodies are read in _READ_BLOCK pieces.
            transport = AioHttpTransport(
                session=session,
                session_owner=False,
                connection_timeout=http.timeout or _CONNECT_TIMEOUT,
                read_timeout=http.timeout or _READ_TIMEOUT,
                connection_data_block_size=_READ_BLOCK,
            )
            options: dict[str, Any] = {
                "transport": transport,
                "max_single_get_size": self.chunk_size,
                "max_chunk_get_size": self.chunk_size,
                **self._client_options,
            }
            if http.headers:
                options["headers"] = dict(http.headers)  # added before signing, unlike session headers
            credential = self._credential
            if self._default_credential:
                identity = importlib.import_module("azure.identity.aio")  # optional: azure-identity
                credential = self._owned_credential = identity.DefaultAzureCredential()
            if self._connection_string is not None:
                service = BlobServiceClient.from_connection_string(self._connection_string, **options)
            else:
                assert self.account_url is not None
                service = BlobServiceClient(self.account_url, credential=credential, **options)
            self._session, self._service = session, service
            if self.container and self.create_container:
                await self._ensure_container(self.container)
        except BaseException:
            await self.aclose()
            await session.close()
            raise

    async def _ensure_container(self, container: str) -> None:
        client = self.service.get_container_client(container)
        what = f"create container [{container}]"
        with _errors(what):
            try:
                await client.create_container()
            except ResourceExistsError:
                pass  # already there, or being created by someone else: both fine
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                # Credentials scoped below the account (a SAS, a data-plane role) may not create
                # containers; an existing one is all we need.
                try:
                    await client.get_container_properties()
                except HttpResponseError:
                    raise exc from None

    async def aclose(self) -> None:
        service, self._service = self._service, None
        session, self._session = self._session, None
        credential, self._owned_credential = self._owned_credential, None
        try:
            if service is not None:
                await service.close()
        finally:
            try:
                if session is not None:
                    await session.close()
            finally:
                if credential is not None:
                    await credential.close()

    # -- references -------------------------------------------------------------------------------

    def _blob(self, ref: str) -> BlobClient:
        container, key = self.locate(ref)
        if "." in key and _DOT_SEGMENT.search(key):
            raise InvalidReferenceError(
                f"reference [{ref}] has a '.' or '..' segment in its key: HTTP clients resolve those "
                "in URLs, so the blob could not be addressed as named"
            )
        return self.service.get_blob_client(container, key)

    # -- head / read ------------------------------------------------------------------------------

    async def head(self, ref: str) -> Metadata:
        blob = self._blob(ref)
        with _errors(f"head [{ref}]"):
            try:
                props = await blob.get_blob_properties()
            except ResourceNotFoundError:
                return Metadata.missing()
        return _metadata(props)

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        check_range(offset, length)
        blob = self._blob(ref)
        what = f"read [{ref}]"
        with _errors(what):
            if length == 0:
                # Azure has no empty range: check the blob exists, yield nothing.
                props = await blob.get_blob_properties()
                return ByteStream(_empty(), size=0, metadata=_metadata(props))
            try:
                if length is None:
                    downloader = await blob.download_blob(offset=offset or None)
                else:
                    downloader = await blob.download_blob(offset=offset, length=length)
            except HttpResponseError as exc:
                if exc.status_code != 416:
                    raise
                # Only an existing blob can answer 416: the range starts at or past its end.
                return ByteStream(_empty(), size=0)
        size = downloader.size
        chunks = (_prefetched if size > self.chunk_size else _stream)(downloader.chunks(), what)
        return ByteStream(chunks, size=size, metadata=_metadata(downloader.properties))

    # -- write ------------------------------------------------------------------------------------

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        blob = self._blob(ref)
        opts = options or DEFAULT_OPTIONS
        create = opts.if_not_exists
        with _errors(f"write [{ref}]", create=create, container=blob.container_name):
            if type(data) is bytes and len(data) <= _SINGLE_PUT_LIMIT and (size is None or size == len(data)):
                return await self._put(blob, data, opts)  # the common small write, without iteration
            sizes = PartSizes(
                self.part_size, max_parts=MAX_BLOCKS, max_part_size=MAX_BLOCK_SIZE, total=check_declared(data, size)
            )
            commit = self._put_kwargs(opts)
            if create:
                commit["match_condition"] = MatchConditions.IfMissing

            async def start() -> _BlockUpload:
                return _BlockUpload(blob, commit, opts)

            async def single(body: bytes) -> Metadata:
                if len(body) <= _SINGLE_PUT_LIMIT:
                    return await self._put(blob, body, opts)
                # One block and its commit: a larger Put Blob body would go out as plain bytes.
                upload = _BlockUpload(blob, commit, opts)
                return await upload.complete([await upload.put_part(1, body, True)])

            return await write_multipart(
                iter_payload(data, size, sizes.of(0)),
                sizes,
                max_parts_in_flight=self.max_parts_in_flight,
                start=start,
                single=single,
            )

    def _put_kwargs(self, opts: Options) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if opts.metadata:
            kwargs["metadata"] = dict(opts.metadata)
        if opts.content_type:
            kwargs["content_settings"] = ContentSettings(content_type=opts.content_type)
        return kwargs

    async def _put(self, blob: BlobClient, body: bytes, opts: Options) -> Metadata:
        result = await blob.upload_blob(
            body, length=len(body), overwrite=not opts.if_not_exists, **self._put_kwargs(opts)
        )
        return _written(result, len(body), opts)

    # -- delete -----------------------------------------------------------------------------------

    async def delete(self, ref: str) -> None:
        blob = self._blob(ref)
        with _errors(f"delete [{ref}]"):
            await blob.delete_blob()

    # -- copy -------------------------------------------------------------------------------------

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Server-side copy (same account), waiting for it to finish. Without ``options`` the copy
        keeps the source's user metadata and content type; ``options.metadata``, when not empty,
        replaces the metadata (Azure copies the source's when none is sent), and
        ``options.content_type``, when set, the content type."""
        source = self._blob(src)
        target = self._blob(dst)
        create = options is not None and options.if_not_exists
        kwargs: dict[str, Any] = {}
        if create:
            kwargs["match_condition"] = MatchConditions.IfMissing
        if options is not None and options.metadata:
            kwargs["metadata"] = dict(options.metadata)
        with _errors(f"copy [{src}] to [{dst}]", create=create):
            result = await target.start_copy_from_url(source.url, **kwargs)
            status = result.get("copy_status")
            copy_id = str(result.get("copy_id") or "")
            delay = 0.01
            props: BlobProperties | None = None
            try:
                while status == "pending":
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_COPY_POLL)
                    props = await target.get_blob_properties()
                    status = props.copy.status
            except asyncio.CancelledError:
                if copy_id:
                    await asyncio.shield(self._abort_copy(target, copy_id))
                raise
            if status != "success":
                description = props.copy.status_description if props is not None else None
                raise StorageError(f"cannot copy [{src}] to [{dst}]: the copy ended {status} ({description})")
            if options is not None and options.content_type:
                await target.set_http_headers(ContentSettings(content_type=options.content_type))
                props = None
            if props is None:
                props = await target.get_blob_properties()
        return _metadata(props)

    @staticmethod
    async def _abort_copy(target: BlobClient, copy_id: str) -> None:
        with contextlib.suppress(AzureError):  # it may have finished meanwhile
            await target.abort_copy(copy_id)

    # -- list -------------------------------------------------------------------------------------

    async def list_entries_page(
        self, ref: str, *, max_items: int = 1000, cursor: Cursor | None = None
    ) -> tuple[list[ListEntry], Cursor]:
        entries, nxt = await super().list_entries_page(ref, max_items=max_items, cursor=cursor)
        scheme, container, _ = split_reference(ref)
        netloc = urlsplit(ref).netloc
        if not entries or (scheme == self.schemes[0] and "@" not in netloc):
            return entries, nxt
        # Give back the scheme and the (ADLS) form of the reference that was listed.
        authority = f"{container}@{netloc.rsplit('@', 1)[1]}" if "@" in netloc else container
        cut = len(f"{self.schemes[0]}://{container}/")
        base = f"{scheme}://{authority}/"
        return [ListEntry(DataReference(base + e.ref[cut:]), e.size, e.etag, e.last_modified) for e in entries], nxt

    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        client = self.service.get_container_client(container)
        token = None if cursor.is_start() else cursor.position
        base = f"{self.schemes[0]}://{container}/"
        with _errors(f"list [{base}{escape_key(prefix)}]", container=container):
            pages = client.list_blobs(name_starts_with=prefix or None, results_per_page=max_items).by_page(
                continuation_token=token
            )
            entries: list[ListEntry] = []
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return entries, Cursor.end()
            async for item in page:
                entries.append(
                    ListEntry(
                        DataReference(base + escape_key(item.name)), item.size, item.etag or "", item.last_modified
                    )
                )
            nxt = cast(Any, pages).continuation_token
        return entries, (Cursor.at(nxt) if nxt else Cursor.end())

    # -- signed URLs ------------------------------------------------------------------------------

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse:
        """A SAS URL for one blob: GET may read it, PUT may create or overwrite it (and must send
        the ``required_headers``). Signed with the account key, or with a user delegation key when
        the store authenticates with Azure AD; a store holding only a SAS token cannot sign."""
        blob = self._blob(ref)
        container, key = blob.container_name, blob.blob_name
        now = datetime.now(timezone.utc)
        expiry = now + props.expires_in
        if props.scope == "GET":
            permission = BlobSasPermissions(read=True)
        else:
            permission = BlobSasPermissions(create=True, write=True)
        credential = self.service.credential
        account_key = getattr(credential, "account_key", None)
        account_name = str(getattr(credential, "account_name", None) or self.service.account_name)
        if account_key:
            sas = generate_blob_sas(
                account_name, container, key, account_key=account_key, permission=permission, expiry=expiry
            )
        elif hasattr(credential, "get_token"):
            delegation = await self._user_delegation_key(ref, now, expiry)
            sas = generate_blob_sas(
                account_name, container, key, user_delegation_key=delegation, permission=permission, expiry=expiry
            )
        else:
            raise UnsupportedError(
                f"cannot sign a URL for [{ref}]: signing needs the account key (stow.config key or "
                "connection_string with AccountKey) or an Azure AD credential (user delegation key); "
                "this store is configured with a SAS token or anonymous access"
            )
        headers: dict[str, str] = {}
        if props.scope == "PUT":
            headers["x-ms-blob-type"] = "BlockBlob"
            if props.content_md5:
                headers["Content-MD5"] = props.content_md5
                if props.add_content_md5_metadata:
                    headers["x-ms-meta-flyteContentMD5"] = props.content_md5
        url = blob.url.split("?", 1)[0]
        return SignedURLResponse(f"{url}?{sas}", headers)

    async def _user_delegation_key(self, ref: str, now: datetime, expiry: datetime) -> UserDelegationKey:
        cached, valid_until = self._delegation_key, self._delegation_expiry
        if cached is not None and valid_until is not None and valid_until >= expiry + _DELEGATION_MARGIN:
            return cached
        key_expiry = min(max(expiry + _DELEGATION_MARGIN, now + _DELEGATION_VALIDITY), now + _MAX_DELEGATION)
        if key_expiry < expiry:
            raise InvalidArgumentError(
                f"cannot sign a URL for [{ref}]: a user delegation SAS may not outlive {_MAX_DELEGATION}"
            )
        with _errors(f"get a user delegation key to sign [{ref}]"):
            delegation = await self.service.get_user_delegation_key(now - timedelta(minutes=5), key_expiry)
        self._delegation_key, self._delegation_expiry = delegation, key_expiry
        return delegation


# ---------------------------------------------------------------------------------------------
# Config

_KEYS = ("account", "key", "domain_suffix", "endpoint", "connection_string", "sas_token", "upload_concurrency")
#: Keys accepted and ignored: Go's default stow.config (``region: us-east-1``) lands here when
#: only ``stow.kind: azure`` is set.
_IGNORED = ("region",)


def _check_connection_string(text: str, field: str) -> None:
    """Catch malformed connection strings at config time (the SDK would at ``open()``), without
    quoting them: they hold the account key."""
    names = set()
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, _ = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(field, "expected Name=value pairs separated by ';'")
        names.add(name.strip().lower())
    if not names & {"accountname", "blobendpoint"}:
        raise ConfigError(field, "the connection string names neither AccountName nor BlobEndpoint")


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> AzureStore:
    """Build an AzureStore from Flyte's azure ``stow.config`` keys plus ``endpoint``,
    ``connection_string`` and ``sas_token``; credentials default to ``DefaultAzureCredential``."""
    for name in settings:
        if name not in _KEYS and name not in _IGNORED:
            raise ConfigError(f"{field}.{name}", f"unknown azure setting; valid keys: {', '.join(_KEYS)}")
    get = {name: str(settings.get(name) or "").strip() for name in _KEYS}
    common: dict[str, Any] = {
        "container": container,
        "multicontainer": multicontainer,
        "http": http_settings(config),
        # A store built from a config sits under the stack's ResilientStore, which retries
        # transient failures per the config's ``retries`` section (one budget, jittered, bounded in
        # time); the SDK's own policy (a first backoff of 15 s) would multiply the attempts.
        "client_options": {"retry_total": 0},
        "create_container": config.create_container,
    }
    if get["upload_concurrency"]:
        # Flyte's key for the blocks one write stages at once.
        try:
            common["max_parts_in_flight"] = int(get["upload_concurrency"])
        except ValueError:
            common["max_parts_in_flight"] = 0
        if common["max_parts_in_flight"] < 1:
            raise ConfigError(f"{field}.upload_concurrency", "must be a positive integer")
    if get["connection_string"]:
        for other in ("account", "key", "sas_token", "endpoint", "domain_suffix"):
            if get[other]:
                raise ConfigError(
                    f"{field}.connection_string",
                    f"give either connection_string or {other}: the connection string already holds "
                    "the account, its endpoint and its credential",
                )
        _check_connection_string(get["connection_string"], f"{field}.connection_string")
        return AzureStore(connection_string=get["connection_string"], **common)
    account, endpoint = get["account"], get["endpoint"]
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{field}.endpoint", f"expected an http(s) URL of the blob service, got [{endpoint}]")
        account_url = endpoint.rstrip("/")
    elif account:
        account_url = f"https://{account}.blob.{get['domain_suffix'] or _DEFAULT_DOMAIN_SUFFIX}"
    else:
        raise ConfigError(f"{field}.account", "the azure backend needs the storage account name (or an endpoint)")
    if get["key"] and get["sas_token"]:
        raise ConfigError(f"{field}.sas_token", "give either key or sas_token, not both")
    if get["key"]:
        if not account:
            raise ConfigError(f"{field}.account", "an account key needs the account name it belongs to")
        if not _valid_account_key(get["key"]):
            raise ConfigError(f"{field}.key", "the account key must be base64 (as shown in the Azure portal)")
        credential: Any = {"account_name": account, "account_key": get["key"]}
        return AzureStore(account_url=account_url, credential=credential, **common)
    if get["sas_token"]:
        return AzureStore(account_url=account_url, credential=get["sas_token"].lstrip("?"), **common)
    if importlib.util.find_spec("azure.identity") is None:
        raise ConfigError(
            f"{field}.key",
            "no azure credentials: set key (the account key), sas_token or connection_string, or install "
            "azure-identity to use DefaultAzureCredential (environment, managed identity, Azure CLI)",
        )
    return AzureStore(account_url=account_url, default_credential=True, **common)
