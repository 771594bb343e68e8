"""A lean request path for S3's hot operations: HEAD, GET (ranged or not), PUT, UploadPart, and
ListObjectsV2.

botocore spends most of a small request's client CPU in its per-call machinery: parameter
validation and serialisation, a dozen event hooks, endpoint-ruleset resolution, the user-agent
string, and model-driven response parsing (a 4 KiB GET measured ~60% of the client's CPU there, the
rest being aiohttp; a 1,000-key ListObjectsV2 page ~0.07 s, nearly all in botocore's XML parsing).
``LeanS3`` builds these requests itself and keeps everything that matters from the aiobotocore
client it is given:

- the endpoint: resolved once per bucket by the client's own ruleset resolver (with its
  parameter hooks, so a bad bucket name fails as it would), which settles path-style or
  virtual-host addressing, the signing region and the signing name;
- the credentials object of the client (``client._get_credentials()``), frozen per request, so
  refreshable credentials refresh exactly as in botocore;
- botocore's ``S3SigV4Auth``, fed the request context botocore would give it, so that the payload
  hash follows botocore's rule (SHA-256 over plain http or without a checksum header,
  ``UNSIGNED-PAYLOAD`` over https with a CRC32 header);
- the client's HTTP session (``client._endpoint.http_session.send``: the same aiohttp connection
  pool, proxies, TLS settings and timeouts, and the same mapping of aiohttp errors onto botocore's);
- botocore's standard retry policy (the same retryable errors, backoff and retry quota, with
  ``total_max_attempts`` from the client's config);
- errors as botocore raises them: the client's modeled ``ClientError`` subclass with the same
  ``Error``/``ResponseMetadata`` dicts, so the store's error mapping cannot tell the paths apart;
- listings as the full path lists: ``encoding-type=url`` (which botocore sets so that keys XML
  cannot carry survive), keys decoded with botocore's ``unquote_str`` when the response says they
  are encoded, timestamps parsed to aware datetimes. A page is read by a scan of the document's
  tags (S3's plain documents: no CDATA, comments, prefixes or attributes, which XML guarantees
  leaves each tag's text between its tags), anything else by ``xml.etree``'s C parser;
- flexible checksums: CRC32 of every PUT and part (when the client computes request checksums),
  and validation of a full GET's body against the checksum the server returns (when the client
  validates responses).

Anything unusual is left to the full aiobotocore path by raising ``UseFullPath`` before a byte is
sent: buckets whose endpoint needs another signer (S3 Express, SigV4a, access points in other
partitions), keys or metadata botocore would reject or treat specially, and responses that ask
for botocore's region redirection (301/307, ``AuthorizationHeaderMalformed``...), after which the
bucket stays on the full path (a HEAD answered 400, which botocore also probes for a region, goes
the full way for that call only).

Deliberate differences on the wire, none visible to the store: over https a PUT's CRC32 travels
in a header with ``UNSIGNED-PAYLOAD`` (botocore streams it as an ``aws-chunked`` trailer);
``Expect: 100-continue`` is sent for bodies from 2 MiB only (botocore sends it on every PUT,
which costs a small write a round trip); no ``amz-sdk-invocation-id``/``amz-sdk-request``
headers, and the user agent is the client's, built once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import (
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    ResponseStreamingError,
)

try:  # what aiobotocore's body raises on a read timeout (an asyncio.TimeoutError too)
    from aiobotocore.response import AioReadTimeoutError as _ReadTimeoutError
except ImportError:  # pragma: no cover - older aiobotocore
    from botocore.exceptions import ReadTimeoutError as _ReadTimeoutError

from ..units import MiB

__all__ = ["LeanS3", "ListedObject", "UseFullPath", "lean_unsupported", "parse_list_objects"]

logger = logging.getLogger(__name__)

#: Bodies from this size send ``Expect: 100-continue`` (the Go SDK's threshold): the server can
#: refuse a request before the body is sent. botocore sends it for every PUT, which costs small
#: writes a round trip.
EXPECT_CONTINUE_MIN = 2 * MiB
#: Bodies larger than this are handed to aiohttp as a ``BytesIO`` (its limit for raw bytes).
LARGE_BODY = MiB
#: Buckets whose endpoint is kept (the rest are resolved again when they come back).
_MAX_TARGETS = 1024
#: Responses that botocore's S3 region redirector acts on: left to the full path.
_REDIRECT_STATUSES = frozenset({301, 302, 307})
_REDIRECT_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"})
_META_PREFIX = "x-amz-meta-"
_META_PREFIX_LEN = len(_META_PREFIX)


class UseFullPath(Exception):
    """Raised before anything is sent (or after a response the full path must handle): the
    caller runs the operation through aiobotocore instead."""


class _Checksum(Protocol):
    def update(self, chunk: bytes) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    __slots__ = ("_crc",)

    def __init__(self) -> None:
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        self._crc = zlib.crc32(chunk, self._crc)

    def digest(self) -> bytes:
        return (self._crc & 0xFFFFFFFF).to_bytes(4, "big")


def _hashlib(name: str) -> Callable[[], _Checksum]:
    return lambda: hashlib.new(name)


#: Response checksums this module can check, by botocore's algorithm name.
_RESPONSE_CHECKSUMS: dict[str, Callable[[], _Checksum]] = {
    "crc32": _Crc32,
    "sha1": _hashlib("sha1"),
    "sha256": _hashlib("sha256"),
    "sha512": _hashlib("sha512"),
}


def _crc32_b64(body: bytes) -> str:
    return base64.b64encode((zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")).decode("ascii")


def _last_modified(value: str) -> datetime | Any:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)


class _SigningRequest:
    """What ``S3SigV4Auth.add_auth`` reads and writes of a request (botocore's ``AWSRequest``
    carries a parser-backed header class and a preparer this path has no use for)."""

    __slots__ = ("body", "context", "headers", "method", "params", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes | None, context: dict[str, Any]):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}
        self.context = context


def _host(url: str) -> str:
    """The ``Host`` header of a URL as botocore's signer derives it (lower case, IPv6 brackets,
    no default port). Sent explicitly, so that what is signed is what aiohttp sends."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class _Target:
    """Where a bucket's objects live and how requests to them are signed."""

    __slots__ = ("bucket_url", "host", "prefix", "region", "signing_name")

    def __init__(self, prefix: str, region: str, signing_name: str) -> None:
        self.prefix = prefix
        #: The bucket's own URL (ListObjectsV2): ``http://host/bucket`` path-style, as botocore
        #: sends it, ``https://bucket.host/`` virtual-hosted.
        self.bucket_url = prefix if urlsplit(prefix).path else prefix + "/"
        self.host = _host(prefix)
        self.region = region
        self.signing_name = signing_name


