"""The ``flytestore`` command: ls, du, cat, stat, cp, mv, rm, sync and url over any store.

Addresses (``Addresses``): a plain path (``./data``, ``/tmp/x``) or ``file:///abs/path`` is a local
file; ``file://C/K`` is ``C/K`` below the local root (``--root``, the configured local path, or the
current directory); ``s3://``, ``gs://``, ``abfs[s]://``, ``redis://`` and ``mem://`` references go
to their backends. All of them work on either side of one command, whatever the configured
primary store: the command serves every local address with one local store rooted at ``/``
(a ``schemes.file`` entry of the config it builds), and prints paths back as they were typed.

Configuration, lowest precedence first: the ``--config`` YAML file (Flyte's ``storage:`` section, or
a whole Flyte config holding one), then ``FLYTESTORE_*`` environment variables (see
``Config.from_env``), then the ``--type``, ``--container`` and ``--root`` flags. With none of these,
no backend needs configuring for local paths and ``mem://``; cloud backends take their settings
from ``schemes.<scheme>.config`` (or their ambient credentials). The command never creates a
bucket or container.

Exit codes: 0 success, 1 some objects failed, 2 usage error (bad reference, bad config), 3 not
found, 4 any other storage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .backends import BY_SCHEME
from .config import Config
from .datastore import DataStore
from .errors import ConfigError, InvalidArgumentError, InvalidReferenceError, NotFoundError, StorageError
from .progress import ProgressDisplay, count, human
from .rawstore import Metadata, SignedURLProperties
from .reference import escape_key, split_reference
from .transfer import (
    Action,
    Summary,
    copy_many,
    copy_tree,
    delete_refs,
    delete_tree,
    du,
    move_many,
    move_tree,
    overlaps,
    sync,
)
from .units import MiB

__all__ = [
    "EXIT_FAILURES",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "Address",
    "Addresses",
    "build_config",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_STORAGE = 4

PROG = "flytestore"
ENV_PREFIX = "FLYTESTORE_"
CAT_CHUNK = MiB


class UsageError(Exception):
    """A command line that parsed but cannot be served (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# The parser

_MAIN_DESCRIPTION = """\
Inspect and move objects in any flytestore backend (S3, GCS, Azure Blob, Redis, local disk,
memory), in one command across backends.

addresses (on either side of any command, whatever the configured primary store):
  ./data, /tmp/x, file:///tmp/x   local files and directories (no configuration needed)
  file://C/KEY                    C/KEY below the local root (--root, the configured local
                                  path, or the current directory)
  s3://BUCKET/KEY  gs://BUCKET/KEY  abfs://CONTAINER/KEY  redis://HOST:PORT/KEY  mem://C/KEY
A prefix means every object below it: `cp -r SRC DST` copies the contents of SRC into DST
(as `aws s3 cp --recursive` and `rclone copy` do): SRC/a/b lands at DST/a/b.

configuration (later wins):
  --config FILE          Flyte `storage:` YAML (the section, or a whole config holding it)
  FLYTESTORE_* env vars  FLYTESTORE_CONFIG=file.yaml, FLYTESTORE_TYPE=s3,
                         FLYTESTORE_STOW__CONFIG__ENDPOINT=..., FLYTESTORE_LIMITS__MAXDOWNLOADMBS=0
  --type/--container/--root flags
Backends other than the primary take `schemes.<scheme>.config` (e.g. schemes.gs.config.endpoint).
No command creates a bucket or container: a missing one is an error that names it.

global options (--config, --json, --quiet, ...) go before or after the command.

exit codes:
  0 success, 1 some objects failed, 2 usage error (bad address, option or config),
  3 not found (missing source, object, bucket), 4 other storage error
"""

_MAIN_EPILOG = """\
examples:
  flytestore cp -r ./data s3://bucket/data
  flytestore ls -l s3://bucket/data
  FLYTESTORE_LIMITS__MAXDOWNLOADMBS=0 flytestore cat s3://bucket/data/a.txt
  flytestore sync --delete ./data s3://bucket/data --json
  flytestore <command> --help
"""

_COMMANDS: dict[str, tuple[str, str, str]] = {
    "ls": (
        "list the objects under a prefix",
        "List every object under REF (recursive, in key order); REF defaults to the base container.\n"
        "A REF naming a single object lists that object; one naming nothing exits with code 3.\n"
        "-l adds the size and modification time; --json prints a list of\n"
        "{ref, size, etag, last_modified}.",
        "examples:\n"
        "  flytestore ls s3://bucket/data/\n"
        "  flytestore ls -l ./data\n"
        "  flytestore ls s3://bucket/data --json\n",
    ),
    "du": (
        "count the objects and bytes under a prefix",
        "Print the total size and number of objects under each REF (exit code 3 when none).",
        "examples:\n  flytestore du s3://bucket/data\n  flytestore du ./data --json\n",
    ),
    "cat": (
        "write objects to standard output",
        "Stream each REF to standard output, chunk by chunk. The configured download limit\n"
        "(limits.maxDownloadMBs, 2 MiB by default) applies unless --no-limit is given.",
        "examples:\n"
        "  flytestore cat s3://bucket/data/a.txt\n"
        "  flytestore cat --no-limit s3://bucket/data/a.txt > a.txt\n",
    ),
    "stat": (
        "show an object's metadata",
        "Print the size, etag, content type and last modification time of REF.\nExit code 3 when it does not exist.",
        "examples:\n  flytestore stat s3://bucket/data/a.txt\n  flytestore stat ./data/a.txt --json\n",
    ),
    "cp": (
        "copy objects, one, many or a whole prefix",
        "Copy SRC to DST, any address to any address (server-side within a backend, streamed\n"
        "across backends). With several sources, a DST ending in '/', or a DST that is a local\n"
        "directory, each source lands below DST under its own name. With -r, the contents of\n"
        "the SRC prefix go below DST (SRC/a/b -> DST/a/b), with bounded concurrency; a DST inside\n"
        "SRC is refused (exit 2), a missing or empty SRC is an error (exit 3). Transient errors\n"
        "are retried per the config's retries section. Progress goes to standard error: a line\n"
        "redrawn on a terminal, plain lines when piped, nothing with --quiet.",
        "examples:\n"
        "  flytestore cp ./data/a.txt s3://bucket/data/copy.txt\n"
        "  flytestore cp ./data/a.txt ./data/b.txt s3://bucket/data/pair/\n"
        "  flytestore cp -r --concurrency 64 ./data s3://bucket/backup\n"
        "  flytestore cp -r --dry-run s3://bucket/backup ./restored\n",
    ),
    "mv": (
        "move objects: copy, then delete each source once its copy is verified",
        "Copy as `cp` does, then delete each source whose copy succeeded and has the source's\n"
        "size. A failed copy keeps its source (exit 1). -r moves the contents of a prefix.",
        "examples:\n"
        "  flytestore mv s3://bucket/data/copy.txt s3://bucket/data/moved.txt\n"
        "  flytestore mv -r --dry-run s3://bucket/backup s3://bucket/old\n"
        "  flytestore mv -r s3://bucket/backup s3://bucket/old\n",
    ),
    "rm": (
        "delete objects or a whole prefix",
        "Delete each REF (exit code 3 when one does not exist). With -r, delete every object\n"
        "under each REF prefix, in bulk requests: this asks for confirmation on a terminal, and\n"
        "needs --yes when standard input is not a terminal. --dry-run lists what would go.",
        "examples:\n"
        "  flytestore rm s3://bucket/data/moved.txt\n"
        "  flytestore rm -r --dry-run s3://bucket/old\n"
        "  flytestore rm -r --yes s3://bucket/old\n",
    ),
    "sync": (
        "make a destination prefix mirror a source prefix",
        "Copy the objects under SRC that are missing below DST or differ there (size or\n"
        "modification time; with --checksum, content hash). --delete then removes the objects\n"
        "below DST that have no counterpart under SRC, only once every copy has succeeded.\n"
        "A missing or empty SRC is an error (exit 3) and deletes nothing; a DST inside SRC is\n"
        "refused (exit 2).",
        "examples:\n"
        "  flytestore sync ./data s3://bucket/site\n"
        "  flytestore sync --delete --dry-run ./data s3://bucket/site\n",
    ),
    "url": (
        "print a signed URL for an object",
        "Print a signed URL for REF that allows --method (GET or PUT) for --expires seconds.\n"
        "Headers the client must send are printed to standard error (and in the --json output).\n"
        "Backends without signed URLs (local, memory, Redis) exit with code 4.",
        "examples:\n"
        "  flytestore url s3://bucket/data/a.txt\n"
        "  flytestore url --method PUT --expires 600 s3://bucket/upload.bin\n",
    ),
}

COMMANDS = tuple(_COMMANDS)


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options accepted before and after the command. On the command's own parser they
    default to SUPPRESS, so that a value given before the command is not reset after it."""

    def kw(default: Any) -> dict[str, Any]:
        return {"default": default if defaults else argparse.SUPPRESS}

    add = parser.add_argument_group("global options").add_argument
    add("--config", metavar="FILE", help="a YAML storage config (Flyte `storage:` section)", **kw(None))
    add("--type", metavar="T", help="primary storage type: mem, local, s3, minio, stow, redis", **kw(None))
    add("--container", metavar="C", help="the base container (bucket)", **kw(None))
    add("--root", metavar="PATH", help="file://C/KEY is PATH/C/KEY (default: the current directory)", **kw(None))
    add("--json", action="store_true", help="print machine-readable JSON on standard output", **kw(False))
    add("-q", "--quiet", action="store_true", help="print no progress and no summary", **kw(False))
    add("--no-progress", action="store_true", help="print no progress", **kw(False))
    add("-l", "--long", action="store_true", help="ls: also print size and modification time", **kw(False))


def build_parser() -> argparse.ArgumentParser:
    """The ``flytestore`` argument parser (exposed for documentation and tests)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=_MAIN_DESCRIPTION, epilog=_MAIN_EPILOG, formatter_class=fmt)
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name: str) -> argparse.ArgumentParser:
        short, description, epilog = _COMMANDS[name]
        p = sub.add_parser(name, help=short, description=description, epilog=epilog, formatter_class=fmt)
        _global_options(p, defaults=False)
        return p

    p = command("ls")
    p.add_argument("ref", metavar="REF", nargs="?", help="a prefix or object")

    p = command("du")
    p.add_argument("refs", metavar="REF", nargs="+", help="prefixes")
    _filter_options(p)

    p = command("cat")
    p.add_argument("refs", metavar="REF", nargs="+", help="objects")
    p.add_argument("--no-limit", action="store_true", help="ignore the download limit (limits.maxDownloadMBs=0)")

    p = command("stat")
    p.add_argument("ref", metavar="REF", help="an object")

    for name in ("cp", "mv"):
        p = command(name)
        p.add_argument("paths", metavar="SRC", nargs="+", help="sources, then the destination DST")
        p.add_argument("-r", "--recursive", action="store_true", help="the contents of the SRC prefix, below DST")
        _transfer_options(p)
        _filter_options(p)

    p = command("rm")
    p.add_argument("refs", metavar="REF", nargs="+", help="objects (prefixes with -r)")
    p.add_argument("-r", "--recursive", action="store_true", help="delete every object under each prefix")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _transfer_options(p)
    _filter_options(p)

    p = command("sync")
    p.add_argument("src", metavar="SRC", help="the source prefix")
    p.add_argument("dst", metavar="DST", help="the destination prefix")
    p.add_argument("--delete", action="store_true", help="then delete destination objects missing from SRC")
    p.add_argument("--checksum", action="store_true", help="compare content hashes, not modification times")
    _transfer_options(p)
    _filter_options(p)

    p = command("url")
    p.add_argument("ref", metavar="REF", help="an object")
    p.add_argument("--method", type=str.upper, choices=("GET", "PUT"), default="GET", help="allowed method (GET)")
    p.add_argument("--expires", type=_positive, default=3600, metavar="SECONDS", help="lifetime (default 3600)")
    return parser


