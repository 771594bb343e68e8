"""The README's code runs as pasted: the short tour, and the two commands at the top."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match is not None, f"README has no section {title!r}"
    return match.group(1)


def _block(title: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", _section(title), re.S)
    assert match is not None, f"README section {title!r} has no {language} block"
    return match.group(1)


def test_the_short_tour_runs_as_pasted(tmp_path: Path) -> None:
    code = _block("A short tour", "python")
    assert code.count('"/tmp/data"') == 1  # the only change: its directory, so runs do not share one
    script = tmp_path / "tour.py"
    script.write_text(code.replace('"/tmp/data"', repr(str(tmp_path / "data"))))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "not replaced: object [file://my-bucket/metadata/proj/dom/id] already exists"
    assert "file://my-bucket/metadata/proj/dom/id 5" in lines  # the listing: the first write stayed
    assert lines[-1] == "deleted: file://my-bucket/metadata/proj/dom/id.bak"
    assert (tmp_path / "data" / "my-bucket" / "metadata" / "proj" / "dom" / "id").read_bytes() == b"hello"


def test_the_two_commands_go_through_the_bootstrap_script() -> None:
    """Each command is one line that makes its own virtual environment (PEP 668 machines refuse a
    bare ``pip install``), and CI runs the same script, so the README's command is what CI tests."""
    block = _block("Two commands", "bash")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./dev demo", "./dev tests"]
    assert "pip install" not in block
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./dev\b.*\btests\b", ci, re.M), "CI must run the README's test command"


def test_the_bootstrap_script_explains_itself_without_installing_anything() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "dev"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "./dev demo" in result.stdout and "./dev tests" in result.stdout


def test_the_bootstrap_script_turns_words_into_sessions() -> None:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("flytestore_dev", str(ROOT / "dev"))
    spec = importlib.util.spec_from_loader("flytestore_dev", loader)
    assert spec is not None
    dev = importlib.util.module_from_spec(spec)
    loader.exec_module(dev)
    assert dev.nox_argv([]) == []
    assert dev.nox_argv(["demo"]) == ["-s", "demo"]
    assert dev.nox_argv(["lint", "typecheck", "tests", "-R"]) == ["-s", "lint", "typecheck", "tests", "-R"]
    assert dev.nox_argv(["tests", "--", "-x", "k"]) == ["-s", "tests", "--", "-x", "k"]
    assert dev.nox_argv(["--list"]) == ["--list"]