class _Operation:
    """One operation's model and the request context botocore would give its signer."""

    __slots__ = ("model", "name", "signing_context")

    def __init__(self, client: Any, name: str, checksum_header: str | None) -> None:
        self.name = name
        self.model = client.meta.service_model.operation_model(name)
        context: dict[str, Any] = {
            "client_config": client.meta.config,
            "has_streaming_input": self.model.has_streaming_input,
        }
        if checksum_header is not None:
            context["checksum"] = {"request_algorithm": {"algorithm": "crc32", "in": "header", "name": checksum_header}}
        self.signing_context = context


class LeanBody:
    """The streamed body of a lean GET, read like aiobotocore's ``StreamingBody``: ``read(n)``
    returns what has arrived up to ``n`` bytes, the length (and checksum, when the server sent
    one) is checked at the end, and ``close()`` gives the connection up."""

    __slots__ = ("_checksum", "_content", "_expected", "_expected_checksum", "_raw", "_read", "_url")

    def __init__(self, raw: aiohttp.ClientResponse, length: int | None, checksum: tuple[_Checksum, str] | None):
        self._raw = raw
        self._content = raw.content
        self._url = str(raw.url)
        self._expected = length
        self._read = 0
        self._checksum: _Checksum | None = None
        self._expected_checksum = ""
        if checksum is not None:
            self._checksum, self._expected_checksum = checksum

    async def read(self, amt: int | None = None) -> bytes:
        try:
            chunk = await self._content.read(-1 if amt is None else amt)
        except asyncio.TimeoutError as exc:
            raise _ReadTimeoutError(endpoint_url=self._url, error=exc) from exc
        except aiohttp.ClientConnectionError as exc:
            raise ResponseStreamingError(error=exc) from exc
        self._read += len(chunk)
        checksum = self._checksum
        if checksum is not None and chunk:
            checksum.update(chunk)
        if amt is None or (not chunk and amt > 0):
            self._finished()
        return chunk

    def _finished(self) -> None:
        if self._expected is not None and self._read != self._expected:
            raise IncompleteReadError(actual_bytes=self._read, expected_bytes=self._expected)
        checksum, self._checksum = self._checksum, None
        if checksum is not None:
            actual = base64.b64encode(checksum.digest()).decode("ascii")
            if actual != self._expected_checksum:
                raise FlexibleChecksumError(
                    error_msg=f"Expected checksum {self._expected_checksum} did not match calculated checksum: {actual}"
                )

    def close(self) -> None:
        self._raw.close()