def _transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=_positive, default=32, metavar="N", help="objects in flight (default 32)")
    p.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only keys (relative to the prefix) matching GLOB; repeatable (*, **, ?, [a-z]; /GLOB: at the top)",
    )
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave out keys matching GLOB (wins)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# Configuration

#: What the command adds to every config: one local store rooted at "/" serves every local
#: address (whatever the primary is), and every container of every backend is reachable.
_LOCAL_SCHEME = "file"


def _user_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The user's config: ``--config`` < ``FLYTESTORE_*`` variables < ``--type``/``--container``.

    With no config file and no variable choosing a primary store, the primary is a memory store
    (nothing to configure): variables such as ``FLYTESTORE_LIMITS__MAXDOWNLOADMBS=0`` then tune it.
    """
    env = {name: value for name, value in environ.items() if name.upper().startswith(ENV_PREFIX)}
    config_var = ENV_PREFIX + "CONFIG"
    if args.config:
        env = {k: v for k, v in env.items() if k.upper() != config_var}
        env[config_var] = args.config
    if args.type:
        env = {k: v for k, v in env.items() if k.upper() != ENV_PREFIX + "TYPE"}
        env[ENV_PREFIX + "TYPE"] = args.type
    if args.container:
        env = {k: v for k, v in env.items() if k.upper() != ENV_PREFIX + "CONTAINER"}
        env[ENV_PREFIX + "CONTAINER"] = args.container
    chooses = (ENV_PREFIX + "TYPE", ENV_PREFIX + "STOW__")
    if not any(k.upper() == config_var and v for k, v in env.items()) and not any(
        k.upper().startswith(chooses) for k in env
    ):
        env[ENV_PREFIX + "TYPE"] = "mem"
    return Config.from_env(env, prefix=ENV_PREFIX)


def _local_root(user: Config, args: argparse.Namespace) -> str:
    """Where ``file://C/KEY`` points: ``--root``, the local primary's path, the ``schemes.file``
    path, or the current directory."""
    if args.root:
        return os.path.abspath(str(args.root))
    if user.primary_kind() == "local" and user.backend_config().get("path"):
        return os.path.abspath(str(user.backend_config()["path"]))
    entry = user.scheme_config(_LOCAL_SCHEME)
    if entry is not None and entry.config.get("path"):
        return os.path.abspath(entry.config["path"])
    return os.getcwd()


def command_config(user: Config) -> Config:
    """The config the command runs with: the user's, plus one local store rooted at ``/`` for
    every local address (``schemes.file``), every container reachable, and no bucket or container
    ever created. A local primary gives way to a memory one (its root is kept by ``Addresses``)."""
    schemes = {**user.schemes, _LOCAL_SCHEME: {"kind": "local", "config": {"path": os.sep}}}
    changes: dict[str, Any] = {"enable_multicontainer": True, "create_container": False, "schemes": schemes}
    if user.primary_kind() == "local":
        changes.update(type="mem", stow={}, local=None)
    return user.with_overrides(**changes)


def build_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config a command line runs with (see ``command_config``)."""
    return command_config(_user_config(args, os.environ if environ is None else environ))


