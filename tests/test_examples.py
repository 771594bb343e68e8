"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_on_local_disk(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "protobuf round trip ok" in out
    assert "download limit works" in out
    assert "after delete, exists=False" in out
    assert (tmp_path / "my-bucket" / "datasets" / "blob.bin").stat().st_size == 64 * 1024 * 1024
