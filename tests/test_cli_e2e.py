"""The ``flytestore`` command end to end, as a subprocess: addresses on either side of every
command (plain paths, ``file:///abs``, ``file://C/K``, ``s3://``), with or without a config, and
every example its ``--help`` prints."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_run import S3Bucket, flytestore, s3_bucket, s3_config, tree
from .servers_s3 import MotoS3

N = 2000


@pytest.fixture
def bucket(s3_server: MotoS3) -> Iterator[S3Bucket]:
    yield from s3_bucket(s3_server)


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_local_paths_need_no_config(tmp_path: Path) -> None:
    files = tree(tmp_path / "data", 20)
    run = flytestore("cp", "-r", "data", "out", cwd=tmp_path)
    assert run.code == 0, run
    assert local_files(tmp_path / "out") == files  # the contents of SRC go into DST
    assert "20 copied" in run.out

    # Printed back as typed: relative, ./relative, absolute, file:///absolute.
    run = flytestore("ls", "out/d3", cwd=tmp_path)
    assert run.code == 0, run
    assert run.out.splitlines() == sorted(f"out/{rel}" for rel in files if rel.startswith("d3/"))
    absolute = tmp_path / "out" / "d3"
    for typed in (f"{absolute}", f"file://{absolute}", "./out/d3/"):
        run = flytestore("ls", typed, cwd=tmp_path)
        assert run.code == 0, run
        assert run.out.splitlines()[0] == typed.rstrip("/") + "/f00003.bin"

    # file:///abs on either side, a single file, into a directory.
    run = flytestore("cp", f"file://{tmp_path}/data/d1/f00001.bin", "out/", cwd=tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "out" / "f00001.bin").read_bytes() == files["d1/f00001.bin"]
    (tmp_path / "dir").mkdir()
    run = flytestore("cp", "data/d1/f00001.bin", "data/d2/f00002.bin", f"file://{tmp_path}/dir", cwd=tmp_path)
    assert run.code == 0, run
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["f00001.bin", "f00002.bin"]

    # file://C/K is C/K below the local root: --root, or the current directory.
    run = flytestore("cat", "file://data/d1/f00001.bin", cwd=tmp_path)
    assert (run.code, run.out.encode()) == (0, files["d1/f00001.bin"])
    run = flytestore("--root", str(tmp_path / "data"), "cat", "file://d1/f00001.bin", cwd="/")
    assert (run.code, run.out.encode()) == (0, files["d1/f00001.bin"])


def test_odd_names_round_trip(tmp_path: Path) -> None:
    """Names a URL would escape (space, %, #, ?) are paths, not URLs, when typed as paths."""
    odd = tmp_path / "in put" / "a b%c#d?e.txt"
    odd.parent.mkdir()
    odd.write_bytes(b"odd")
    run = flytestore("cp", "-r", "in put", "out put", cwd=tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "out put" / "a b%c#d?e.txt").read_bytes() == b"odd"
    run = flytestore("ls", "out put", cwd=tmp_path)
    assert run.out == "out put/a b%c#d?e.txt\n", run


def test_a_local_tree_to_s3_and_back(tmp_path: Path, s3_server: MotoS3, bucket: S3Bucket) -> None:
    """2,000 files: local -> S3 (an S3 primary: local paths still need nothing), a second sync
    that copies nothing, S3 -> local, identical."""
    files = tree(tmp_path / "data", N)
    env = {"FLYTESTORE_CONFIG": str(s3_config(s3_server, tmp_path / "s3.yaml", bucket.name))}
    run = flytestore("cp", "-r", "./data", f"s3://{bucket.name}/data", cwd=tmp_path, env=env)
    assert run.code == 0, run
    assert bucket.sizes("data") == {f"data/{rel}": len(data) for rel, data in files.items()}

    run = flytestore("sync", "./data", f"s3://{bucket.name}/data", "--json", cwd=tmp_path, env=env)
    assert run.code == 0, run
    summary = json.loads(run.out)
    assert (summary["copied"], summary["skipped"]) == (0, N)

    run = flytestore("cp", "-r", f"s3://{bucket.name}/data/", f"file://{tmp_path}/back", cwd=tmp_path, env=env)
    assert run.code == 0, run
    assert local_files(tmp_path / "back") == files

    run = flytestore("du", f"s3://{bucket.name}/data", "--json", cwd=tmp_path, env=env)
    assert json.loads(run.out) == {"ref": f"s3://{bucket.name}/data", "bytes": 16 * N, "objects": N}


def test_a_local_primary_config(tmp_path: Path) -> None:
    """With `type: local`, file://C/K is below its path; plain paths are still paths."""
    files = tree(tmp_path / "root" / "c" / "in", 5)
    config = tmp_path / "local.yaml"
    config.write_text(f"storage:\n  type: local\n  container: c\n  local:\n    path: {tmp_path / 'root'}\n")
    env = {"FLYTESTORE_CONFIG": str(config)}
    run = flytestore("ls", cwd=tmp_path, env=env)  # the base container
    assert run.out.splitlines() == [f"file://c/in/{rel}" for rel in sorted(files)], run
    run = flytestore("cp", "-r", "file://c/in", "elsewhere", cwd=tmp_path, env=env)
    assert run.code == 0, run
    assert local_files(tmp_path / "elsewhere") == files


def test_global_options_anywhere(tmp_path: Path) -> None:
    tree(tmp_path / "data", 3)
    expected = flytestore("--json", "ls", "data", cwd=tmp_path)
    assert expected.code == 0 and len(json.loads(expected.out)) == 3
    for argv in (["ls", "data", "--json"], ["ls", "--json", "data"]):
        assert flytestore(*argv, cwd=tmp_path).out == expected.out
    long_rows = flytestore("ls", "data", "-l", cwd=tmp_path).out.splitlines()
    assert flytestore("-l", "ls", "data", cwd=tmp_path).out.splitlines() == long_rows
    assert [row.split("\t")[0] for row in long_rows] == ["16", "16", "16"]
    run = flytestore("cp", "-r", "data", "out", "--quiet", cwd=tmp_path)
    assert (run.code, run.out, run.err) == (0, "", "")
    run = flytestore("cp", "-r", "data", "out2", "--no-progress", cwd=tmp_path)
    assert (run.code, run.err) == (0, "") and "3 copied" in run.out


def test_du_and_mv(tmp_path: Path) -> None:
    files = tree(tmp_path / "data", 30)
    run = flytestore("du", "data", "data/d1", cwd=tmp_path, env={})
    assert run.out.splitlines() == ["480\t480 B\t30 objects\tdata", "48\t48 B\t3 objects\tdata/d1"], run
    run = flytestore("du", "data/d1/f00001.bin", "--json", cwd=tmp_path)
    assert json.loads(run.out) == {"ref": "data/d1/f00001.bin", "bytes": 16, "objects": 1}

    run = flytestore("mv", "data/d1/f00001.bin", "moved.bin", cwd=tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "moved.bin").read_bytes() == files["d1/f00001.bin"]
    assert not (tmp_path / "data" / "d1" / "f00001.bin").exists()

    run = flytestore("mv", "-r", "data", "there", cwd=tmp_path)
    assert run.code == 0, run
    del files["d1/f00001.bin"]
    assert local_files(tmp_path / "there") == files
    assert local_files(tmp_path / "data") == {}


def _examples() -> list[str]:
    """Every example line of every --help, in order (the main help's first)."""
    helps = [subprocess.run([sys.executable, "-m", "flytestore", "--help"], capture_output=True, text=True).stdout]
    from flytestore.cli import COMMANDS

    for command in COMMANDS:
        out = subprocess.run([sys.executable, "-m", "flytestore", command, "--help"], capture_output=True, text=True)
        helps.append(out.stdout)
    lines: list[str] = []
    for text in helps:
        _, _, examples = text.partition("examples:\n")
        lines += [m.group(1) for m in re.finditer(r"^  ((?:\S+=\S+ )*flytestore .*)$", examples, re.M)]
    return [line for line in lines if "<command>" not in line]


def test_every_help_example_runs(tmp_path: Path, s3_server: MotoS3, bucket: S3Bucket) -> None:
    examples = _examples()
    assert len(examples) >= 20
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "data" / "b.txt").write_text("b\n")
    env_config = s3_config(s3_server, tmp_path / "s3.yaml", bucket.name)
    python = shlex.quote(sys.executable)
    for example in examples:
        line = example.replace("s3://bucket/", f"s3://{bucket.name}/")
        line = line.replace("flytestore ", f"{python} -m flytestore ", 1)
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "FLYTESTORE_CONFIG": str(env_config), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{example}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, example


def test_the_readme_commands_run(tmp_path: Path, s3_server: MotoS3, bucket: S3Bucket) -> None:
    """The README's section on the command: each line runs as shown (on moto, its own bucket)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## The `flytestore` command", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) >= 10 and all(line.startswith("flytestore ") for line in lines)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "data" / "b.txt").write_text("b\n")
    env = {"FLYTESTORE_CONFIG": str(s3_config(s3_server, tmp_path / "s3.yaml", bucket.name))}
    for line in lines:
        argv = shlex.split(line.replace("s3://bucket/", f"s3://{bucket.name}/"))[1:]
        run = flytestore(*argv, cwd=tmp_path, env=env)
        assert run.code == 0, f"{line}\n{run}"
        if argv[0] == "du":
            assert json.loads(run.out) == {"ref": f"s3://{bucket.name}/data", "bytes": 4, "objects": 2}
    assert bucket.sizes() == {"data/a.txt": 2, "data/b.txt": 2}  # moved, then removed