# ---------------------------------------------------------------------------------------------
# Addresses


@dataclass(frozen=True, slots=True)
class Address:
    """One address as the user typed it (``text``) and the reference the store is asked for."""

    text: str
    ref: str
    #: The absolute local path, for local addresses.
    path: str | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None

    @property
    def is_dir(self) -> bool:
        """An existing local directory (which may hold no object, and still exists)."""
        return self.path is not None and os.path.isdir(self.path)

    @property
    def names_dir(self) -> bool:
        """Typed as a directory: a trailing '/', or an existing local directory."""
        return self.text.endswith("/") or self.is_dir

    def relative(self, ref: str) -> str | None:
        """The key of ``ref`` below this address ('' for the address itself), else None."""
        scheme, container, key = split_reference(self.ref)
        other_scheme, other_container, other_key = split_reference(ref)
        if (other_scheme, other_container) != (scheme, container):
            return None
        if other_key == key:
            return ""
        if not key:
            return other_key
        return other_key[len(key) + 1 :] if other_key.startswith(key + "/") else None

    def below(self, rel: str) -> str:
        """How to print the object ``rel`` below this address, in the user's spelling."""
        if not rel:
            return self.text
        base = self.text.rstrip("/") or self.text
        sep = "" if base.endswith("/") else "/"
        if self.path is not None and "://" not in self.text:
            return base + sep + rel
        return base + sep + escape_key(rel)


