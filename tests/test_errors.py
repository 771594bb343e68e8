"""The error tree and Go's predicates (FLYTE_BEHAVIOUR §10)."""

from __future__ import annotations

import errno

import pytest

from flytestore import (
    AlreadyExistsError,
    ConfigError,
    ExceedsLimitError,
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
