"""An fsspec filesystem over a DataStore: pandas, pyarrow, dask and flytekit read and write through it.

``DataStoreFileSystem`` is an ``fsspec.asyn.AsyncFileSystem``. Paths are full references
(``s3://bucket/key``, ``gs://…``, ``abfs://…``, ``redis://…``, ``mem://…``, ``file://…``), and
``ls``/``find``/``glob``/``info`` return them in the same form. Directories are inferred from keys.

``register()`` makes ``fsspec.filesystem("s3", ...)`` (and ``gs``, ``abfs``, ...) return it; the
constructor then takes the arguments flytekit passes to s3fs, gcsfs and adlfs and maps them onto a
``Config``. With no config at all, ``FLYTESTORE_CONFIG`` / ``FLYTESTORE_*`` are read as the
``flytestore`` command reads them (a memory primary when nothing chooses one).

Processes and threads: the filesystem pickles (the copy rebuilds its DataStore), and a DataStore is
bound to the process and the event loop that opened it: after a fork, or on another loop, a new one
is built lazily and the old one is left alone (its sockets belong to the parent). The stores it
built are closed when it is garbage-collected or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import io
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import fsspec  # type: ignore[import-untyped]
from fsspec.asyn import AsyncFileSystem, get_loop, sync  # type: ignore[import-untyped]
from fsspec.spec import AbstractBufferedFile  # type: ignore[import-untyped]

from .config import Config
from .datastore import DataStore
from .errors import ConfigError, ExceedsLimitError, NotFoundError, check_size
from .rawstore import Metadata, Options, SignedURLProperties
from .reference import escape_key, split_reference
from .units import MiB

__all__ = ["DataStoreFileSystem", "register"]

logger = logging.getLogger(__name__)

#: The end of an open range: read_ranges clips ranges to the object's size.
_OPEN_END = 2**62

#: The protocols ``register()`` takes over by default.
DEFAULT_PROTOCOLS = ("s3", "gs", "abfs", "abfss", "redis", "mem")

#: The config ``register(config=...)`` set: used by instances built without one.
_registered_config: Config | None = None

#: Backend kind of each protocol whose s3fs/gcsfs/adlfs constructor arguments are understood.
_FLAVOURS = {"s3": "s3", "s3a": "s3", "gs": "google", "gcs": "google", "abfs": "azure", "abfss": "azure", "az": "azure"}

#: s3fs/gcsfs/adlfs arguments that only tune the peer's own client: accepted and ignored.
_IGNORED_ARGS = frozenset(
    {
        "use_ssl",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "version_aware",
        "cache_regions",
        "requester_pays",
        "s3_additional_kwargs",
        "session",
        "username",
        "password",
        "profile",
        "max_concurrency",
        "fixed_upload_size",
        "listings_expiry_time",
        "max_paths",
        "skip_instance_cache",
        "use_listings_cache",
        "config_kwargs",
        "client_kwargs",
        "consistency",
        "cache_timeout",
        "secure_serialize",
        "check_connection",
        "requests_timeout",
        "timeout",
        "access",
        "default_location",
        "blocksize",
        "socket_timeout",
        "use_fabric_endpoint",
        "asynchronous",
        "loop",
    }
)


def _as_config(config: Config | Mapping[str, Any] | str | os.PathLike[str] | None) -> Config | None:
    if config is None or isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return Config.from_yaml(config)
    raise ConfigError("config", f"expected a Config, a mapping or a YAML path, got {type(config).__name__}")


def _env_config() -> Config:
    """``FLYTESTORE_CONFIG`` / ``FLYTESTORE_*`` as the command reads them; a memory primary
    when nothing chooses one."""
    env = {name: value for name, value in os.environ.items() if name.upper().startswith("FLYTESTORE_")}
    chooses = ("FLYTESTORE_CONFIG", "FLYTESTORE_TYPE", "FLYTESTORE_STOW__")
    if not any(name.upper().startswith(chooses) and value for name, value in env.items()):
        env["FLYTESTORE_TYPE"] = "mem"
    return Config.from_env(env)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got [{value!r}]")
    return value


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got a {type(value).__name__}")
    return value


def _s3_settings(options: dict[str, Any]) -> dict[str, str]:
    """s3fs's constructor arguments (as flytekit passes them) as ``stow.config`` for s3."""
    settings: dict[str, str] = {}
    key, secret, token = options.pop("key", None), options.pop("secret", None), options.pop("token", None)
    if key is not None or secret is not None:
        if not key or not secret:
            raise ConfigError("key", "s3 credentials need both key and secret")
        settings.update(
            auth_type="accesskey", access_key_id=_check_str("key", key), secret_key=_check_str("secret", secret)
        )
        if token:
            settings["token"] = _check_str("token", token)
    if _check_bool("anon", options.pop("anon", False)):
        raise ConfigError("anon", "anonymous (unsigned) S3 access is not supported by flytestore")
    client_kwargs = options.pop("client_kwargs", None) or {}
    if not isinstance(client_kwargs, Mapping):
        raise ConfigError("client_kwargs", f"must be a mapping, got a {type(client_kwargs).__name__}")
    for name, value in client_kwargs.items():
        if name == "endpoint_url":
            if value:
                settings["endpoint"] = _check_str("client_kwargs.endpoint_url", value)
                if str(value).startswith("http://"):
                    settings["disable_ssl"] = "true"
        elif name == "region_name":
            if value:
                settings["region"] = _check_str("client_kwargs.region_name", value)
        else:
            logger.debug("flytestore.fsspec: ignoring s3fs client_kwargs[%r]", name)
    config_kwargs = options.pop("config_kwargs", None) or {}
    if not isinstance(config_kwargs, Mapping):
        raise ConfigError("config_kwargs", f"must be a mapping, got a {type(config_kwargs).__name__}")
    for name, value in config_kwargs.items():
        if name == "s3" and isinstance(value, Mapping) and "addressing_style" in value:
            style = _check_str("config_kwargs.s3.addressing_style", value["addressing_style"])
            if style not in ("path", "virtual", "auto"):
                raise ConfigError("config_kwargs.s3.addressing_style", f"must be path, virtual or auto, got [{style}]")
            settings["addressing_style"] = style
        else:
            logger.debug("flytestore.fsspec: ignoring s3fs config_kwargs[%r]", name)
    return settings


