"""Session fixtures for the gcs server (filled in by the gcs backend work)."""