def lean_unsupported(client: Any) -> str | None:
    """Why the lean path cannot serve this client (``None``: it can)."""
    config = client.meta.config
    if config.signature_version not in (None, "s3v4", "v4"):
        return f"signature version {config.signature_version!r}"
    if (config.retries or {}).get("mode", "standard") != "standard":
        return f"retry mode {config.retries.get('mode')!r}"
    http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if http_session is None or not callable(getattr(http_session, "send", None)):
        return "no HTTP session to share"
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is None or not callable(getattr(client, "_resolve_endpoint_ruleset", None)):
        return "no endpoint ruleset resolver"
    if not callable(getattr(client, "_get_credentials", None)):
        return "no credentials accessor"
    try:
        _retry_handler(client)
    except Exception as exc:  # an aiobotocore without the standard retry classes
        return f"no standard retry policy ({exc})"
    return None


def _retry_handler(client: Any) -> tuple[Any, Any]:
    """A botocore standard-mode retry handler like the one the client registered for itself
    (same checks, backoff and quota; its own quota bucket)."""
    from aiobotocore.retries.standard import (
        NEW_RETRIES_ENABLED,
        AioRetryHandler,
        AioRetryPolicy,
        AioStandardRetryConditions,
        ExponentialBackoff,
        RetryEventAdapter,
        RetryQuotaChecker,
        quota,
    )

    max_attempts = (client.meta.config.retries or {}).get("total_max_attempts") or 3
    service = client.meta.service_model.service_id.hyphenize()
    adapter = RetryEventAdapter()
    if NEW_RETRIES_ENABLED:
        from aiobotocore.retries.standard import ThrottlingErrorDetector

        detector = ThrottlingErrorDetector(adapter)
        retry_quota = RetryQuotaChecker(quota.RetryQuota(), detector)
        backoff = ExponentialBackoff(service_name=service, throttling_detector=detector)
    else:
        retry_quota = RetryQuotaChecker(quota.RetryQuota())
        backoff = ExponentialBackoff()
    policy = AioRetryPolicy(retry_checker=AioStandardRetryConditions(max_attempts=max_attempts), retry_backoff=backoff)
    return AioRetryHandler(
        retry_policy=policy, retry_event_adapter=adapter, retry_quota=retry_quota, service_name=service
    ), retry_quota