def _gcs_settings(options: dict[str, Any]) -> dict[str, str]:
    """gcsfs's ``token`` and ``project`` as ``stow.config`` for google."""
    settings: dict[str, str] = {}
    token = options.pop("token", None)
    if isinstance(token, Mapping):
        import json

        settings["json"] = json.dumps(dict(token))
    elif token in (None, "anon", "google_default", "cloud", "browser", "cache"):
        pass  # no key: anonymous against an emulator, else the ambient credentials
    elif isinstance(token, str):
        try:
            with open(token, encoding="utf-8") as handle:
                settings["json"] = handle.read()
        except OSError as err:
            raise ConfigError("token", f"cannot read the service-account file [{token}]: {err.strerror}") from None
    else:
        raise ConfigError("token", f"must be a path, a mapping or 'anon', got a {type(token).__name__}")
    project = options.pop("project", None)
    if project:
        settings["project_id"] = _check_str("project", project)
    endpoint = options.pop("endpoint_url", None)
    if endpoint:
        settings["endpoint"] = _check_str("endpoint_url", endpoint)
    return settings


def _azure_settings(options: dict[str, Any]) -> dict[str, str]:
    """adlfs's constructor arguments as ``stow.config`` for azure."""
    settings: dict[str, str] = {}
    for arg, key in (
        ("account_name", "account"),
        ("account_key", "key"),
        ("sas_token", "sas_token"),
        ("connection_string", "connection_string"),
    ):
        value = options.pop(arg, None)
        if value:
            settings[key] = _check_str(arg, value)
    service = [options.pop(name, None) for name in ("client_id", "client_secret", "tenant_id")]
    if any(service):
        if not all(service):
            raise ConfigError("client_id", "a service principal needs client_id, client_secret and tenant_id")
        # DefaultAzureCredential reads these from the environment.
        os.environ.setdefault("AZURE_CLIENT_ID", cast(str, service[0]))
        os.environ.setdefault("AZURE_CLIENT_SECRET", cast(str, service[1]))
        os.environ.setdefault("AZURE_TENANT_ID", cast(str, service[2]))
    if _check_bool("anon", options.pop("anon", False) or False):
        raise ConfigError("anon", "anonymous Azure access is not supported by flytestore")
    return settings


