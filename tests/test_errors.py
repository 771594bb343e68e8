"""The error tree and Go's predicates (docs/flyte-compatibility.md#errors)."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from flytestore import (
    AlreadyExistsError,
    ConfigError,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    UnsupportedError,
    is_exceeds_limit,
    is_exists,
    is_not_found,
)
from flytestore.errors import failure_type, map_exceptions


def wrap(err: BaseException, depth: int) -> BaseException:
    for i in range(depth):
        try:
            raise RuntimeError(f"level {i}") from err
        except RuntimeError as outer:
            err = outer
    return err


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_is_not_found_through_wrapping(depth: int) -> None:
    assert is_not_found(wrap(FileNotFoundError(errno.ENOENT, "x"), depth))
    assert is_not_found(wrap(OSError(errno.ENOENT, "x"), depth))
    assert is_not_found(wrap(NotFoundError("x"), depth))
    assert not is_not_found(wrap(ValueError("x"), depth))


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_is_exists_and_exceeds_limit(depth: int) -> None:
    assert is_exists(wrap(AlreadyExistsError("x"), depth))
    assert is_exists(wrap(OSError(errno.EEXIST, "x"), depth))
    assert not is_exists(wrap(NotFoundError("x"), depth))
    limit = ExceedsLimitError(3, 2)
    assert is_exceeds_limit(wrap(limit, depth))
    assert not is_exceeds_limit(wrap(AlreadyExistsError("x"), depth))
    assert not is_not_found(None) and not is_exists(None) and not is_exceeds_limit(None)


def test_tree_and_builtin_bases() -> None:
    assert issubclass(NotFoundError, FileNotFoundError)
    assert issubclass(AlreadyExistsError, FileExistsError)
    assert issubclass(InvalidReferenceError, ValueError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(PermissionDeniedError, PermissionError)
    assert issubclass(UnsupportedError, NotImplementedError)
    for cls in (NotFoundError, AlreadyExistsError, ExceedsLimitError, ConfigError):
        assert issubclass(cls, StorageError)


def test_exceeds_limit_message_matches_go() -> None:
    err = ExceedsLimitError(2 * 1024 * 1024 + 1, 2 * 1024 * 1024)
    assert "2.000001mb > 2mb" in str(err)
    assert "maxDownloadMBs" in str(err)
    assert err.size == 2 * 1024 * 1024 + 1 and err.limit == 2 * 1024 * 1024


def test_fsspec_users_catch_our_errors_as_os_errors() -> None:
    """fsspec callers (pandas, pyarrow, dask) catch OSError and its subclasses, not StorageError."""
    with pytest.raises(OSError) as info:
        raise ExceedsLimitError(3 * 1024 * 1024, 2 * 1024 * 1024, "s3://b/k")
    assert isinstance(info.value, StorageError)
    assert (info.value.size, info.value.limit) == (3 * 1024 * 1024, 2 * 1024 * 1024)
    assert "s3://b/k" in str(info.value) and "maxDownloadMBs" in str(info.value)
    with pytest.raises(FileNotFoundError):
        raise NotFoundError("object [s3://b/k] does not exist")
    with pytest.raises(FileExistsError):
        raise AlreadyExistsError("object [s3://b/k] already exists")


def test_exceeds_limit_pickles_with_its_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ExceedsLimitError(5, 4, "mem://b/k")))
    assert isinstance(err, ExceedsLimitError) and isinstance(err, OSError)
    assert (err.size, err.limit, err.reference) == (5, 4, "mem://b/k")
    assert str(err) == str(ExceedsLimitError(5, 4, "mem://b/k"))


def test_failure_type_label() -> None:
    assert failure_type(NotFoundError("x")) == "NotFound"
    assert failure_type(ValueError("x")) == "Generic"


def test_map_exceptions_keeps_cause_and_passes_unknown() -> None:
    def mapper(exc: BaseException) -> StorageError | None:
        return NotFoundError("mapped") if isinstance(exc, KeyError) else None

    with pytest.raises(NotFoundError) as info, map_exceptions(mapper):
        raise KeyError("k")
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ZeroDivisionError), map_exceptions(mapper):
        raise ZeroDivisionError
    with pytest.raises(AlreadyExistsError), map_exceptions(mapper):
        raise AlreadyExistsError("ours pass through unchanged")


def _constructors() -> list[tuple[str, Any]]:
    from flytestore.layers.limited import LimitedStore
    from flytestore.layers.resilient import Budget
    from flytestore.parts import PartSizes
    from flytestore.retry import RetryPolicy
    from flytestore.stores.azure import AzureStore
    from flytestore.stores.gcs import GCSStore
    from flytestore.stores.local import LocalStore
    from flytestore.stores.memory import MemoryStore
    from flytestore.stores.s3 import S3Store

    return [
        ("retry attempts", lambda: RetryPolicy(attempts=0)),
        ("retry delay", lambda: RetryPolicy(base_delay=-1)),
        ("budget", lambda: Budget(-1)),
        ("download limit", lambda: LimitedStore(MemoryStore(), max_download_mbs=-1)),
        ("part sizes", lambda: PartSizes(0)),
        ("s3 part_size", lambda: S3Store(container="b", part_size=1)),
        ("s3 max_parts_in_flight", lambda: S3Store(container="b", max_parts_in_flight=0)),
        ("gcs part_size", lambda: GCSStore(container="b", part_size=1000)),
        ("azure part_size", lambda: AzureStore(account_url="http://127.0.0.1:1/a", part_size=0)),
        ("local chunk_size", lambda: LocalStore("/tmp", chunk_size=0)),
        ("local container", lambda: LocalStore("/tmp", container="a/b")),
    ]


@pytest.mark.parametrize(("what", "build"), _constructors(), ids=[w for w, _ in _constructors()])
def test_bad_constructor_arguments_raise_invalid_argument_error(what: str, build: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        build()
