"""Session fixtures for the azure server (filled in by the azure backend work)."""
