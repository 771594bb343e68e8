"""Conformance registration of the redis backend (filled in by the redis backend work)."""