class LeanS3:
    """Signed requests for HEAD/GET/PUT/UploadPart through an aiobotocore client's session.

    Methods return the subset of botocore's response dict that flytestore reads (``ETag``,
    ``ContentLength``, ``ContentType``, ``ContentRange``, ``LastModified``, ``Metadata``,
    ``VersionId``, ``ChecksumCRC32``, and ``Body`` for GET) and raise what botocore raises.
    """

    def __init__(self, client: Any, *, headers: Mapping[str, str] | None = None, checksums: bool = True) -> None:
        self._client = client
        self._http = client._endpoint.http_session
        self._credentials = client._get_credentials
        self._exceptions = client.exceptions
        self._retry, self._retry_quota = _retry_handler(client)
        config = client.meta.config
        self._checksums = checksums
        self._validate_responses = getattr(config, "response_checksum_validation", None) == "when_supported"
        self._response_algorithms = self._response_checksums(client) if self._validate_responses else ()
        self._targets: dict[str, _Target] = {}
        self._full_path_buckets: set[str] = set()
        user_agent = ""
        try:
            user_agent = str(client._user_agent_creator.to_string())
        except Exception:  # pragma: no cover - an aiobotocore without the creator
            user_agent = str(getattr(config, "user_agent", "") or "")
        base: dict[str, str] = {"User-Agent": user_agent} if user_agent else {}
        for name, value in (headers or {}).items():
            if name.lower() != "user-agent":
                base[name] = value
        #: Headers every request carries: the client's user agent and the configured defaults
        #: (which the full path adds in a before-sign hook, signed alike).
        self._base_headers = base
        self._base_items = tuple((name, name.lower(), value) for name, value in base.items())
        crc = "x-amz-checksum-crc32" if checksums else None
        self._head = _Operation(client, "HeadObject", None)
        self._get = _Operation(client, "GetObject", None)
        self._put = _Operation(client, "PutObject", crc)
        self._part = _Operation(client, "UploadPart", crc)
        self._list = _Operation(client, "ListObjectsV2", None)

    @staticmethod
    def _response_checksums(client: Any) -> tuple[str, ...]:
        """The response checksums botocore would validate on GetObject, in its order of preference."""
        try:
            from botocore.httpchecksum import resolve_response_checksum_algorithms

            request: dict[str, Any] = {"context": {}}
            model = client.meta.service_model.operation_model("GetObject")
            resolve_response_checksum_algorithms(request, model, {"ChecksumMode": "ENABLED"})
            names = request["context"].get("checksum", {}).get("response_algorithms", ())
        except Exception:  # pragma: no cover - older botocore
            names = ("crc32", "sha1", "sha256")
        return tuple(name for name in names if name in _RESPONSE_CHECKSUMS)

    # -- endpoints ---------------------------------------------------------------------------------

    async def _target(self, bucket: str, op: _Operation) -> _Target:
        target = self._targets.get(bucket)
        if target is not None:
            return target
        if bucket in self._full_path_buckets:
            raise UseFullPath(bucket)
        target = await self._resolve(bucket, op)
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        self._targets[bucket] = target
        return target

    async def _resolve(self, bucket: str, op: _Operation) -> _Target:
        """The bucket's endpoint from the client's ruleset, after the client's parameter hooks
        (bucket-name validation, access-point ARNs). Anything but plain SigV4 goes full path."""
        client = self._client
        model = op.model
        context: dict[str, Any] = {
            "client_region": client.meta.region_name,
            "client_config": client.meta.config,
            "has_streaming_input": model.has_streaming_input,
            "auth_type": model.resolved_auth_type,
            "unsigned_payload": model.unsigned_payload,
            "auth_options": client.meta.service_model.metadata.get("auth"),
        }
        try:
            params = await client._emit_api_params(
                api_params={"Bucket": bucket, "Key": "k"}, operation_model=model, context=context
            )
            url, headers, properties = await client._resolve_endpoint_ruleset(model, params, context)
        except Exception as exc:  # the full path raises the same error, mapped as usual
            raise UseFullPath(bucket) from exc
        signing = context.get("signing") or {}
        schemes: Sequence[Mapping[str, Any]] = (properties or {}).get("authSchemes") or ()
        plain = (
            params.get("Bucket") == bucket
            and not headers
            and context.get("auth_type") in ("s3v4", "v4")
            and signing.get("signing_name") == "s3"
            and signing.get("region")
            and len(schemes) == 1
            and schemes[0].get("name") == "sigv4"
            and not (properties or {}).get("backend")
        )
        parts = urlsplit(url)
        if not plain or parts.query or parts.fragment or parts.scheme not in ("http", "https"):
            raise self._to_full_path(bucket)
        prefix = url[:-1] if url.endswith("/") else url
        return _Target(prefix, str(signing["region"]), "s3")

    def _to_full_path(self, bucket: str) -> UseFullPath:
        self._targets.pop(bucket, None)
        if len(self._full_path_buckets) >= _MAX_TARGETS:
            self._full_path_buckets.clear()
        self._full_path_buckets.add(bucket)
        return UseFullPath(bucket)

    # -- requests ----------------------------------------------------------------------------------

    async def _request(
        self,
        op: _Operation,
        bucket: str,
        target: _Target,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        stream: bool,
    ) -> Any:
        """Sign and send, retrying as botocore's standard mode does; the response of a success,
        or the botocore exception of a failure."""
        retry_context: dict[str, Any] = {}
        attempt = 1
        while True:
            prepared = await self._signed(op, target, method, url, headers, body, stream)
            parsed: dict[str, Any] | None = None
            try:
                response = await self._http.send(prepared)
            except Exception as exc:
                if not await self._retry_after(op, attempt, None, None, exc, retry_context):
                    raise
            else:
                status = response.status_code
                if status < 300:
                    # botocore's after-call hook: a success gives retry quota back.
                    self._retry_quota.release_retry_quota(retry_context, response)
                    return response
                parsed = self._error(response, await response.content, attempt)
                code = parsed["Error"].get("Code")
                if status in _REDIRECT_STATUSES or code in _REDIRECT_CODES:
                    # The bucket lives in another region: botocore's redirector finds it and
                    # remembers; the bucket stays on the full path from now on.
                    raise self._to_full_path(bucket)
                if status == 400 and op.name == "HeadObject":
                    # A body-less 400 may be a region mismatch too (botocore asks HeadBucket):
                    # this call only goes the full way.
                    raise UseFullPath(bucket)
                if not await self._retry_after(op, attempt, response, parsed, None, retry_context):
                    raise self._exceptions.from_code(code)(parsed, op.name)
            attempt += 1

    async def _retry_after(
        self,
        op: _Operation,
        attempt: int,
        response: Any,
        parsed: dict[str, Any] | None,
        exc: BaseException | None,
        retry_context: dict[str, Any],
    ) -> bool:
        """Ask botocore's retry policy; sleep its backoff and say yes, or say no."""
        delay = await self._retry.needs_retry(
            response=None if response is None else (response, parsed),
            attempts=attempt,
            operation=op.model,
            caught_exception=exc,
            request_dict={"context": retry_context},
        )
        if delay is None or delay is False:
            return False
        logger.debug("lean S3 %s: retrying attempt %d after %.3fs", op.name, attempt + 1, delay)
        await asyncio.sleep(delay)
        return True

    async def _signed(
        self,
        op: _Operation,
        target: _Target,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        stream: bool,
    ) -> AWSPreparedRequest:
        credentials = self._credentials()
        frozen = None if credentials is None else await credentials.get_frozen_credentials()
        if frozen is None:
            raise NoCredentialsError()
        headers = dict(headers)
        headers["host"] = target.host
        request = _SigningRequest(method, url, headers, body, dict(op.signing_context))
        S3SigV4Auth(frozen, target.signing_name, target.region).add_auth(request)
        payload: bytes | io.BytesIO | None = body
        if body is not None and len(body) > LARGE_BODY:
            # aiohttp warns about (and sends in one go) bytes over 1 MiB; a BytesIO goes out in
            # 64 KiB slices with the loop free in between, as the full path's body does.
            payload = io.BytesIO(body)
        return AWSPreparedRequest(method, url, request.headers, payload, stream)

    def _error(self, response: Any, body: bytes, attempt: int) -> dict[str, Any]:
        """botocore's parse of an S3 error: the ``<Error>`` document's fields, or the status."""
        headers: Mapping[str, str] = response.headers
        status = response.status_code
        parsed: dict[str, Any] | None = None
        if body:
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError:
                root = None
            if root is not None and root.tag.rpartition("}")[2] == "Error":
                error = {child.tag.rpartition("}")[2]: child.text or "" for child in root}
                error.pop("RequestId", None)
                error.pop("HostId", None)
                metadata: dict[str, Any] = {}
                if "x-amzn-requestid" in headers:
                    metadata["RequestId"] = headers["x-amzn-requestid"]
                elif "x-amz-request-id" in headers:
                    metadata["RequestId"] = headers["x-amz-request-id"]
                    metadata["HostId"] = headers.get("x-amz-id-2", "")
                parsed = {"Error": error, "ResponseMetadata": metadata}
        if parsed is None:
            parsed = {
                "Error": {"Code": str(status), "Message": http.client.responses.get(status, "")},
                "ResponseMetadata": {
                    "RequestId": headers.get("x-amz-request-id", ""),
                    "HostId": headers.get("x-amz-id-2", ""),
                },
            }
        metadata = parsed["ResponseMetadata"]
        metadata["HTTPStatusCode"] = status
        metadata["HTTPHeaders"] = dict(headers)
        metadata["RetryAttempts"] = attempt - 1
        return parsed

    # -- URLs and headers -----------------------------------------------------------------------------

    @staticmethod
    def _url(target: _Target, key: str) -> str:
        # botocore's greedy-label encoding of the key (``percent_encode(key, safe="/~")``).
        try:
            return f"{target.prefix}/{quote(key, safe='/~')}"
        except UnicodeEncodeError as exc:  # a lone surrogate: botocore's own error, please
            raise UseFullPath(key) from exc

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The request's own headers, then the client's user agent and the configured defaults
        under names the request does not use (as the full path's before-sign hook does)."""
        if not extra:
            return dict(self._base_headers)
        headers = dict(extra)
        names = {name.lower() for name in extra}
        for name, lower, value in self._base_items:
            if lower not in names:
                headers[name] = value
        return headers

    # -- operations ----------------------------------------------------------------------------------

    async def head(self, bucket: str, key: str) -> dict[str, Any]:
        op = self._head
        target = await self._target(bucket, op)
        url = self._url(target, key)
        response = await self._request(op, bucket, target, "HEAD", url, self._headers(), None, False)
        return _object_response(response.headers)

    async def get(self, bucket: str, key: str, byte_range: str | None = None) -> dict[str, Any]:
        op = self._get
        target = await self._target(bucket, op)
        url = self._url(target, key)
        extra: dict[str, str] = {}
        if byte_range is not None:
            extra["Range"] = byte_range
        if self._validate_responses:
            extra["x-amz-checksum-mode"] = "ENABLED"
        response = await self._request(op, bucket, target, "GET", url, self._headers(extra), None, True)
        headers = response.headers
        resp = _object_response(headers)
        checksum: tuple[_Checksum, str] | None = None
        for algorithm in self._response_algorithms:
            value = headers.get(f"x-amz-checksum-{algorithm}")
            if value is not None:
                if "-" not in value:  # a composite (multipart) checksum cannot be checked
                    checksum = (_RESPONSE_CHECKSUMS[algorithm](), value)
                break
        resp["Body"] = LeanBody(response.raw, resp.get("ContentLength"), checksum)
        return resp

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        if_none_match: str | None = None,
    ) -> dict[str, Any]:
        op = self._put
        extra: dict[str, str] = {}
        if content_type is not None:
            extra["Content-Type"] = content_type
        if metadata:
            for name, value in metadata.items():
                extra[_META_PREFIX + name] = value
        if if_none_match is not None:
            extra["If-None-Match"] = if_none_match
        self._body_headers(extra, body)
        target = await self._target(bucket, op)
        url = self._url(target, key)
        response = await self._request(op, bucket, target, "PUT", url, self._headers(extra), body, False)
        headers = response.headers
        resp: dict[str, Any] = {"ETag": headers.get("etag")}
        version = headers.get("x-amz-version-id")
        if version is not None:
            resp["VersionId"] = version
        return resp

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        op = self._part
        extra: dict[str, str] = {}
        self._body_headers(extra, body)
        target = await self._target(bucket, op)
        url = f"{self._url(target, key)}?partNumber={number}&uploadId={quote(upload_id, safe='-_.~')}"
        response = await self._request(op, bucket, target, "PUT", url, self._headers(extra), body, False)
        headers = response.headers
        resp: dict[str, Any] = {"ETag": headers.get("etag")}
        crc = headers.get("x-amz-checksum-crc32")
        if crc is not None:
            resp["ChecksumCRC32"] = crc
        return resp

    async def list_objects(
        self, bucket: str, prefix: str, max_keys: int, start_after: str | None
    ) -> tuple[list[ListedObject], bool]:
        """One ListObjectsV2 request: the objects (key, size, ETag, last modified) in key order,
        and whether the listing goes on (``IsTruncated``)."""
        op = self._list
        try:
            query = f"list-type=2&encoding-type=url&max-keys={int(max_keys)}&prefix={quote(prefix, safe='-_.~')}"
            if start_after:
                query += f"&start-after={quote(start_after, safe='-_.~')}"
        except UnicodeEncodeError as exc:  # a lone surrogate: botocore's own error, please
            raise UseFullPath(prefix) from exc
        target = await self._target(bucket, self._head)
        url = f"{target.bucket_url}?{query}"
        response = await self._request(op, bucket, target, "GET", url, self._headers(), None, False)
        return parse_list_objects(await response.content)

    def _body_headers(self, headers: dict[str, str], body: bytes) -> None:
        if self._checksums:
            headers["x-amz-checksum-crc32"] = _crc32_b64(body)
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        if len(body) >= EXPECT_CONTINUE_MIN:
            headers["Expect"] = "100-continue"