class Addresses:
    """Turns what the user typed into references, and references back into what they typed."""

    def __init__(self, config: Config, local_root: str) -> None:
        self.local_root = local_root
        self.schemes = set(BY_SCHEME) | {s.lower() for s in config.schemes}
        self._seen: list[Address] = []

    def __call__(self, text: str) -> Address:
        address = self._resolve(text)
        self._seen.append(address)
        self._seen.sort(key=lambda a: len(split_reference(a.ref)[2]), reverse=True)  # most specific first
        return address

    def _resolve(self, text: str) -> Address:
        if not text:
            raise UsageError("an empty address")
        if "://" not in text:
            return self._local(text, os.path.realpath(os.path.expanduser(text)))
        try:
            scheme, container, key = split_reference(text)
        except InvalidReferenceError as err:
            raise UsageError(str(err)) from None
        if scheme not in self.schemes:
            known = ", ".join(f"{s}://" for s in sorted(self.schemes))
            raise UsageError(f"unknown scheme [{scheme}://] in [{text}]; known: {known}")
        if scheme == _LOCAL_SCHEME:
            if not container:  # file:///abs/path
                return self._local(text, os.path.realpath("/" + key))
            segments = [container, *key.split("/")] if key else [container]
            if any(s in (".", "..") for s in segments):
                raise UsageError(f"[{text}] leaves the local root [{self.local_root}]")
            return self._local(text, os.path.join(os.path.realpath(self.local_root), *segments))
        if not container:
            raise UsageError(f"[{text}] names no bucket or container: write {scheme}://BUCKET/KEY")
        return Address(text, text)

    @staticmethod
    def _local(text: str, path: str) -> Address:
        """A local path as a reference to the local store rooted at '/': its first directory is
        the container, the rest the key."""
        container, _, key = path.strip(os.sep).partition(os.sep)
        if not container:
            raise UsageError(f"[{text}] names the root directory: name a directory below it")
        ref = f"{_LOCAL_SCHEME}://{container}/{escape_key(key.replace(os.sep, '/'))}"
        try:
            parsed = split_reference(ref)[1]
        except InvalidReferenceError:
            parsed = None
        if parsed != container:
            raise UsageError(f"[{text}]: the top-level directory [{container}] cannot be addressed")
        return Address(text, ref, path)

    def show(self, ref: str) -> str:
        """``ref`` as the user would write it: below one of their addresses when it is."""
        ref = str(ref)
        for address in self._seen:
            rel = address.relative(ref)
            if rel is not None:
                return address.below(rel)
        scheme, container, key = split_reference(ref)
        if scheme == _LOCAL_SCHEME:
            return os.sep + os.path.join(container, *key.split("/"))
        return ref


