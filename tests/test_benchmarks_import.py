"""Every benchmark script still imports against the library as it is (they are run by hand, so a
renamed name would otherwise only show when someone next measures). A peer library that is not
installed is a skip, never a failure of ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))

_PROBE = """
import importlib, sys
try:
    importlib.import_module(sys.argv[1])
except ModuleNotFoundError as err:
    if (err.name or "").split(".")[0] in ("flytestore", "tests", "peers", "suite") or err.name == sys.argv[1]:
        raise
    print("missing peer:", err.name)
    sys.exit(3)
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports(script: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, script], cwd=BENCHMARKS, capture_output=True, text=True, timeout=120, check=False
    )
    if run.returncode == 3:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stderr[-2000:]
