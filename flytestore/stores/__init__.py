"""Backends and the registry that builds them from a Config, by kind and by scheme.

Kinds and their schemes come from ``config.KINDS``. Cloud backends are imported on first use, so
``pip install flytestore`` stays light; a missing client library is a ``ConfigError`` that names
the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from ..config import KINDS, Config, SchemeConfig
from ..errors import ConfigError
from ..layers.instrumented import InstrumentedStore
from ..layers.resilient import Budget, ResilientStore
from ..metrics import Scope
from ..rawstore import RawStore
from ..reference import split_reference
from ..retry import RetryPolicy
from .memory import MemoryStore

__all__ = ["SCHEME_KINDS", "MemoryStore", "SchemeFactory", "build_primary", "create_backend"]

#: scheme -> kind, the inverse of ``KINDS``.
SCHEME_KINDS: dict[str, str] = {scheme: kind for kind, schemes in KINDS.items() for scheme in schemes}

#: kind -> (module, pip extra) of the backends imported on first use.
_MODULES: dict[str, tuple[str, str]] = {
    "local": ("flytestore.stores.local", "local"),
    "s3": ("flytestore.stores.s3", "s3"),
    "google": ("flytestore.stores.gcs", "gcs"),
    "azure": ("flytestore.stores.azure", "azure"),
    "redis": ("flytestore.stores.redis", "redis"),
}


#: Kinds whose range reads cost what they return: large copies from them read parallel ranges.
_OBJECT_STORES = frozenset({"s3", "google", "azure"})


class _FromConfig(Protocol):
    """A backend module's ``from_config``. ``signed_url_override`` is ``signedUrl.stowConfigOverride``
    for the primary store and empty for lazily routed schemes (as in Flyte)."""

    def __call__(
        self,
        settings: Mapping[str, str],
        *,
        container: str,
        multicontainer: bool,
        config: Config,
        field: str,
        signed_url_override: Mapping[str, str] | None = None,
    ) -> RawStore: ...


def _builder(kind: str) -> _FromConfig:
    if kind == "mem":
        return _memory_from_config
    try:
        module_name, extra = _MODULES[kind]
    except KeyError:
        raise ConfigError("stow.kind", f"no backend for kind [{kind}]") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            "type", f"the {kind} backend needs extra packages: pip install 'flytestore[{extra}]' ({err})"
        ) from err
    builder: _FromConfig = module.from_config
    return builder


def _memory_from_config(
    settings: Mapping[str, str],
    *,
    container: str,
    multicontainer: bool,
    config: Config,
    field: str,
    signed_url_override: Mapping[str, str] | None = None,
) -> RawStore:
    return MemoryStore(container=container, multicontainer=multicontainer)


def create_backend(
    kind: str,
    settings: Mapping[str, str],
    *,
    config: Config,
    scope: Scope | None,
    container: str = "",
    multicontainer: bool = True,
    field: str = "stow.config",
    signed_url_override: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> RawStore:
    """Build (without opening) one backend. All but the memory store, which does no I/O, are
    instrumented and wrapped in a ``ResilientStore``: ``config.retries`` and ``budget`` (the stack's
    shared concurrency budget; unbounded when None)."""
    store = _builder(kind)(
        settings,
        container=container,
        multicontainer=multicontainer,
        config=config,
        field=field,
        signed_url_override=signed_url_override,
    )
    if kind == "mem":
        return store
    if scope is not None:
        store = InstrumentedStore(store, scope)
    return ResilientStore(
        store,
        budget=budget,
        retries=RetryPolicy.from_config(config.retries),
        parallel_range_reads=kind in _OBJECT_STORES,
    )


def build_primary(
    config: Config, scope: Scope | None, budget: Budget | None = None
) -> tuple[RawStore, tuple[str, ...]]:
    """The primary store of a config and the schemes it serves."""
    kind = config.primary_kind()
    store = create_backend(
        kind,
        config.backend_config(),
        config=config,
        scope=scope,
        container=config.container,
        multicontainer=config.enable_multicontainer,
        signed_url_override=config.signed_url.stow_config_override,
        budget=budget,
    )
    return store, KINDS[kind]


class SchemeFactory:
    """Builds secondary backends on first use of their scheme (Flyte's ``schemes`` section)."""

    def __init__(self, config: Config, scope: Scope | None, budget: Budget | None = None) -> None:
        self.config = config
        self.scope = scope
        self.budget = budget

    def _redis_addr_configured(self) -> bool:
        override = self.config.schemes.get("redis")
        if override is not None and override.redis is not None and (override.redis.addr or override.redis.addrs):
            return True
        return bool(self.config.redis.addr or self.config.redis.addrs)

    def cache_key(self, scheme: str, ref: str) -> str | None:
        kind = self._kind(scheme)
        if kind is None:
            return None
        if kind == "redis" and not self._redis_addr_configured():
            # One backend per reference host when no address is configured (as Flyte does).
            return f"redis://{split_reference(ref)[1]}"
        return scheme

    def _kind(self, scheme: str) -> str | None:
        override: SchemeConfig | None = self.config.schemes.get(scheme)
        if override is not None and override.kind:
            return override.kind
        return SCHEME_KINDS.get(scheme)

    async def create(self, scheme: str, ref: str) -> RawStore:
        kind = self._kind(scheme)
        if kind is None:
            raise ConfigError(f"schemes.{scheme}.kind", f"no backend kind is registered for scheme [{scheme}]")
        override = self.config.schemes.get(scheme)
        settings: dict[str, Any] = dict(override.config) if override is not None else {}
        if kind == "redis":
            settings["__ref_host__"] = split_reference(ref)[1]
        if kind == "local" and not settings.get("path"):
            raise ConfigError(
                f'schemes["{scheme}"].config["path"]',
                "the local backend needs a root path for lazily routed references",
            )
        store = create_backend(
            kind, settings, config=self.config, scope=self.scope, field=f"schemes.{scheme}.config", budget=self.budget
        )
        await store.open()
        return store
