"""Every backend described in one place: its config kind, the URL schemes it serves, the module
that implements it, the pip extra that module needs, and what the stack should know about it.

The registry (``flytestore.registry``) builds backends from these entries, the config validates
kinds against them, and each store class takes its schemes from here. A new backend is one entry
here plus its module (see ``docs/architecture.md#adding-a-backend``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKENDS", "BY_KIND", "BY_SCHEME", "KINDS", "BackendInfo"]


@dataclass(frozen=True, slots=True)
class BackendInfo:
    #: The kind a config names (``type``, ``stow.kind``, ``schemes.<s>.kind``).
    kind: str
    #: The URL schemes it serves; the first is canonical.
    schemes: tuple[str, ...]
    #: The module with the store class and its ``from_config``; imported on first use.
    module: str
    #: The pip extra that module needs (None: a core dependency).
    extra: str | None
    #: Range reads cost what they return (object stores): large copies out of it read parallel
    #: ranges, and it does I/O worth retrying and metering.
    cheap_ranges: bool = False
    #: May be the ``stow.kind`` of a primary store (Flyte's stow kinds).
    stow: bool = False
    #: Does I/O: wrapped in the resilient and instrumented layers (not the memory store).
    io: bool = True


BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("s3", ("s3",), "flytestore.stores.s3", "s3", cheap_ranges=True, stow=True),
    BackendInfo("google", ("gs",), "flytestore.stores.gcs", "gcs", cheap_ranges=True, stow=True),
    BackendInfo("azure", ("abfs", "abfss"), "flytestore.stores.azure", "azure", cheap_ranges=True, stow=True),
    BackendInfo("local", ("file",), "flytestore.stores.local", None, stow=True),
    BackendInfo("mem", ("mem",), "flytestore.stores.memory", None, io=False),
    BackendInfo("redis", ("redis",), "flytestore.stores.redis", "redis"),
)

#: kind -> its description.
BY_KIND: dict[str, BackendInfo] = {b.kind: b for b in BACKENDS}
#: scheme -> the description of the backend that serves it.
BY_SCHEME: dict[str, BackendInfo] = {scheme: b for b in BACKENDS for scheme in b.schemes}
#: kind -> the URL schemes it serves; the first is canonical.
KINDS: dict[str, tuple[str, ...]] = {b.kind: b.schemes for b in BACKENDS}
