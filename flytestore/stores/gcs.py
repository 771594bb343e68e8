"""GCSStore: Google Cloud Storage for ``gs://<bucket>/<key>``, over gcloud-aio-storage.

Owns everything GCS-specific: credentials (a service-account key, application default credentials,
or none at all against an emulator), the one aiohttp session and ``gcloud.aio.storage.Storage``
per store, the JSON-API calls gcloud-aio does not make well, V4 signed URLs, and the mapping of
HTTP failures onto the flytestore error tree (``_errors``, the one place it happens).

What goes through gcloud-aio and what does not:

- ``head``, ``delete``, listing and ``copy_raw`` (``rewriteTo``, looping on ``rewriteToken``) use
  ``Storage`` with the store's timeout (gcloud-aio's own per-call default is 10 s).
- Reads are a direct ``GET …/o/<object>?alt=media`` (with ``Range`` for range reads) streamed in
  bounded chunks: gcloud-aio's ``download_stream`` applies one total timeout to the whole body and
  hides the response.
- Writes are direct too, through the one write pipeline (``flytestore.parts.write_multipart``).
  A payload already in memory (bytes-like) is its own single part: one request (a media upload,
  or a multipart upload when it carries user metadata or is create-only), streamed from views of
  it. A stream is cut into parts of ``part_size`` (8 MiB by default); one that ends within one
  part is that same single request, a longer one a resumable upload sent part by part
  (``Content-Range: bytes a-b/*``, then the last part with the total), one part in flight as the
  protocol requires, so memory stays at about two parts whatever the size; gcloud-aio's resumable
  upload would buffer the whole body for its single PUT. The pipeline copies whatever it holds of
  a producer's chunks across an ``await`` (unless immutable), so a producer refilling one buffer
  stores what it yielded. The final request goes out only once the payload ended at its declared
  size. A resumable upload that fails or is cancelled is cancelled on the server (``DELETE`` of
  the session URI) and never finalised, so no object appears; a failed request fails the write
  (no resume from the session: retrying is for the caller or a layer above). Request bodies above
  1 MiB are streamed from views, never joined.

Create-only writes use ``ifGenerationMatch=0`` (atomic on GCS). fake-gcs-server enforces it only
for multipart uploads, which is what small create-only writes use; for the resumable and copy
paths against an emulator the store also checks for the object just before committing, a
best-effort guard with a small race window that real GCS does not need (and does not get).

``open()`` looks the configured bucket up (``storage.buckets.get``) and creates it when missing
(``project_id``, else the key's project); listing uses ``pageToken`` as the cursor position.
With an emulator endpoint (``endpoint`` or ``STORAGE_EMULATOR_HOST``) no credentials are sent.
Signed URLs need a service-account key with ``client_email`` and ``private_key``; without one
(application default credentials, emulator without a key) they are ``UnsupportedError``: signing
through the IAM ``signBlob`` API is not implemented.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import aiohttp
from gcloud.aio.auth import Token
from gcloud.aio.storage import Storage
from yarl import URL

from ..backends import BY_KIND
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StorageError,
    TransientError,
    UnsupportedError,
    check_size,
    map_exceptions,
)
from ..parts import PartSizes, write_multipart
from ..payload import Payload, iter_payload, payload_size
from ..rawstore import (
    DEFAULT_OPTIONS,
    BytesLike,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    SignedURLProperties,
    SignedURLResponse,
    check_range,
    enforce_limit,
)
from ..units import GiB, MiB
from ._http import aiohttp_session
from .base import BaseStore

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "DEFAULT_SCOPES",
    "GCS_API_ROOT",
    "GCS_READ_CHUNK_SIZE",
    "GCS_PART_SIZE",
    "GCS_UPLOAD_CHUNK_SIZE",
    "GCSStore",
    "from_config",
    "sign_url_v4",
]

#: The public JSON API and signed-URL host.
GCS_API_ROOT = "https://storage.googleapis.com"
_GCS_HOST = "storage.googleapis.com"

#: Largest chunk a read yields. aiohttp hands over what the socket delivered, so chunks are usually
#: smaller; this only bounds them.
GCS_READ_CHUNK_SIZE = MiB
#: aiohttp's per-response read buffer for streamed reads (its default, 64 KiB, makes a 64 MiB
#: download a thousand small chunks).
_READ_BUFSIZE = MiB

#: Resumable chunks must be multiples of 256 KiB (all but the last).
_RESUMABLE_QUANTUM = 256 * 1024
#: Part (chunk) size of resumable uploads of streams; a stream that ends within one part is one
#: request.
GCS_PART_SIZE = 8 * MiB
#: The former name of ``GCS_PART_SIZE``.
GCS_UPLOAD_CHUNK_SIZE = GCS_PART_SIZE
#: Largest in-memory payload sent as one simple (media or multipart) request; a larger one is a
#: resumable upload in parts. The store never resumes a session, so one request is as robust as a
#: resumable upload of one PUT and saves the session's round trip.
_MAX_SIMPLE_UPLOAD = 5 * GiB

#: Metadata key Flyte stores a client-computed MD5 under (signed PUTs); used when GCS has no md5Hash
#: (composite objects).
_MD5_METADATA_KEY = "flytecontentmd5"

_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_JSON = "application/json; charset=UTF-8"
#: Longest signed-URL lifetime GCS accepts (7 days).
_MAX_SIGNED_EXPIRY = 604800
#: A resumable chunk the server keeps refusing to persist is retried this many times.
_MAX_STALLED_PUTS = 3
#: Flyte's default (stow's google Dial); gcloud-aio's Storage would ask for full_control.
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
#: Project used to create a missing bucket on an emulator when none is configured.
_EMULATOR_PROJECT = "flytestore"

_EMPTY: Mapping[str, str] = {}


# ---------------------------------------------------------------------------------------------
# Errors: the one mapping from aiohttp / HTTP failures onto the flytestore tree


def _detail(exc: aiohttp.ClientResponseError) -> str:
    """The server's own explanation, shortened (GCS error bodies are small JSON documents)."""
    text = exc.message or ""
    _, _, body = text.partition(": ")
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(body)["error"]["message"]
        if isinstance(message, str) and message:
            return message[:300]
    return text[:300]


