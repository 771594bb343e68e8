"""S3Store: objects in Amazon S3 or any S3-compatible server, for ``s3://<bucket>/<key>`` (aiobotocore).

Owns: the stow ``s3`` settings (Flyte's keys plus ``addressing_style``) and their validation,
the one aiobotocore client of a store (``_S3Api``, the only place that calls it), streamed and
ranged reads, single-request and multipart writes with their clean-up, server-side copies,
paginated listing, SigV4 presigned URLs, and the mapping of botocore/aiohttp errors onto the
flytestore tree (``_map_error``).

Behaviour worth knowing:

- Writes go through the one write pipeline (``flytestore.parts``): a write of at most one
  ``part_size`` (8 MiB) part is one ``PutObject``; anything larger, or a stream that turns out
  larger, becomes a multipart upload (``_Multipart``) of ``part_size`` parts (grown to fit S3's
  10,000 parts by ``parts.PartSizes``: once from the declared size, else step by step as a
  stream of unknown length goes on) with at most ``max_parts_in_flight`` parts uploading at
  once, so a write holds about
  ``(max_parts_in_flight + 1) * part_size`` bytes whatever the object size (32 MiB by default:
  3 parts in flight; up to twice the in-flight share on Python 3.11, whose socket transports copy
  what a send leaves over). A 2 GiB local->S3 copy peaked at 79 MiB above baseline with 3 parts in
  flight, 95-118 MiB with 4 (``benchmarks/bench_transfer.py``). The upload is aborted on any failure or
  cancellation, and completed only after the whole stream was read and its declared size
  checked; completion and abort run to their end even when the write is cancelled (an upload
  whose creation was cancelled is aborted in the background once its id arrives, and ``aclose``
  waits for that). Server-side part copies keep their parts in flight with the pipeline's
  ``BoundedParts``.
- ``if_not_exists`` sends ``If-None-Match: *`` on ``PutObject`` and ``CompleteMultipartUpload``,
  so the server decides atomically. Copies also send it (when the installed botocore knows
  CopyObject's), and check the destination first for servers that ignore it there (moto does;
  the check is then not atomic).
- Unlike Flyte's Go store (docs/flyte-compatibility.md#s3), a write to the configured bucket after it
  vanished creates the bucket and retries the write instead of dropping the data. Other missing
  buckets are ``NotFoundError`` ("bucket [name] does not exist"). With ``create_container=False``
  (the config's ``createContainer: false``) no bucket is ever created, by ``open()`` or a write.
- ``delete`` checks the object first: S3 deletes silently, flytestore reports a missing object.
  ``delete_many`` sends DeleteObjects (``Quiet``) of up to 1,000 keys, ``DELETE_REQUESTS_IN_FLIGHT``
  requests at once, and maps each key's error to its slot (a key S3 reports missing was deleted;
  a failed request fills every slot of its keys, which ``ResilientStore`` retries when transient).
- Listing cursors are the last key returned (``StartAfter``), readable and valid across processes.
- Etags are reported without their quotes. ``Metadata.content_md5`` is Flyte's
  ``flytecontentmd5`` user-metadata entry.
- With ``lean_requests`` (the default), HEAD, GET, PUT and UploadPart skip botocore's per-call
  machinery: ``_s3lean`` signs them with botocore's SigV4 signer and the client's credentials and
  sends them through the client's own aiohttp session, raising botocore's exceptions, so results
  and errors are the full path's at about half its client CPU per small request (a third without
  moto's per-request connections; ``benchmarks/bench_s3.py``). Everything else, and whatever the
  lean path cannot serve (SigV2, S3 Express, region redirects), goes through aiobotocore;
  ``lean_requests: false`` sends everything that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import botocore.loaders
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ..backends import BY_KIND
from ..config import FALSE_WORDS, TRUE_WORDS
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StorageError,
    TransientError,
    map_exceptions,
)
from ..parts import BoundedParts, PartSizes, nbytes, settle, write_multipart
from ..payload import Payload, check_declared, iter_payload
from ..rawstore import (
    DEFAULT_CHUNK_SIZE,
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
from ..units import GiB, MiB
from ._http import http_settings
from ._s3lean import LeanS3, ListedObject, UseFullPath, lean_unsupported
from .base import BaseStore, run_bounded

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["S3Settings", "S3Store", "from_config", "parse_settings"]

logger = logging.getLogger(__name__)

#: Part size of multipart uploads, and the largest write sent as a single PutObject. 8 MiB is
#: the common S3 client default (s3transfer, object_store); parts may not be under 5 MiB.
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
#: S3's limit of parts per upload. Without a declared size the part size grows as the stream goes
#: on (``parts.PartSizes``), so a stream of unknown length fits within it while small uploads
#: keep small parts.
MAX_PARTS = 10_000
DEFAULT_PARTS_IN_FLIGHT = 3
#: CopyObject's limit; larger copies go part by part (UploadPartCopy).
COPY_OBJECT_MAX = 5 * GiB
DEFAULT_COPY_PART_SIZE = 512 * MiB
#: S3 returns at most 1,000 keys per ListObjectsV2 request: larger pages take several.
_LIST_REQUEST_MAX = 1000
#: DeleteObjects takes at most 1,000 keys; ``delete_many`` keeps this many requests in flight.
DELETE_BATCH = 1000
DELETE_REQUESTS_IN_FLIGHT = 8
#: SigV4 presigned URLs live at most seven days.
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600
#: Flyte's user-metadata key for the MD5 of signed PUTs (S3 lower-cases metadata keys).
FLYTE_CONTENT_MD5 = "flytecontentmd5"

_Resp = dict[str, Any]
_EMPTY: Mapping[str, str] = MappingProxyType({})
_BYTES_TYPES = (bytes, bytearray, memoryview)


# ---------------------------------------------------------------------------------------------
# Errors: the one mapping of botocore / aiohttp exceptions onto the flytestore tree

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NoSuchVersion", "NotFound", "404"})
_PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidSecurity",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "401",
        "403",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ConditionalRequestConflict",  # a concurrent conditional write: AWS says retry
        "InternalError",
        "OperationAborted",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)
_INVALID_REFERENCE_CODES = frozenset({"InvalidBucketName", "KeyTooLongError"})
_TRANSIENT_EXCEPTIONS = (
    HTTPClientError,  # connection closed, read timeouts, streaming errors
    BotoConnectionError,  # endpoint unreachable, connect timeouts
    IncompleteReadError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionError,
)


def _error_info(exc: ClientError) -> tuple[str, int]:
    response: Mapping[str, Any] = exc.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _map_error(exc: BaseException, *, what: str, create: bool = False) -> StorageError | None:
    """The flytestore error for a client exception (``None``: not the client's, let it through).

    ``what`` names the operation and its reference (``read [s3://b/k]``); ``create`` marks a
    create-only write, whose failed ``If-None-Match`` means the object already exists.
    """
    if isinstance(exc, ClientError):
        code, status = _error_info(exc)
        message = str(exc.response.get("Error", {}).get("Message", "") or "")
        detail = f"cannot {what}: {code or status}" + (f" ({message})" if message else "")
        if code == "NoSuchBucket":
            bucket = exc.response.get("Error", {}).get("BucketName")
            if bucket:
                return NotFoundError(f"cannot {what}: bucket [{bucket}] does not exist")
        if code in _NOT_FOUND_CODES or status == 404:
            return NotFoundError(detail)
        if code == "PreconditionFailed" or status == 412:
            if create:
                return AlreadyExistsError(f"cannot {what}: the object already exists")
            return PreconditionFailedError(detail)
        if code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            return AlreadyExistsError(detail)
        if code in _PERMISSION_CODES or status in (401, 403):
            return PermissionDeniedError(detail)
        if code in _INVALID_REFERENCE_CODES:
            return InvalidReferenceError(detail)
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientError(detail)
        return StorageError(detail)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return PermissionDeniedError(
            f"cannot {what}: no usable AWS credentials ({exc}); set auth_type: accesskey with "
            "access_key_id and secret_key (or secret_key_path), or provide credentials to the "
            "environment / IAM chain"
        )
    if isinstance(exc, ParamValidationError):
        if "bucket" in str(exc).lower():
            return InvalidReferenceError(f"cannot {what}: {exc}")
        return InvalidArgumentError(f"cannot {what}: {exc}")
    if isinstance(exc, _TRANSIENT_EXCEPTIONS):
        return TransientError(f"cannot {what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"cannot {what}: {exc}")
    return None


def _errors(what: str, *, create: bool = False) -> contextlib.AbstractContextManager[None]:
    """Apply ``_map_error`` to a block (the original stays as ``__cause__``)."""
    return map_exceptions(functools.partial(_map_error, what=what, create=create))


def _slot_error(exc: BaseException, ref: str) -> StorageError:
    """The error of one object of a bulk delete that failed with ``exc`` (a client exception)."""
    error = _map_error(exc, what=f"delete [{ref}]") or StorageError(f"cannot delete [{ref}]: {exc}")
    error.__cause__ = exc
    return error


def _is_not_found(exc: ClientError) -> bool:
    code, status = _error_info(exc)
    return status == 404 or code in _NOT_FOUND_CODES


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: endpoint, credentials, addressing, pool and timeouts.

    ``access_key_id``/``secret_access_key``/``session_token`` are static credentials; when they
    are ``None`` the AWS credential chain (environment, profile, IAM role) is used. Secrets never
    appear in ``repr``.
    """

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    #: ``path``, ``virtual`` or ``auto`` (botocore's choice).
    addressing_style: str = "auto"
    use_ssl: bool = True
    #: ``s3v4``, or ``s3`` (SigV2) for Flyte's ``v2_signing``.
    signature_version: str = "s3v4"
    pool_size: int = 100
    connect_timeout: float = 60.0
    read_timeout: float = 60.0
    keepalive_timeout: float = 90.0
    #: Retries per request in botocore's ``standard`` retry mode, after the first attempt (0 = none;
    #: botocore's ``max_attempts`` counts retries). ``from_config`` sets 0: a store built from a
    #: config sits under the DataStore's ResilientStore, which retries per its ``retries`` section.
    max_attempts: int = 3
    #: Sent with every request (``defaultHttpClient.headers``); may hold credentials of a proxy.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Send HEAD, GET, PUT and UploadPart as signed requests of their own (``_s3lean``) rather
    #: than through botocore's per-call machinery; everything else, and whatever the lean path
    #: cannot serve (SigV2, S3 Express, region redirects...), goes through aiobotocore.
    lean_requests: bool = True

    def client_config(self) -> AioConfig:
        return AioConfig(
            max_pool_connections=self.pool_size,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            signature_version=self.signature_version,
            s3={"addressing_style": self.addressing_style},
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            connector_args={"keepalive_timeout": self.keepalive_timeout},
        )

    def create_client(self, session: AioSession) -> contextlib.AbstractAsyncContextManager[Any]:
        return cast(
            "contextlib.AbstractAsyncContextManager[Any]",
            session.create_client(
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                use_ssl=self.use_ssl,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                aws_session_token=self.session_token,
                config=self.client_config(),
            ),
        )


_KNOWN_KEYS = (
    "auth_type",
    "access_key_id",
    "secret_key",
    "secret_key_path",
    "token",
    "region",
    "endpoint",
    "disable_ssl",
    "addressing_style",
    "v2_signing",
    "lean_requests",
)


def _bool_setting(settings: Mapping[str, Any], key: str, field: str) -> bool:
    """A boolean setting; unset or empty is false."""
    value = str(settings.get(key, "")).strip().lower()
    if not value or value in FALSE_WORDS:
        return False
    if value in TRUE_WORDS:
        return True
    raise ConfigError(f"{field}.{key}", f"expected true or false, got {settings[key]!r}")


def _default_on_setting(settings: Mapping[str, Any], key: str, field: str) -> bool:
    """A boolean that is true unless set to false (unset or empty: true)."""
    if settings.get(key) is None or not str(settings[key]).strip():
        return True
    return _bool_setting(settings, key, field)


def parse_settings(
    settings: Mapping[str, Any], *, config: Config | None = None, field: str = "stow.config"
) -> S3Settings:
    """``S3Settings`` from Flyte's stow ``s3`` keys (plus ``addressing_style`` and
    ``lean_requests``) and the config's ``defaultHttpClient`` (pool size, keep-alive, timeout,
    headers)."""
    for key in settings:
        if key not in _KNOWN_KEYS:
            raise ConfigError(f"{field}.{key}", f"unknown key for the s3 backend; valid keys: {', '.join(_KNOWN_KEYS)}")

    def get(key: str) -> str | None:
        value = settings.get(key)
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    access_key_id = get("access_key_id")
    secret = get("secret_key")
    secret_path = get("secret_key_path")
    if secret_path is not None:
        try:
            with open(secret_path, encoding="utf-8") as handle:
                secret = handle.read().strip() or None
        except OSError as err:
            # The path is not secret; the file's content is, and is never quoted.
            raise ConfigError(
                f"{field}.secret_key_path", f"cannot read the secret key file [{secret_path}]: {err.strerror or err}"
            ) from None
    auth_type = (get("auth_type") or ("accesskey" if access_key_id or secret else "iam")).lower()
    if auth_type not in ("iam", "accesskey"):
        raise ConfigError(f"{field}.auth_type", f"must be iam or accesskey, got [{settings.get('auth_type')}]")
    token = get("token")
    if auth_type == "accesskey":
        if not access_key_id:
            raise ConfigError(f"{field}.access_key_id", "auth_type accesskey needs access_key_id")
        if not secret:
            raise ConfigError(f"{field}.secret_key", "auth_type accesskey needs secret_key or secret_key_path")
    else:
        # iam: the credential chain decides, as in Flyte (static keys, if any, are ignored).
        access_key_id = secret = token = None

    disable_ssl = _bool_setting(settings, "disable_ssl", field)
    endpoint = get("endpoint")
    if endpoint is not None and "://" not in endpoint:
        # Go's SDK takes a bare host:port and picks the scheme from disable_ssl.
        endpoint = ("http://" if disable_ssl else "https://") + endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{field}.endpoint", f"must be an http:// or https:// URL, got [{endpoint}]")
    style = (get("addressing_style") or ("path" if endpoint else "auto")).lower()
    if style not in ("path", "virtual", "auto"):
        raise ConfigError(f"{field}.addressing_style", f"must be path, virtual or auto, got [{style}]")

    kwargs: dict[str, Any] = {}
    if config is not None:
        http = http_settings(config)
        kwargs.update(pool_size=http.pool_size, keepalive_timeout=http.keepalive, headers=http.headers, max_attempts=0)
        if http.timeout:
            kwargs.update(connect_timeout=http.timeout, read_timeout=http.timeout)
    return S3Settings(
        region=get("region"),
        endpoint_url=endpoint,
        access_key_id=access_key_id,
        secret_access_key=secret,
        session_token=token,
        addressing_style=style,
        use_ssl=not disable_ssl,
        signature_version="s3" if _bool_setting(settings, "v2_signing", field) else "s3v4",
        lean_requests=_default_on_setting(settings, "lean_requests", field),
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# The client: every S3 call goes through here


class _S3Api:
    """The aiobotocore calls the store makes, in one place.

    Methods return botocore's response dicts and raise botocore's exceptions; the store maps
    them. ``_LeanS3Api`` replaces the hot operations with a leaner request path without touching
    the store.
    """

    __slots__ = ("checksums", "client", "conditional_copy", "signer")

    def __init__(self, client: Any, signer: Any) -> None:
        self.client = client
        self.signer = signer
        #: Send CRC32 part checksums as s3transfer does, unless the user turned checksums off
        #: (``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``, for servers that reject them).
        self.checksums = getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"
        #: Whether this botocore knows CopyObject's If-None-Match (newer than PutObject's).
        copy_input = client.meta.service_model.operation_model("CopyObject").input_shape
        self.conditional_copy = "IfNoneMatch" in copy_input.members

    async def head(self, bucket: str, key: str) -> _Resp:
        resp: _Resp = await self.client.head_object(Bucket=bucket, Key=key)
        return resp

    async def get(self, bucket: str, key: str, byte_range: str | None = None) -> _Resp:
        if byte_range is None:
            resp: _Resp = await self.client.get_object(Bucket=bucket, Key=key)
        else:
            resp = await self.client.get_object(Bucket=bucket, Key=key, Range=byte_range)
        return resp

    async def put(self, bucket: str, key: str, body: bytes, params: Mapping[str, Any]) -> _Resp:
        resp: _Resp = await self.client.put_object(Bucket=bucket, Key=key, Body=body, **params)
        return resp

    async def create_multipart(self, bucket: str, key: str, params: Mapping[str, Any]) -> str:
        if self.checksums:
            params = {**params, "ChecksumAlgorithm": "CRC32"}
        resp: _Resp = await self.client.create_multipart_upload(Bucket=bucket, Key=key, **params)
        return str(resp["UploadId"])

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> _Resp:
        extra = {"ChecksumAlgorithm": "CRC32"} if self.checksums else {}
        resp: _Resp = await self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **extra
        )
        part: _Resp = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksums and resp.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, number: int, source: Mapping[str, str], byte_range: str
    ) -> _Resp:
        resp: _Resp = await self.client.upload_part_copy(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, CopySource=dict(source),
            CopySourceRange=byte_range,
        )  # fmt: skip
        part: _Resp = {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
        if self.checksums and resp["CopyPartResult"].get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["CopyPartResult"]["ChecksumCRC32"]
        return part

    async def complete(self, bucket: str, key: str, upload_id: str, parts: list[_Resp], if_none_match: bool) -> _Resp:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        resp: _Resp = await self.client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
        )
        return resp

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    async def copy(self, bucket: str, key: str, source: Mapping[str, str], params: Mapping[str, Any]) -> _Resp:
        resp: _Resp = await self.client.copy_object(Bucket=bucket, Key=key, CopySource=dict(source), **params)
        return resp

    async def delete(self, bucket: str, key: str) -> None:
        await self.client.delete_object(Bucket=bucket, Key=key)

    async def delete_objects(self, bucket: str, keys: list[str]) -> _Resp:
        """DeleteObjects in quiet mode: the response lists only the keys that failed."""
        objects = [{"Key": key} for key in keys]
        resp: _Resp = await self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        return resp

    async def list_objects(
        self, bucket: str, prefix: str, max_keys: int, start_after: str | None
    ) -> tuple[list[ListedObject], bool]:
        """One ListObjectsV2 request: (key, size, ETag, last modified) of each object in key
        order, and whether the listing goes on."""
        extra = {"StartAfter": start_after} if start_after else {}
        resp: _Resp = await self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=max_keys, **extra)
        objects = [
            (obj["Key"], int(obj.get("Size", 0)), obj.get("ETag") or "", obj.get("LastModified"))
            for obj in resp.get("Contents") or ()
        ]
        return objects, bool(resp.get("IsTruncated"))

    async def head_bucket(self, bucket: str) -> None:
        await self.client.head_bucket(Bucket=bucket)

    async def create_bucket(self, bucket: str, region: str | None) -> None:
        if region and region != "us-east-1":
            await self.client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        else:
            await self.client.create_bucket(Bucket=bucket)

    async def presign(self, method: str, params: Mapping[str, Any], expires_in: int) -> str:
        url = await self.signer.generate_presigned_url(method, Params=dict(params), ExpiresIn=expires_in)
        return str(url)


_LEAN_PUT_PARAMS = frozenset({"Metadata", "ContentType", "IfNoneMatch"})


def _plain_metadata(metadata: object) -> bool:
    """Metadata the lean path sends as the full path would (botocore rejects non-ASCII)."""
    if metadata is None:
        return True
    if not isinstance(metadata, dict):
        return False
    return all(
        isinstance(name, str) and isinstance(value, str) and name.isascii() and value.isascii()
        for name, value in metadata.items()
    )


class _LeanS3Api(_S3Api):
    """``_S3Api`` with HEAD, GET, PUT, UploadPart and ListObjectsV2 sent by ``LeanS3``
    (``_s3lean``): signed requests built directly, through the same client's session, credentials
    and signer.

    Each operation falls back to the aiobotocore call when the lean path declines before sending
    (``UseFullPath``): a bucket that needs another signer or was redirected to another region,
    parameters or metadata the lean path leaves to botocore's validation.
    """

    __slots__ = ("lean",)

    def __init__(self, client: Any, signer: Any, headers: Mapping[str, str]) -> None:
        super().__init__(client, signer)
        self.lean = LeanS3(client, headers=headers, checksums=self.checksums)

    async def head(self, bucket: str, key: str) -> _Resp:
        try:
            return await self.lean.head(bucket, key)
        except UseFullPath:
            pass
        return await super().head(bucket, key)

    async def get(self, bucket: str, key: str, byte_range: str | None = None) -> _Resp:
        try:
            return await self.lean.get(bucket, key, byte_range)
        except UseFullPath:
            pass
        return await super().get(bucket, key, byte_range)

    async def put(self, bucket: str, key: str, body: bytes, params: Mapping[str, Any]) -> _Resp:
        content_type = params.get("ContentType")
        if_none_match = params.get("IfNoneMatch")
        if (
            params.keys() <= _LEAN_PUT_PARAMS
            and _plain_metadata(params.get("Metadata"))
            and (content_type is None or isinstance(content_type, str))
            and (if_none_match is None or isinstance(if_none_match, str))
        ):
            try:
                return await self.lean.put(
                    bucket,
                    key,
                    body,
                    metadata=params.get("Metadata"),
                    content_type=content_type,
                    if_none_match=if_none_match,
                )
            except UseFullPath:
                pass
        return await super().put(bucket, key, body, params)

    async def list_objects(
        self, bucket: str, prefix: str, max_keys: int, start_after: str | None
    ) -> tuple[list[ListedObject], bool]:
        try:
            return await self.lean.list_objects(bucket, prefix, max_keys, start_after)
        except UseFullPath:
            pass
        return await super().list_objects(bucket, prefix, max_keys, start_after)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> _Resp:
        try:
            resp = await self.lean.upload_part(bucket, key, upload_id, number, body)
        except UseFullPath:
            resp = None
        if resp is None:
            return await super().upload_part(bucket, key, upload_id, number, body)
        part: _Resp = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksums and resp.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part


def _make_api(client: Any, signer: Any, settings: S3Settings) -> _S3Api:
    """The lean API when the settings ask for it and the client allows it, else the full one."""
    if settings.lean_requests:
        reason = lean_unsupported(client)
        if reason is None:
            return _LeanS3Api(client, signer, settings.headers)
        logger.info("S3 lean requests are off for this client: %s", reason)
    return _S3Api(client, signer)


@functools.lru_cache(maxsize=1)
def _shared_loader() -> Any:
    """One botocore data loader for every store of the process.

    Each store has its own session (credential caches may hold loop-bound locks), but parsing
    botocore's S3 model and endpoint JSON costs ~0.1 s of CPU per session; the loader caches the
    parsed data, which botocore only reads.
    """
    return botocore.loaders.create_loader()


def _header_hook(headers: Mapping[str, str]) -> Callable[..., None]:
    """A ``before-sign`` handler adding the configured default headers (signed with the request).

    Presigned URLs are left alone: a header signed into a URL would become one more header every
    user of the URL must send.
    """
    items = tuple(headers.items())

    def add_headers(request: Any, signature_version: Any = None, **_: Any) -> None:
        if isinstance(signature_version, str) and signature_version.endswith("-query"):
            return
        for name, value in items:
            if name not in request.headers:
                request.headers[name] = value

    return add_headers


# ---------------------------------------------------------------------------------------------
# Small helpers


def _etag(value: object) -> str:
    return str(value).strip('"') if value else ""


def _version(value: object) -> str | None:
    return str(value) if value and value != "null" else None


def _metadata(resp: Mapping[str, Any], size: int) -> Metadata:
    user: Mapping[str, str] = resp.get("Metadata") or _EMPTY
    return Metadata(
        exists=True,
        size=size,
        etag=_etag(resp.get("ETag")),
        content_md5=user.get(FLYTE_CONTENT_MD5, ""),
        content_type=resp.get("ContentType"),
        last_modified=resp.get("LastModified"),
        user_metadata=user,
        version=_version(resp.get("VersionId")),
    )


def _written(resp: Mapping[str, Any], size: int, options: Options) -> Metadata:
    user = {k.lower(): v for k, v in options.metadata.items()} if options.metadata else _EMPTY
    return Metadata(
        exists=True,
        size=size,
        etag=_etag(resp.get("ETag")),
        content_md5=user.get(FLYTE_CONTENT_MD5, ""),
        content_type=options.content_type,
        user_metadata=user,
        version=_version(resp.get("VersionId")),
    )


def _total_size(resp: Mapping[str, Any]) -> int:
    """The whole object's size from a (possibly ranged) GET: ``Content-Range: bytes a-b/total``."""
    content_range = resp.get("ContentRange")
    if content_range:
        total = str(content_range).rpartition("/")[2]
        if total.isdigit():
            return int(total)
    return int(resp.get("ContentLength", 0))


def _byte_range(offset: int, length: int | None) -> str | None:
    if length is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + length - 1}"


