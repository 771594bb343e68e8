"""flytestore: an asyncio storage library with the layered DataStore of Flyte's Go storage.

Everything a user needs is importable from here.
"""

from .config import Config
from .datastore import DataStore, build_stack
from .errors import (
    AlreadyExistsError,
    ConfigError,
    CorruptObjectError,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    SizeMismatchError,
    StorageError,
    TransientError,
    UnsupportedError,
    is_exceeds_limit,
    is_exists,
    is_not_found,
)
from .layers import CachedStore, InstrumentedStore, Layer, LimitedStore, ResilientStore, RoutingStore
from .layers.protobuf import ProtobufStore
from .metrics import Scope
from .rawstore import ByteStream, Cursor, ListEntry, Metadata, Options, RawStore, SignedURLProperties, SignedURLResponse
from .reference import DataReference, construct_reference
from .retry import RetryPolicy
from .stores.base import BaseStore
from .stores.local import LocalStore
from .stores.memory import MemoryStore

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "BaseStore",
    "ByteStream",
    "CachedStore",
    "Config",
    "ConfigError",
    "CorruptObjectError",
    "Cursor",
    "DataReference",
    "DataStore",
    "ExceedsLimitError",
    "InstrumentedStore",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "Layer",
    "LimitedStore",
    "ListEntry",
    "LocalStore",
    "MemoryStore",
    "Metadata",
    "NotFoundError",
    "Options",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "ProtobufStore",
    "RawStore",
    "ResilientStore",
    "RetryPolicy",
    "RoutingStore",
    "Scope",
    "SignedURLProperties",
    "SignedURLResponse",
    "SizeMismatchError",
    "StorageError",
    "TransientError",
    "UnsupportedError",
    "__version__",
    "build_stack",
    "construct_reference",
    "is_exceeds_limit",
    "is_exists",
    "is_not_found",
]
