"""Configuration: Flyte's ``storage:`` section as validated dataclasses, and its loaders.

``Config`` accepts Flyte's own YAML section unchanged (``enable-multicontainer``,
``limits.maxDownloadMBs``, ``defaultHttpClient``, ``signedUrl`` ...) and snake_case equivalents,
from a dict, a YAML file or the environment. Every key spelling is listed in an explicit alias
table per section, so an unknown key is an error naming it instead of a silently ignored typo.
Invalid values fail at construction with a ``ConfigError`` naming the dotted field, in Flyte's
spelling. Secrets are masked in ``repr`` and never quoted in error messages.

The defaults are Go's ``defaultConfig``: type ``stow``, ``stow.kind: s3`` with
``{region: us-east-1}``, ``limits.maxDownloadMBs: 2``, 1024 idle connections and a 90s idle timeout.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml

from .backends import BACKENDS, KINDS
from .errors import SECRET_HEADERS, ConfigError, InvalidArgumentError
from .retry import DEFAULT_RETRIES

__all__ = [
    "KINDS",
    "SECRET_KEYS",
    "TYPES",
    "CacheConfig",
    "Config",
    "HttpClientConfig",
    "LimitsConfig",
    "RetriesConfig",
    "RedisConfig",
    "SchemeConfig",
    "SignedURLConfig",
    "StowConfig",
    "parse_duration",
]


#: The values ``type`` may take (Go's ``Type`` enum).
TYPES: tuple[str, ...] = ("mem", "s3", "local", "minio", "stow", "redis")

#: Config keys whose values are masked in ``repr`` (matched case-insensitively, in any config map).
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "secret_key",
        "key",
        "json",
        "password",
        "sas_token",
        "connection_string",
        "token",
        "account_key",
        "session_token",
        "secret_access_key",
        "client_secret",
        "access_token",
        "api_key",
    }
)
_MASK = "***"

_STOW_KINDS = tuple(b.kind for b in BACKENDS if b.stow)
# Stow kinds Flyte's Go code knows but this library has no backend for.
_UNSUPPORTED_STOW_KINDS = ("oracle", "swift")
_NEEDS_CONTAINER = ("s3", "minio", "local", "stow")
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*\Z")


class _DefaultStr(str):
    """A default value that was not given explicitly; equal to (and hashed like) the plain string.

    ``type: local`` serves the local kind unless ``stow.kind`` was set on purpose, but ``stow.kind``
    defaults to ``s3`` as in Go; the marker tells the two apart and survives ``dataclasses.replace``.
    """

    __slots__ = ()


_DEFAULT_KIND = _DefaultStr("s3")
_DEFAULT_REGION = "us-east-1"


def _default_stow_config() -> dict[str, str]:
    return {"region": _DEFAULT_REGION}


def _mask_map(values: Mapping[str, Any], secret_keys: frozenset[str] = SECRET_KEYS) -> dict[str, Any]:
    return {k: (_MASK if str(k).lower() in secret_keys else v) for k, v in values.items()}


def _repr(obj: object, values: Mapping[str, Any]) -> str:
    inner = ", ".join(f"{name}={value!r}" for name, value in values.items())
    return f"{type(obj).__name__}({inner})"


# --------------------------------------------------------------------------------------------
# Sections


@dataclass(repr=False)
class StowConfig:
    """``stow``: the primary backend's kind and its settings (Go's ``map[string]string``)."""

    kind: str = _DEFAULT_KIND
    config: dict[str, str] = field(default_factory=_default_stow_config)

    @property
    def kind_explicit(self) -> bool:
        """Whether ``kind`` was given, rather than left at Go's default ``s3``."""
        return not isinstance(self.kind, _DefaultStr)

    def __repr__(self) -> str:
        return _repr(self, {"kind": self.kind, "config": _mask_map(self.config)})


@dataclass
class CacheConfig:
    """``cache``: the in-memory read cache; ``max_size_mbs: 0`` disables it."""

    max_size_mbs: int = 0
    target_gc_percent: int = 0


