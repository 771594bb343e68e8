"""Byte units: the one definition of a mebibyte and a gibibyte used across the package."""

from __future__ import annotations

__all__ = ["GiB", "KiB", "MiB"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
