"""The flytestore exception tree and the Go-style predicates.

::

    StorageError
     ├── NotFoundError            (also FileNotFoundError)
     ├── AlreadyExistsError       (also FileExistsError)
     ├── ExceedsLimitError        .size, .limit: the message says how to raise the limit
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
and keep the original as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator

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


class ExceedsLimitError(StorageError):
    """An object is larger than the configured download limit."""

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


ErrorMapper = Callable[[BaseException], "StorageError | None"]


@contextlib.contextmanager
def map_exceptions(mapper: ErrorMapper) -> Iterator[None]:
    """Translate a client library's exceptions into the flytestore tree, in one place.

    ``mapper`` returns the flytestore error for an exception it knows, or ``None`` to let the
    exception through unchanged. The original is kept as ``__cause__``.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        mapped = mapper(exc)
        if mapped is None:
            raise
        raise mapped from exc
