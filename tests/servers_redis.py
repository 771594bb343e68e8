"""Session fixtures for the redis server (filled in by the redis backend work)."""
