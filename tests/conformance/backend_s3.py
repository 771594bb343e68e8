"""Conformance registration of the s3 backend (filled in by the s3 backend work)."""