def _object_params(options: Options) -> dict[str, Any]:
    """Metadata and content type of a write, as botocore parameters."""
    params: dict[str, Any] = {}
    if options.metadata:
        params["Metadata"] = dict(options.metadata)
    if options.content_type:
        params["ContentType"] = options.content_type
    return params


class _Body:
    """The chunks of a GET's body, each at most ``chunk_size`` bytes (aiohttp hands over what
    has arrived, typically up to 256 KiB). Closing releases the connection."""

    __slots__ = ("_body", "_chunk_size", "_ref")

    def __init__(self, body: Any, chunk_size: int, ref: str) -> None:
        self._body = body
        self._chunk_size = chunk_size
        self._ref = ref

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        # Per chunk, so the mapper is applied with try/except rather than a fresh context manager.
        try:
            chunk: bytes = await self._body.read(self._chunk_size)
        except Exception as exc:
            mapped = _map_error(exc, what=f"read [{self._ref}]")
            if mapped is None:
                raise
            raise mapped from exc
        if chunk:
            return chunk
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._body.close()


# ---------------------------------------------------------------------------------------------
# Multipart uploads


class _Multipart:
    """One multipart upload, as ``parts.write_multipart`` drives it (its ``Upload``): a part is an
    UploadPart, completion a CompleteMultipartUpload (``If-None-Match: *`` for a create-only
    write) returning the written object's metadata, and abort an AbortMultipartUpload."""

    __slots__ = ("api", "bucket", "key", "options", "size", "upload_id")

    def __init__(self, api: _S3Api, bucket: str, key: str, upload_id: str, options: Options) -> None:
        self.api = api
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.options = options
        #: Bytes in the parts uploaded so far.
        self.size = 0

    async def put_part(self, number: int, data: bytes, last: bool) -> _Resp:
        part = await self.api.upload_part(self.bucket, self.key, self.upload_id, number, data)
        self.size += len(data)
        return part

    async def complete(self, parts: list[_Resp]) -> Metadata:
        if_none_match = self.options.if_not_exists
        resp = await self.api.complete(self.bucket, self.key, self.upload_id, parts, if_none_match)
        return _written(resp, self.size, self.options)

    async def abort(self) -> None:
        """Drop the upload's parts; never raises (it runs while another error propagates)."""
        with contextlib.suppress(Exception):
            await self.api.abort(self.bucket, self.key, self.upload_id)


