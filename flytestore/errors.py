"""The flytestore exception tree and the Go-style predicates.

::

    StorageError
     ├── NotFoundError            (also FileNotFoundError)
     ├── AlreadyExistsError       (also FileExistsError)
     ├── ExceedsLimitError        (also OSError) .size, .limit: the message says how to raise the limit
     ├── InvalidReferenceError    (also ValueError): bad scheme, empty key, traversal, bad escape
     ├── ConfigError              (also ValueError): names the offending field
     ├── InvalidArgumentError     (also ValueError): negative sizes, wrong payload types
     │    └── SizeMismatchError   a stream shorter or longer than its declared size
     ├── CorruptObjectError       (also ValueError): stored bytes that do not decode
     ├── PreconditionFailedError
     ├── PermissionDeniedError    (also PermissionError)
     ├── UnsupportedError         (also NotImplementedError)
     └── TransientError           retryable: timeouts, throttling, 5xx, dropped connections

Backends map their client's exceptions onto this tree in one place (see ``map_exceptions``)
and keep the original as ``__cause__``, with the credentials it holds of its request masked
first (see ``scrub``): a chained aiohttp error keeps the request's URL and headers, so a bearer
token or a SAS signature would otherwise reach every log and error tracker that prints it.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

__all__ = [
    "AlreadyExistsError",
    "ConfigError",
    "CorruptObjectError",
    "ExceedsLimitError",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "SizeMismatchError",
    "StorageError",
    "TransientError",
    "UnsupportedError",
    "check_size",
    "failure_type",
    "is_exceeds_limit",
    "is_exists",
    "is_not_found",
    "map_exceptions",
    "scrub",
]


class StorageError(Exception):
    """Base of every error flytestore raises."""

    code = "Generic"


class NotFoundError(StorageError, FileNotFoundError):
    """The object, container or prefix does not exist."""

    code = "NotFound"


class AlreadyExistsError(StorageError, FileExistsError):
    """A create-only write found an object already there."""

    code = "AlreadyExists"


class ExceedsLimitError(StorageError, OSError):
    """An object (or the bytes one read asks for) is larger than the configured download limit.

    Also an ``OSError``, as fsspec users expect of a failed read. ``size`` is the number of bytes
    the read would have returned, ``limit`` the limit it passed, ``reference`` the object."""

    code = "LIMIT_EXCEEDED"

    def __init__(self, size: int, limit: int, reference: str = "") -> None:
        self.size = size
        self.limit = limit
        self.reference = reference
        where = f" reading [{reference}]" if reference else ""
        super().__init__(
            f"limit exceeded{where}. {_mb(size)}mb > {_mb(limit)}mb. You can increase the limit "
            "by setting limits.maxDownloadMBs (max_download_mbs) in the storage config; 0 disables it."
        )

    def __reduce__(self) -> tuple[type[ExceedsLimitError], tuple[int, int, str]]:
        # Pickles (to another process) with its fields, not its message.
        return type(self), (self.size, self.limit, self.reference)


def check_size(size: int, limit: int | None, reference: str) -> None:
    """Raise ``ExceedsLimitError`` when ``size`` passes a non-zero ``limit``."""
    if limit and size > limit:
        raise ExceedsLimitError(size, limit, reference)


def _mb(n: int) -> str:
    text = f"{n / (1024 * 1024):.6f}".rstrip("0").rstrip(".")
    return text or "0"


class InvalidReferenceError(StorageError, ValueError):
    """A reference that cannot be parsed or is not valid for the store it reached."""

    code = "InvalidReference"


class ConfigError(StorageError, ValueError):
    """Invalid configuration; the message names the offending field."""

    code = "Config"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidArgumentError(StorageError, ValueError):
    """An argument of the wrong type or value (negative size, non-message, bad range)."""

    code = "InvalidArgument"


class SizeMismatchError(InvalidArgumentError):
    """A write's stream was shorter or longer than its declared size; nothing was stored."""

    code = "SizeMismatch"


class CorruptObjectError(StorageError, ValueError):
    """Stored bytes could not be decoded (for example a corrupt protobuf)."""

    code = "Corrupt"


class PreconditionFailedError(StorageError):
    """A conditional request's precondition (etag, generation) did not hold."""

    code = "PreconditionFailed"


class PermissionDeniedError(StorageError, PermissionError):
    """The credentials do not allow the operation."""

    code = "PermissionDenied"


class UnsupportedError(StorageError, NotImplementedError):
    """The backend does not support the operation (for example signed URLs on Redis)."""

    code = "Unsupported"


class TransientError(StorageError):
    """A retryable failure: timeout, throttling, 5xx or a dropped connection."""

    code = "Transient"


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _os_error_in_chain(err: BaseException | None, kind: type[OSError], code: int) -> bool:
    return any(isinstance(e, kind) or (isinstance(e, OSError) and e.errno == code) for e in _chain(err))


def is_not_found(err: BaseException | None) -> bool:
    """True when ``err`` or anything it was raised from means "does not exist" (Go ``IsNotFound``)."""
    return _os_error_in_chain(err, FileNotFoundError, errno.ENOENT)


def is_exists(err: BaseException | None) -> bool:
    """True when ``err`` or its cause means "already exists" (Go ``IsExists``)."""
    return _os_error_in_chain(err, FileExistsError, errno.EEXIST)