_PARSERS = {"s3": _s3_settings, "google": _gcs_settings, "azure": _azure_settings}


def build_config(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None,
    flavour: str | None,
    storage_options: Mapping[str, Any],
) -> Config:
    """The Config an instance runs with: ``config`` (else the registered one, else the
    environment), every container reachable, plus the backend settings that s3fs/gcsfs/adlfs
    arguments in ``storage_options`` describe."""
    base = _as_config(config) or _registered_config or _env_config()
    options = dict(storage_options)
    kind = _FLAVOURS.get(flavour or "")
    settings: dict[str, str] = {}
    if kind is not None:
        settings = _PARSERS[kind](options)
    for name in options:
        if name in _IGNORED_ARGS:
            logger.debug("flytestore.fsspec: ignoring the %s argument %r", flavour or "fsspec", name)
        else:
            raise ConfigError(name, f"unknown argument for the {flavour or 'flytestore'} filesystem")
    changes: dict[str, Any] = {"enable_multicontainer": True}
    if settings and kind is not None and flavour is not None:
        if base.primary_kind() == kind:
            changes["stow"] = {"kind": kind, "config": {**base.stow.config, **settings}}
        else:
            entry = {"kind": kind, "config": settings}
            changes["schemes"] = {**base.schemes, **{p: entry for p, k in _FLAVOURS.items() if k == kind}}
    return base.with_overrides(**changes)


# ---------------------------------------------------------------------------------------------
# The store an instance uses, per process and event loop


class _Holder:
    """The DataStore an instance built, where it lives, and whether the instance owns it."""

    __slots__ = ("loop", "owned", "pid", "store")

    def __init__(self) -> None:
        self.store: DataStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = os.getpid()
        self.owned = False