def _object_response(headers: Mapping[str, str]) -> dict[str, Any]:
    """HeadObject/GetObject's response fields flytestore reads, parsed as botocore parses them."""
    resp: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(_META_PREFIX):
            metadata[name[_META_PREFIX_LEN:]] = value
    resp["Metadata"] = metadata
    length = headers.get("content-length")
    if length is not None:
        resp["ContentLength"] = int(length)
    for header, field in (
        ("etag", "ETag"),
        ("content-type", "ContentType"),
        ("content-range", "ContentRange"),
        ("x-amz-version-id", "VersionId"),
    ):
        found = headers.get(header)
        if found is not None:
            resp[field] = found
    modified = headers.get("last-modified")
    if modified is not None:
        resp["LastModified"] = _last_modified(modified)
    return resp


#: One listed object: key, size, ETag (as sent, quotes included), last modified.
ListedObject = tuple[str, int, str, Any]

_LIST_FIELDS = ("Contents", "IsTruncated", "EncodingType", "Key", "Size", "ETag", "LastModified")


def _timestamp(value: str) -> Any:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)


_XML_REFS = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
_XML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _xml_ref(match: re.Match[str]) -> str:
    name = match.group(1)
    if name[0] != "#":
        return _XML_NAMED[name]
    return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))


def _xml_text(text: str) -> str:
    """Character data as an XML parser gives it: the predefined entities and character references
    resolved (the caller has made sure there is no CDATA, comment or carriage return)."""
    return _XML_REFS.sub(_xml_ref, text) if "&" in text else text


