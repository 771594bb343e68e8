"""The ``flytestore`` command beside ``rclone`` and the AWS CLI: a tree of small files, local -> S3.

Run ``python benchmarks/bench_cli.py`` (``--help`` for sizes and tools). It starts moto on a free
127.0.0.1 port, writes ``--files`` (2,000) files of ``--file-kib`` (64 KiB) to a temporary
directory, and times three phases, each one command as a user would type it:

1. ``cp``: the whole directory copied recursively to a fresh S3 prefix;
2. ``sync``: the same directory synced to that prefix again, with nothing to do;
3. ``rm``: every object under the prefix deleted.

For each tool and phase: wall time, and the client's CPU time per object (user + system of the
command's process tree, from ``resource.getrusage(RUSAGE_CHILDREN)`` around the subprocess; moto is
another process and is not counted). The tools are ``flytestore`` (``python -m flytestore``, this
checkout), ``rclone`` and ``aws`` (the AWS CLI), all against the same moto server in the same run,
at the same concurrency (``--concurrency``, 32: flytestore's default; rclone's ``--transfers`` and
``--checkers``; the AWS CLI's ``s3.max_concurrent_requests``). Phases are interleaved: in each
repetition every tool does ``cp``, then every tool ``sync``, then every tool ``rm``, the order of
the tools rotating every repetition and reversing every other one. Each figure is the median of
``--reps`` (3). After each phase the benchmark lists the prefix and checks the command did its job
(2,000 objects after ``cp`` and ``sync``, none after ``rm``). With two CPUs or more the commands run
on CPU 0 and moto on CPU 1 (``--no-pin`` turns that off).

How each tool is invoked is one function per tool (``flytestore_commands``, ``rclone_commands``,
``aws_commands``), so a change in a command's interface is a change in one place. The local files'
modification times are set an hour back, as for files that exist before they are uploaded.

Setup (not done by the test suite): ``apt-get install rclone awscli`` (Debian 12: rclone 1.60,
AWS CLI 2.9), or ``pip install awscli`` into a virtual environment of its own and ``--aws PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.suite import server_cpu  # noqa: E402
from flytestore import Config, DataStore  # noqa: E402
from tests.servers_s3 import MotoS3, start_moto  # noqa: E402

BUCKET = "bench-cli"
PHASES = ("cp", "sync", "rm")


@dataclass(frozen=True)
class Job:
    """What every tool's commands need: the server, the local tree, the S3 prefix of this run."""

    moto: MotoS3
    src: Path  # the local directory whose contents are copied
    prefix: str  # the destination's key prefix, without a trailing slash
    concurrency: int
    scratch: Path  # a directory a tool may keep its configuration in


@dataclass(frozen=True)
class Commands:
    """One tool's three commands and the environment they run in."""

    cp: list[str]
    sync: list[str]
    rm: list[str]
    env: dict[str, str | None]  # None: unset


# -- one function per tool: how it is invoked ---------------------------------------------------------


def flytestore_commands(job: Job) -> Commands:
    """``python -m flytestore`` of this checkout. Today a local source beside an S3 primary needs
    the ``file`` scheme routed to a local store in the config (``file://src/...`` is the directory
    ``src`` under that root); progress is off; ``rm -r`` needs ``--yes`` without a terminal."""
    config = job.scratch / "flytestore.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "storage": {
                    "type": "stow",
                    "container": BUCKET,
                    "stow": {"kind": "s3", "config": job.moto.stow_config()},
                    "schemes": {"file": {"kind": "local", "config": {"path": str(job.src.parent)}}},
                    "limits": {"maxDownloadMBs": 0},
                }
            }
        )
    )
    base = [sys.executable, "-m", "flytestore", "--config", str(config)]
    src = f"file://{job.src.name}"
    dst = f"s3://{BUCKET}/{job.prefix}"
    conc = ["--concurrency", str(job.concurrency)]
    env: dict[str, str | None] = {"PYTHONPATH": str(ROOT)}  # this checkout's flytestore
    return Commands(
        cp=[*base, "cp", "-r", "--no-progress", *conc, src, dst],
        sync=[*base, "sync", "--no-progress", *conc, src, dst],
        rm=[*base, "rm", "-r", "--yes", dst + "/"],  # its own concurrency (32 deletes in flight, or batches)
        env=env,
    )