def _close_holder(holder: _Holder) -> None:
    """Close an owned DataStore on its own loop (garbage collection or interpreter exit)."""
    store, loop = holder.store, holder.loop
    holder.store = None
    if store is None or not holder.owned or loop is None or holder.pid != os.getpid() or loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is loop:
            task = loop.create_task(store.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(store.aclose(), loop).result(timeout=10)
        elif running is None:
            loop.run_until_complete(store.aclose())
    except Exception:  # closing is best effort: never raise from a finalizer
        logger.debug("flytestore.fsspec: closing a DataStore failed", exc_info=True)


_closing: set[asyncio.Task[None]] = set()


# ---------------------------------------------------------------------------------------------
# Paths and references: an fsspec path names keys literally (as s3fs does), a reference escapes them


def path_to_ref(path: str) -> str:
    """The reference of an fsspec path: ``scheme://container/key`` with the key percent-escaped, so
    that ``%``, ``#``, ``?``, spaces and non-ASCII in a key are part of its name, not URL syntax."""
    scheme, sep, rest = path.partition("://")
    if not sep:
        return path
    container, slash, key = rest.partition("/")
    return f"{scheme}://{container}{slash}{escape_key(key)}"


def ref_to_path(ref: str) -> str:
    """The fsspec path of a reference (as a listing returns it): the key as stored, unescaped."""
    scheme, sep, rest = ref.partition("://")
    if not sep:
        return ref
    container = rest.partition("/")[0]
    key = split_reference(ref)[2]
    return f"{scheme}://{container}/{key}" if key else f"{scheme}://{container}"


def _limit_error(err: ExceedsLimitError, path: str) -> ExceedsLimitError:
    """``err`` naming the fsspec path and how to lift the limit for a filesystem."""
    new = ExceedsLimitError(err.size, err.limit, path)
    new.args = (
        f"{new.args[0]} With fsspec, pass a config with limits.maxDownloadMBs to the filesystem or to "
        "flytestore.fsspec.register(config=...), e.g. {'limits': {'maxDownloadMBs': 0}}.",
    )
    return new


def _info_of(ref: str, meta: Metadata) -> dict[str, Any]:
    info: dict[str, Any] = {"name": ref, "size": meta.size, "type": "file"}
    if meta.etag:
        info["ETag"] = meta.etag
    if meta.content_md5:
        info["content_md5"] = meta.content_md5
    if meta.last_modified is not None:
        info["LastModified"] = meta.last_modified
        info["mtime"] = meta.last_modified.timestamp()
    if meta.content_type:
        info["ContentType"] = meta.content_type
    if meta.version:
        info["VersionId"] = meta.version
    return info


def _dir_info(name: str) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory"}


class DataStoreFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """An fsspec filesystem over a flytestore DataStore (see the module docstring)."""

    protocol: ClassVar[Any] = ("flytestore",)
    root_marker = ""
    #: The protocol whose s3fs/gcsfs/adlfs arguments the constructor understands (set by register()).
    flavour: ClassVar[str | None] = None
    #: Write blocks: what one flush hands to the write pipeline (the pipeline cuts its own parts).
    blocksize = 8 * 2**20

    def __init__(
        self,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        store: DataStore | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        **storage_options: Any,
    ) -> None:
        batch_size = storage_options.pop("batch_size", None)
        block_size = storage_options.pop("default_block_size", None) or storage_options.pop("block_size", None)
        cache_type = storage_options.pop("default_cache_type", None)
        super().__init__(asynchronous=asynchronous, loop=loop, batch_size=batch_size)
        if store is not None:
            self.config = store.config
        else:
            self.config = build_config(config, self.flavour, storage_options)
        if block_size:
            self.blocksize = int(block_size)
        self.default_cache_type = cache_type or "readahead"
        self._holder = _Holder()
        if store is not None:
            self._holder.store = store
        self._finalizer = weakref.finalize(self, _close_holder, self._holder)
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        # The copy rebuilds its own DataStore from the config (a DataStore holds sockets).
        return (_rebuild, (type(self), self.config, self.asynchronous))

    # -- the store, per process and loop ----------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        pid: int = self.__dict__["_pid"]
        if pid != os.getpid():  # forked: fsspec's own loop was reset in the child
            self.__dict__["_pid"] = os.getpid()
            if not self.asynchronous:
                self._loop = get_loop()
        return cast("asyncio.AbstractEventLoop | None", self._loop)

    async def _datastore(self) -> DataStore:
        holder = self._holder
        loop = asyncio.get_running_loop()
        store = holder.store
        if store is not None and holder.pid == os.getpid() and (holder.loop is loop or holder.loop is None):
            if holder.loop is None:
                holder.loop = loop
            if store._stack is None:  # not yet opened (or opening in another task: open() waits for it)
                await store.open()
            return store
        with self._lock:
            if holder.store is store:  # rebuild: another process or another loop
                if holder.pid == os.getpid() and store is not None and holder.owned:
                    _close_holder(holder)  # on its own loop, if that loop still runs
                holder.store = DataStore(self.config)
                holder.loop, holder.pid, holder.owned = loop, os.getpid(), True
            store = holder.store
        assert store is not None
        await store.open()
        return store

    async def aclose(self) -> None:
        """Close the DataStore this instance built on the running loop (asynchronous use)."""
        holder = self._holder
        if holder.store is not None and holder.owned and holder.loop is asyncio.get_running_loop():
            store, holder.store = holder.store, None
            await store.aclose()

    async def __aenter__(self) -> DataStoreFileSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- paths ----------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path) if not isinstance(path, str) else path
        if "://" not in path and cls.flavour is not None:
            path = f"{cls.flavour}://{path.lstrip('/')}"
        scheme, _, rest = path.partition("://")
        rest = rest.rstrip("/")
        return f"{scheme}://{rest}" if rest or scheme else path

    def unstrip_protocol(self, name: str) -> str:
        return name

    @classmethod
    def _parent(cls, path: str) -> str:
        path = cls._strip_protocol(path)
        scheme, _, rest = path.partition("://")
        if "/" not in rest:
            return f"{scheme}://"
        return f"{scheme}://{rest.rsplit('/', 1)[0]}"

    @staticmethod
    def _split(path: str) -> tuple[str, str, str]:
        scheme, _, rest = path.partition("://")
        container, _, key = rest.partition("/")
        return scheme, container, key

    # -- reads ----------------------------------------------------------------------------------
    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        store = await self._datastore()
        ref = path_to_ref(path)
        try:
            if start is None and end is None:
                return await store.read_bytes(ref)
            offset, length = await self._range(store, path, start, end)
            if length == 0:
                return b""
            return await store.read_bytes(ref, offset, length)
        except ExceedsLimitError as err:
            raise _limit_error(err, path) from None

    async def _range(self, store: DataStore, path: str, start: int | None, end: int | None) -> tuple[int, int | None]:
        start = start or 0
        if start < 0 or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            if start < 0:
                start = max(0, size + start)
            if end is not None and end < 0:
                end = max(0, size + end)
        if end is None:
            return start, None
        return start, max(0, end - start)

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: list[int | None] | int | None,
        ends: list[int | None] | int | None,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[bytes | Exception]:
        n = len(paths)
        starts_l = starts if isinstance(starts, list) else [starts] * n
        ends_l = ends if isinstance(ends, list) else [ends] * n
        if len(starts_l) != n or len(ends_l) != n:
            raise ValueError("paths, starts and ends must have the same length")
        store = await self._datastore()
        # Group by object: one read_ranges call per object (coalesced, parallel).
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            groups.setdefault(self._strip_protocol(p), []).append(i)
        out: list[bytes | Exception] = [b""] * n

        async def one(path: str, idx: list[int]) -> None:
            try:
                ranges = [await self._range(store, path, starts_l[i], ends_l[i]) for i in idx]
                # Slice semantics past the end: an open end reads to the end of the object.
                spans = [(o, _OPEN_END if length is None else o + length) for o, length in ranges]
                if max_gap is None:
                    data = await store.read_ranges(path_to_ref(path), spans)
                else:
                    data = await store.read_ranges(path_to_ref(path), spans, coalesce=max_gap)
                for i, chunk in zip(idx, data, strict=True):
                    out[i] = chunk
            except Exception as err:
                if on_error != "return":
                    raise
                for i in idx:
                    out[i] = err

        await asyncio.gather(*(one(p, idx) for p, idx in groups.items()))
        return out

    async def _get_file(self, rpath: str, lpath: str, callback: Any = None, **kwargs: Any) -> None:
        if os.path.isdir(lpath):  # noqa: ASYNC240 - a local stat
            return
        rpath = self._strip_protocol(rpath)
        store = await self._datastore()
        try:
            stream = await store.read_raw(path_to_ref(rpath))
        except ExceedsLimitError as err:
            raise _limit_error(err, rpath) from None
        tmp = f"{lpath}.part-{os.getpid()}-{threading.get_ident()}"
        try:
            async with stream:
                if callback is not None and stream.size is not None:
                    callback.set_size(stream.size)
                with open(tmp, "wb") as handle:  # noqa: ASYNC230 - local disk, bounded chunks
                    async for chunk in stream:
                        handle.write(chunk)
                        if callback is not None:
                            callback.relative_update(len(chunk))
            os.replace(tmp, lpath)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- writes ---------------------------------------------------------------------------------
    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        store = await self._datastore()
        options = Options(if_not_exists=mode == "create")
        await store.write_raw(path_to_ref(path), bytes(value), options=options)

    async def _put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        if os.path.isdir(lpath):  # noqa: ASYNC240 - a local stat
            return  # no directories to make
        rpath = self._strip_protocol(rpath)
        store = await self._datastore()
        size = os.path.getsize(lpath)  # noqa: ASYNC240 - a local stat
        if callback is not None:
            callback.set_size(size)

        async def chunks() -> AsyncIterator[bytes]:
            with open(lpath, "rb") as handle:  # noqa: ASYNC230 - local disk, bounded chunks
                while chunk := handle.read(self.blocksize):
                    if callback is not None:
                        callback.relative_update(len(chunk))
                    yield chunk

        await store.write_raw(path_to_ref(rpath), chunks(), size=size, options=Options(if_not_exists=mode == "create"))

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        store = await self._datastore()
        await store.copy_raw(path_to_ref(self._strip_protocol(path1)), path_to_ref(self._strip_protocol(path2)))

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        store = await self._datastore()
        await store.delete(path_to_ref(self._strip_protocol(path)))

    async def _rm(
        self, path: str | list[str], recursive: bool = False, maxdepth: int | None = None, **kwargs: Any
    ) -> None:
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        files = [p for p in paths if "/" in self._split(p)[2] or self._split(p)[2]]
        infos = await asyncio.gather(*(self._isfile(p) for p in files))
        refs = [p for p, is_file in zip(files, infos, strict=True) if is_file]
        if not refs:
            return
        store = await self._datastore()
        results = await store.delete_many([path_to_ref(p) for p in refs])
        for result in results:
            if result is not None and not isinstance(result, FileNotFoundError):
                raise result

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        pass  # no directories: a directory exists while an object is under it

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        pass

    # -- listing and metadata ----------------------------------------------------------------------
    async def _objects_under(self, path: str) -> list[dict[str, Any]]:
        """Every object strictly below ``path`` (as a directory), one listing."""
        store = await self._datastore()
        scheme, container, key = self._split(path)
        prefix = f"{scheme}://{container}/{key + '/' if key else ''}"
        out = []
        try:
            async for entry in store.list(path_to_ref(prefix)):
                ref = str(entry.ref)
                if ref.endswith("/"):
                    continue
                name = ref_to_path(ref)
                if not name.startswith(prefix) or name == prefix:
                    continue
                info: dict[str, Any] = {"name": name, "size": entry.size, "type": "file"}
                if entry.etag:
                    info["ETag"] = entry.etag
                if entry.last_modified is not None:
                    info["LastModified"] = entry.last_modified
                    info["mtime"] = entry.last_modified.timestamp()
                out.append(info)
        except NotFoundError:
            if key:
                return []
            raise
        return out

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        _, container, key = self._split(path)
        if not container:
            return _dir_info(path)
        store = await self._datastore()
        if key:
            meta = await store.head(path_to_ref(path))
            if meta.exists:
                return _info_of(path, meta)
            page, _ = await store.list_page(path_to_ref(f"{path}/"), max_items=1)
            if page:
                return _dir_info(path)
            raise FileNotFoundError(path)
        try:
            await store.list_page(path_to_ref(f"{path}/"), max_items=1)
        except NotFoundError:
            raise FileNotFoundError(path) from None
        return _dir_info(path)

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        files = await self._objects_under(path)
        if not files:
            info = await self._info(path)  # a file, an empty bucket, else FileNotFoundError
            entries = [info] if info["type"] == "file" else []
        else:
            seen: dict[str, dict[str, Any]] = {}
            for info in files:
                rel = info["name"][len(path) + 1 :]
                head, sep, _ = rel.partition("/")
                name = f"{path}/{head}"
                if sep:
                    seen.setdefault(name, _dir_info(name))
                else:
                    seen[name] = info
            entries = sorted(seen.values(), key=lambda i: i["name"])
        return entries if detail else [e["name"] for e in entries]

    async def _find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, *, detail: bool = False, **kwargs: Any
    ) -> Any:
        path = self._strip_protocol(path)
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        out: dict[str, dict[str, Any]] = {}
        files = await self._objects_under(path)
        if files and withdirs and self._split(path)[2]:
            out[path] = _dir_info(path)
        for info in files:
            parts = info["name"][len(path) + 1 :].split("/")
            if withdirs:
                for depth in range(1, len(parts)):
                    if maxdepth is None or depth <= maxdepth:
                        name = f"{path}/{'/'.join(parts[:depth])}"
                        out.setdefault(name, _dir_info(name))
            if maxdepth is None or len(parts) <= maxdepth:
                out[info["name"]] = info
        if not files:
            with contextlib.suppress(FileNotFoundError):
                info = await self._info(path)
                if info["type"] == "file":
                    out[path] = info
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
        except FileNotFoundError:
            return False
        return True

    async def _isfile(self, path: str) -> bool:
        path = self._strip_protocol(path)
        if not self._split(path)[2]:
            return False
        store = await self._datastore()
        meta: Metadata = await store.head(path_to_ref(path))
        return meta.exists

    async def _isdir(self, path: str) -> bool:
        try:
            info: dict[str, Any] = await self._info(path)
        except FileNotFoundError:
            return False
        return bool(info["type"] == "directory")

    async def _size(self, path: str) -> int:
        return int((await self._info(path))["size"])

    async def _sign(self, path: str, expiration: int = 3600, **kwargs: Any) -> str:
        store = await self._datastore()
        props = SignedURLProperties(scope=kwargs.get("scope", "GET"), expires_in=timedelta(seconds=expiration))
        response = await store.create_signed_url(path_to_ref(self._strip_protocol(path)), props)
        return response.url

    def sign(self, path: str, expiration: int = 3600, **kwargs: Any) -> str:
        """A URL that reads ``path`` without credentials for ``expiration`` seconds (scope="PUT" to write)."""
        return cast(str, sync(self.loop, self._sign, path, expiration, **kwargs))

    def modified(self, path: str) -> datetime:
        info = self.info(path)
        if "LastModified" not in info:
            raise FileNotFoundError(f"{path} has no modification time")
        return cast(datetime, info["LastModified"])

    def checksum(self, path: str) -> int:
        info = self.info(path)
        tag = info.get("ETag") or info.get("content_md5") or f"{info['size']}:{info.get('mtime')}"
        return int(hashlib.md5(str(tag).encode(), usedforsecurity=False).hexdigest(), 16)

    def ukey(self, path: str) -> str:
        return hashlib.sha256(str(self.checksum(path)).encode() + path.encode()).hexdigest()

    # -- files ----------------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        cache_type: str | None = None,
        **kwargs: Any,
    ) -> DataStoreFile:
        return DataStoreFile(
            self,
            self._strip_protocol(path),
            mode=mode,
            block_size=block_size or self.blocksize,
            autocommit=autocommit,
            cache_options=cache_options,
            cache_type=cache_type or self.default_cache_type,
            **kwargs,
        )