@dataclass
class LimitsConfig:
    """``limits``: ``maxDownloadMBs`` caps what a read accepts, in MiB; 0 means unlimited.

    ``maxConcurrentOperations`` (a flytestore addition) bounds the operations of one DataStore in
    flight at once, across every backend, so a burst cannot exhaust sockets or server limits;
    0 means unbounded. ``copySplitThresholdMBs`` (also an addition): a copy from an object store
    (S3, GCS, Azure) to another backend reads objects at least this large as parallel ranged
    reads; 0 disables it (emulators such as moto read the whole object for every range).
    """

    max_download_mbs: int = 2
    max_concurrent_operations: int = 1024
    copy_split_threshold_mbs: int = 64


@dataclass
class RetriesConfig:
    """``retries`` (a flytestore addition): transient failures (timeouts, throttling, 5xx, dropped
    connections) are retried with exponential backoff and full jitter; never a 4xx.

    ``maxAttempts`` counts the first try (1 disables retries); no retry starts once
    ``totalTimeout`` has passed since the first failure (0: no time budget). Delays are seconds or
    Go durations (``100ms``). The defaults are ``retry.DEFAULT_RETRIES``'s, the library's only ones.
    These retries are the only ones: every DataStore call, and every object of ``copy_many`` and
    ``sync``, makes at most ``maxAttempts`` attempts.
    """

    max_attempts: int = DEFAULT_RETRIES.attempts
    base_delay: float = DEFAULT_RETRIES.base_delay
    max_delay: float = DEFAULT_RETRIES.max_delay
    total_timeout: float = DEFAULT_RETRIES.total_timeout or 0.0


@dataclass(repr=False)
class RedisConfig:
    """``redis``: one server (``addr``) or a cluster (``addrs``)."""

    addr: str = ""
    addrs: list[str] = field(default_factory=list)
    username: str = ""
    password: str = ""
    db: int = 0

    def __repr__(self) -> str:
        return _repr(
            self,
            {
                "addr": self.addr,
                "addrs": self.addrs,
                "username": self.username,
                "password": _MASK if self.password else "",
                "db": self.db,
            },
        )


@dataclass(repr=False)
class SchemeConfig:
    """``schemes.<scheme>``: kind and settings of a lazily created secondary backend."""

    kind: str = ""
    config: dict[str, str] = field(default_factory=dict)
    redis: RedisConfig | None = None

    def __repr__(self) -> str:
        return _repr(self, {"kind": self.kind, "config": _mask_map(self.config), "redis": self.redis})


@dataclass(repr=False)
class HttpClientConfig:
    """``defaultHttpClient``: headers and connection pool; durations are seconds (0 = none/default)."""

    headers: dict[str, list[str]] = field(default_factory=dict)
    timeout: float = 0.0
    max_idle_conns: int = 1024
    max_idle_conns_per_host: int = 1024
    max_conns_per_host: int = 0
    idle_conn_timeout: float = 90.0

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["headers"] = {k: ([_MASK] if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()}
        return _repr(self, values)


@dataclass(repr=False)
class SignedURLConfig:
    """``signedUrl``: keys merged over ``stow.config`` for a second location used to sign URLs."""

    stow_config_override: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _repr(self, {"stow_config_override": _mask_map(self.stow_config_override)})


# --------------------------------------------------------------------------------------------
# Key spellings. Each section maps every accepted spelling to its attribute; the first spelling
# of an attribute is Flyte's, and is the one error messages use.

_STR = "str"  # a string leaf: kept verbatim from the environment
_VALUE = "value"  # any other leaf: parsed as a YAML scalar from the environment
_STRMAP = "strmap"  # free keys, string values (stow.config and friends)
_HEADERS = "headers"  # free keys, string or list values
_SCHEMES = "schemes"  # free keys (scheme names), each a scheme section


@dataclass(frozen=True)
class _Section:
    keys: Mapping[str, str]
    nodes: Mapping[str, _Node]

    def display(self, attr: str) -> str:
        return next(k for k, a in self.keys.items() if a == attr)

    def valid_keys(self) -> str:
        parts = []
        for attr in self.nodes:
            names = [k for k, a in self.keys.items() if a == attr]
            parts.append(names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))
        return ", ".join(parts)

    def lookup_ci(self, name: str) -> str | None:
        wanted = name.lower().replace("-", "_")
        for key, attr in self.keys.items():
            if key.lower().replace("-", "_") == wanted:
                return attr
        return None


