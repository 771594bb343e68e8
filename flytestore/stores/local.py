"""LocalStore: objects as files under a root directory, for ``file://<container>/<key>``.

Owns the mapping of references onto paths (a container is a sub-directory of the root, a key a
relative path below it) and every rule that keeps that mapping safe: keys that could escape the
container or mean two things on a filesystem are refused, and symbolic links may not lead out of
the container. It also owns the local write protocol (temp file next to the target, then an
atomic rename or hard link), sorted recursive listing, and the mapping of ``OSError`` onto the
flytestore error tree.

What it does not keep: ``Options.metadata`` and ``Options.content_type`` are accepted and ignored
(a plain file has nowhere to put them), so ``head`` reports neither; the one exception is the
``mtime`` key (``flytestore.mtime``, rclone's), which a write or copy applies to the committed
file as its modification time, so a bulk transfer keeps the source's mtime here too. Etags are cheap
``<inode>-<mtime_ns>-<size>`` stamps that change when an object is rewritten, not content hashes.
Writes are atomic but not durable: nothing is fsynced, so a machine crash may lose a write that
returned (but never exposes a partial one).

Blocking work runs in the default executor: one thread hop per operation for ``head``,
``delete``, ``copy_raw``, a listing page, and reads and writes of up to one chunk
(``LOCAL_CHUNK_SIZE``); larger ones add one aiofiles hop per chunk (writes: per batch of at least
a chunk, plus one to commit).

A key maps to a path, so the local store cannot hold both ``a`` and ``a/b`` (S3 can): writing
one while the other exists is an ``InvalidReferenceError``; reading ``a/b`` then is not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import io
import os
import secrets
import stat
import threading
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, TypeVar, cast

from aiofiles.threadpool.binary import AsyncBufferedIOBase, AsyncBufferedReader

from ..backends import BY_KIND
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    TransientError,
    map_exceptions,
)
from ..mtime import metadata_mtime
from ..parts import Part, gather
from ..payload import Payload, iter_payload
from ..rawstore import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_OPTIONS,
    BytesLike,
    ByteStream,
    Cursor,
    ListEntry,
    Metadata,
    Options,
    check_range,
)
from ..reference import DataReference
from .base import BaseStore

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["LOCAL_CHUNK_SIZE", "LocalStore", "from_config"]

_T = TypeVar("_T")

#: Default chunk of streamed reads and batch of streamed writes. Every chunk costs a thread hop,
#: 0.1-0.3 ms on a small VM, so ``benchmarks/bench_local.py`` measured streams taking 1.6-3x the
#: time of a plain synchronous loop with 1 MiB chunks, 1.1-1.7x with 4 MiB and 0.9-1.3x with 8 MiB,
#: the smallest size within the 1.5x target in both directions on every run. It is not
#: ``DEFAULT_CHUNK_SIZE`` because slicing bytes already in memory costs no hop: there 1 MiB is right.
#: A stream holds about two chunks (16 MiB peak RSS for a 1 GiB stream).
LOCAL_CHUNK_SIZE = 8 * 1024 * 1024

#: Marks in-flight writes: ``.<basename>.flytestore-tmp-<random>``. Never listed, never a key.
_TMP_MARK = ".flytestore-tmp-"
#: Bytes of the target's name kept in a temp name, so the temp name stays under NAME_MAX (255).
_TMP_STEM_BYTES = 100
#: How much one copy step moves before checking for cancellation.
_COPY_STEP = 16 * 1024 * 1024
#: A concurrent delete may prune the directory a write just created; retry that many times.
_MKDIR_ATTEMPTS = 5

# os.open flags: O_NONBLOCK so that opening a FIFO planted in the tree cannot hang a worker
# thread; O_BINARY matters only on Windows.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_READ_FLAGS = os.O_RDONLY | _O_NONBLOCK | _O_BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY

#: errno -> error class; anything else is a plain StorageError.
_ERRNO_ERRORS: dict[int, type[StorageError]] = {
    errno.ENOENT: NotFoundError,
    errno.EEXIST: AlreadyExistsError,
    errno.EACCES: PermissionDeniedError,
    errno.EPERM: PermissionDeniedError,
    errno.EROFS: PermissionDeniedError,
    errno.ENOTDIR: InvalidReferenceError,
    errno.EISDIR: InvalidReferenceError,
    errno.ENAMETOOLONG: InvalidReferenceError,
    errno.ELOOP: InvalidReferenceError,
    errno.EILSEQ: InvalidReferenceError,
    errno.ETIMEDOUT: TransientError,
    errno.EAGAIN: TransientError,
    errno.EINTR: TransientError,
}


def _os_errors(what: str) -> contextlib.AbstractContextManager[None]:
    """The one place ``OSError`` becomes a flytestore error (the original stays as ``__cause__``).

    ``what`` names the operation and its references for the message: ``"read [file://c/k]"``.
    """

    def mapper(exc: BaseException) -> StorageError | None:
        if isinstance(exc, UnicodeError):  # a name the filesystem encoding cannot represent
            return InvalidReferenceError(f"cannot {what}: the key cannot be a file name here ({exc})")
        if not isinstance(exc, OSError):
            return None
        cls = _ERRNO_ERRORS.get(exc.errno or 0, StorageError)
        return cls(f"cannot {what}: {exc.strerror or exc}")

    return map_exceptions(mapper)


# ---------------------------------------------------------------------------------------------
# References -> paths


def _check_container(ref: str, container: str) -> None:
    if not container:
        raise InvalidReferenceError(
            f"reference [{ref}] names no container: local references have the form "
            "file://<container>/<key>, where <container> is a directory under the store's root"
        )
    if container in (".", "..") or "\0" in container or any(sep in container for sep in _SEPARATORS):
        raise InvalidReferenceError(
            f"reference [{ref}] names container [{container}], which is not a single directory name "
            "under the store's root"
        )


_SEPARATORS = tuple(s for s in {"/", os.sep, os.altsep} if s)


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and _TMP_MARK in name


def _key_segments(ref: str, key: str) -> tuple[str, ...]:
    """The path segments of a key, refusing anything that could escape or be ambiguous."""
    if "\0" in key:
        raise InvalidReferenceError(f"reference [{ref}] has a NUL byte in its key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidReferenceError(f"reference [{ref}] has a key that is not valid UTF-8") from None
    if key.startswith("/") or os.path.isabs(key):
        raise InvalidReferenceError(f"reference [{ref}] has an absolute key; keys are relative to containers")
    segments = tuple(key.split("/"))
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidReferenceError(
                f"reference [{ref}] has an empty, '.' or '..' segment in its key, which a filesystem "
                "cannot store as written ('..' would also leave the container)"
            )
        if os.sep != "/" and any(sep in segment for sep in _SEPARATORS):
            raise InvalidReferenceError(f"reference [{ref}] has a path separator of this OS in its key")
        if _is_temp_name(segment):
            raise InvalidReferenceError(
                f"reference [{ref}] uses a name reserved for in-flight writes ('.…{_TMP_MARK}…')"
            )
    return segments


@dataclass(frozen=True, slots=True)
class _Target:
    """A validated reference: its container directory and key segments."""

    ref: str
    base: str
    segments: tuple[str, ...]

    @property
    def path(self) -> str:
        return os.path.join(self.base, *self.segments)

    def sub(self, n: int) -> str:
        """The path of the first ``n`` segments (an ancestor directory)."""
        return os.path.join(self.base, *self.segments[:n])

    def check_inside(self, path: str) -> None:
        """Refuse a path that symbolic links lead outside the container directory.

        Keys hold no '..', so only links can escape; ``realpath`` resolves every existing
        component (the parents and the file itself) and appends the rest as written. This guards
        against links present when the operation starts, not against someone with write access
        to the tree swapping a directory for a link while it runs.
        """
        real_base = os.path.realpath(self.base)
        real = os.path.realpath(path)
        if real != real_base and not real.startswith(os.path.join(real_base, "")):
            raise InvalidReferenceError(
                f"reference [{self.ref}] resolves, through a symbolic link, to a path outside its "
                f"container directory [{self.base}]"
            )


def _metadata(st: os.stat_result) -> Metadata:
    seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
    return Metadata(
        exists=True,
        size=st.st_size,
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        last_modified=datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=nanos // 1000),
    )


# ---------------------------------------------------------------------------------------------
# Thread plumbing


async def _run(fn: Callable[[], _T]) -> _T:
    """Run side-effect-free blocking work in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def _run_settled(
    fn: Callable[[], _T],
    *,
    on_cancel: Callable[[], None] | None = None,
    undo: Callable[[_T], None] | None = None,
) -> _T:
    """Run blocking work in the default executor; if the caller is cancelled, wait for it to end.

    A worker thread cannot be interrupted, so a cancelled caller that cleaned up at once would
    race it (remove a temp file the thread is about to create, close a descriptor it uses).
    Instead ``on_cancel`` asks the work to stop early, the caller waits for it, and ``undo``
    releases what it produced; then the cancellation propagates.
    """
    fut = asyncio.get_running_loop().run_in_executor(None, fn)

    def settle(done: asyncio.Future[_T]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        if undo is not None:
            undo(done.result())

    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        try:
            await asyncio.wait((fut,))
        finally:
            # Cancelled again while waiting: clean up whenever the thread ends.
            if fut.done():
                settle(fut)
            else:
                fut.add_done_callback(settle)
        raise


# ---------------------------------------------------------------------------------------------
# Reads


class _FileChunks:
    """The chunks of an open file, ``remaining`` bytes of them: the body of a streamed read.

    The file is a ``BufferedReader`` on purpose: its lock (documented as thread-safe) makes
    ``close`` wait for a read still running in a worker thread after its consumer was cancelled,
    so the descriptor is never closed, and its number reused, under that read.
    """

    __slots__ = ("_afile", "_chunk_size", "_file", "_interrupted", "_ref", "_remaining")

    def __init__(self, file: io.BufferedReader, remaining: int, chunk_size: int, ref: str) -> None:
        self._file = file
        self._afile = AsyncBufferedReader(file, loop=None, executor=None)
        self._remaining = remaining
        self._chunk_size = chunk_size
        self._ref = ref
        #: A read ended by an exception (cancellation) may still be running in its thread.
        self._interrupted = False

    def __aiter__(self) -> _FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0:
            raise StopAsyncIteration
        self._interrupted = True
        with _os_errors(f"read [{self._ref}]"):
            chunk = await self._afile.read(min(self._chunk_size, self._remaining))
        self._interrupted = False
        if not chunk:  # truncated by someone else since the open; our own writers never do that
            self._remaining = 0
            raise StopAsyncIteration
        self._remaining -= len(chunk)
        return chunk

    async def close(self) -> None:
        self._remaining = 0
        if self._interrupted:
            # close() waits for the read still in a thread: wait there, not on the event loop.
            await asyncio.shield(_run(self._file.close))
        else:
            # Closing a file opened for reading flushes nothing: done inline, no thread hop.
            self._file.close()

    def __del__(self) -> None:
        if not self._file.closed:
            self._file.close()
            warnings.warn(f"unclosed read stream of [{self._ref}]", ResourceWarning, stacklevel=1)


# ---------------------------------------------------------------------------------------------
# Writes


@dataclass(slots=True)
class _TempFile:
    """An in-flight write: a temp file in the target's directory, committed by rename or link."""

    target: _Target
    path: str
    # BufferedWriter for the same reason reads use BufferedReader: close waits for a running write.
    file: io.BufferedWriter

    def discard(self) -> None:
        """Remove the temp file and the directories it made; never raises (another error is
        propagating)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(Exception):
            self.file.close()
        _prune_parents(self.target)


# ---------------------------------------------------------------------------------------------
# The store


class LocalStore(BaseStore):
    """Objects as files: ``file://<container>/<key>`` is ``<root>/<container>/<key>``.

    ``open()`` creates the configured container directory (and the root) when
    ``create_container`` is set; other containers must exist before objects are written to them.
    Writing to or listing a missing container is ``NotFoundError`` naming it.
    ``chunk_size`` bounds the chunks of streamed reads and the batches of streamed writes.
    """

    schemes = BY_KIND["local"].schemes

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        container: str = "",
        multicontainer: bool = True,
        chunk_size: int = LOCAL_CHUNK_SIZE,
        create_container: bool = True,
    ) -> None:
        super().__init__(container=container, multicontainer=multicontainer)
        root_path = os.fspath(root)
        if not isinstance(root_path, str) or not root_path:
            raise InvalidArgumentError(f"root must be a non-empty str path, got {root!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
            raise InvalidArgumentError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if container:
            try:
                _check_container(f"file://{container}/", container)
            except InvalidReferenceError:
                raise InvalidArgumentError(f"container [{container}] is not a single directory name") from None
        # Absolute now, so a later chdir cannot move the store.
        self.root = os.path.abspath(root_path)
        self.chunk_size = chunk_size
        self.create_container = create_container

    def __repr__(self) -> str:
        return f"LocalStore(root={self.root!r}, container={self.container!r})"

    async def open(self) -> None:
        if not (self.container and self.create_container):
            return
        base = os.path.join(self.root, self.container)
        with _os_errors(f"create the container directory of [{self.base_container}]"):
            try:
                await _run(functools.partial(os.makedirs, base, exist_ok=True))
            except FileExistsError:
                raise ConfigError("container", f"[{base}] exists and is not a directory") from None

    def _target(self, ref: str) -> _Target:
        container, key = self.locate(ref)
        _check_container(ref, container)
        return _Target(ref, os.path.join(self.root, container), _key_segments(ref, key))

    # -- head / read ----------------------------------------------------------------------------

    async def head(self, ref: str) -> Metadata:
        target = self._target(ref)
        with _os_errors(f"stat [{ref}]"):
            return await _run(functools.partial(self._head, target))

    @staticmethod
    def _head(target: _Target) -> Metadata:
        path = target.path
        target.check_inside(path)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return Metadata.missing()
        return _metadata(st) if stat.S_ISREG(st.st_mode) else Metadata.missing()

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        check_range(offset, length)
        target = self._target(ref)
        with _os_errors(f"read [{ref}]"):
            meta, body, size = await _run_settled(
                functools.partial(self._open_for_read, target, offset, length, self.chunk_size),
                undo=_close_body,
            )
        if isinstance(body, bytes):
            return ByteStream.from_bytes(body, metadata=meta)
        chunks = _FileChunks(body, size, self.chunk_size, ref)
        return ByteStream(chunks, size=size, metadata=meta, close=chunks.close)

    @staticmethod
    def _open_for_read(
        target: _Target, offset: int, length: int | None, chunk_size: int
    ) -> tuple[Metadata, bytes | io.BufferedReader, int]:
        """Open, stat and position in one hop; a range that fits one chunk is read here too."""
        fd, st = _open_object(target, "object")
        try:
            file = open(fd, "rb")  # noqa: SIM115 - ownership passes to the stream or is closed below
        except BaseException:
            os.close(fd)
            raise
        try:
            start = min(offset, st.st_size)
            end = st.st_size if length is None else min(st.st_size, offset + length)
            size = end - start
            if start:
                file.seek(start)
            if size <= chunk_size:
                data = file.read(size) if size else b""
                file.close()
                return _metadata(st), data, len(data)
            return _metadata(st), file, size
        except BaseException:
            file.close()
            raise

    # -- write ----------------------------------------------------------------------------------

    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        """Stream ``data`` into a temp file beside the target, then rename (or link) it into place.

        Up to ``chunk_size`` bytes are gathered before the disk is touched, so a small payload is
        written in one thread hop; larger payloads go out in batches of at least ``chunk_size``.
        A failed or cancelled write removes its temp file and leaves any previous object intact.
        A create-only write (``if_not_exists``) of a stream checks for the target before reading
        the payload, and commits with ``os.link``, which fails if the target appeared meanwhile.
        """
        target = self._target(ref)
        exclusive = (options or DEFAULT_OPTIONS).if_not_exists
        mtime = metadata_mtime((options or DEFAULT_OPTIONS).metadata)
        what = f"write [{ref}]"
        tmp: _TempFile | None = None
        writer: AsyncBufferedIOBase | None = None
        try:
            if exclusive and not isinstance(data, (bytes, bytearray, memoryview)):
                tmp = await self._prepare_async(target, exclusive)
            # Closed on the way out, so an abandoned producer is finalized now, not at GC.
            payload = cast("AsyncGenerator[BytesLike, None]", iter_payload(data, size, self.chunk_size))
            parts = cast("AsyncGenerator[Part, None]", gather(payload, self.chunk_size))
            pending: list[BytesLike] = []
            async with contextlib.aclosing(parts):
                async for part in parts:
                    if part.last:
                        # Immutable or copied by the gatherer: safe to keep for the commit.
                        pending = part.pieces
                        break
                    if tmp is None:
                        tmp = await self._prepare_async(target, exclusive)
                    if writer is None:
                        writer = AsyncBufferedIOBase(tmp.file, loop=None, executor=None)
                    with _os_errors(what):
                        await writer.writelines(part.pieces)
            if tmp is None:
                # The whole payload fit in one batch: create, write and commit in one hop.
                with _os_errors(what):
                    whole = functools.partial(self._write_whole, target, pending, exclusive, mtime)
                    return await _run_settled(whole)
            with _os_errors(what):
                return await _run_settled(functools.partial(self._commit, tmp, pending, exclusive, mtime))
        except BaseException:
            if tmp is not None:
                # In a thread: closing waits for a batch a cancelled write may still be writing, and
                # unlink/rmdir are filesystem calls too. Shielded, so a second cancel cannot skip it.
                await asyncio.shield(_run(tmp.discard))
            raise

    async def _prepare_async(self, target: _Target, exclusive: bool) -> _TempFile:
        with _os_errors(f"write [{target.ref}]"):
            prepare = functools.partial(self._prepare, target, exclusive)
            return await _run_settled(prepare, undo=_TempFile.discard)

    @staticmethod
    def _prepare(target: _Target, exclusive: bool) -> _TempFile:
        """Check the target, create its directories and open a fresh temp file beside it."""
        path = target.path
        target.check_inside(path)
        if not os.path.isdir(target.base):
            raise NotFoundError(f"cannot write [{target.ref}]: {_no_container(target)}")
        if os.path.isdir(path):
            raise InvalidReferenceError(
                f"cannot write [{target.ref}]: other objects live under it as a directory, so it cannot "
                "also be an object on a local filesystem"
            )
        if exclusive and os.path.lexists(path):
            raise AlreadyExistsError(f"object [{target.ref}] already exists")
        stem = target.segments[-1].encode()[:_TMP_STEM_BYTES].decode(errors="ignore")
        tmp_path = os.path.join(os.path.dirname(path), f".{stem}{_TMP_MARK}{secrets.token_hex(8)}")
        for attempt in range(_MKDIR_ATTEMPTS):
            try:
                _make_parents(target)
                fd = os.open(tmp_path, _CREATE_FLAGS, 0o666)
                break
            except FileNotFoundError:
                # A concurrent delete pruned an (empty) parent between our mkdir and open. Once the
                # temp file exists its directory is not empty, so it stays.
                if attempt == _MKDIR_ATTEMPTS - 1:
                    raise
        return _TempFile(target, tmp_path, open(fd, "wb"))  # the _TempFile owns it

    @classmethod
    def _write_whole(
        cls, target: _Target, parts: list[BytesLike], exclusive: bool, mtime: int | None = None
    ) -> Metadata:
        tmp = cls._prepare(target, exclusive)
        try:
            return cls._commit(tmp, parts, exclusive, mtime)
        except BaseException:
            tmp.discard()
            raise

    @staticmethod
    def _commit(tmp: _TempFile, parts: list[BytesLike], exclusive: bool, mtime: int | None = None) -> Metadata:
        """Write the last batch, set the modification time (``mtime`` nanoseconds, when given),
        close, and move the temp file into place."""
        file = tmp.file
        file.writelines(parts)
        file.flush()
        if mtime is not None:
            os.utime(file.fileno(), ns=(mtime, mtime))
        st = os.fstat(file.fileno())  # the inode keeps its identity and mtime through the rename
        file.close()
        target = tmp.target
        dest = target.path
        try:
            if exclusive:
                # link() never replaces: it fails with EEXIST if the target appeared meanwhile.
                os.link(tmp.path, dest)
                with contextlib.suppress(OSError):
                    os.unlink(tmp.path)
            else:
                os.replace(tmp.path, dest)
        except FileExistsError as exc:
            if os.path.isdir(dest):
                raise _directory_collision(target) from exc
            raise AlreadyExistsError(f"object [{target.ref}] already exists") from exc
        except IsADirectoryError as exc:
            raise _directory_collision(target) from exc
        return _metadata(st)

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ref: str) -> None:
        target = self._target(ref)
        with _os_errors(f"delete [{ref}]"):
            await _run(functools.partial(self._delete, target))

    @staticmethod
    def _delete(target: _Target) -> None:
        path = target.path
        target.check_inside(path)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"object [{target.ref}] does not exist") from exc
        except OSError as exc:  # EISDIR on Linux, EPERM on macOS
            if os.path.isdir(path):
                raise NotFoundError(f"object [{target.ref}] does not exist (it is a directory)") from exc
            raise
        _prune_parents(target)

    # -- copy -----------------------------------------------------------------------------------

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Copy inside the filesystem (``copy_file_range``: reflinks where the filesystem has them),
        through a temp file beside ``dst``; options other than ``if_not_exists`` and the ``mtime``
        metadata are ignored."""
        source = self._target(src)
        target = self._target(dst)
        exclusive = (options or DEFAULT_OPTIONS).if_not_exists
        mtime = metadata_mtime((options or DEFAULT_OPTIONS).metadata)
        cancel = threading.Event()
        with _os_errors(f"copy [{src}] to [{dst}]"):
            return await _run_settled(
                functools.partial(self._copy, source, target, exclusive, cancel, mtime), on_cancel=cancel.set
            )

    @classmethod
    def _copy(
        cls, source: _Target, target: _Target, exclusive: bool, cancel: threading.Event, mtime: int | None = None
    ) -> Metadata:
        fd, _ = _open_object(source, "copy source")
        try:
            tmp = cls._prepare(target, exclusive)
            try:
                tmp.file.flush()
                _copy_fd(fd, tmp.file.fileno(), cancel)
                return cls._commit(tmp, [], exclusive, mtime)
            except BaseException:
                tmp.discard()
                raise
        finally:
            os.close(fd)

    # -- list -----------------------------------------------------------------------------------

    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        ref = self.make_ref(container, prefix)
        _check_container(ref, container)
        segments = _key_segments(ref, prefix.rstrip("/")) if prefix else ()
        if not isinstance(cursor, Cursor):
            raise InvalidArgumentError(f"cursor must be a Cursor, got {type(cursor).__name__}")
        after: str | None = None
        if not cursor.is_start():
            if not isinstance(cursor.position, str):
                raise InvalidArgumentError(f"cursor position must be a str, got {cursor.position!r}")
            after = cursor.position
        target = _Target(ref, os.path.join(self.root, container), segments)
        make_ref = functools.partial(self.make_ref, container)
        with _os_errors(f"list [{ref}]"):
            page = functools.partial(_list_page, target, prefix, after, max_items, make_ref)
            entries, last, more = await _run(page)
        return entries, (Cursor.at(last) if more else Cursor.end())


# ---------------------------------------------------------------------------------------------
# Blocking helpers


def _open_object(target: _Target, what: str) -> tuple[int, os.stat_result]:
    """Open an object's file for reading: its descriptor and stat. Anything but an existing
    regular file (a directory, a FIFO, a dangling path) is ``NotFoundError``."""
    path = target.path
    target.check_inside(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFoundError(f"{what} [{target.ref}] does not exist") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotFoundError(f"{what} [{target.ref}] does not exist (the path is not a regular file)")
        if _O_NONBLOCK:
            os.set_blocking(fd, True)  # O_NONBLOCK was only for the open
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _close_body(result: tuple[Metadata, bytes | io.BufferedReader, int]) -> None:
    body = result[1]
    if not isinstance(body, bytes):
        body.close()


def _directory_collision(target: _Target) -> InvalidReferenceError:
    return InvalidReferenceError(
        f"cannot write [{target.ref}]: other objects live under it as a directory, so it cannot also "
        "be an object on a local filesystem"
    )


def _prune_parents(target: _Target) -> None:
    """Remove the target's parent directories that are now empty, up to the container directory,
    so the tree mirrors the remaining keys (and listing never walks dead branches).

    Stops at the first that is not empty, already gone, or refilled by a concurrent write; a
    writer that loses its fresh directory to this retries (see ``_prepare``).
    """
    for n in range(len(target.segments) - 1, 0, -1):
        try:
            os.rmdir(target.sub(n))
        except OSError:
            return


def _make_parents(target: _Target) -> None:
    if len(target.segments) < 2:
        return  # the parent is the container directory, checked by the caller
    try:
        os.makedirs(target.sub(len(target.segments) - 1), exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        # Some ancestor is a file: name the object that stands in the way.
        for n in range(1, len(target.segments)):
            path = target.sub(n)
            if os.path.lexists(path) and not os.path.isdir(path):
                blocker = "/".join(target.segments[:n])
                raise InvalidReferenceError(
                    f"cannot write [{target.ref}]: [{blocker}] is an object, so it cannot also be a "
                    "directory on a local filesystem"
                ) from exc
        # Nothing in the way: a concurrent delete removed a directory between makedirs' mkdir and
        # its check. Report it as the vanished directory it is, which the caller retries.
        raise FileNotFoundError(errno.ENOENT, "a parent directory vanished while being created") from exc


class _CopyCancelled(Exception):
    """The caller of a copy was cancelled; the copy stops at the next step."""


#: copy_file_range errors that mean "not between these files": fall back to read/write.
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}


def _copy_fd(src: int, dst: int, cancel: threading.Event) -> None:
    """Copy ``src`` to ``dst`` from their current offsets, in steps that check ``cancel``."""
    copied = 0
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        try:
            while True:
                if cancel.is_set():
                    raise _CopyCancelled
                n = copy_range(src, dst, _COPY_STEP)
                if not n:
                    break
                copied += n
            if copied or not os.fstat(src).st_size:
                return
            # Some filesystems (procfs-like, some FUSE) report 0 for files that have bytes.
        except OSError as exc:
            if copied or exc.errno not in _NO_COPY_RANGE:
                raise
    buf = bytearray(DEFAULT_CHUNK_SIZE)
    view = memoryview(buf)
    while True:
        if cancel.is_set():
            raise _CopyCancelled
        n = os.readv(src, [buf]) if hasattr(os, "readv") else _read_into(src, buf)
        if not n:
            return
        written = 0
        while written < n:
            written += os.write(dst, view[written:n])


def _read_into(fd: int, buf: bytearray) -> int:
    data = os.read(fd, len(buf))
    buf[: len(data)] = data
    return len(data)


def _no_container(target: _Target) -> str:
    return f"container [{os.path.basename(target.base)}] does not exist (no container directory [{target.base}])"


def _list_page(
    target: _Target, prefix: str, after: str | None, max_items: int, make_ref: Callable[[str], DataReference]
) -> tuple[list[ListEntry], str, bool]:
    """Up to ``max_items`` entries after ``after``, the last key, and whether more follow."""
    start = target.path
    target.check_inside(start)
    if not os.path.isdir(target.base):
        raise NotFoundError(f"cannot list [{target.ref}]: {_no_container(target)}")
    entries: list[ListEntry] = []
    last = ""
    walk = _walk_sorted(start, prefix, after)
    try:
        for key, entry in walk:
            if len(entries) == max_items:
                return entries, last, True
            try:
                meta = _metadata(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue  # deleted since its directory was read
            entries.append(ListEntry(make_ref(key), meta.size, meta.etag, meta.last_modified))
            last = key
    finally:
        walk.close()
    return entries, last, False


_Walk = Generator[tuple[str, "os.DirEntry[str]"], None, None]


def _walk_sorted(directory: str, prefix: str, after: str | None) -> _Walk:
    """Regular files under ``directory`` as (key, entry), in key order, keys greater than ``after``.

    Sorting each directory's children by name, with a '/' appended to sub-directory names, gives
    global key order: every key under ``d/`` shares that prefix, so the sub-tree is one contiguous
    run that sorts exactly where ``d/`` does (``a-c`` < ``a.b`` < ``a/b`` < ``a0``). Only the
    directories on the current path are held in memory, and sub-trees wholly at or before the
    cursor are skipped unread. Symbolic links are not followed or listed; names that are not
    UTF-8 (not expressible as keys) and in-flight temp files are skipped.
    """
    children: list[tuple[str, bool, os.DirEntry[str]]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if _is_temp_name(name):
                    continue
                try:
                    name.encode("utf-8")
                    if entry.is_dir(follow_symlinks=False):
                        children.append((name + "/", True, entry))
                    elif entry.is_file(follow_symlinks=False):
                        children.append((name, False, entry))
                except (UnicodeEncodeError, OSError):
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return  # a missing prefix lists nothing; so does one deleted while we walk
    children.sort(key=lambda child: child[0])
    for name, is_dir, entry in children:
        key = prefix + name
        if after is not None and key <= after and not (is_dir and after.startswith(key)):
            continue
        if is_dir:
            yield from _walk_sorted(entry.path, key, after if after is not None and after > key else None)
        else:
            yield key, entry


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> LocalStore:
    """Build a LocalStore from Flyte's ``stow.config`` (``path``: the root directory)."""
    path = settings.get("path")
    if not path:
        raise ConfigError(f"{field}.path", "the local backend needs a root directory (path)")
    return LocalStore(
        path, container=container, multicontainer=multicontainer, create_container=config.create_container
    )
