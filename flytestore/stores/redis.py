"""RedisStore: one Redis string per object, for ``redis://<host:port>/<key>`` (redis.asyncio).

Owns the Redis object model of Flyte's ``RedisStore`` (docs/flyte-compatibility.md#redis): the key is the
reference's path with its slashes trimmed, used verbatim; "directories" are key prefixes. The
host in a reference is advisory: the configured address is authoritative (the same server is often
reached under different names from different vantage points), so a mismatch is only logged, once
per store. Several ``addrs`` select Redis Cluster.

It also owns the mapping of redis-py's exceptions onto the flytestore tree (``_map_error``), the
resolution of the server address for the primary and for lazily routed ``redis://`` references
(``from_config``), and the client's lifecycle: one client and pool per store, created in ``open()``.

What Redis cannot keep: ``Options.metadata`` and ``Options.content_type`` are accepted and ignored,
and there are no etags or modification times. A value is capped at 512 MiB (Redis' own limit) and
is buffered whole on both sides of the wire (a string has no partial writes, and reading it in
ranges could tear against a concurrent overwrite); this store is meant for metadata-sized objects.
Writes are atomic: the value is sent in one ``SET`` only after the whole payload arrived intact,
so a failed, short, long or cancelled stream leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from ..backends import BY_KIND
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    ExceedsLimitError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    TransientError,
    UnsupportedError,
    map_exceptions,
)
from ..payload import Payload, read_payload
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
from ..reference import DataReference
from ._http import http_settings
from .base import BaseStore

if TYPE_CHECKING:
    from ..config import Config, RedisConfig

__all__ = ["DEFAULT_POOL_SIZE", "REDIS_MAX_VALUE", "RedisStore", "from_config"]

logger = logging.getLogger(__name__)

#: Redis' hard cap on one string value.
REDIS_MAX_VALUE = 512 * 1024 * 1024
#: Connections per server when the store is built directly (``from_config`` takes the pool size
#: from ``defaultHttpClient.maxIdleConns``, as the HTTP backends do).
DEFAULT_POOL_SIZE = 100
DEFAULT_PORT = 6379
#: SCAN's COUNT hint: keys examined per round trip while collecting a listing.
SCAN_COUNT = 1000

_Client = aioredis.Redis | RedisCluster

# Glob metacharacters of SCAN MATCH; a key prefix must match literally.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
# The userinfo of a URL, kept out of messages and logs (it may hold a password).
_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _safe(ref: str) -> str:
    """``ref`` for messages: any ``user:password@`` replaced."""
    return _USERINFO.sub("***@", ref) if "@" in ref else ref


# ---------------------------------------------------------------------------------------------
# Errors


def _map_error(op: str, ref: str, exc: BaseException) -> StorageError | None:
    """The one place redis-py's (and the socket layer's) exceptions become flytestore errors.

    Checked from the most specific class down: redis-py files authentication failures and a
    full pool under ``ConnectionError``, and cluster-state replies (CLUSTERDOWN, TRYAGAIN) and
    READONLY under ``ResponseError``.
    """
    where = f"cannot {op} [{_safe(ref)}]"
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return PermissionDeniedError(f"{where}: redis refused the credentials or the command ({detail})")
    if isinstance(
        exc,
        (
            rex.ConnectionError,  # also BusyLoadingError (LOADING) and MaxConnectionsError
            rex.TimeoutError,
            rex.ClusterDownError,  # also MasterDownError
            rex.TryAgainError,
            rex.ClusterError,
            rex.ReadOnlyError,  # a replica during failover
            rex.SlotNotCoveredError,
            OSError,
            asyncio.TimeoutError,
        ),
    ):
        return TransientError(f"{where}: redis is unreachable or busy ({detail})")
    if isinstance(exc, rex.DataError):
        return InvalidArgumentError(f"{where}: {detail}")
    if isinstance(exc, rex.ResponseError) and str(exc).startswith("WRONGTYPE"):
        return StorageError(f"{where}: the key holds a Redis value that is not a string, so it is not an object")
    if isinstance(exc, rex.OutOfMemoryError):
        return StorageError(f"{where}: redis is out of memory (maxmemory reached) ({detail})")
    if isinstance(exc, (rex.RedisError, rex.RedisClusterException)):
        return StorageError(f"{where}: {detail}")
    return None


def _raise_mapped(op: str, ref: str) -> NoReturn:
    """Re-raise the exception being handled (call it from an ``except`` block), mapped.

    The operations apply ``map_exceptions`` only once something failed: entering it costs about
    as much as the rest of the store's own work on a small SET, and nothing on success is lost.
    """
    with map_exceptions(functools.partial(_map_error, op, ref)):
        raise  # the exception the caller is handling


@functools.lru_cache(maxsize=4096)
def _sized(size: int) -> Metadata:
    """``Metadata`` of an existing object of ``size`` bytes. Shared: it is immutable, and building
    a frozen dataclass costs more than a small GET's parsing."""
    return Metadata(exists=True, size=size)