_Node: TypeAlias = "str | _Section"


def _section(*entries: tuple[tuple[str, ...], str, _Node]) -> _Section:
    keys: dict[str, str] = {}
    nodes: dict[str, _Node] = {}
    for spellings, attr, node in entries:
        for spelling in spellings:
            keys[spelling] = attr
        nodes[attr] = node
    return _Section(keys, nodes)


_REDIS = _section(
    (("addr",), "addr", _STR),
    (("addrs",), "addrs", _VALUE),
    (("username",), "username", _STR),
    (("password",), "password", _STR),
    (("db",), "db", _VALUE),
)
_STOW = _section((("kind",), "kind", _STR), (("config",), "config", _STRMAP))
_CACHE = _section(
    (("max_size_mbs", "maxSizeMbs"), "max_size_mbs", _VALUE),
    (("target_gc_percent", "targetGcPercent"), "target_gc_percent", _VALUE),
)
_LIMITS = _section(
    (("maxDownloadMBs", "max_download_mbs"), "max_download_mbs", _VALUE),
    (("maxConcurrentOperations", "max_concurrent_operations"), "max_concurrent_operations", _VALUE),
    (("copySplitThresholdMBs", "copy_split_threshold_mbs"), "copy_split_threshold_mbs", _VALUE),
)
_RETRIES = _section(
    (("maxAttempts", "max_attempts"), "max_attempts", _VALUE),
    (("baseDelay", "base_delay"), "base_delay", _VALUE),
    (("maxDelay", "max_delay"), "max_delay", _VALUE),
    (("totalTimeout", "total_timeout"), "total_timeout", _VALUE),
)
_SCHEME = _section(
    (("kind",), "kind", _STR),
    (("config",), "config", _STRMAP),
    (("redis",), "redis", _REDIS),
)
_HTTP = _section(
    (("headers",), "headers", _HEADERS),
    (("timeout",), "timeout", _VALUE),
    (("maxIdleConns", "max_idle_conns"), "max_idle_conns", _VALUE),
    (("maxIdleConnsPerHost", "max_idle_conns_per_host"), "max_idle_conns_per_host", _VALUE),
    (("maxConnsPerHost", "max_conns_per_host"), "max_conns_per_host", _VALUE),
    (("idleConnTimeout", "idle_conn_timeout"), "idle_conn_timeout", _VALUE),
)
_SIGNED = _section((("stowConfigOverride", "stow_config_override"), "stow_config_override", _STRMAP))
_TOP = _section(
    (("type",), "type", _STR),
    (("container",), "container", _STR),
    (("enable-multicontainer", "enable_multicontainer"), "enable_multicontainer", _VALUE),
    (("createContainer", "create_container"), "create_container", _VALUE),
    (("stow",), "stow", _STOW),
    (("cache",), "cache", _CACHE),
    (("limits",), "limits", _LIMITS),
    (("retries",), "retries", _RETRIES),
    (("redis",), "redis", _REDIS),
    (("schemes",), "schemes", _SCHEMES),
    (("defaultHttpClient", "default_http_client"), "default_http_client", _HTTP),
    (("signedUrl", "signed_url"), "signed_url", _SIGNED),
    (("local",), "local", _STRMAP),
)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: object) -> str:
    return type(value).__name__


