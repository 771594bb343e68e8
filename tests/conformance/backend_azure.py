"""Conformance registration of the azure backend (filled in by the azure backend work)."""
