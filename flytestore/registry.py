"""The registry: builds backends from a Config, by kind and by scheme, and wraps each one that
does I/O in the layers every backend gets (``InstrumentedStore``, ``ResilientStore``).

What backends exist, and which schemes, modules and extras they have, is ``flytestore.backends``.
Backend modules are imported on first use, so ``pip install flytestore`` stays light; a missing
client library is a ``ConfigError`` that names the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from .backends import BY_KIND, BY_SCHEME, KINDS
from .config import Config, SchemeConfig
from .errors import ConfigError
from .layers.instrumented import InstrumentedStore
from .layers.resilient import Budget, ResilientStore
from .metrics import Scope
from .rawstore import RawStore
from .reference import split_reference
from .retry import RetryPolicy

__all__ = ["SCHEME_KINDS", "SchemeFactory", "build_primary", "create_backend"]

#: scheme -> kind.
SCHEME_KINDS: dict[str, str] = {scheme: info.kind for scheme, info in BY_SCHEME.items()}


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
    info = BY_KIND.get(kind)
    if info is None:
        raise ConfigError("stow.kind", f"no backend for kind [{kind}]")
    try:
        module = importlib.import_module(info.module)
    except ImportError as err:
        install = f"pip install 'flytestore[{info.extra}]'" if info.extra else "reinstall flytestore"
        raise ConfigError("type", f"the {kind} backend needs extra packages: {install} ({err})") from err
    builder: _FromConfig = module.from_config
    return builder


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
    info = BY_KIND[kind]
    if not info.io:
        return store
    if scope is not None:
        store = InstrumentedStore(store, scope)
    return ResilientStore(
        store,
        budget=budget,
        retries=RetryPolicy.from_config(config.retries),
        parallel_range_reads=info.cheap_ranges,
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
        info = BY_SCHEME.get(scheme)
        return info.kind if info is not None else None

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