# ---------------------------------------------------------------------------------------------
# Output helpers


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=None, sort_keys=False)
    sys.stdout.write("\n")


@dataclass
class _Session:
    """What every command handler gets: the store, the arguments and the addresses."""

    store: DataStore
    args: argparse.Namespace
    addresses: Addresses
    base: Address | None

    def say(self, line: str) -> None:
        """A summary line on standard output (not with --quiet or --json)."""
        if not (self.args.quiet or self.args.json):
            print(line)

    def progress(self, label: str) -> ProgressDisplay:
        """A line redrawn on a terminal, plain lines on anything else; nothing with --quiet or
        --no-progress."""
        enabled = not (self.args.quiet or self.args.no_progress)
        return ProgressDisplay(label, sys.stderr, tty=sys.stderr.isatty(), enabled=enabled)

    def fail(self, what: str, err: BaseException) -> None:
        print(f"{PROG}: failed: {what}: {_one_line(err)}", file=sys.stderr)

    def options(self, progress: ProgressDisplay) -> dict[str, Any]:
        """The transfer API's keyword arguments this command line sets."""
        args = self.args
        options: dict[str, Any] = {"dry_run": args.dry_run, "concurrency": args.concurrency, "progress": progress}
        if getattr(args, "recursive", True):  # prefixes: the filters apply
            options.update(include=args.include, exclude=args.exclude)
        return options

    async def transfer(self, label: str, job: Callable[..., Awaitable[Summary]], *args: Any, **kw: Any) -> Summary:
        """Run a transfer API call with this command line's options and a progress display."""
        progress = self.progress(label)
        try:
            return await job(self.store, *args, **self.options(progress), **kw)
        finally:
            progress.finish()

    def report(self, summary: Summary) -> int:
        """Failures on standard error, then the summary (or the dry run's plan); the exit code."""
        show = self.addresses.show
        for failure in summary.failed:
            what = f"{show(failure.src)} -> {show(failure.dst)}" if failure.src else show(failure.dst)
            self.fail(what, failure.error)
        if summary.deletes_withheld:
            print(
                f"{PROG}: {count(summary.deletes_withheld)} not deleted from the destination: a copy failed",
                file=sys.stderr,
            )
        if summary.dry_run and not self.args.json:
            for action in summary.actions:
                if action.kind != "skip":
                    src = f"{show(action.src)} -> " if action.src else ""
                    print(f"(dry run) {action.kind}: {src}{show(action.dst)}")
        if self.args.json:
            _print_json(
                {
                    "ok": summary.ok,
                    "dry_run": summary.dry_run,
                    "copied": summary.copied,
                    "skipped": summary.skipped,
                    "deleted": summary.deleted,
                    "deletes_withheld": summary.deletes_withheld,
                    "failed": [
                        {"src": show(f.src) if f.src else "", "dst": show(f.dst), "error": _one_line(f.error)}
                        for f in summary.failed
                    ],
                    "bytes": summary.bytes,
                    "seconds": round(summary.seconds, 6),
                    "throughput": round(summary.throughput, 3),
                    **(
                        {"actions": [_action_dict(a, show) for a in summary.actions if a.kind != "skip"]}
                        if summary.dry_run
                        else {}
                    ),
                }
            )
        else:
            verb = {"rm": "deleted", "mv": "moved"}.get(self.args.command, "copied")
            done = summary.deleted if self.args.command == "rm" else summary.copied
            parts = [f"{done} {verb}"]
            if self.args.command in ("cp", "sync"):
                parts.append(f"{summary.skipped} skipped")
            if summary.deleted and self.args.command == "sync":
                parts.append(f"{summary.deleted} deleted")
            parts.append(f"{len(summary.failed)} failed")
            if self.args.command != "rm":
                parts[-1] += f"; {human(summary.bytes)} in {summary.seconds:.2f}s ({human(summary.throughput)}/s)"
            self.say(("(dry run: nothing changed) " if summary.dry_run else "") + ", ".join(parts))
        return EXIT_OK if summary.ok else EXIT_FAILURES