class _PartCopies(_Multipart):
    """A multipart upload whose parts are copied server-side (UploadPartCopy): part ``n`` is the
    ``n``-th ``part_size`` bytes of ``source``, so a part carries no data of its own."""

    __slots__ = ("part_size", "source", "source_size")

    def __init__(
        self,
        api: _S3Api,
        bucket: str,
        key: str,
        upload_id: str,
        options: Options,
        *,
        source: Mapping[str, str],
        source_size: int,
        part_size: int,
    ) -> None:
        super().__init__(api, bucket, key, upload_id, options)
        self.source = source
        self.source_size = source_size
        self.part_size = part_size

    @property
    def count(self) -> int:
        return math.ceil(self.source_size / self.part_size)

    async def put_part(self, number: int, data: bytes, last: bool) -> _Resp:
        start = (number - 1) * self.part_size
        end = min(start + self.part_size, self.source_size)
        byte_range = f"bytes={start}-{end - 1}"
        part = await self.api.upload_part_copy(self.bucket, self.key, self.upload_id, number, self.source, byte_range)
        self.size += end - start
        return part


# ---------------------------------------------------------------------------------------------
# The store


class S3Store(BaseStore):
    """Objects in S3 (or an S3-compatible server): ``s3://<bucket>/<key>``.

    ``open()`` creates the aiobotocore client (one per store, with the pool and timeouts of
    ``settings``) and the configured bucket when it is missing; ``aclose()`` waits for pending
    upload clean-ups and closes the client. ``signing`` (Flyte's ``signedUrl.stowConfigOverride``)
    gives presigned URLs their own endpoint or credentials.
    """

    schemes = BY_KIND["s3"].schemes

    def __init__(
        self,
        settings: S3Settings | None = None,
        *,
        container: str = "",
        multicontainer: bool = True,
        signing: S3Settings | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        copy_threshold: int = COPY_OBJECT_MAX,
        copy_part_size: int = DEFAULT_COPY_PART_SIZE,
        create_container: bool = True,
    ) -> None:
        super().__init__(container=container, multicontainer=multicontainer)
        for name, value, low, high in (
            ("part_size", part_size, MIN_PART_SIZE, MAX_PART_SIZE),
            ("max_parts_in_flight", max_parts_in_flight, 1, 1024),
            ("chunk_size", chunk_size, 1, 8 * MiB),
            ("copy_threshold", copy_threshold, 0, COPY_OBJECT_MAX),
            ("copy_part_size", copy_part_size, MIN_PART_SIZE, MAX_PART_SIZE),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgumentError(f"{name} must be an int between {low} and {high}, got {value!r}")
        self.settings = settings or S3Settings()
        self.signing = signing
        self.part_size = part_size
        self.max_parts_in_flight = max_parts_in_flight
        self.chunk_size = chunk_size
        self.copy_threshold = copy_threshold
        self.copy_part_size = copy_part_size
        self.create_container = create_container
        self._api: _S3Api | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        #: Upload clean-ups running in the background (shielded from their caller's cancellation).
        self._cleanups: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        s = self.settings
        return f"S3Store(container={self.container!r}, endpoint={s.endpoint_url!r}, region={s.region!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._api is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            session = AioSession()
            session.register_component("data_loader", _shared_loader())
            client = await stack.enter_async_context(self.settings.create_client(session))
            if self.settings.headers:
                client.meta.events.register("before-sign.s3", _header_hook(self.settings.headers))
            signer = client
            if self.signing is not None:
                signer = await stack.enter_async_context(self.signing.create_client(session))
            self._api = _make_api(client, signer, self.settings)
            self._stack = stack
            if self.container and self.create_container:
                await self._ensure_bucket(self._api, self.container)
        except BaseException:
            self._api = None
            self._stack = None
            await stack.aclose()
            raise

    async def aclose(self) -> None:
        stack, self._stack, self._api = self._stack, None, None
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if stack is not None:
            await stack.aclose()

    @property
    def api(self) -> _S3Api:
        api = self._api
        if api is None:
            raise StorageError(f"{self!r} is not open: use `async with store:` or `await store.open()` first")
        return api

    async def _ensure_bucket(self, api: _S3Api, bucket: str) -> None:
        with _errors(f"open the container [{self.base_container}]"):
            try:
                await api.head_bucket(bucket)
                return
            except ClientError as exc:
                if _error_info(exc)[1] in (401, 403):
                    # Without s3:ListBucket HEAD is refused even for an existing bucket; writes
                    # will tell whether it is there.
                    return
                if not _is_not_found(exc):
                    raise
            await self._create_bucket(api, bucket)

    async def _create_bucket(self, api: _S3Api, bucket: str) -> None:
        with _errors(f"create the bucket [s3://{bucket}]"):
            try:
                await api.create_bucket(bucket, self.settings.region)
            except ClientError as exc:
                if _error_info(exc)[0] != "BucketAlreadyOwnedByYou":  # a concurrent creator won
                    raise

    async def _with_bucket(self, api: _S3Api, bucket: str, call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a write; if the configured bucket vanished and ``create_container`` is set, create
        it and run the write again (Flyte's Go store creates it but drops the write)."""
        try:
            return await call()
        except ClientError as exc:
            if not (self.create_container and bucket == self.container and _error_info(exc)[0] == "NoSuchBucket"):
                raise
        await self._create_bucket(api, bucket)
        return await call()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    # -- head / read ----------------------------------------------------------------------------

    async def _head(self, api: _S3Api, bucket: str, key: str) -> _Resp | None:
        try:
            return await api.head(bucket, key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise

    async def head(self, ref: str) -> Metadata:
        bucket, key = self.locate(ref)
        with _errors(f"head [{ref}]"):
            resp = await self._head(self.api, bucket, key)
        if resp is None:
            return Metadata.missing()
        return _metadata(resp, int(resp.get("ContentLength", 0)))

    async def _existing(self, bucket: str, key: str, what: str, missing: str = "the object does not exist") -> Metadata:
        """The object's metadata, or ``NotFoundError`` ("cannot <what>: <missing>")."""
        with _errors(what):
            resp = await self._head(self.api, bucket, key)
        if resp is None:
            raise NotFoundError(f"cannot {what}: {missing}")
        return _metadata(resp, int(resp.get("ContentLength", 0)))

    async def _get(self, bucket: str, key: str, offset: int, length: int | None) -> _Resp | None:
        """GET the object or a range of it; ``None`` for a range that starts past the end."""
        byte_range = _byte_range(offset, length)
        if byte_range is None:
            return await self.api.get(bucket, key)
        try:
            return await self.api.get(bucket, key, byte_range)
        except ClientError as exc:
            if _error_info(exc)[0] == "InvalidRange":  # the object exists, the range is empty
                return None
            raise

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        check_range(offset, length)
        bucket, key = self.locate(ref)
        what = f"read [{ref}]"
        if length == 0:
            return ByteStream.from_bytes(b"", metadata=await self._existing(bucket, key, what))
        with _errors(what):
            resp = await self._get(bucket, key, offset, length)
        if resp is None:
            return ByteStream.from_bytes(b"")
        body = _Body(resp["Body"], self.chunk_size, ref)
        size = int(resp["ContentLength"])
        return ByteStream(body, size=size, metadata=_metadata(resp, _total_size(resp)))

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        check_range(offset, length)
        bucket, key = self.locate(ref)
        what = f"read [{ref}]"
        if length == 0:
            await self._existing(bucket, key, what)
            return b""
        with _errors(what):
            resp = await self._get(bucket, key, offset, length)
            if resp is None:
                return b""
            body = resp["Body"]
            try:
                size = int(resp["ContentLength"])
                if max_size and size > max_size:
                    raise ExceedsLimitError(size, max_size, ref)
                data: bytes = await body.read()
            finally:
                body.close()
            return data

    # -- write ----------------------------------------------------------------------------------

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        """Write ``data``: one PutObject when it fits one part, else a multipart upload
        (``parts.write_multipart``).

        A failed, cancelled or mis-sized write commits nothing and leaves no parts behind.
        """
        bucket, key = self.locate(ref)
        options = options or DEFAULT_OPTIONS
        if size is not None:
            size = check_declared(data, size)  # a bad size is refused before anything is sent
        if size is None and isinstance(data, _BYTES_TYPES) and nbytes(data) <= self.part_size:
            body = data if type(data) is bytes else bytes(data)
            return await self._put(ref, bucket, key, body, options)
        sizes = PartSizes(self.part_size, max_parts=MAX_PARTS, max_part_size=MAX_PART_SIZE, total=size)
        with _errors(f"write [{ref}]", create=options.if_not_exists):
            return await write_multipart(
                iter_payload(data, size, sizes.of(0)),
                sizes,
                max_parts_in_flight=self.max_parts_in_flight,
                start=functools.partial(self._start_upload, ref, bucket, key, options),
                single=functools.partial(self._put, ref, bucket, key, options=options),
            )

    async def _put(self, ref: str, bucket: str, key: str, body: bytes, options: Options) -> Metadata:
        params = _object_params(options)
        if options.if_not_exists:
            params["IfNoneMatch"] = "*"
        api = self.api
        with _errors(f"write [{ref}]", create=options.if_not_exists):
            resp = await self._with_bucket(api, bucket, functools.partial(api.put, bucket, key, body, params))
        return _written(resp, len(body), options)

    async def _start_upload(self, ref: str, bucket: str, key: str, options: Options) -> _Multipart:
        api = self.api
        if options.if_not_exists and await self._head(api, bucket, key) is not None:
            # Fail before uploading gigabytes; the completion is conditional anyway.
            raise AlreadyExistsError(f"cannot write [{ref}]: the object already exists")
        upload_id = await self._create_upload(api, bucket, key, _object_params(options))
        return _Multipart(api, bucket, key, upload_id, options)

    async def _create_upload(self, api: _S3Api, bucket: str, key: str, params: Mapping[str, Any]) -> str:
        """CreateMultipartUpload; if cancelled meanwhile, the upload is aborted once its id arrives."""
        create = asyncio.ensure_future(
            self._with_bucket(api, bucket, functools.partial(api.create_multipart, bucket, key, params))
        )
        try:
            return str(await asyncio.shield(create))
        except asyncio.CancelledError:
            # The upload may exist on the server already: abort it once its id arrives.
            self._spawn(_abort_when_created(api, bucket, key, create))
            raise

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ref: str) -> None:
        bucket, key = self.locate(ref)
        what = f"delete [{ref}]"
        await self._existing(bucket, key, what)  # S3 deletes missing objects silently
        with _errors(what):
            await self.api.delete(bucket, key)

    async def _delete_located(
        self, refs: list[str], located: list[tuple[int, str, str]], results: list[BaseException | None]
    ) -> None:
        """DeleteObjects, ``DELETE_BATCH`` keys a request, ``DELETE_REQUESTS_IN_FLIGHT`` at once."""
        api = self.api
        by_bucket: dict[str, list[tuple[int, str]]] = {}
        for i, bucket, key in located:
            by_bucket.setdefault(bucket, []).append((i, key))
        batches = [
            (bucket, items[start : start + DELETE_BATCH])
            for bucket, items in by_bucket.items()
            for start in range(0, len(items), DELETE_BATCH)
        ]

        async def send(batch: tuple[str, list[tuple[int, str]]]) -> None:
            bucket, items = batch
            try:
                resp = await api.delete_objects(bucket, [key for _, key in items])
            except Exception as exc:
                if _map_error(exc, what="") is None:
                    raise
                for i, _ in items:  # the whole request failed: so did each of its keys
                    results[i] = _slot_error(exc, refs[i])
                return
            failed = resp.get("Errors")
            if not failed:
                return
            slots: dict[str, list[int]] = {}
            for i, key in items:
                slots.setdefault(key, []).append(i)
            for error in failed:
                code = str(error.get("Code", ""))
                if code in _NOT_FOUND_CODES and code != "NoSuchBucket":
                    continue  # already gone: deleted
                cause = ClientError({"Error": {"Code": code, "Message": error.get("Message", "")}}, "DeleteObjects")
                for i in slots.get(str(error.get("Key", "")), ()):
                    results[i] = _slot_error(cause, refs[i])

        await run_bounded(send, batches, min(DELETE_REQUESTS_IN_FLIGHT, len(batches)))

    # -- copy -----------------------------------------------------------------------------------

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Server-side copy (CopyObject, or UploadPartCopy parts past ``copy_threshold``).

        Without ``options`` the source's metadata and content type are kept; with options carrying
        metadata or a content type, those replace them.
        """
        src_bucket, src_key = self.locate(src)
        bucket, key = self.locate(dst)
        options = options or DEFAULT_OPTIONS
        what = f"copy [{src}] to [{dst}]"
        source = await self._existing(src_bucket, src_key, what, "the source does not exist")
        api = self.api
        copy_source = {"Bucket": src_bucket, "Key": src_key}
        replace = bool(options.metadata or options.content_type)
        last_modified: datetime | None
        with _errors(what, create=options.if_not_exists):
            if options.if_not_exists and await self._head(api, bucket, key) is not None:
                raise AlreadyExistsError(f"cannot {what}: the object already exists")
            if source.size > self.copy_threshold:
                meta_options = options if replace else Options(source.user_metadata, source.content_type)
                written = await self._copy_parts(api, bucket, key, copy_source, source.size, meta_options, options)
                last_modified = None  # CompleteMultipartUpload does not say
            else:
                params = _object_params(options)
                if replace:
                    params["MetadataDirective"] = "REPLACE"
                if options.if_not_exists and api.conditional_copy:
                    params["IfNoneMatch"] = "*"
                call = functools.partial(api.copy, bucket, key, copy_source, params)
                resp = await self._with_bucket(api, bucket, call)
                resp = resp.get("CopyObjectResult", resp)
                written = _written(resp, source.size, options)
                last_modified = resp.get("LastModified")
        if replace:
            return written
        return Metadata(
            exists=True,
            size=source.size,
            etag=written.etag,
            content_md5=source.content_md5,
            content_type=source.content_type,
            last_modified=last_modified,
            user_metadata=source.user_metadata,
            version=written.version,
        )

    async def _copy_parts(
        self,
        api: _S3Api,
        bucket: str,
        key: str,
        source: Mapping[str, str],
        size: int,
        meta_options: Options,
        options: Options,
    ) -> Metadata:
        """Copy ``source`` part by part (UploadPartCopy), at most ``max_parts_in_flight`` at once;
        like a multipart write, it commits whole or not at all and leaves no upload behind."""
        upload_id = await self._create_upload(api, bucket, key, _object_params(meta_options))
        part_size = max(self.copy_part_size, math.ceil(size / MAX_PARTS))
        upload = _PartCopies(api, bucket, key, upload_id, options, source=source, source_size=size, part_size=part_size)
        flight: BoundedParts[_Resp] = BoundedParts(upload, self.max_parts_in_flight)
        count = upload.count
        try:
            for number in range(1, count + 1):
                await flight.put(number, b"", number == count)
            parts = await flight.drain()
        except BaseException:
            await settle(flight.cancel())
            await settle(upload.abort())
            raise
        try:
            return await settle(upload.complete(parts))
        except Exception:
            await settle(upload.abort())  # refused (If-None-Match) or failed: drop the parts
            raise

    # -- list -----------------------------------------------------------------------------------

    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        """Up to ``max_items`` entries after the cursor's key (``StartAfter``), in key order."""
        start_after: str | None = None
        if not cursor.is_start():
            if not isinstance(cursor.position, str):
                raise InvalidArgumentError(f"cursor position must be a str (a key), got {cursor.position!r}")
            start_after = cursor.position
        entries: list[ListEntry] = []
        make_ref = self.make_ref
        api = self.api
        truncated = True
        with _errors(f"list [{self.make_ref(container, prefix)}]"):
            while truncated and len(entries) < max_items:
                objects, truncated = await api.list_objects(
                    container, prefix, min(max_items - len(entries), _LIST_REQUEST_MAX), start_after
                )
                entries.extend(
                    ListEntry(make_ref(container, key), size, etag.strip('"'), modified)
                    for key, size, etag, modified in objects
                )
                truncated = truncated and bool(objects)
                if objects:
                    start_after = objects[-1][0]
        if truncated and start_after is not None:
            return entries, Cursor.at(start_after)
        return entries, Cursor.end()

    async def list(self, ref: str, *, page_size: int = 1000) -> AsyncIterator[ListEntry]:
        """Every object under ``ref``, page by page, the next page requested while the caller
        consumes this one (one page ahead; dropped if the caller stops early)."""
        pending: asyncio.Future[tuple[list[ListEntry], Cursor]] | None = asyncio.ensure_future(
            self.list_entries_page(ref, max_items=page_size, cursor=Cursor.start())
        )
        try:
            while pending is not None:
                entries, cursor = await pending
                pending = None
                if not cursor.is_end():
                    pending = asyncio.ensure_future(self.list_entries_page(ref, max_items=page_size, cursor=cursor))
                for entry in entries:
                    yield entry
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    # -- signed URLs ----------------------------------------------------------------------------

    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse:
        """A SigV4 presigned GET or PUT URL, and the headers its user must send.

        For a PUT with ``content_md5`` the MD5 is signed (header ``Content-MD5``) and, with
        ``add_content_md5_metadata``, also stored as the ``flytecontentmd5`` metadata.
        """
        bucket, key = self.locate(ref)
        seconds = max(1, math.ceil(props.expires_in.total_seconds()))
        if seconds > MAX_SIGNED_URL_SECONDS:
            raise InvalidArgumentError(
                f"signed URL expires_in {props.expires_in} is longer than S3's maximum of 7 days"
            )
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        headers: dict[str, str] = {}
        method = "get_object"
        if props.scope == "PUT":
            method = "put_object"
            if props.content_md5:
                params["ContentMD5"] = props.content_md5
                headers["Content-MD5"] = props.content_md5
                if props.add_content_md5_metadata:
                    params["Metadata"] = {FLYTE_CONTENT_MD5: props.content_md5}
                    headers[f"x-amz-meta-{FLYTE_CONTENT_MD5}"] = props.content_md5
        with _errors(f"sign a {props.scope} URL for [{ref}]"):
            url = await self.api.presign(method, params, seconds)
        return SignedURLResponse(url, MappingProxyType(headers) if headers else _EMPTY)


async def _abort_when_created(api: _S3Api, bucket: str, key: str, create: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        upload_id = await create
        await api.abort(bucket, key, str(upload_id))


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> S3Store:
    """Build an S3Store from Flyte's stow ``s3`` settings (``stow.config`` or ``schemes.s3.config``).

    For the primary store, ``signedUrl.stowConfigOverride`` (keys merged over ``stow.config``)
    configures a second client used only to sign URLs, as Flyte's signed-URL location does.
    """
    s3_settings = parse_settings(settings, config=config, field=field)
    signing: S3Settings | None = None
    override = signed_url_override or {}
    if override:
        for key in override:
            if key not in _KNOWN_KEYS:
                raise ConfigError(
                    f"signedUrl.stowConfigOverride.{key}",
                    f"unknown key for the s3 backend; valid keys: {', '.join(_KNOWN_KEYS)}",
                )
        signing = parse_settings({**settings, **override}, config=config, field="signedUrl.stowConfigOverride")
    return S3Store(
        s3_settings,
        container=container,
        multicontainer=multicontainer,
        signing=signing,
        create_container=config.create_container,
    )