def is_exceeds_limit(err: BaseException | None) -> bool:
    """True when ``err`` or its cause is an :class:`ExceedsLimitError` (Go ``IsExceedsLimit``)."""
    return any(isinstance(e, ExceedsLimitError) for e in _chain(err))


def failure_type(err: BaseException) -> str:
    """The ``failure_type`` metric label of an error: its own code, else ``Generic``."""
    return err.code if isinstance(err, StorageError) else "Generic"


# ---------------------------------------------------------------------------------------------
# Masking credentials a client exception keeps of its request

#: Request headers that carry a credential (bearer tokens, SharedKey signatures, session tokens).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "x-api-key",
        "x-goog-api-key",
        "x-ms-copy-source-authorization",
    }
)
#: Query parameters that carry one (SAS and presigned signatures, tokens, API keys).
_SECRET_QUERY = re.compile(
    r"(?i)(?<=[?&;])(sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature|access_token|"
    r"id_token|token|key|password|client_secret)=[^&#;\s'\"]*"
)
_MASK = "***"


def _mask_url(url: Any) -> Any:
    """``url`` (a ``str`` or a ``yarl.URL``) with credential-bearing query values masked."""
    text = str(url)
    masked = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}={_MASK}", text) if "=" in text else text
    if masked == text:
        return url
    if isinstance(url, str):
        return masked
    try:
        return type(url)(masked, encoded=True)  # yarl.URL
    except TypeError:
        return masked


def _masked_value(name: object, value: object) -> object:
    """A header's value with its credential masked: the whole value of a secret header, the
    signature/token query parameters of a URL-valued one (``x-ms-copy-source`` carries a SAS)."""
    if str(name).lower() in SECRET_HEADERS:
        return value if value == _MASK else _MASK
    if isinstance(value, str) and "?" in value and "=" in value:
        return _mask_url(value)
    return value


def _mask_headers(headers: Any) -> Any:
    """A copy of ``headers`` (any mapping, multidicts included) with credentials masked (see
    ``_masked_value``), or ``headers`` itself when it holds none."""
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        return headers
    changed = {name: masked for name, value in items if (masked := _masked_value(name, value)) is not value}
    if not changed:
        return headers
    clean = headers.copy()  # a CIMultiDictProxy copies to a mutable CIMultiDict
    for name, masked in changed.items():
        clean[name] = masked
    if type(clean) is not type(headers):
        with contextlib.suppress(TypeError):
            return type(headers)(clean)  # back to a read-only proxy
    return clean


def _linked(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception linked to it: causes, contexts, azure-core's ``inner_exception``."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for linked in (e.__cause__, e.__context__, getattr(e, "inner_exception", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)


def scrub(err: BaseException) -> BaseException:
    """Mask, in place, the credentials ``err`` and the exceptions linked to it keep of their
    request, and return ``err``.

    - aiohttp's ``ClientResponseError`` keeps ``request_info`` (URL and request headers, so an
      ``Authorization: Bearer`` header), shown by its ``repr`` and, for the URL, its ``str``;
    - azure-core's ``HttpResponseError`` keeps ``response.request`` (a URL with a SAS token).

    Masked: the headers in ``SECRET_HEADERS`` and signature/token query parameters. The URL's
    path, the method and other headers stay, for diagnosis. Duck-typed, so this module needs
    none of the client libraries.
    """
    for e in _linked(err):
        _scrub_request_info(e)
        _scrub_response_request(e)
    return err


def _scrub_request_info(e: BaseException) -> None:
    info = getattr(e, "request_info", None)
    if info is None or not hasattr(info, "_replace"):  # aiohttp's RequestInfo is a named tuple
        return
    real_url = getattr(info, "real_url", info.url)
    parts = {"url": _mask_url(info.url), "real_url": _mask_url(real_url), "headers": _mask_headers(info.headers)}
    if all(new is old for new, old in zip(parts.values(), (info.url, real_url, info.headers), strict=True)):
        return  # nothing to mask, or masked already
    clean = info._replace(**parts)
    with contextlib.suppress(AttributeError, TypeError):
        e.request_info = clean  # type: ignore[attr-defined]
        if e.args and e.args[0] is info:
            e.args = (clean, *e.args[1:])


def _scrub_response_request(e: BaseException) -> None:
    response = getattr(e, "response", None)
    request = None if response is None or isinstance(response, dict) else getattr(response, "request", None)
    if request is None or not hasattr(request, "url"):  # azure-core's HttpRequest has url, headers
        return
    with contextlib.suppress(AttributeError, TypeError):
        request.url = _mask_url(request.url)
        headers = getattr(request, "headers", None)
        if isinstance(headers, MutableMapping):
            for name, value in list(headers.items()):
                masked = _masked_value(name, value)
                if masked is not value:
                    headers[name] = masked


ErrorMapper = Callable[[BaseException], "StorageError | None"]


@contextlib.contextmanager
def map_exceptions(mapper: ErrorMapper) -> Iterator[None]:
    """Translate a client library's exceptions into the flytestore tree, in one place.

    ``mapper`` returns the flytestore error for an exception it knows, or ``None`` to let the
    exception through unchanged. The original is kept as ``__cause__``, scrubbed of the
    credentials it keeps of its request (``scrub``), as is anything chained to a StorageError
    raised in the block.
    """
    try:
        yield
    except StorageError as err:
        scrub(err)
        raise
    except Exception as exc:
        mapped = mapper(scrub(exc))
        if mapped is None:
            raise
        raise mapped from exc
