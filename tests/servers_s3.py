"""Session fixtures for the s3 server (filled in by the s3 backend work)."""