def _canon(raw: object, section: _Section, path: str) -> dict[str, Any]:
    """Rename every key of a (nested) section to its attribute name; ``None`` values are dropped.

    Only keys are checked here; values are validated when the dataclasses are built.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path or "storage", f"expected a mapping, got {_type_name(raw)}")
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in raw.items():
        attr = section.keys.get(key) if isinstance(key, str) else None
        if attr is None:
            hint = (
                " (a whole Flyte config file must put this section under a top-level `storage:` key)"
                if not path
                else ""
            )
            raise ConfigError(_join(path, str(key)), f"unknown key; valid keys: {section.valid_keys()}{hint}")
        if attr in given_as:
            raise ConfigError(_join(path, section.display(attr)), f"given twice, as [{given_as[attr]}] and [{key}]")
        given_as[attr] = str(key)
        if value is None:
            continue
        node = section.nodes[attr]
        child_path = _join(path, section.display(attr))
        if isinstance(node, _Section) and isinstance(value, Mapping):
            value = _canon(value, node, child_path)
        elif node == _SCHEMES and isinstance(value, Mapping):
            value = {
                name: (_canon(entry, _SCHEME, _join(child_path, str(name))) if isinstance(entry, Mapping) else entry)
                for name, entry in value.items()
            }
        out[attr] = value
    return out


# --------------------------------------------------------------------------------------------
# Value validation. Messages quote values only for fields that cannot hold a secret.


def _as_str(value: object, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(path, f"expected a string, got {_type_name(value)}")


def _as_int(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    else:
        raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
    if number < 0:
        raise ConfigError(path, f"must not be negative, got {number}")
    return number


#: The words a boolean setting may be (any case), here and in every backend's settings.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def _as_bool(value: object, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ConfigError(path, f"expected a boolean (true or false), got {value!r}")


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds, a ``timedelta`` or a Go duration string (``1m30s``, ``500ms``).

    Raises ``ValueError`` for anything else, including negative durations.
    """
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_go_duration(value.strip())
    else:
        raise ValueError(f"expected a duration, got {_type_name(value)}")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration [{value!r}]")
    if seconds < 0:
        raise ValueError(f"must not be negative, got [{value!r}]")
    return seconds


