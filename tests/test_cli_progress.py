"""The command's progress, end to end: on a 60-column terminal (a real pty), piped, quiet, and
its --json summary."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from .cli_run import flytestore, tree

N = 2000


def run_on_a_terminal(argv: list[str], cwd: Path, columns: int) -> tuple[int, str, str]:
    """Run the command with standard error on a pty ``columns`` wide; (exit code, stdout, what
    the terminal received)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTESTORE_", "COLUMNS"))}
    with subprocess.Popen(
        [sys.executable, "-m", "flytestore", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as proc:
        os.close(follower)
        received = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            received += chunk
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=120)
    os.close(leader)
    return code, out, received.decode()


def frames(terminal: str) -> list[str]:
    """Each state the terminal showed: text between carriage returns and newlines, escapes removed."""
    text = terminal.replace("\x1b[K", "")
    return [frame for frame in re.split(r"[\r\n]+", text) if frame]


def test_no_wrapping_at_60_columns(tmp_path: Path) -> None:
    tree(tmp_path / "data", N, size=4096)
    code, out, terminal = run_on_a_terminal(["cp", "-r", "data", "out"], tmp_path, columns=60)
    assert code == 0, terminal
    shown = frames(terminal)
    assert shown, terminal
    assert max(len(frame) for frame in shown) < 60, [f for f in shown if len(f) >= 60]
    assert shown[-1].startswith("cp 100%") and f"{N:,}/{N:,}" in shown[-1]
    # The total is known from the first frame: the listing comes before the first copy.
    copying = [frame for frame in shown if frame.startswith("cp ") and "listing" not in frame]
    assert all(f"/{N:,}" in frame for frame in copying), copying[:3]
    assert f"{N} copied" in out


def test_a_wide_terminal_shows_rates_and_eta(tmp_path: Path) -> None:
    tree(tmp_path / "data", 300, size=4096)
    code, _, terminal = run_on_a_terminal(["cp", "-r", "data", "out"], tmp_path, columns=150)
    assert code == 0, terminal
    last = frames(terminal)[-1]
    assert re.search(r"obj/s .* (KiB|MiB)/s", last), last
    assert "in 0:" in last  # the elapsed time once done (ETA while running)


def test_plain_lines_when_piped(tmp_path: Path) -> None:
    tree(tmp_path / "data", N)
    run = flytestore("cp", "-r", "data", "out", cwd=tmp_path)
    assert run.code == 0, run
    assert "\r" not in run.err and "\x1b" not in run.err
    lines = run.err.splitlines()
    assert lines[0].startswith(f"cp: 0/{N:,} objects (0%)") or lines[0].startswith("cp listing:"), lines[:2]
    assert re.match(rf"cp: {N:,}/{N:,} objects \(100%\), 31\.2 KiB, [\d,]+ obj/s, .*/s, in \d+:\d\d$", lines[-1])
    assert 2 <= len(lines) <= 30  # every tenth of the job, not every object


def test_one_object_not_objects(tmp_path: Path) -> None:
    tree(tmp_path / "data", 1)
    run = flytestore("cp", "data/d0/f00000.bin", "one.bin", cwd=tmp_path)
    assert run.code == 0, run
    assert "1/1 object " in run.err and "objects" not in run.err, run.err
    run = flytestore("du", "data", cwd=tmp_path)
    assert run.out.endswith("\t1 object\tdata\n"), run


def test_quiet_and_json(tmp_path: Path) -> None:
    tree(tmp_path / "data", 20)
    run = flytestore("--quiet", "sync", "data", "out", cwd=tmp_path)
    assert (run.code, run.out, run.err) == (0, "", "")
    code, out, terminal = run_on_a_terminal(["sync", "data", "out2", "-q"], tmp_path, columns=80)
    assert (code, out, terminal) == (0, "", "")
    run = flytestore("sync", "data", "out", "--json", cwd=tmp_path)
    summary = json.loads(run.out)
    assert summary["ok"] and (summary["copied"], summary["skipped"], summary["failed"]) == (0, 20, [])
    assert {"bytes", "seconds", "throughput", "deleted", "dry_run"} <= set(summary)