def rclone_commands(job: Job, binary: str) -> Commands:
    """rclone with an S3 remote named ``moto`` configured by environment variables (no config file)."""
    env: dict[str, str | None] = {
        "RCLONE_CONFIG": os.devnull,
        "RCLONE_CONFIG_MOTO_TYPE": "s3",
        "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": job.moto.endpoint,
        "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": job.moto.access_key_id,
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": job.moto.secret_key,
        "RCLONE_CONFIG_MOTO_REGION": job.moto.region,
        "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
        # rclone's AWS SDK refuses a custom CA bundle on its own HTTP transport (moto is plain http).
        "AWS_CA_BUNDLE": None,
    }
    conc = ["--transfers", str(job.concurrency), "--checkers", str(job.concurrency)]
    dst = f"moto:{BUCKET}/{job.prefix}"
    return Commands(
        cp=[binary, "copy", *conc, str(job.src), dst],
        sync=[binary, "sync", *conc, str(job.src), dst],
        rm=[binary, "delete", *conc, dst],
        env=env,
    )


def aws_commands(job: Job, binary: str) -> Commands:
    """The AWS CLI with test credentials in the environment and its concurrency in a config file."""
    config = job.scratch / "aws-config"
    config.write_text(f"[default]\nregion = {job.moto.region}\ns3 =\n  max_concurrent_requests = {job.concurrency}\n")
    env: dict[str, str | None] = {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ACCESS_KEY_ID": job.moto.access_key_id,
        "AWS_SECRET_ACCESS_KEY": job.moto.secret_key,
        "AWS_DEFAULT_REGION": job.moto.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    base = [binary, "--endpoint-url", job.moto.endpoint, "s3"]
    dst = f"s3://{BUCKET}/{job.prefix}/"
    quiet = ["--only-show-errors", "--no-progress"]
    return Commands(
        cp=[*base, "cp", "--recursive", *quiet, str(job.src), dst],
        sync=[*base, "sync", *quiet, str(job.src), dst],
        rm=[*base, "rm", "--recursive", "--only-show-errors", dst],
        env=env,
    )


# -- measuring -----------------------------------------------------------------------------------------


def run_timed(argv: list[str], changes: dict[str, str | None]) -> tuple[float, float]:
    """Run one command to its end: (wall seconds, CPU seconds of its process tree)."""
    env = {**os.environ, **changes}
    env = {k: v for k, v in env.items() if v is not None}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


async def _count(moto: MotoS3, prefix: str) -> int:
    config = Config(type="stow", container=BUCKET, stow={"kind": "s3", "config": moto.stow_config()})
    async with DataStore(config) as store:
        return sum([1 async for _ in store.list(f"s3://{BUCKET}/{prefix}/")])


def count_objects(moto: MotoS3, prefix: str) -> int:
    return asyncio.run(_count(moto, prefix))


def make_tree(folder: Path, n: int, size: int) -> None:
    folder.mkdir(parents=True)
    past = time.time() - 3600
    for i in range(n):
        path = folder / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(size))
        os.utime(path, (past, past))


async def _make_bucket(moto: MotoS3) -> None:
    config = Config(type="stow", container=BUCKET, stow={"kind": "s3", "config": moto.stow_config()})
    async with DataStore(config) as store:  # opening the store creates its bucket
        await store.head(f"s3://{BUCKET}/warm-up")


