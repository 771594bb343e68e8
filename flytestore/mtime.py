"""Modification times carried with objects, as rclone carries them.

A bulk transfer stores the source's modification time with each copy, in the user metadata key
``mtime``: seconds since the epoch as a decimal string, up to nanoseconds, trailing zeros dropped
(``"1733250000.123456789"``, ``"1733250000"``), which is what rclone writes to S3
(``X-Amz-Meta-Mtime``), GCS and Azure. Object stores keep it as metadata; the local store, which
has no metadata, sets the file's own mtime from it when it commits the file.

An object's modification time is that metadata when it has it, else its ``last_modified``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from .rawstore import ListEntry, Metadata

__all__ = ["MTIME_KEY", "Mtime", "format_mtime", "metadata_mtime", "mtime_of", "parse_mtime"]

#: The user metadata key (rclone's; S3 sends it as ``X-Amz-Meta-Mtime``).
MTIME_KEY = "mtime"

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def format_mtime(ns: int) -> str:
    """``ns`` nanoseconds since the epoch as rclone writes it: ``"<s>.<fraction>"``, no trailing zeros."""
    seconds, nanos = divmod(ns, _NS)
    return str(seconds) if nanos == 0 else f"{seconds}.{nanos:09d}".rstrip("0")


def parse_mtime(text: str) -> int | None:
    """Nanoseconds since the epoch of an ``mtime`` value; None when it is not a finite decimal."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return int(value * _NS)


def metadata_mtime(user_metadata: Mapping[str, str]) -> int | None:
    """The ``mtime`` of user metadata (the key compared case-insensitively: S3 lower-cases
    metadata keys, Azure ignores their case), in nanoseconds; None when absent or invalid."""
    for key, value in user_metadata.items():
        if key.lower() == MTIME_KEY:
            return parse_mtime(value)
    return None


class Mtime:
    """A modification time and the precision it was kept to, both in nanoseconds."""

    __slots__ = ("ns", "precision")

    def __init__(self, ns: int, precision: int) -> None:
        self.ns = ns
        self.precision = precision

    def __repr__(self) -> str:
        return f"Mtime({format_mtime(self.ns)}, precision={self.precision}ns)"

    def same(self, other: Mtime) -> bool:
        """Equal within the coarser precision of the two (rclone's modify window): a time kept to
        the second and one kept to the nanosecond are equal when less than a second apart."""
        return abs(self.ns - other.ns) < max(self.precision, other.precision)


def _precision(ns: int) -> int:
    """What a ``last_modified`` was kept to, judged from the value: whole seconds (HTTP
    ``Last-Modified`` headers: S3, Azure heads), whole milliseconds (S3 listings, GCS), else
    microseconds (a ``datetime``'s own limit: local files, memory)."""
    if ns % _NS == 0:
        return _NS
    if ns % 1_000_000 == 0:
        return 1_000_000
    return 1000


def mtime_of(meta: Metadata | ListEntry) -> Mtime | None:
    """The object's modification time: its ``mtime`` metadata (exact to the nanosecond), else its
    ``last_modified`` (kept to what the value shows); None when it has neither (Redis)."""
    if isinstance(meta, Metadata):
        ns = metadata_mtime(meta.user_metadata)
        if ns is not None:
            return Mtime(ns, 1)
    if meta.last_modified is None:
        return None
    when = (
        meta.last_modified if meta.last_modified.tzinfo is not None else meta.last_modified.replace(tzinfo=timezone.utc)
    )
    delta = when - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000
    return Mtime(ns, _precision(ns))