def _scan_list_objects(text: str) -> tuple[list[ListedObject], bool] | None:
    """The fast parse of a plain S3 ListObjectsV2 document: every ``<`` of character data is
    escaped in XML, so outside CDATA sections, comments and processing instructions (refused
    here, as are namespace prefixes, attributes on the elements read and a document that does
    not end where it should) a tag's text is exactly what lies between its start and end tags.
    ``None``: leave the document to ``xml.etree``."""
    start = text.find("<ListBucketResult")
    if start < 0 or not text.rstrip().endswith("</ListBucketResult>") or "\r" in text:
        return None
    if "<!" in text or "<?" in text[1:] or "<Contents " in text or ":Contents" in text:
        return None
    head, _, rest = text.partition("<Contents>")
    chunks = rest.split("<Contents>") if rest else []
    tail = chunks[-1] if chunks else head
    truncated = encoded = False
    for part in (head, tail):
        found = part.find("<IsTruncated>")
        if found >= 0:
            end = part.find("</IsTruncated>", found)
            truncated = part[found + 13 : end].strip().lower() == "true"
        found = part.find("<EncodingType>")
        if found >= 0:
            end = part.find("</EncodingType>", found)
            encoded = part[found + 14 : end] == "url"
    objects: list[ListedObject] = []
    append = objects.append
    for chunk in chunks:
        end = chunk.find("</Contents>")
        if end < 0:
            return None
        found = chunk.find("<Key>", 0, end)
        if found < 0:
            return None
        key = _xml_text(chunk[found + 5 : chunk.find("</Key>", found)])
        found = chunk.find("<Size>", 0, end)
        size = int(chunk[found + 6 : chunk.find("</Size>", found)]) if found >= 0 else 0
        found = chunk.find("<ETag>", 0, end)
        etag = ""
        if found >= 0:
            etag = chunk[found + 6 : chunk.find("</ETag>", found)]
            if "&" in etag:
                etag = _xml_text(etag.replace("&quot;", '"'))
        found = chunk.find("<LastModified>", 0, end)
        modified = None
        if found >= 0:
            stamp = chunk[found + 14 : chunk.find("</LastModified>", found)].strip()
            modified = _timestamp(stamp) if stamp else None
        append((key, size, etag, modified))
    if encoded:
        objects = [(_url_decoded(key), size, etag, modified) for key, size, etag, modified in objects]
    return objects, truncated