# ---------------------------------------------------------------------------------------------
# Addresses


def _parse_addr(addr: str, field: str) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]`` -> (host, port)."""
    text = addr.strip()
    if "@" in text:  # not quoted: it may hold a password
        raise ConfigError(field, "expected host:port; credentials go in username and password, not the address")
    if not text or "/" in text:
        raise ConfigError(field, f"expected host:port (e.g. 127.0.0.1:6379), got [{addr}]")
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if end < 0 or not host or (rest and not rest.startswith(":")):
            raise ConfigError(field, f"expected [ipv6]:port, got [{addr}]")
        port_text = rest[1:] if rest else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
        if ":" in host:
            raise ConfigError(field, f"an IPv6 address needs brackets: [{host}]:{port_text or DEFAULT_PORT}")
        if not host:
            raise ConfigError(field, f"expected host:port, got [{addr}]")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(field, f"invalid port [{port_text}] in [{addr}]")
    return host, int(port_text)


# ---------------------------------------------------------------------------------------------
# The store


class RedisStore(BaseStore):
    """Objects as Redis strings on one server (``addr``) or a Redis Cluster (several ``addrs``).

    ``pool_size`` bounds the connections per server; operations beyond it wait for a free one.
    ``timeout`` (seconds, None for none) bounds connecting and each socket read or write.
    ``retry`` replaces redis-py's default retry policy (10 retries with jittered backoff on
    connection errors and timeouts); ``from_config`` keeps one immediate retry only, as the
    DataStore's ``retries`` apply. ``client_options`` go to the redis-py client unchanged
    (``ssl=True`` and friends).
    """

    schemes = BY_KIND["redis"].schemes
    #: The largest value a write accepts (Redis' own limit); a test may lower it on an instance.
    max_value_size = REDIS_MAX_VALUE

    def __init__(
        self,
        addr: str = "",
        *,
        addrs: Sequence[str] = (),
        username: str = "",
        password: str = "",
        db: int = 0,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float | None = None,
        retry: Retry | None = None,
        client_options: Mapping[str, Any] | None = None,
        field: str = "redis",
    ) -> None:
        if isinstance(addrs, str):
            addrs = [part for part in addrs.split(",") if part.strip()]
        if addr and addrs:
            raise ConfigError(f"{field}.addrs", "set either addr (one server) or addrs (a cluster), not both")
        names = [a.strip() for a in ([addr] if addr else addrs)]
        if not names:
            raise ConfigError(f"{field}.addr", "the redis backend needs a server address (addr) or addrs")
        key = "addr" if addr else "addrs"
        self._nodes = [_parse_addr(name, f"{field}.{key}") for name in names]
        self._cluster = len(self._nodes) > 1
        if self._cluster and db:
            raise ConfigError(f"{field}.db", "Redis Cluster has only database 0")
        if isinstance(db, bool) or not isinstance(db, int) or db < 0:
            raise ConfigError(f"{field}.db", f"expected a non-negative integer, got {db!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size <= 0:
            raise ConfigError(f"{field}.pool_size", f"expected a positive integer, got {pool_size!r}")
        super().__init__(container=names[0], multicontainer=True)
        #: Every configured "host:port": references naming one of them are not a mismatch.
        self._addrs = frozenset(names)
        self._username = username or None
        self._password = password or None
        self._db = db
        self._pool_size = pool_size
        self._timeout = timeout
        self._retry = retry
        self._client_options = dict(client_options or {})
        self._client: _Client | None = None
        self._slots: asyncio.Semaphore | None = None
        self._warned = False
        #: False once the server said it has no COPY (Redis < 6.2): copies fall back to GET + SET.
        self._has_copy = True

    def __repr__(self) -> str:
        which = f"addrs={sorted(self._addrs)!r}" if self._cluster else f"addr={self.container!r}"
        return f"RedisStore({which}, db={self._db})"

    @property
    def base_container(self) -> DataReference:
        return DataReference(f"redis://{self.container}")

    @property
    def client(self) -> _Client:
        """The redis-py client (``redis.asyncio.Redis`` or ``RedisCluster``) while the store is open."""
        return self._open()[0]

    def _open(self) -> tuple[_Client, asyncio.Semaphore]:
        client, slots = self._client, self._slots
        if client is None or slots is None:
            raise StorageError("the RedisStore is not open: use `async with store` or `await store.open()`")
        return client, slots

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the client; connections are made on first use (as go-redis does)."""
        if self._client is not None:
            return
        options: dict[str, Any] = {
            "username": self._username,
            "password": self._password,
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "max_connections": self._pool_size,
            **self._client_options,
            "decode_responses": False,  # values are bytes, whatever client_options say
        }
        if self._retry is not None:
            options["retry"] = self._retry
        if self._cluster:
            nodes = [ClusterNode(host, port) for host, port in self._nodes]
            self._client = RedisCluster(startup_nodes=nodes, **options)
        else:
            host, port = self._nodes[0]
            self._client = aioredis.Redis(host=host, port=port, db=self._db, **options)
        # redis-py's pool raises when it runs out of connections; waiting here instead makes a
        # burst of operations queue, as go-redis' pool does. Cheaper than BlockingConnectionPool.
        self._slots = asyncio.Semaphore(self._pool_size)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- references -----------------------------------------------------------------------------
    def locate(self, ref: str, *, allow_empty_key: bool = False) -> tuple[str, str]:
        container, key = super().locate(ref, allow_empty_key=allow_empty_key)
        if container and not self._warned and container not in self._addrs:
            self._warned = True
            logger.warning(
                "redis reference host [%s] differs from the configured redis address [%s]; the configured "
                "address is authoritative (further mismatches will not be logged)",
                container,
                self.container,
            )
        return container, key

    def _key(self, ref: str) -> str:
        return self.locate(ref)[1]

    # -- reads ----------------------------------------------------------------------------------
    async def head(self, ref: str) -> Metadata:
        key = self._key(ref)
        client, slots = self._open()
        async with slots:
            try:
                pipe = client.pipeline(transaction=False)
                pipe.exists(key)
                pipe.strlen(key)
                exists, size = await pipe.execute()
            except Exception:
                _raise_mapped("head", ref)
        return _sized(size) if exists else Metadata.missing()

    async def read_raw(self, ref: str, offset: int = 0, length: int | None = None) -> ByteStream:
        return ByteStream.from_bytes(await self._fetch(ref, offset, length, None))

    async def read_bytes(
        self, ref: str, offset: int = 0, length: int | None = None, max_size: int | None = None
    ) -> bytes:
        return await self._fetch(ref, offset, length, max_size or None)

    async def _fetch(self, ref: str, offset: int, length: int | None, max_size: int | None) -> bytes:
        """The value (or a range of it) in one round trip in the common cases.

        Ranges use GETRANGE, whose end is inclusive. With ``max_size``, at most ``max_size + 1``
        bytes are transferred, so an oversized value is refused without being downloaded. An
        empty answer is ambiguous (GETRANGE of a missing key is ""), so only then EXISTS decides.
        """
        check_range(offset, length)
        key = self._key(ref)
        client, slots = self._open()
        async with slots:
            try:
                if max_size is None and not offset and length is None:
                    data = await client.get(key)
                    if data is None:
                        raise NotFoundError(f"object [{_safe(ref)}] does not exist")
                    return cast(bytes, data)
                want = length
                if max_size is not None and (want is None or want > max_size):
                    want = max_size + 1
                if want is None:
                    data = await client.getrange(key, offset, -1)
                else:
                    data = await client.getrange(key, offset, offset + want - 1) if want else b""
                if not data and not await client.exists(key):
                    raise NotFoundError(f"object [{_safe(ref)}] does not exist")
                if max_size is not None and len(data) > max_size:
                    size = max(0, await client.strlen(key) - offset)
                    raise ExceedsLimitError(size if length is None else min(size, length), max_size, _safe(ref))
            except Exception:
                _raise_mapped("read", ref)
        return cast(bytes, data)

    # -- writes ---------------------------------------------------------------------------------
    async def write_raw(
        self, ref: str, data: Payload, size: int | None = None, options: Options | None = None
    ) -> Metadata:
        key = self._key(ref)
        client, slots = self._open()
        opts = options or DEFAULT_OPTIONS
        cap = self.max_value_size
        try:
            body = await read_payload(data, size, limit=cap)
        except InvalidArgumentError as err:  # also SizeMismatchError: say which write failed
            raise type(err)(f"cannot write [{_safe(ref)}]: {err}") from err
        async with slots:
            try:
                if opts.if_not_exists:
                    if not await client.set(key, body, nx=True):
                        raise AlreadyExistsError(f"object [{_safe(ref)}] already exists")
                else:
                    await client.set(key, body)
            except Exception:
                _raise_mapped("write", ref)
        return _sized(len(body))

    async def delete(self, ref: str) -> None:
        key = self._key(ref)
        client, slots = self._open()
        async with slots:
            try:
                deleted = await client.delete(key)
            except Exception:
                _raise_mapped("delete", ref)
        if not deleted:
            raise NotFoundError(f"object [{_safe(ref)}] does not exist")

    async def copy_raw(self, src: str, dst: str, *, options: Options | None = None) -> Metadata:
        """Server-side ``COPY`` (``REPLACE`` unless ``if_not_exists``); options other than
        ``if_not_exists`` are ignored. Keys in different cluster slots, and servers older than
        Redis 6.2, copy by GET + SET from this client instead."""
        src_key, dst_key = self._key(src), self._key(dst)
        client, slots = self._open()
        create_only = (options or DEFAULT_OPTIONS).if_not_exists
        async with slots:
            try:
                if src_key == dst_key:  # COPY refuses it; a copy onto itself changes nothing
                    size = await self._size(client, src_key)
                    if size is None:
                        raise NotFoundError(f"copy source [{_safe(src)}] does not exist")
                    if create_only:
                        raise AlreadyExistsError(f"object [{_safe(dst)}] already exists")
                    return _sized(size)
                if self._has_copy and (not self._cluster or key_slot(src_key.encode()) == key_slot(dst_key.encode())):
                    try:
                        return await self._server_copy(client, src, dst, src_key, dst_key, create_only)
                    except rex.ResponseError as err:
                        if "unknown command" not in str(err).lower():
                            raise
                        self._has_copy = False
                data = await client.get(src_key)
                if data is None:
                    raise NotFoundError(f"copy source [{_safe(src)}] does not exist")
                if not await client.set(dst_key, data, nx=create_only):
                    raise AlreadyExistsError(f"object [{_safe(dst)}] already exists")
                return _sized(len(data))
            except Exception:
                _raise_mapped("copy", f"{src}] to [{dst}")

    async def _server_copy(
        self, client: _Client, src: str, dst: str, src_key: str, dst_key: str, create_only: bool
    ) -> Metadata:
        # One round trip; MULTI (single server) makes the reported size the copied one.
        pipe = client.pipeline(transaction=not self._cluster)
        pipe.copy(src_key, dst_key, replace=not create_only)
        pipe.strlen(dst_key)
        copied, size = await pipe.execute()
        if copied:
            return _sized(size)
        # Nothing copied: the source is missing, or (create-only) the destination exists.
        if not create_only or not await client.exists(src_key):
            raise NotFoundError(f"copy source [{_safe(src)}] does not exist")
        raise AlreadyExistsError(f"object [{_safe(dst)}] already exists")

    @staticmethod
    async def _size(client: _Client, key: str) -> int | None:
        pipe = client.pipeline(transaction=False)
        pipe.exists(key)
        pipe.strlen(key)
        exists, size = await pipe.execute()
        return int(size) if exists else None

    # -- listing --------------------------------------------------------------------------------
    async def _list_entries(
        self, container: str, prefix: str, max_items: int, cursor: Cursor
    ) -> tuple[list[ListEntry], Cursor]:
        """A full SCAN of the prefix, sorted, then one page of it (as Flyte does: SCAN's cursor
        cannot be resumed in key order). The cursor is the last key returned, so pages stay
        stable while keys come and go: the next page starts strictly after it."""
        after: str | None = None
        if not cursor.is_start():
            if not isinstance(cursor.position, str):
                raise InvalidArgumentError(f"invalid redis list cursor [{cursor.position!r}]")
            after = cursor.position
        client, slots = self._open()
        async with slots:
            try:
                found: set[bytes] = set()
                # TYPE string: other kinds of values sharing the keyspace are not objects.
                async for raw in client.scan_iter(match=_glob_escape(prefix) + "*", count=SCAN_COUNT, _type="string"):
                    found.add(raw)
                keys = sorted(_decoded(found))
                start = bisect.bisect_right(keys, after) if after is not None else 0
                page = keys[start : start + max_items]
                sizes = await self._sizes(client, page)
            except Exception:
                _raise_mapped("list", self.make_ref(self.container, prefix))
        entries = [
            ListEntry(self.make_ref(self.container, key), size)
            for key, size in zip(page, sizes, strict=True)
            if size is not None
        ]
        more = start + max_items < len(keys)
        return entries, (Cursor.at(page[-1]) if more and page else Cursor.end())

    @staticmethod
    async def _sizes(client: _Client, keys: list[str]) -> list[int | None]:
        """STRLEN of each key (one round trip); None for keys deleted since the SCAN."""
        if not keys:
            return []
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
        sizes: list[int | None] = list(await pipe.execute(raise_on_error=False))
        for i, size in enumerate(sizes):
            if not isinstance(size, int):
                sizes[i] = None  # no longer a string (replaced by another kind of value)
        # STRLEN of a missing key is 0, like an empty value: only those need a second look.
        empty = [i for i, size in enumerate(sizes) if size == 0]
        if empty:
            pipe = client.pipeline(transaction=False)
            for i in empty:
                pipe.exists(keys[i])
            for i, exists in zip(empty, await pipe.execute(), strict=True):
                if not exists:
                    sizes[i] = None
        return sizes

    # -- signed URLs ----------------------------------------------------------------------------
    async def create_signed_url(self, ref: str, props: SignedURLProperties) -> SignedURLResponse:
        self.locate(ref)
        raise UnsupportedError("signed URLs are unsupported by redis storage")