def _errors(what: str, *, create: bool = False, bucket: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Map aiohttp errors raised in the block; ``what`` names the operation and its references
    (``"read [gs://b/k]"``). With ``create``, a failed precondition means the object exists.
    ``bucket``: the block's requests answer 404 only when that bucket is missing (uploads,
    listings), which the error then says."""

    def mapper(exc: BaseException) -> StorageError | None:
        if isinstance(exc, aiohttp.ClientResponseError) and _from_token_service(exc):
            return _token_error(exc)  # gcloud-aio fetched a token inside the call
        if isinstance(exc, aiohttp.ClientResponseError):
            status = exc.status
            detail = f"HTTP {status}: {_detail(exc)}"
            if status == 404:
                if bucket is not None:
                    return NotFoundError(f"cannot {what}: bucket [{bucket}] does not exist ({detail})")
                return NotFoundError(f"cannot {what}: not found ({detail})")
            if status == 412:
                if create:
                    return AlreadyExistsError(f"cannot {what}: the object already exists ({detail})")
                return PreconditionFailedError(f"cannot {what}: precondition failed ({detail})")
            if status == 409:
                return AlreadyExistsError(f"cannot {what}: already exists ({detail})")
            if status in (401, 403):
                return PermissionDeniedError(f"cannot {what}: permission denied ({detail})")
            if status in (408, 429) or status >= 500:
                return TransientError(f"cannot {what}: the service is unavailable or throttling ({detail})")
            if status in (400, 411, 413, 416):
                return InvalidArgumentError(f"cannot {what}: the request was refused ({detail})")
            return StorageError(f"cannot {what}: {detail}")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return TransientError(f"cannot {what}: timed out")
        if isinstance(exc, aiohttp.ClientError):
            return TransientError(f"cannot {what}: {type(exc).__name__}: {exc}")
        if isinstance(exc, json.JSONDecodeError):
            return StorageError(f"cannot {what}: the server's answer is not the JSON the API returns")
        return None

    return map_exceptions(mapper)


def _from_token_service(exc: aiohttp.ClientResponseError) -> bool:
    """Whether the failed request was an OAuth token exchange (``.../token``), not a storage call."""
    info = exc.request_info
    return info is not None and info.real_url.path.rstrip("/").endswith("/token")


def _token_error(exc: BaseException) -> StorageError | None:
    """An access token that could not be had: refused credentials are a permission error."""
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status in (408, 429) or exc.status >= 500:
            return TransientError(f"cannot get a GCS access token: the token service answered HTTP {exc.status}")
        return PermissionDeniedError(
            f"cannot get a GCS access token: the token service refused the credentials (HTTP {exc.status})"
        )
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, aiohttp.ClientError)):
        return TransientError(f"cannot get a GCS access token: {type(exc).__name__}")
    return None


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    """Raise what gcloud-aio raises for an error response (so one mapper sees one error type)."""
    if resp.status < 400:
        return
    try:
        body = await resp.text(errors="replace")
    except aiohttp.ClientError:
        body = ""
    finally:
        resp.release()
    raise aiohttp.ClientResponseError(
        resp.request_info, resp.history, status=resp.status, message=f"{resp.reason}: {body}", headers=resp.headers
    )


# ---------------------------------------------------------------------------------------------
# Object resources -> Metadata

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:?\d\d)?\Z")


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp (GCS gives milliseconds, emulators up to nanoseconds)."""
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        parsed = datetime.fromisoformat(value)  # Python 3.11+ reads all of RFC 3339
        if parsed.tzinfo is not None:
            return parsed
    m = _TIME.match(value)  # 3.10: no "Z", and only 3 or 6 fraction digits
    if m is None:
        return None
    fraction = (m[7] or "")[:6].ljust(6, "0")
    tz = timezone.utc
    offset = m[8]
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(fraction), tzinfo=tz)