def _rebuild(cls: type[DataStoreFileSystem], config: Config, asynchronous: bool) -> DataStoreFileSystem:
    return cls(config=config, asynchronous=asynchronous)


class DataStoreFile(AbstractBufferedFile):  # type: ignore[misc]
    """A buffered file: reads are range requests (with fsspec's read-ahead caches), writes stream
    every flushed block into one ``write_raw`` (the write pipeline), holding at most a few blocks."""

    #: Blocks handed to the write that it has not yet taken: bounds a writer's memory.
    QUEUE_BLOCKS = 2

    fs: DataStoreFileSystem

    def __init__(self, fs: DataStoreFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._writer: asyncio.Future[Any] | None = None
        self._exclusive = "x" in mode
        if self._exclusive:
            if fs.exists(path):
                raise FileExistsError(path)
            mode = mode.replace("x", "w")
        super().__init__(fs, path, mode=mode, **kwargs)
        if mode == "rb":
            # As a whole read of the object would: a file over the download limit is refused at
            # open, not after some of its blocks were read.
            try:
                check_size(self.size, fs.config.limits.max_download_mbs * MiB, path)
            except ExceedsLimitError as err:
                raise _limit_error(err, path) from None

    def _fetch_range(self, start: int, end: int) -> bytes:
        return cast(bytes, sync(self.fs.loop, self.fs._cat_file, self.path, start, end))

    def _initiate_upload(self) -> None:
        sync(self.fs.loop, self._start)

    async def _start(self) -> None:
        store = await self.fs._datastore()
        self._queue = queue = asyncio.Queue[bytes | None](maxsize=self.QUEUE_BLOCKS)

        async def blocks() -> AsyncIterator[bytes]:
            while (block := await queue.get()) is not None:
                yield block

        options = Options(if_not_exists=self._exclusive)
        self._writer = asyncio.ensure_future(store.write_raw(path_to_ref(self.path), blocks(), options=options))

    async def _send(self, block: bytes | None) -> None:
        assert self._queue is not None and self._writer is not None
        put = asyncio.ensure_future(self._queue.put(block))
        done, _ = await asyncio.wait({put, self._writer}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self._writer.result()  # raises the write's error
            raise OSError(f"the write of {self.path} ended before its data")

    async def _finish(self) -> None:
        await self._send(None)
        assert self._writer is not None
        await self._writer

    def _upload_chunk(self, final: bool = False) -> bool:
        data = self.buffer.getvalue()
        loop = self.fs.loop
        if data:
            sync(loop, self._send, data)
        if final:
            sync(loop, self._finish)
        return True

    def discard(self) -> None:
        writer = self._writer
        loop = self.fs.loop
        if writer is not None and not writer.done() and loop is not None:
            loop.call_soon_threadsafe(writer.cancel)
        self.buffer = io.BytesIO()


def register(
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    clobber: bool = False,
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> None:
    """Make ``fsspec.filesystem(protocol, ...)`` return a DataStoreFileSystem for each protocol.

    The class goes into fsspec's registry and ``fsspec.registry.known_implementations`` (code that
    resolves a protocol's canonical class there, as flytekit does for s3, gs and abfs, then builds
    it too). With ``clobber=False`` a protocol already registered to another implementation, or
    whose ``known_implementations`` entry another library changed from fsspec's default, raises
    ``ValueError`` and nothing is registered. ``config`` becomes the default of instances built
    without one.
    """
    registry = importlib.import_module("fsspec.registry")
    classes = {protocol: filesystem_for(protocol) for protocol in protocols}
    if not clobber:
        for protocol, cls in classes.items():
            current = registry._registry.get(protocol)
            if current is not None and current is not cls:
                raise ValueError(f"Name ({protocol}) already in the registry and clobber is False")
            known = registry.known_implementations.get(protocol, {}).get("class")
            if known not in (None, _qualname(cls), _FSSPEC_DEFAULTS.get(protocol)):
                raise ValueError(f"Name ({protocol}) already in the known_implementations and clobber is False")
    global _registered_config
    if config is not None:
        _registered_config = _as_config(config)
    for protocol, cls in classes.items():
        fsspec.register_implementation(protocol, cls, clobber=True)
        registry.known_implementations[protocol] = {
            "class": _qualname(cls),
            "err": f"{_qualname(cls)} import failed for protocol {protocol}",
        }


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: fsspec's own ``known_implementations`` classes, as they were when this module was imported.
_FSSPEC_DEFAULTS: dict[str, str] = {
    name: entry["class"]
    for name, entry in importlib.import_module("fsspec.registry").known_implementations.items()
    if isinstance(entry, Mapping) and isinstance(entry.get("class"), str)
}


_classes: dict[str, type[DataStoreFileSystem]] = {}


def filesystem_for(protocol: str) -> type[DataStoreFileSystem]:
    """The DataStoreFileSystem class serving ``protocol`` (it understands that protocol's peer's
    constructor arguments, and takes bare ``bucket/key`` paths as ``protocol://bucket/key``)."""
    cls = _classes.get(protocol)
    if cls is None:
        name = f"DataStoreFileSystem_{protocol.replace('-', '_')}"
        cls = type(name, (DataStoreFileSystem,), {"protocol": (protocol,), "flavour": protocol})
        cls.__module__ = __name__
        globals()[name] = cls
        _classes[protocol] = cls
    return cls


for _protocol in (*DEFAULT_PROTOCOLS, "gcs", "s3a", "az"):
    filesystem_for(_protocol)