def version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-kib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default="flytestore,rclone,aws", help="comma-separated subset")
    parser.add_argument("--rclone", default=shutil.which("rclone"), help="the rclone binary")
    parser.add_argument(
        "--aws",
        default="/usr/bin/aws" if os.path.exists("/usr/bin/aws") else shutil.which("aws"),
        help="the AWS CLI (default: Debian's /usr/bin/aws when present, else aws on PATH)",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin commands and moto to CPUs")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    tools = args.tools.split(",")
    binaries = {"rclone": args.rclone, "aws": args.aws}
    for tool in tools:
        if tool in binaries and not binaries[tool]:
            raise SystemExit(f"no {tool} found: install it (apt-get install rclone awscli) or pass --{tool} PATH")
    builders: dict[str, Callable[[Job], Commands]] = {
        "flytestore": flytestore_commands,
        "rclone": lambda job: rclone_commands(job, args.rclone),
        "aws": lambda job: aws_commands(job, args.aws),
    }
    pin = args.pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if pin:
        os.sched_setaffinity(0, {0})
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pinned": pin,
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
        "versions": {
            "flytestore": subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
            ).stdout.strip(),
            "rclone": version([args.rclone, "version"]) if "rclone" in tools else None,
            "aws": version([args.aws, "--version"]) if "aws" in tools else None,
        },
    }
    print(json.dumps(info), flush=True)
    wall: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PHASES} for t in tools}
    cpu: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PHASES} for t in tools}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp, contextlib.ExitStack() as stack:
        src = Path(tmp) / "tree" / "src"
        make_tree(src, args.files, args.file_kib * 1024)
        with server_cpu(pin):
            moto = stack.enter_context(start_moto())
        asyncio.run(_make_bucket(moto))
        for rep in range(args.reps):
            shift = rep % len(tools)
            order = tools[shift:] + tools[:shift]
            if rep % 2:
                order.reverse()
            jobs = {}
            for tool in order:
                scratch = Path(tmp) / f"{tool}-{rep}"
                scratch.mkdir()
                job = Job(moto, src, f"{tool}/{uuid.uuid4().hex[:12]}", args.concurrency, scratch)
                jobs[tool] = (job, builders[tool](job))
            for phase in PHASES:
                for tool in order:
                    job, commands = jobs[tool]
                    seconds, cpu_seconds = run_timed(getattr(commands, phase), commands.env)
                    found = count_objects(moto, job.prefix)
                    expected = 0 if phase == "rm" else args.files
                    if found != expected:
                        raise SystemExit(f"{tool} {phase}: {found} objects under {job.prefix}, expected {expected}")
                    wall[tool][phase].append(seconds)
                    cpu[tool][phase].append(cpu_seconds / args.files * 1000)
                    print(
                        f"rep {rep + 1} {phase:4s} {tool:10s} {seconds:7.2f} s  "
                        f"client CPU {cpu[tool][phase][-1]:6.3f} ms/object",
                        flush=True,
                    )
    info["load_average_end"] = os.getloadavg()
    results = report(tools, wall, cpu, args.files)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), **results}, indent=2))


def report(
    tools: list[str], wall: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]], files: int
) -> dict[str, Any]:
    """Print the medians as a Markdown table, and flytestore's ratios to each peer."""
    med_wall = {t: {p: statistics.median(v) for p, v in wall[t].items()} for t in tools}
    med_cpu = {t: {p: statistics.median(v) for p, v in cpu[t].items()} for t in tools}
    print(f"\nmedian of {len(wall[tools[0]]['cp'])}; {files} objects; wall s (objects/s), client CPU ms/object\n")
    print("| phase | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for phase in PHASES:
        cells = [
            f"{med_wall[t][phase]:.2f} s ({files / med_wall[t][phase]:.0f}/s), {med_cpu[t][phase]:.3f} ms"
            for t in tools
        ]
        print(f"| {phase} | " + " | ".join(cells) + " |")
    ratios: dict[str, Any] = {}
    if "flytestore" in tools:
        print("\nflytestore / peer (below 1: flytestore faster or cheaper)\n")
        print("| phase | " + " | ".join(f"wall vs {t} | CPU vs {t}" for t in tools if t != "flytestore") + " |")
        print("|---|" + "---|---|" * (len(tools) - 1))
        for phase in PHASES:
            row = []
            for t in tools:
                if t == "flytestore":
                    continue
                w = med_wall["flytestore"][phase] / med_wall[t][phase]
                c = med_cpu["flytestore"][phase] / med_cpu[t][phase]
                ratios.setdefault(t, {})[phase] = {"wall": round(w, 3), "cpu": round(c, 3)}
                row += [f"{w:.2f}", f"{c:.2f}"]
            print(f"| {phase} | " + " | ".join(row) + " |")
    return {
        "wall_seconds": wall,
        "client_cpu_ms_per_object": cpu,
        "median_wall_seconds": med_wall,
        "median_client_cpu_ms_per_object": med_cpu,
        "flytestore_over_peer": ratios,
    }


if __name__ == "__main__":
    main()