def _action_dict(action: Action, show: Callable[[str], str]) -> dict[str, Any]:
    return {
        "action": action.kind,
        "src": show(action.src) if action.src else "",
        "dst": show(action.dst),
        "size": action.size,
    }


def _tree(session: _Session, src_text: str, dst_text: str) -> tuple[Address, Address]:
    """Two prefixes; overlapping ones are refused (as rclone does): a destination inside its
    source would copy its own copies, a source inside its destination be overwritten."""
    src, dst = session.addresses(src_text), session.addresses(dst_text)
    if overlaps(src.ref, dst.ref):
        raise UsageError(f"[{src.text}] and [{dst.text}] overlap: one is inside the other")
    return src, dst


async def _destination_container(session: _Session, dst: Address) -> None:
    """A missing destination bucket or container is one ``NotFoundError`` naming it (exit 3)
    before the source is listed, not a failure for every object (the command creates none)."""
    scheme, container, _ = split_reference(dst.ref)
    if container:
        await session.store.list_page(f"{scheme}://{container}", max_items=1)


# ---------------------------------------------------------------------------------------------
# Commands


async def _cmd_ls(session: _Session) -> int:
    args, show = session.args, session.addresses.show
    if args.ref is not None:
        address = session.addresses(args.ref)
    elif session.base is not None:
        address = session.base
    else:
        raise UsageError("ls needs a REF: no base container is configured")
    rows: list[dict[str, Any]] = []
    tty = sys.stdout.isatty()

    def emit(ref: str, size: int, etag: str, modified: datetime | None) -> None:
        if args.json:
            rows.append({"ref": show(ref), "size": size, "etag": etag, "last_modified": _iso(modified)})
        elif args.long:
            shown = human(size) if tty else str(size)
            print(f"{shown}\t{_iso(modified) or '-'}\t{show(ref)}")
        else:
            print(show(ref))

    found = False
    async for entry in session.store.list(address.ref):
        found = True
        emit(str(entry.ref), entry.size, entry.etag, entry.last_modified)
    has_key = bool(split_reference(address.ref)[2]) and not address.is_dir
    if not found and has_key:
        meta = await session.store.head(address.ref)
        if meta.exists:
            found = True
            emit(address.ref, meta.size, meta.etag, meta.last_modified)
    if args.json:
        _print_json(rows)
    if not found and has_key:  # an empty container is listed as empty, a missing key is not found
        raise NotFoundError(f"no object or prefix [{address.text}]")
    return EXIT_OK