def _decoded(keys: set[bytes]) -> list[str]:
    """Keys as text; a key that is not UTF-8 cannot be named by a reference, so it is skipped."""
    out = []
    for raw in keys:
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out


# ---------------------------------------------------------------------------------------------
# Configuration

#: Keys the registry adds to ``settings`` for a lazily routed reference.
_REF_HOST = "__ref_host__"
_REF = "__ref__"


def from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> RedisStore:
    """Build a RedisStore from a Config.

    The primary (``type: redis``) uses ``config.redis``. A lazily routed ``redis://`` reference
    (``settings`` carries its host) uses, in order: ``schemes.redis.redis`` when it names an
    address, the top-level ``redis`` when it does, else the reference's host, with the
    credentials of whichever of the two sections is given. ``container`` does not apply: the
    server address is the container. The pool size and timeout come from ``defaultHttpClient``.
    """
    lazy = _REF_HOST in settings
    unknown = sorted(k for k in settings if k not in (_REF_HOST, _REF))
    if unknown:
        raise ConfigError(
            f"{field}.{unknown[0]}",
            "unknown key: the redis backend is configured by the `redis` section (addr, addrs, username, "
            "password, db), or `schemes.redis.redis` for lazily routed references",
        )
    section, cfg = _redis_section(config, lazy)
    if lazy and not (cfg.addr or cfg.addrs):
        host = settings.get(_REF_HOST, "")
        if not host:
            ref = settings.get(_REF, "redis:///...")
            raise ConfigError(
                "redis.addr",
                f"cannot resolve a redis address for reference [{_safe(ref)}]: set redis.addr or include a host "
                "in the reference",
            )
        addr, addrs = host, []
    else:
        addr, addrs = cfg.addr, list(cfg.addrs)
    if len(addrs) == 1 and not addr:
        addr, addrs = addrs[0], []  # one address is one server, not a cluster
    http = http_settings(config)
    return RedisStore(
        addr,
        addrs=addrs,
        username=cfg.username,
        password=cfg.password,
        db=cfg.db,
        pool_size=http.pool_size,
        timeout=http.timeout,
        # A store built from a config sits under the DataStore's ResilientStore, which retries per
        # the config's ``retries`` section; redis-py keeps one immediate retry, which moves a command
        # off a pooled connection found dead (as HTTP clients resend on a stale keep-alive one).
        retry=Retry(NoBackoff(), 1),
        field=section,
    )


def _redis_section(config: Config, lazy: bool) -> tuple[str, RedisConfig]:
    """The redis settings that apply, and their config path (for error messages)."""
    top = config.redis
    if not lazy:
        return "redis", top
    override = config.schemes.get("redis")
    mine = override.redis if override is not None else None
    if mine is not None and (mine.addr or mine.addrs):
        return "schemes.redis.redis", mine
    if top.addr or top.addrs:
        return "redis", top
    if mine is not None:
        return "schemes.redis.redis", mine
    return "redis", top
