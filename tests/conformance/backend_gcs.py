"""Conformance registration of the gcs backend (filled in by the gcs backend work)."""