async def _cmd_du(session: _Session) -> int:
    args = session.args
    results: list[tuple[str, int, int]] = []
    for text in args.refs:
        address = session.addresses(text)
        objects, total = await du(session.store, address.ref, include=args.include, exclude=args.exclude)
        if not objects and not (address.is_dir or (args.include or args.exclude)):
            meta = await session.store.head(address.ref) if split_reference(address.ref)[2] else Metadata(exists=False)
            if not meta.exists:
                raise NotFoundError(f"no objects under [{address.text}]")
            objects, total = 1, meta.size
        results.append((address.text, total, objects))
    if args.json:
        rows = [{"ref": text, "bytes": total, "objects": objects} for text, total, objects in results]
        _print_json(rows if len(rows) > 1 else rows[0])
    else:
        for text, total, objects in results:
            print(f"{total}\t{human(total)}\t{count(objects)}\t{text}")
    return EXIT_OK


async def _cmd_cat(session: _Session) -> int:
    out = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    for text in session.args.refs:
        stream = await session.store.read_raw(session.addresses(text).ref)
        async with stream:
            async for chunk in stream:
                if out is not None:
                    out.write(chunk)
                else:  # a text-only stdout (rare): decode what we can
                    sys.stdout.write(bytes(chunk).decode("utf-8", "replace"))
    if out is not None:
        out.flush()
    return EXIT_OK


async def _cmd_stat(session: _Session) -> int:
    address = session.addresses(session.args.ref)
    meta = await session.store.head(address.ref)
    if not meta.exists:
        raise NotFoundError(f"object [{address.text}] does not exist")
    info = {
        "ref": address.text,
        "size": meta.size,
        "etag": meta.etag,
        "content_md5": meta.content_md5,
        "content_type": meta.content_type,
        "last_modified": _iso(meta.last_modified),
        "version": meta.version,
        "metadata": dict(meta.user_metadata),
    }
    if session.args.json:
        _print_json(info)
        return EXIT_OK
    print(f"ref: {address.text}")
    print(f"size: {meta.size}")
    print(f"etag: {meta.etag or '-'}")
    if meta.content_md5:
        print(f"content-md5: {meta.content_md5}")
    print(f"content-type: {meta.content_type or '-'}")
    print(f"last-modified: {_iso(meta.last_modified) or '-'}")
    if meta.version:
        print(f"version: {meta.version}")
    for key, value in sorted(meta.user_metadata.items()):
        print(f"metadata.{key}: {value}")
    return EXIT_OK


def _basename(address: Address) -> str:
    name = split_reference(address.ref)[2].rsplit("/", 1)[-1]
    if not name:
        raise UsageError(f"cannot copy [{address.text}] into a directory: it names no object")
    return name


async def _object_pairs(session: _Session) -> list[tuple[str, str]]:
    """The ``(src, dst)`` references of a cp/mv line without -r. With several sources, a DST
    ending in '/' or an existing local directory, each source lands below DST by its name."""
    args = session.args
    if len(args.paths) < 2:
        raise UsageError(f"{args.command} needs a source and a destination")
    *texts, dst_text = args.paths
    if args.recursive and len(texts) != 1:
        raise UsageError(f"{args.command} -r takes one source prefix and one destination prefix")
    sources = [session.addresses(text) for text in texts]
    dst = session.addresses(dst_text)
    into = len(sources) > 1 or dst.names_dir
    dst_base = dst.ref if dst.ref.endswith("/") else dst.ref + "/"
    pairs = [(src.ref, dst_base + escape_key(_basename(src)) if into else dst.ref) for src in sources]
    for source, target in pairs:
        if source == target:
            raise UsageError(f"[{session.addresses.show(source)}] would be copied onto itself")
    # One object: a missing source is this command's error (exit 3).
    if len(pairs) == 1 and not (await session.store.head(pairs[0][0])).exists:
        raise NotFoundError(f"source [{sources[0].text}] does not exist")
    return pairs


async def _copy_or_move(session: _Session, tree: Any, many: Any) -> int:
    args = session.args
    if args.recursive:
        if len(args.paths) != 2:
            raise UsageError(f"{args.command} -r takes one source prefix and one destination prefix")
        src, dst = _tree(session, *args.paths)
        await _destination_container(session, dst)
        return session.report(await session.transfer(args.command, tree, src.ref, dst.ref))
    pairs = await _object_pairs(session)
    summary = await session.transfer(args.command, many, pairs)
    if len(pairs) == 1 and summary.failed:
        raise summary.failed[0].error  # one object: its own error decides the exit code
    return session.report(summary)