def _object_metadata(obj: Mapping[str, Any]) -> Metadata:
    """Metadata of a GCS object resource (JSON API)."""
    user = obj.get("metadata") or _EMPTY
    return Metadata(
        exists=True,
        size=int(obj.get("size") or 0),
        etag=obj.get("etag") or "",
        content_md5=obj.get("md5Hash") or user.get(_MD5_METADATA_KEY, ""),
        content_type=obj.get("contentType"),
        last_modified=_parse_time(obj.get("updated")),
        user_metadata=user,
        version=obj.get("generation"),
    )


def _content_length(resp: aiohttp.ClientResponse) -> int | None:
    """Bytes the body will yield, when the headers say so (not for transcoded or encoded bodies)."""
    if resp.headers.get("Content-Encoding", "identity") != "identity":
        return None
    length = resp.content_length
    return length if length is not None and length >= 0 else None


def _header_metadata(resp: aiohttp.ClientResponse) -> Metadata:
    """What a media download's headers say about the object (for copies between stores)."""
    headers = resp.headers
    user = {k[11:].lower(): v for k, v in headers.items() if k[:11].lower() == "x-goog-meta-"}
    md5 = ""
    for part in headers.get("X-Goog-Hash", "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "md5":
            md5 = value
    stored = headers.get("X-Goog-Stored-Content-Length") or ""
    if resp.status == 206:
        stored = stored or headers.get("Content-Range", "").rpartition("/")[2]
    whole = resp.content_length if resp.status == 200 else None
    size = int(stored) if stored.isdigit() else whole or 0
    modified = headers.get("Last-Modified")
    last_modified = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            last_modified = parsedate_to_datetime(modified)
    return Metadata(
        exists=True,
        size=size,
        etag=headers.get("ETag", "").strip('"'),
        content_md5=md5 or user.get(_MD5_METADATA_KEY, ""),
        content_type=headers.get("Content-Type"),
        last_modified=last_modified,
        user_metadata=user or _EMPTY,
        version=headers.get("X-Goog-Generation"),
    )


# ---------------------------------------------------------------------------------------------
# V4 signed URLs


@dataclass(frozen=True)
class _Signer:
    """A service-account key for V4 signing, and the host the URLs point at."""

    email: str
    private_key_pem: str
    base_url: str  # scheme://host[/path] of the XML API (storage.googleapis.com, or an emulator)

    def __repr__(self) -> str:  # never the key
        return f"_Signer(email={self.email!r}, base_url={self.base_url!r})"


def sign_url_v4(
    *,
    method: str,
    bucket: str,
    key: str,
    email: str,
    private_key: Any,
    expires_in: int,
    base_url: str = "https://" + _GCS_HOST,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """A GCS V4 signed URL (``GOOG4-RSA-SHA256``) for ``method`` on ``bucket``/``key``.

    ``private_key`` is a ``cryptography`` RSA private key; ``headers`` (besides ``host``, always
    signed) are signed too and must be sent with the request. Follows Google's "signing URLs
    manually" recipe: the canonical request is method, path, sorted percent-encoded query, sorted
    lower-cased headers, signed header names and ``UNSIGNED-PAYLOAD``.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(base_url)
    now = now or datetime.now(timezone.utc)
    timestamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now.strftime('%Y%m%d')}/auto/storage/goog4_request"
    canonical_uri = f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
    all_headers = {"host": parts.netloc}
    for name, value in (headers or {}).items():
        all_headers[name.lower()] = " ".join(value.split())
    names = sorted(all_headers)
    canonical_headers = "".join(f"{name}:{all_headers[name]}\n" for name in names)
    signed_headers = ";".join(names)
    query = {
        "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
        "X-Goog-Credential": f"{email}/{scope}",
        "X-Goog-Date": timestamp,
        "X-Goog-Expires": str(expires_in),
        "X-Goog-SignedHeaders": signed_headers,
    }
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items()))
    canonical_request = "\n".join(
        [method, canonical_uri, canonical_query, canonical_headers, signed_headers, "UNSIGNED-PAYLOAD"]
    )
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    signature = private_key.sign(string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return (
        f"{parts.scheme}://{parts.netloc}{canonical_uri}?{canonical_query}"
        f"&X-Goog-Signature={binascii.hexlify(signature).decode()}"
    )


# ---------------------------------------------------------------------------------------------
# The store


class GCSStore(BaseStore):
    """Google Cloud Storage behind the RawStore protocol; see the module docstring."""

    schemes = BY_KIND["google"].schemes
    #: A resumable upload takes its chunks in order, one at a time.
    max_parts_in_flight = 1

    def __init__(
        self,
        *,
        container: str = "",
        multicontainer: bool = True,
        endpoint: str | None = None,
        service_account: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        scopes: Iterable[str] | None = None,
        config: Config | None = None,
        signing_account: Mapping[str, Any] | None = None,
        signing_endpoint: str | None = None,
        part_size: int = GCS_PART_SIZE,
        authenticate: bool | None = None,
        config_field: str = "stow.config",
        upload_chunk_size: int | None = None,
        create_container: bool = True,
    ) -> None:
        """``endpoint`` (else ``STORAGE_EMULATOR_HOST``) selects an emulator: no credentials are sent
        unless ``authenticate=True`` (a private endpoint of the real service).
        ``service_account`` is a parsed service-account (or other gcloud) key; without one,
        application default credentials are used. ``signing_account`` / ``signing_endpoint``
        override the key and host used for signed URLs (Flyte's ``signedUrl.stowConfigOverride``).
        ``config`` supplies the HTTP pool and timeouts (``defaultHttpClient``); ``config_field``
        is where the settings came from, for the field names of ``ConfigError``.
        ``part_size`` is the chunk of resumable uploads (a multiple of 256 KiB);
        ``upload_chunk_size`` is its deprecated former name. ``create_container`` (the config's
        ``createContainer``): ``open()`` creates the configured bucket when it is missing; without
        it nothing is created, and operations on a missing bucket are ``NotFoundError`` naming it.
        """
        super().__init__(container=container, multicontainer=multicontainer)
        if upload_chunk_size is not None:
            part_size = upload_chunk_size
        if (
            isinstance(part_size, bool)
            or not isinstance(part_size, int)
            or part_size < _RESUMABLE_QUANTUM
            or part_size % _RESUMABLE_QUANTUM
        ):
            raise InvalidArgumentError(f"part_size must be a positive multiple of 256 KiB, got {part_size!r}")
        if endpoint is None:
            endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or None
        self.endpoint = _normalise_endpoint(endpoint) if endpoint else None
        self.emulator = self.endpoint is not None
        self.anonymous = self.emulator if authenticate is None else not authenticate
        self.api_root = self.endpoint or GCS_API_ROOT
        self.project_id = project_id or None
        self.scopes = list(scopes) if scopes else list(DEFAULT_SCOPES)
        self.part_size = part_size
        self.create_container = create_container
        self._service_account = dict(service_account) if service_account is not None else None
        self._config = config
        self._field = config_field
        account = signing_account if signing_account is not None else service_account
        self._signer: _Signer | None = None
        if account and account.get("client_email") and account.get("private_key"):
            base = (
                _normalise_endpoint(signing_endpoint) if signing_endpoint else (self.endpoint or f"https://{_GCS_HOST}")
            )
            self._signer = _Signer(str(account["client_email"]), str(account["private_key"]), base)
        self._private_key: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._storage: Storage | None = None
        self._token: Token | None = None
        # gcloud-aio takes its timeout per call (default 10 s); we pass the session's own.
        self._timeout: Any = None
        self._read_root = f"{self.api_root}/storage/v1/b/"
        self._upload_root = f"{self.api_root}/upload/storage/v1/b/"

    def __repr__(self) -> str:
        return f"GCSStore(container={self.container!r}, endpoint={self.endpoint!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The store's one gcloud-aio ``Storage`` client (after ``open()``)."""
        if self._storage is None:
            raise StorageError("the gcs store is not open: use `async with store:` or `await store.open()`")
        return self._storage

    async def open(self) -> None:
        if self._session is not None:
            return
        from ..config import Config

        # A store built without a Config gets the default pool and timeouts; `type: mem` is just the
        # one Config that needs no container.
        self._session = session = aiohttp_session(self._config or Config(type="mem"))
        try:
            self._timeout = session.timeout
            self._token = self._make_token(session)
            # gcloud-aio's annotations name requests' Session (its gcloud-rest twin); aiohttp's is right here.
            shared: Any = session
            self._storage = Storage(
                token=self._token, session=shared, api_root=self.api_root, api_is_dev=self.anonymous
            )
            if self.container and self.create_container:
                await self._ensure_bucket(self.container)
        except BaseException:
            await self.aclose()
            raise

    def _make_token(self, session: Any) -> Token:
        account = self._service_account
        try:
            if account is not None:
                return Token(service_file=io.StringIO(json.dumps(account)), session=session, scopes=self.scopes)
            if self.anonymous:
                # No credentials are sent to an emulator; an empty key keeps gcloud-aio from looking
                # for application default credentials (and failing when none are configured).
                return Token(service_file=io.StringIO("{}"), session=session)
            return Token(session=session, scopes=self.scopes)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{self._field}.json", f"cannot load GCS credentials: {type(exc).__name__}") from exc

    async def _ensure_bucket(self, bucket: str) -> None:
        """Create the configured bucket when it is missing (Flyte's init container)."""
        try:
            with _errors(f"open bucket [gs://{bucket}]"):
                await self.storage.get_bucket_metadata(bucket, timeout=self._timeout)
            return
        except NotFoundError:
            pass
        project = self.project_id or (self._service_account or {}).get("project_id")
        if not project and not self.anonymous and self._token is not None:
            with _errors(f"find the project to create bucket [gs://{bucket}] in"):
                project = await self._token.get_project()
        if not project and self.emulator:
            project = _EMULATOR_PROJECT
        if not project:
            raise ConfigError(
                f"{self._field}.project_id", f"bucket [gs://{bucket}] does not exist; set project_id to create it"
            )
        url = URL(f"{self.api_root}/storage/v1/b?project={quote(str(project), safe='')}", encoded=True)
        body = json.dumps({"name": bucket}).encode()
        try:
            with _errors(f"create bucket [gs://{bucket}]"):
                resp = await self._request("POST", url, data=body, content_type=_JSON)
                resp.release()
        except AlreadyExistsError:
            pass  # created concurrently

    async def aclose(self) -> None:
        storage, token, session = self._storage, self._token, self._session
        self._storage = self._token = self._session = None
        if token is not None and token.acquiring is not None and not token.acquiring.done():
            token.acquiring.cancel()  # a background token refresh must not outlive the session
        try:
            if storage is not None:
                await storage.close()  # the session is shared: this closes nothing of ours
            if token is not None:
                await token.close()
        finally:
            if session is not None:
                await session.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise StorageError("the gcs store is not open: use `async with store:` or `await store.open()`")
        return self._session

    async def _auth(self) -> dict[str, str]:
        if self.anonymous:
            return {}
        if self._token is None:
            self._http()  # raises: not open
        with map_exceptions(_token_error):
            token = await cast(Token, self._token).get()
        return {"Authorization": f"Bearer {token}"}

    async def _request(
        self,
        method: str,
        url: URL,
        *,
        data: Any = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """One JSON-API request with the store's credentials; error statuses raise like gcloud-aio."""
        all_headers = await self._auth()
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if headers:
            all_headers.update(headers)
        # GCS answers 308 to resumable chunks: a status, not a redirect to follow.
        resp = await self._http().request(method, url, data=data, headers=all_headers, allow_redirects=False)
        if resp.status >= 400:
            await _raise_for_status(resp)
        return resp

    def _object_url(self, bucket: str, key: str, query: str = "") -> URL:
        return URL(f"{self._read_root}{_quote_bucket(bucket)}/o/{quote(key, safe='')}{query}", encoded=True)

    def _upload_url(self, bucket: str, key: str, upload_type: str, create: bool) -> URL:
        query = f"?uploadType={upload_type}&name={quote(key, safe='')}"
        if create:
            query += "&ifGenerationMatch=0"
        return URL(f"{self._upload_root}{_quote_bucket(bucket)}/o{query}", encoded=True)

    # -- head -----------------------------------------------------------------------------------

    async def head(self, ref: str) -> Metadata:
        bucket, key = self.locate(ref)
        try:
            with _errors(f"head [{ref}]"):
                data = await self.storage.download_metadata(bucket, key, timeout=self._timeout)
        except NotFoundError:
            return Metadata.missing()
        return _object_metadata(data)

    # -- reads ----------------------------------------------------------------------------------

    async def _get(self, ref: str, offset: int, length: int | None) -> tuple[aiohttp.ClientResponse | None, str]:
        """Start a media download: the response (headers read, body not), or None when the range
        starts at or past the end of the object. Raises ``NotFoundError`` for a missing object."""
        check_range(offset, length)
        bucket, key = self.locate(ref)
        what = f"read [{ref}]"
        headers = await self._auth()
        if offset or length is not None:
            headers["Range"] = f"bytes={offset}-" if length is None else f"bytes={offset}-{offset + length - 1}"
        with _errors(what):
            resp = await self._http().get(
                self._object_url(bucket, key, "?alt=media"), headers=headers, read_bufsize=_READ_BUFSIZE
            )
            if resp.status == 416:  # the object exists; the range starts past its end
                resp.release()
                return None, what
            if resp.status >= 400:
                await _raise_for_status(resp)
        return resp, what

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        if length == 0:
            meta = await self._must_exist(ref, offset, length)
            return ByteStream.from_bytes(b"", metadata=meta)
        resp, what = await self._get(ref, offset, length)
        if resp is None:
            return ByteStream.from_bytes(b"")
        return self._stream(resp, what, offset, length)

    async def _must_exist(self, ref: str, offset: int, length: int) -> Metadata:
        check_range(offset, length)
        meta = await self.head(ref)
        if not meta.exists:
            raise NotFoundError(f"cannot read [{ref}]: not found")
        return meta

    def _stream(self, resp: aiohttp.ClientResponse, what: str, offset: int, length: int | None) -> ByteStream:
        size = _content_length(resp)
        skip = 0
        if resp.status == 200 and (offset or length is not None):
            # The server sent the whole object (GCS does so for transcoded objects): slice it here.
            skip = offset
            size = None if size is None else max(0, min(size - offset, length if length is not None else size))
        else:
            length = None

        async def close() -> None:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()  # unread body: drop the connection rather than drain it

        return ByteStream(_body(resp, what, skip, length), size=size, metadata=_header_metadata(resp), close=close)

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        if length == 0:
            await self._must_exist(ref, offset, length)
            return b""
        resp, what = await self._get(ref, offset, length)
        if resp is None:
            return b""
        size = _content_length(resp)
        if size is None or (resp.status == 200 and (offset or length is not None)):
            stream = self._stream(resp, what, offset, length)
            return await (await enforce_limit(stream, max_size, ref)).read()
        try:
            check_size(size, max_size, ref)
            with _errors(what):
                return await resp.read()
        finally:
            resp.release()

    # -- writes ---------------------------------------------------------------------------------

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        bucket, key = self.locate(ref)
        opts = options or DEFAULT_OPTIONS
        in_memory = payload_size(data)
        if (
            in_memory is not None
            and in_memory <= _MAX_SIMPLE_UPLOAD
            and (size is None or (type(size) is int and size == in_memory))
        ):
            # A payload already in memory is its own single part: chunking it would bound nothing,
            # so it is one request, streamed from views of it (no copy, no session). Anything odd
            # about `size` goes through the pipeline below, for its checks and errors.
            return await self._write_simple(ref, bucket, key, opts, [cast(BytesLike, data)], in_memory)
        part_size = self.part_size

        def single(body: bytes) -> Awaitable[Metadata]:
            return self._write_simple(ref, bucket, key, opts, [body], len(body))

        return await write_multipart(
            iter_payload(data, size, chunk_size=part_size),
            PartSizes(base=part_size),  # GCS has no part limit: every part but the last is part_size
            max_parts_in_flight=self.max_parts_in_flight,
            start=functools.partial(self._start_resumable, ref, bucket, key, opts),
            single=single,
        )

    async def _write_simple(
        self, ref: str, bucket: str, key: str, opts: Options, parts: list[BytesLike], size: int
    ) -> Metadata:
        """One request: a media upload, or multipart when there is metadata or a precondition."""
        content_type = opts.content_type or _DEFAULT_CONTENT_TYPE
        create = opts.if_not_exists
        with _errors(f"write [{ref}]", create=create, bucket=bucket):
            if not opts.metadata and not create:
                url = self._upload_url(bucket, key, "media", False)
            else:
                url = self._upload_url(bucket, key, "multipart", create)
                boundary = binascii.hexlify(os.urandom(16)).decode()
                resource = json.dumps(_resource(key, content_type, opts.metadata)).encode()
                head = f"--{boundary}\r\nContent-Type: {_JSON}\r\n\r\n".encode() + resource
                head += f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
                tail = f"\r\n--{boundary}--\r\n".encode()
                parts = [head, *parts, tail]
                size += len(head) + len(tail)
                content_type = f"multipart/related; boundary={boundary}"
            data, headers = _payload(parts, size)
            resp = await self._request("POST", url, data=data, content_type=content_type, headers=headers)
            try:
                obj = json.loads(await resp.read())
            finally:
                resp.release()
        return _object_metadata(obj)

    async def _start_resumable(self, ref: str, bucket: str, key: str, opts: Options) -> _Resumable:
        """Open a resumable upload session (the pipeline's ``start``, for a stream of more than one
        part)."""
        what = f"write [{ref}]"
        create = opts.if_not_exists
        content_type = opts.content_type or _DEFAULT_CONTENT_TYPE
        with _errors(what, create=create, bucket=bucket):
            resp = await self._request(
                "POST",
                self._upload_url(bucket, key, "resumable", create),
                data=json.dumps(_resource(key, content_type, opts.metadata)).encode(),
                content_type=_JSON,
                headers={"X-Upload-Content-Type": content_type},
            )
            resp.release()
            location = resp.headers.get("Location")
            if not location:
                raise StorageError(f"cannot {what}: the server started no resumable upload session")
        return _Resumable(self, ref, URL(location, encoded=True), content_type, create)

    async def _abort(self, session_url: URL) -> None:
        with contextlib.suppress(Exception):
            resp = await self._http().delete(session_url, headers=await self._auth())
            resp.release()  # GCS answers 499: nothing to check

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ref: str) -> None:
        bucket, key = self.locate(ref)
        with _errors(f"delete [{ref}]"):
            await self.storage.delete(bucket, key, timeout=self._timeout)

    # -- copy -----------------------------------------------------------------------------------

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Server-side ``rewriteTo`` (repeated while GCS asks for more calls). Options with
        metadata or a content type replace the destination's; otherwise the source's are kept."""
        src_bucket, src_key = self.locate(src)
        dst_bucket, dst_key = self.locate(dst)
        create = bool(options and options.if_not_exists)
        resource: dict[str, Any] | None = None
        if options is not None and (options.metadata or options.content_type):
            resource = {"contentType": options.content_type or _DEFAULT_CONTENT_TYPE}
            if options.metadata:
                resource["metadata"] = dict(options.metadata)
        what = f"copy [{src}] to [{dst}]"
        if create and self.emulator and (await self.head(dst)).exists:
            # Best effort for emulators that ignore ifGenerationMatch on rewrites.
            raise AlreadyExistsError(f"cannot {what}: the destination already exists")
        with _errors(what, create=create):
            data = await self.storage.copy(
                src_bucket,
                src_key,
                dst_bucket,
                new_name=dst_key,
                metadata=resource,
                params={"ifGenerationMatch": "0"} if create else {},
                timeout=self._timeout,
            )
        obj = data.get("resource")
        if not isinstance(obj, dict):
            raise StorageError(f"cannot {what}: the rewrite finished without the new object's resource")
        return _object_metadata(obj)

    # -- list -----------------------------------------------------------------------------------

    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        params = {"maxResults": str(max_items), "fields": "items(name,size,etag,updated),nextPageToken"}
        if prefix:
            params["prefix"] = prefix
        if not cursor.is_start():
            params["pageToken"] = cursor.position
        with _errors(f"list [{self.make_ref(container, prefix)}]", bucket=container):
            data = await self.storage.list_objects(container, params=params, timeout=self._timeout)
        make_ref = self.make_ref
        entries = [
            ListEntry(
                make_ref(container, item["name"]),
                int(item.get("size") or 0),
                item.get("etag") or "",
                _parse_time(item.get("updated")),
            )
            for item in data.get("items") or ()
        ]
        token = data.get("nextPageToken")
        return entries, (Cursor.at(token) if token else Cursor.end())

    # -- signed URLs ----------------------------------------------------------------------------

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse:
        bucket, key = self.locate(ref)
        signer = self._signer
        if signer is None:
            raise UnsupportedError(
                f"cannot sign a URL for [{ref}]: GCS signed URLs need a service-account key with "
                "client_email and private_key (stow.config json, or signedUrl.stowConfigOverride); "
                "application default credentials and emulators without a key cannot sign"
            )
        expires = int(props.expires_in.total_seconds())
        if not 1 <= expires <= _MAX_SIGNED_EXPIRY:
            raise InvalidArgumentError(
                f"GCS signed URLs expire after 1 s to 7 days ({_MAX_SIGNED_EXPIRY} s), got {props.expires_in}"
            )
        headers: dict[str, str] = {}
        if props.content_md5:
            headers["Content-MD5"] = props.content_md5
            if props.add_content_md5_metadata and props.scope == "PUT":
                headers[f"x-goog-meta-{_MD5_METADATA_KEY}"] = props.content_md5
        url = sign_url_v4(
            method=props.scope,
            bucket=bucket,
            key=key,
            email=signer.email,
            private_key=self._load_private_key(signer),
            expires_in=expires,
            base_url=signer.base_url,
            headers=headers,
        )
        return SignedURLResponse(url, headers)

    def _load_private_key(self, signer: _Signer) -> Any:
        if self._private_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            try:
                key = serialization.load_pem_private_key(signer.private_key_pem.encode(), password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"{self._field}.json", "the service account's private_key is not an unencrypted PEM key"
                ) from exc
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigError(f"{self._field}.json", "the service account's private_key is not an RSA key")
            self._private_key = key
        return self._private_key


# ---------------------------------------------------------------------------------------------
# Helpers


def _resource(key: str, content_type: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"name": key, "contentType": content_type}
    if metadata:
        resource["metadata"] = dict(metadata)
    return resource


def _persisted(range_header: str | None) -> int:
    """Bytes a resumable session holds, from a 308's ``Range: bytes=0-N`` (none when absent)."""
    if not range_header:
        return 0
    _, _, end = range_header.partition("-")
    try:
        return int(end) + 1
    except ValueError:
        return 0


class _Resumable:
    """A resumable upload session as the write pipeline's ``Upload``.

    Parts arrive in order, one at a time (``max_parts_in_flight=1``). Each is one ``PUT`` with
    ``Content-Range: bytes a-b/*``, the last with the total instead of ``*``; what a ``308`` says
    the server did not persist is sent again (up to ``_MAX_STALLED_PUTS`` tries without progress).
    The last part's answer is the object resource; ``abort`` cancels the session (``DELETE``).
    """

    __slots__ = ("content_type", "create", "ref", "sent", "session_url", "store", "what")

    def __init__(self, store: GCSStore, ref: str, session_url: URL, content_type: str, create: bool) -> None:
        self.store = store
        self.ref = ref
        self.what = f"write [{ref}]"
        self.session_url = session_url
        self.content_type = content_type
        self.create = create
        #: Bytes the server holds.
        self.sent = 0

    async def put_part(self, number: int, data: bytes, last: bool) -> dict[str, Any] | None:
        store, what = self.store, self.what
        if last and self.create and store.emulator and (await store.head(self.ref)).exists:
            # Best effort for emulators that ignore ifGenerationMatch on resumable uploads.
            raise AlreadyExistsError(f"cannot {what}: the object already exists")
        start = self.sent
        end = start + len(data)
        of = str(end) if last else "*"
        view = memoryview(data)
        held = start  # what the server holds of this part's range, from its start
        stalls = 0
        with _errors(what, create=self.create):
            while True:
                n = end - held
                body, headers = _payload([view[held - start :]], n)
                headers["Content-Range"] = f"bytes {held}-{end - 1}/{of}" if n else f"bytes */{of}"
                # fake-gcs-server takes the object's content type from every chunk's Content-Type.
                resp = await store._request(
                    "PUT", self.session_url, data=body, content_type=self.content_type, headers=headers
                )
                try:
                    if resp.status != 308:
                        obj: dict[str, Any] = json.loads(await resp.read())
                        self.sent = end
                        return obj if last else None
                    persisted = min(_persisted(resp.headers.get("Range")), end)
                finally:
                    resp.release()
                if persisted == end and not last:
                    self.sent = end
                    return None
                if persisted > held:
                    held, stalls = persisted, 0
                    continue
                stalls += 1
                if stalls >= _MAX_STALLED_PUTS:
                    raise TransientError(f"cannot {what}: the server persisted none of a resumable chunk after retries")

    async def complete(self, parts: list[dict[str, Any] | None]) -> Metadata:
        obj = parts[-1] if parts else None
        if obj is None:
            raise StorageError(f"cannot {self.what}: the resumable upload finished without the object's resource")
        return _object_metadata(obj)

    async def abort(self) -> None:
        # Never finalised, so no object exists; cancel the session so the server drops the parts.
        await self.store._abort(self.session_url)


def _view(chunk: BytesLike) -> memoryview:
    view = memoryview(chunk)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


#: aiohttp warns (ResourceWarning) about bytes bodies above 1 MiB; larger bodies go as a stream of
#: views with an explicit Content-Length, which also spares joining the parts.
_MAX_BYTES_BODY = MiB


def _payload(parts: list[BytesLike] | list[memoryview], size: int) -> tuple[Any, dict[str, str]]:
    """An aiohttp request body for ``parts`` (``size`` bytes in all), and the headers it needs."""
    if size <= _MAX_BYTES_BODY:
        if len(parts) == 1:
            return parts[0], {}
        return b"".join(parts), {}
    return _stream_views(parts), {"Content-Length": str(size)}


async def _stream_views(parts: list[BytesLike] | list[memoryview]) -> AsyncIterator[memoryview]:
    for part in parts:
        view = _view(part)
        for start in range(0, view.nbytes, _MAX_BYTES_BODY):
            yield view[start : start + _MAX_BYTES_BODY]


async def _body(resp: aiohttp.ClientResponse, what: str, skip: int, limit: int | None) -> AsyncIterator[bytes]:
    """The response body in chunks of at most ``GCS_READ_CHUNK_SIZE``; ``skip``/``limit`` slice a
    body the server sent whole although a range was asked for."""
    content = resp.content
    with _errors(what):
        while True:
            chunk = await content.read(GCS_READ_CHUNK_SIZE)
            if not chunk:
                return
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            if limit is not None:
                if len(chunk) >= limit:
                    if limit:
                        yield chunk[:limit]
                    return
                limit -= len(chunk)
            yield chunk


@functools.lru_cache(maxsize=1024)
def _quote_bucket(bucket: str) -> str:
    return quote(bucket, safe="")


def _normalise_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # gcloud-aio's rule for STORAGE_EMULATOR_HOST
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidArgumentError(f"expected an http(s) URL for the GCS endpoint, got [{endpoint}]")
    return endpoint.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Config

_KEYS = ("json", "project_id", "scopes", "endpoint")
#: Accepted and ignored: Go's default stow.config (``region: us-east-1``) lands here when only
#: ``stow.kind: google`` is set.
_IGNORED = ("region",)


def _service_account(text: str | None, field: str) -> dict[str, Any] | None:
    if text is None or not str(text).strip():
        return None
    try:
        account = json.loads(text)
    except (TypeError, ValueError):
        account = None
    # Never quote the value: it holds a private key.
    if not isinstance(account, dict):
        raise ConfigError(field, "expected the JSON text of a service-account key (a JSON object)")
    if not account.get("type"):
        raise ConfigError(field, "the credentials JSON has no `type` (e.g. service_account)")
    if account.get("type") == "service_account" and not (account.get("client_email") and account.get("private_key")):
        raise ConfigError(field, "a service_account key needs client_email and private_key")
    return account


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> GCSStore:
    """Build a GCSStore from Flyte's google ``stow.config`` keys (``json``: service-account key
    text, ``project_id``, ``scopes``: comma- or space-separated) plus ``endpoint`` (an emulator;
    ``STORAGE_EMULATOR_HOST`` also works). Without ``json``, application default credentials are
    used. For the primary store, ``signedUrl.stowConfigOverride`` may supply another ``json`` or
    ``endpoint`` for signing URLs."""
    for name in settings:
        if name not in _KEYS and name not in _IGNORED:
            raise ConfigError(f"{field}.{name}", f"unknown google setting; valid keys: {', '.join(_KEYS)}")
    account = _service_account(settings.get("json"), f"{field}.json")
    scopes = [s for s in re.split(r"[\s,]+", str(settings.get("scopes") or "")) if s] or None
    endpoint = str(settings.get("endpoint") or "").strip() or None
    if endpoint is not None:
        try:
            endpoint = _normalise_endpoint(endpoint)
        except InvalidArgumentError as err:
            raise ConfigError(f"{field}.endpoint", str(err)) from None
    signing_account = None
    signing_endpoint = None
    override = signed_url_override or {}
    if override:
        if override.get("json"):
            signing_account = _service_account(override["json"], "signedUrl.stowConfigOverride.json")
        if override.get("endpoint"):
            try:
                signing_endpoint = _normalise_endpoint(override["endpoint"])
            except InvalidArgumentError as err:
                raise ConfigError("signedUrl.stowConfigOverride.endpoint", str(err)) from None
    return GCSStore(
        container=container,
        multicontainer=multicontainer,
        endpoint=endpoint,
        service_account=account,
        project_id=str(settings.get("project_id") or "").strip() or None,
        scopes=scopes,
        config=config,
        signing_account=signing_account,
        signing_endpoint=signing_endpoint,
        config_field=field,
        create_container=config.create_container,
    )