def _parse_go_duration(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(
            f"invalid duration [{text}]: expected seconds as a number or a Go duration such as "
            "'90s', '1m30s', '500ms' or '2h'"
        )
    return sign * total


def _as_duration(value: object, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise ConfigError(path, str(err)) from None


def _scalar_str(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _as_strmap(value: object, path: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping of strings, got {_type_name(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        name = _scalar_str(key)
        if name is None:
            raise ConfigError(path, f"expected string keys, got {_type_name(key)}")
        if item is None:
            continue
        text = _scalar_str(item)
        if text is None:
            raise ConfigError(_join(path, name), f"expected a string value, got {_type_name(item)}")
        out[name] = text
    return out


def _as_headers(value: object, path: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping of header names to values, got {_type_name(value)}")
    out: dict[str, list[str]] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(path, f"expected non-empty string header names, got {_type_name(key)}")
        items = item if isinstance(item, (list, tuple)) else [item]
        values = []
        for one in items:
            text = _scalar_str(one)
            if text is None:
                raise ConfigError(_join(path, key), f"expected a string or a list of strings, got {_type_name(one)}")
            values.append(text)
        out[key] = values
    return out


def _as_addrs(value: object, path: str) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [_as_str(item, path) for item in value]
    raise ConfigError(path, f"expected a list of host:port strings, got {_type_name(value)}")


def _fields_of(value: object, cls: type[Any], section: _Section, path: str) -> dict[str, Any]:
    if isinstance(value, cls):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return _canon(value, section, path)


def _build_stow(value: object, path: str = "stow") -> StowConfig:
    raw = _fields_of(value, StowConfig, _STOW, path)
    kind = raw.get("kind", _DEFAULT_KIND)
    if not isinstance(kind, _DefaultStr):
        kind = _as_str(kind, _join(path, "kind"))
    config = _as_strmap(raw["config"], _join(path, "config")) if "config" in raw else _default_stow_config()
    return StowConfig(kind=kind, config=config)


def _build_cache(value: object, path: str = "cache") -> CacheConfig:
    raw = _fields_of(value, CacheConfig, _CACHE, path)
    return CacheConfig(**{attr: _as_int(v, _join(path, _CACHE.display(attr))) for attr, v in raw.items()})


def _build_limits(value: object, path: str = "limits") -> LimitsConfig:
    raw = _fields_of(value, LimitsConfig, _LIMITS, path)
    return LimitsConfig(**{attr: _as_int(v, _join(path, _LIMITS.display(attr))) for attr, v in raw.items()})


def _build_retries(value: object, path: str = "retries") -> RetriesConfig:
    raw = _fields_of(value, RetriesConfig, _RETRIES, path)
    out: dict[str, Any] = {}
    for attr, item in raw.items():
        where = _join(path, _RETRIES.display(attr))
        out[attr] = _as_int(item, where) if attr == "max_attempts" else _as_duration(item, where)
    if out.get("max_attempts") == 0:
        raise ConfigError(_join(path, "maxAttempts"), "must be at least 1 (1 disables retries)")
    return RetriesConfig(**out)


def _build_redis(value: object, path: str) -> RedisConfig:
    raw = _fields_of(value, RedisConfig, _REDIS, path)
    out: dict[str, Any] = {}
    for attr, item in raw.items():
        where = _join(path, attr)
        if attr == "addrs":
            out[attr] = _as_addrs(item, where)
        elif attr == "db":
            out[attr] = _as_int(item, where)
        else:
            out[attr] = _as_str(item, where)
    return RedisConfig(**out)


def _build_scheme(value: object, path: str) -> SchemeConfig:
    if value is None:
        return SchemeConfig()
    raw = _fields_of(value, SchemeConfig, _SCHEME, path)
    kind = _as_str(raw.get("kind", ""), _join(path, "kind"))
    if kind and kind not in KINDS:
        raise ConfigError(_join(path, "kind"), f"unknown kind [{kind}]; valid kinds: {', '.join(KINDS)}")
    config = _as_strmap(raw.get("config", {}), _join(path, "config"))
    redis = raw.get("redis")
    return SchemeConfig(
        kind=kind, config=config, redis=None if redis is None else _build_redis(redis, _join(path, "redis"))
    )


def _build_schemes(value: object, path: str = "schemes") -> dict[str, SchemeConfig]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping of scheme names, got {_type_name(value)}")
    out: dict[str, SchemeConfig] = {}
    for name, entry in value.items():
        if not isinstance(name, str):
            raise ConfigError(path, f"expected scheme names as strings, got {_type_name(name)}")
        scheme = name.strip().lower()
        where = _join(path, scheme)
        if not _SCHEME_RE.match(scheme):
            raise ConfigError(where, f"[{name}] is not a valid URL scheme")
        if scheme in out:
            raise ConfigError(where, "scheme given twice (scheme names are case-insensitive)")
        out[scheme] = _build_scheme(entry, where)
    return out


def _build_http(value: object, path: str = "defaultHttpClient") -> HttpClientConfig:
    raw = _fields_of(value, HttpClientConfig, _HTTP, path)
    out: dict[str, Any] = {}
    for attr, item in raw.items():
        where = _join(path, _HTTP.display(attr))
        if attr == "headers":
            out[attr] = _as_headers(item, where)
        elif attr in ("timeout", "idle_conn_timeout"):
            out[attr] = _as_duration(item, where)
        else:
            out[attr] = _as_int(item, where)
    return HttpClientConfig(**out)


def _build_signed(value: object, path: str = "signedUrl") -> SignedURLConfig:
    raw = _fields_of(value, SignedURLConfig, _SIGNED, path)
    override = raw.get("stow_config_override", {})
    return SignedURLConfig(stow_config_override=_as_strmap(override, _join(path, "stowConfigOverride")))


# --------------------------------------------------------------------------------------------
# The config


@dataclass(repr=False)
class Config:
    """Flyte's ``storage:`` section, validated on construction.

    Sections may be given as their dataclasses or as plain dicts in either key spelling:
    ``Config(type="mem", cache={"max_size_mbs": 1})``. ``local={"path": "/data"}`` is sugar for
    the local backend's root directory. Any invalid value raises ``ConfigError`` naming the field.
    """

    type: str = "stow"
    container: str = ""
    enable_multicontainer: bool = False
    #: flytestore's own: whether opening the store (and S3's write to a vanished bucket) creates
    #: the configured bucket/container when it is missing (Flyte's behaviour). False: nothing is
    #: ever created; an operation on a missing one is a ``NotFoundError`` that names it.
    create_container: bool = True
    stow: StowConfig = field(default_factory=StowConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    schemes: dict[str, SchemeConfig] = field(default_factory=dict)
    default_http_client: HttpClientConfig = field(default_factory=HttpClientConfig)
    signed_url: SignedURLConfig = field(default_factory=SignedURLConfig)
    local: dict[str, str] | None = None

    # Written by hand (dataclass keeps it) so that type checkers accept dicts for the sections.
    def __init__(
        self,
        *,
        type: str = "stow",
        container: str = "",
        enable_multicontainer: bool = False,
        create_container: bool = True,
        stow: StowConfig | Mapping[str, Any] | None = None,
        cache: CacheConfig | Mapping[str, Any] | None = None,
        limits: LimitsConfig | Mapping[str, Any] | None = None,
        retries: RetriesConfig | Mapping[str, Any] | None = None,
        redis: RedisConfig | Mapping[str, Any] | None = None,
        schemes: Mapping[str, SchemeConfig | Mapping[str, Any] | None] | None = None,
        default_http_client: HttpClientConfig | Mapping[str, Any] | None = None,
        signed_url: SignedURLConfig | Mapping[str, Any] | None = None,
        local: Mapping[str, Any] | None = None,
    ) -> None:
        self.type = _as_str(type, "type")
        self.container = _as_str(container, "container")
        self.enable_multicontainer = _as_bool(enable_multicontainer, "enable-multicontainer")
        self.create_container = _as_bool(create_container, "createContainer")
        self.stow = _build_stow(stow)
        self.cache = _build_cache(cache)
        self.limits = _build_limits(limits)
        self.retries = _build_retries(retries)
        self.redis = _build_redis(redis, "redis")
        self.schemes = _build_schemes(schemes)
        self.default_http_client = _build_http(default_http_client)
        self.signed_url = _build_signed(signed_url)
        self.local = None if local is None else _as_strmap(local, "local")
        for key in self.local or ():
            if key != "path":
                raise ConfigError(f"local.{key}", "unknown key for the local backend; valid keys: path")
        self.__post_init__()

    def __post_init__(self) -> None:
        """Cross-field rules (single fields were checked while normalising)."""
        if self.type not in TYPES:
            raise ConfigError("type", f"type is of an invalid value [{self.type}]; valid types: {', '.join(TYPES)}")
        kind = self.stow.kind
        if kind in _UNSUPPORTED_STOW_KINDS:
            raise ConfigError(
                "stow.kind",
                f"stow kind [{kind}] is not supported by flytestore; supported kinds: {', '.join(_STOW_KINDS)}",
            )
        if kind in ("mem", "redis"):
            raise ConfigError("stow.kind", f"[{kind}] is not a stow kind; use `type: {kind}` instead")
        if kind not in _STOW_KINDS:
            raise ConfigError("stow.kind", f"unsupported stow.kind [{kind}]; valid kinds: {', '.join(_STOW_KINDS)}")
        if self.type in ("s3", "minio") and self.stow.kind_explicit and kind != "s3":
            raise ConfigError("stow.kind", f"type [{self.type}] needs stow.kind s3, got [{kind}]")
        if self.type in _NEEDS_CONTAINER and not self.container.strip():
            raise ConfigError("container", "initContainer is required even with `enable-multicontainer`")
        if self.type == "redis" and not (self.redis.addr or self.redis.addrs):
            raise ConfigError(
                "redis.addr",
                "storage type [redis] requires redis.addr to be set (or redis.addrs for a cluster)",
            )
        if self.local is not None and self.primary_kind() != "local":
            raise ConfigError(
                "local",
                "only applies when the primary store is local (type: local, or stow.kind: local); "
                f"the primary kind is [{self.primary_kind()}]",
            )

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.local is not None:
            values["local"] = _mask_map(self.local)
        return _repr(self, values)

    # -- derived -----------------------------------------------------------------------------

    def primary_kind(self) -> str:
        """The kind of the primary backend: a key of ``KINDS``.

        ``mem`` and ``redis`` types are their own kind, ``s3``/``minio`` are ``s3``, ``stow`` is
        ``stow.kind``. ``local`` is ``local`` unless ``stow.kind`` was given explicitly (Go would
        use the default ``s3`` kind under the ``file`` scheme).
        """
        if self.type in ("mem", "redis"):
            return self.type
        if self.type in ("s3", "minio"):
            return "s3"
        if self.type == "local" and not self.stow.kind_explicit:
            return "local"
        return self.stow.kind

    def primary_scheme(self) -> str:
        """The canonical URL scheme of the primary backend (``s3``, ``gs``, ``abfs``, ``file`` ...)."""
        return KINDS[self.primary_kind()][0]

    def backend_config(self, kind: str | None = None) -> dict[str, str]:
        """A copy of the settings for a backend kind; the primary's when ``kind`` is None.

        For the primary this is ``stow.config`` (``{}`` for mem and redis, whose settings live
        elsewhere); a local primary gets ``local`` merged on top, and loses the default s3
        ``region: us-east-1``. For another kind it is the ``config`` of the ``schemes`` entry serving that
        kind, or ``{}`` (ambient credentials) when there is none.
        """
        primary = self.primary_kind()
        if kind is None or kind == primary:
            if primary in ("mem", "redis"):
                return {}
            settings = dict(self.stow.config)
            if primary == "local" and settings.get("region") == _DEFAULT_REGION:
                # Go's s3 default, meaningless to a directory.
                del settings["region"]
                settings.update(self.local or {})
            return settings
        if kind not in KINDS:
            raise InvalidArgumentError(f"unknown kind [{kind}]; valid kinds: {', '.join(KINDS)}")
        for scheme in KINDS[kind]:
            entry = self.schemes.get(scheme)
            if entry is not None and entry.kind in ("", kind):
                return dict(entry.config)
        for entry in self.schemes.values():
            if entry.kind == kind:
                return dict(entry.config)
        return {}

    def scheme_config(self, scheme: str) -> SchemeConfig | None:
        """The ``schemes`` entry for a URL scheme (case-insensitive), if any."""
        return self.schemes.get(scheme.lower())

    def with_overrides(self, **changes: Any) -> Config:
        """A validated copy with some top-level fields replaced (sections may be dicts)."""
        return dataclasses.replace(self, **changes)

    # -- loading and dumping -----------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Config:
        """Build from the ``storage:`` section, or from a whole config holding a ``storage`` key."""
        return cls(**_canon(_unwrap(data), _TOP, ""))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Config:
        """Load a YAML file holding the section itself or a whole Flyte config (``storage:`` key)."""
        return cls(**_canon(_read_yaml(path), _TOP, ""))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, prefix: str = "FLYTESTORE_") -> Config:
        """Build from environment variables.

        ``<prefix>CONFIG`` names a YAML file loaded first. Other ``<prefix>`` variables override
        single fields, with ``__`` between levels, matched case-insensitively in either key
        spelling: ``FLYTESTORE_STOW__CONFIG__ENDPOINT``, ``FLYTESTORE_LIMITS__MAXDOWNLOADMBS``,
        ``FLYTESTORE_DEFAULT_HTTP_CLIENT__TIMEOUT``. Values are YAML scalars, except strings
        (``type``, ``container``, passwords) and config-map entries, which are kept verbatim.
        """
        env = os.environ if environ is None else environ
        upper_prefix = prefix.upper()
        config_var = upper_prefix + "CONFIG"
        data: dict[str, Any] = {}
        for name, value in env.items():
            if name.upper() == config_var and value:
                data = _canon(_read_yaml(value), _TOP, "")
        for name in sorted(env):
            upper = name.upper()
            if not upper.startswith(upper_prefix) or upper == config_var:
                continue
            _apply_env(data, name, name[len(prefix) :].split("__"), env[name])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in snake_case, secrets included, that ``from_dict`` turns back into an equal Config.

        ``stow.kind`` is left out when it was never given, so that round-trips keep ``primary_kind``.
        """
        stow: dict[str, Any] = {"config": dict(self.stow.config)}
        if self.stow.kind_explicit:
            stow = {"kind": self.stow.kind, **stow}
        out: dict[str, Any] = {
            "type": self.type,
            "container": self.container,
            "enable_multicontainer": self.enable_multicontainer,
            "create_container": self.create_container,
            "stow": stow,
            "cache": dataclasses.asdict(self.cache),
            "limits": dataclasses.asdict(self.limits),
            "retries": dataclasses.asdict(self.retries),
            "redis": dataclasses.asdict(self.redis),
            "schemes": {name: _scheme_dict(entry) for name, entry in self.schemes.items()},
            "default_http_client": dataclasses.asdict(self.default_http_client),
            "signed_url": dataclasses.asdict(self.signed_url),
        }
        if self.local is not None:
            out["local"] = dict(self.local)
        return out


def _scheme_dict(entry: SchemeConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": entry.kind, "config": dict(entry.config)}
    if entry.redis is not None:
        out["redis"] = dataclasses.asdict(entry.redis)
    return out


def _unwrap(data: object) -> object:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and key.lower() == "storage":
                return value
    return data


def _read_yaml(path: str | os.PathLike[str]) -> object:
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise ConfigError(where, f"cannot read the config file: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        # The error's own text quotes the offending line, which may hold a secret.
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or "invalid YAML"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(where, f"invalid YAML: {problem}{at}") from None
    return _unwrap(data)


# --------------------------------------------------------------------------------------------
# Environment overrides


def _match_key(existing: Iterable[Any], name: str) -> str:
    for key in existing:
        if isinstance(key, str) and key.lower() == name.lower():
            return key
    return name.lower()


def _yaml_value(text: str) -> Any:
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _map_value(text: str) -> Any:
    value = _yaml_value(text)
    if isinstance(value, str) and "=" in value:
        # Go's pflag form for string maps: k=v,k2=v2
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if all(len(pair) == 2 for pair in pairs):
            return {k.strip(): v.strip() for k, v in pairs}
    return value


def _env_value(node: _Node, text: str) -> Any:
    if node == _STR:
        return text
    if node in (_STRMAP, _HEADERS):
        return _map_value(text)
    return _yaml_value(text)


def _apply_env(data: dict[str, Any], var: str, segments: list[str], text: str) -> None:
    node: _Node = _TOP
    target = data
    path = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if not segment:
            raise ConfigError(var, "empty path segment in environment variable name")
        if isinstance(node, _Section):
            attr = node.lookup_ci(segment)
            if attr is None:
                raise ConfigError(
                    _join(path, segment.lower()),
                    f"unknown key (from environment variable {var}); valid keys: {node.valid_keys()}",
                )
            path = _join(path, node.display(attr))
            child = node.nodes[attr]
            if last:
                target[attr] = _env_value(child, text)
                return
            if child in (_STR, _VALUE):
                raise ConfigError(path, f"is not a section; cannot set a key under it from {var}")
            # A single key set from the environment merges over the default map, not over nothing.
            seed = _default_stow_config() if node is _STOW and attr == "config" else {}
            target = _subdict(target, attr, path, seed)
            node = child
        elif node == _SCHEMES:
            scheme = _match_key(target, segment)
            path = _join(path, scheme)
            if last:
                target[scheme] = _yaml_value(text)
                return
            target = _subdict(target, scheme, path)
            node = _SCHEME
        else:  # a free-form map: the segment is the key
            if not last:
                raise ConfigError(_join(path, segment.lower()), f"holds plain values; {var} nests too deep")
            target[_match_key(target, segment)] = text
            return


def _subdict(target: dict[str, Any], key: str, path: str, seed: dict[str, Any] | None = None) -> dict[str, Any]:
    current = target.get(key)
    if current is None:
        current = seed if seed is not None else {}
    elif dataclasses.is_dataclass(current) and not isinstance(current, type):
        current = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    elif isinstance(current, Mapping):
        current = dict(current)
    else:
        raise ConfigError(path, f"expected a mapping, got {_type_name(current)}")
    target[key] = current
    return current