async def _cmd_cp(session: _Session) -> int:
    return await _copy_or_move(session, copy_tree, copy_many)


async def _cmd_mv(session: _Session) -> int:
    return await _copy_or_move(session, move_tree, move_many)


def _confirm(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


async def _cmd_rm(session: _Session) -> int:
    args = session.args
    addresses = [session.addresses(text) for text in args.refs]
    if not args.recursive:
        for address in addresses:
            if not (await session.store.head(address.ref)).exists:
                raise NotFoundError(f"object [{address.text}] does not exist")
        return session.report(await session.transfer("rm", delete_refs, [a.ref for a in addresses]))
    if not (args.yes or args.dry_run):
        objects = 0
        for address in addresses:
            objects += (await du(session.store, address.ref, include=args.include, exclude=args.exclude))[0]
        if not sys.stdin.isatty():
            raise UsageError(f"rm -r would delete {count(objects)}: pass --yes to confirm (stdin is not a terminal)")
        if not _confirm(f"delete {count(objects)} under {', '.join(args.refs)}?"):
            print(f"{PROG}: nothing deleted", file=sys.stderr)
            return EXIT_USAGE
    summaries = [await session.transfer("rm", delete_tree, address.ref) for address in addresses]
    total = summaries[0]
    for more in summaries[1:]:
        total.deleted += more.deleted
        total.failed += more.failed
        total.actions += more.actions
        total.seconds += more.seconds
    return session.report(total)


async def _cmd_sync(session: _Session) -> int:
    args = session.args
    src, dst = _tree(session, args.src, args.dst)
    await _destination_container(session, dst)
    summary = await session.transfer("sync", sync, src.ref, dst.ref, delete=args.delete, checksum=args.checksum)
    return session.report(summary)


async def _cmd_url(session: _Session) -> int:
    args = session.args
    props = SignedURLProperties(scope=args.method, expires_in=timedelta(seconds=args.expires))
    response = await session.store.create_signed_url(session.addresses(args.ref).ref, props)
    if args.json:
        _print_json({"url": response.url, "method": args.method, "required_headers": dict(response.required_headers)})
    else:
        print(response.url)
        for name, value in response.required_headers.items():
            print(f"{name}: {value}", file=sys.stderr)
    return EXIT_OK


_HANDLERS: dict[str, Callable[[_Session], Awaitable[int]]] = {
    "ls": _cmd_ls,
    "du": _cmd_du,
    "cat": _cmd_cat,
    "stat": _cmd_stat,
    "cp": _cmd_cp,
    "mv": _cmd_mv,
    "rm": _cmd_rm,
    "sync": _cmd_sync,
    "url": _cmd_url,
}


def _base(user: Config, addresses: Addresses) -> Address | None:
    """The base container, as an address (what ``ls`` lists with no REF)."""
    if not user.container:
        return None
    return addresses(f"{user.primary_scheme()}://{user.container}")


async def _run(user: Config, args: argparse.Namespace) -> int:
    config = command_config(user)
    if args.command == "cat" and args.no_limit:
        config = config.with_overrides(limits={**dataclasses.asdict(config.limits), "max_download_mbs": 0})
    addresses = Addresses(config, _local_root(user, args))
    base = _base(user, addresses)
    async with DataStore(config) as store:
        return await _HANDLERS[args.command](_Session(store, args, addresses, base))


# ---------------------------------------------------------------------------------------------
# Entry point

#: Errors that are the command line's fault: exit 2.
_USAGE_ERRORS = (UsageError, ConfigError, InvalidReferenceError, InvalidArgumentError)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flytestore`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    try:
        return asyncio.run(_run(_user_config(args, os.environ), args))
    except _USAGE_ERRORS as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except NotFoundError as err:
        print(f"{PROG}: not found: {_one_line(err)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except BrokenPipeError:
        # The reader went away (`flytestore cat ... | head`): not an error worth a traceback.
        with contextlib.suppress(OSError, ValueError), open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return EXIT_OK
    except (StorageError, ValueError, OSError, asyncio.TimeoutError) as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_STORAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