def _url_decoded(key: str) -> str:
    """botocore's ``unquote_str`` (``unquote_plus``) of a listed key, the common case (escaped
    slashes only) without its byte round trip."""
    plain = key.replace("%2F", "/")
    if "%" in plain or "+" in plain:
        return unquote_plus(key)
    return plain


def parse_list_objects(body: bytes) -> tuple[list[ListedObject], bool]:
    """A ListObjectsV2 response: its objects and ``IsTruncated``, as botocore would parse them
    (keys decoded with ``unquote_plus`` when ``EncodingType`` is ``url``)."""
    try:
        scanned = _scan_list_objects(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, OverflowError):
        scanned = None
    if scanned is not None:
        return scanned
    return _etree_list_objects(body)


def _etree_list_objects(body: bytes) -> tuple[list[ListedObject], bool]:
    """``parse_list_objects`` by ``xml.etree`` (any well-formed document)."""
    root = ElementTree.fromstring(body)
    tag = root.tag
    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
    contents, truncated_tag, encoding_tag, key_tag, size_tag, etag_tag, modified_tag = (
        ns + name for name in _LIST_FIELDS
    )
    objects: list[ListedObject] = []
    append = objects.append
    truncated = False
    encoded = False
    for child in root:
        name = child.tag
        if name == contents:
            key = etag = modified = ""
            size = 0
            for field in child:
                field_tag = field.tag
                if field_tag == key_tag:
                    key = field.text or ""
                elif field_tag == size_tag:
                    size = int(field.text or 0)
                elif field_tag == etag_tag:
                    etag = field.text or ""
                elif field_tag == modified_tag:
                    modified = field.text or ""
            append((key, size, etag, _timestamp(modified) if modified else None))
        elif name == truncated_tag:
            truncated = (child.text or "").strip().lower() == "true"
        elif name == encoding_tag:
            encoded = child.text == "url"
    if encoded:
        objects = [(unquote_plus(key), size, etag, modified) for key, size, etag, modified in objects]
    return objects, truncated
