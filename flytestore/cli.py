"""The ``flytestore`` command: ls, cat, stat, cp, rm, sync and url over any configured store.

Configuration, lowest precedence first: the ``--config`` YAML file (Flyte's ``storage:`` section, or
a whole Flyte config holding one), then ``FLYTESTORE_*`` environment variables (see
``Config.from_env``), then the ``--type``, ``--container`` and ``--root`` flags. With none of these,
``mem://`` references get a memory store and ``file://<container>/<key>`` references a local store
rooted at ``--root`` (default: the current directory); anything else is a usage error.

Exit codes: 0 success, 1 some objects failed to transfer or delete, 2 usage error, 3 not found,
4 any other storage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .config import Config
from .datastore import DataStore
from .errors import NotFoundError, StorageError
from .progress import ProgressDisplay, human
from .rawstore import Metadata, SignedURLProperties
from .reference import split_reference
from .transfer import Summary, copy_many, prefix_pairs, sync
from .units import MiB

__all__ = ["EXIT_FAILURES", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_STORAGE", "EXIT_USAGE", "build_parser", "main"]

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
memory). References are URLs such as s3://bucket/key, gs://bucket/key, file://container/key or
mem://container/key.

configuration (later wins):
  --config FILE          Flyte `storage:` YAML (the section, or a whole config holding it)
  FLYTESTORE_* env vars  FLYTESTORE_CONFIG=file.yaml, FLYTESTORE_TYPE=s3,
                         FLYTESTORE_STOW__CONFIG__ENDPOINT=..., FLYTESTORE_LIMITS__MAXDOWNLOADMBS=0
  --type/--container/--root flags
With none of these, mem:// references use a memory store and file://CONTAINER/KEY references a
local store whose root is --root (default: the current directory).

exit codes:
  0 success, 1 some objects failed to transfer, 2 usage error, 3 not found,
  4 other storage or configuration error
"""

_MAIN_EPILOG = """\
examples:
  flytestore --type local --root /data --container c ls file://c/prefix
  flytestore --config flyte.yaml cat s3://bucket/key > key.bin
  flytestore --json stat s3://bucket/key
  flytestore cp -r s3://bucket/in/ gs://other/out/
  flytestore sync --delete file://c/site s3://bucket/site
  flytestore <command> --help
"""

_COMMANDS: dict[str, tuple[str, str, str]] = {
    "ls": (
        "list the objects under a prefix",
        "List every object under REF (recursive, in key order); REF defaults to the base container.\n"
        "A REF naming a single object lists that object. --json prints a list of\n"
        "{ref, size, etag, last_modified}.",
        "examples:\n"
        "  flytestore ls s3://bucket/prefix/\n"
        "  flytestore ls -l file://c\n"
        "  flytestore --json ls gs://bucket/data | jq '.[].ref'\n",
    ),
    "cat": (
        "write objects to standard output",
        "Stream each REF to standard output, chunk by chunk. The configured download limit\n"
        "(limits.maxDownloadMBs, 2 MiB by default) applies unless --no-limit is given.",
        "examples:\n"
        "  flytestore cat s3://bucket/config.json\n"
        "  flytestore cat --no-limit s3://bucket/big.bin > big.bin\n",
    ),
    "stat": (
        "show an object's metadata",
        "Print the size, etag, content type and last modification time of REF.\nExit code 3 when it does not exist.",
        "examples:\n  flytestore stat s3://bucket/key\n  flytestore --json stat file://c/data.csv\n",
    ),
    "cp": (
        "copy objects, one, many or a whole prefix",
        "Copy SRC to DST (any scheme to any scheme; server-side within a backend, streamed\n"
        "across backends). With several sources, or a DST ending in '/', each source is copied\n"
        "below DST under its own name. With -r, every object under the SRC prefix is copied\n"
        "below the DST prefix, with bounded concurrency. Transient errors are retried per the\n"
        "config's retries section (retries.maxAttempts attempts per object in all).\n"
        "Progress goes to standard error: a bar on a terminal, plain lines when piped.",
        "examples:\n"
        "  flytestore cp s3://bucket/a.txt gs://other/b.txt\n"
        "  flytestore cp s3://bucket/a.txt s3://bucket/b.txt file://c/backup/\n"
        "  flytestore cp -r --concurrency 64 s3://bucket/in gs://other/out\n",
    ),
    "rm": (
        "delete objects or a whole prefix",
        "Delete each REF. With -r, delete every object under each REF prefix: this asks for\n"
        "confirmation on a terminal, and needs --yes when standard input is not a terminal.",
        "examples:\n  flytestore rm s3://bucket/old.txt\n  flytestore rm -r --yes s3://bucket/tmp/\n",
    ),
    "sync": (
        "make a destination prefix mirror a source prefix",
        "Copy the objects under SRC that are missing below DST or differ there (by size and\n"
        "etag/MD5, or modification time across backends). --delete also removes the objects\n"
        "below DST that have no counterpart under SRC.",
        "examples:\n"
        "  flytestore sync file://c/site s3://bucket/site\n"
        "  flytestore sync --delete s3://bucket/a gs://other/a\n",
    ),
    "url": (
        "print a signed URL for an object",
        "Print a signed URL for REF that allows --method (GET or PUT) for --expires seconds.\n"
        "Headers the client must send are printed to standard error (and in the --json output).\n"
        "Backends without signed URLs (local, memory, Redis) exit with code 4.",
        "examples:\n"
        "  flytestore url s3://bucket/key\n"
        "  flytestore url --method PUT --expires 600 gs://bucket/upload.bin\n",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``flytestore`` argument parser (exposed for documentation and tests)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=_MAIN_DESCRIPTION, epilog=_MAIN_EPILOG, formatter_class=fmt)
    parser.add_argument("--config", metavar="FILE", help="a YAML storage config (Flyte `storage:` section accepted)")
    parser.add_argument("--type", metavar="T", help="storage type: mem, local, s3, minio, stow, redis")
    parser.add_argument("--container", metavar="C", help="the base container (bucket)")
    parser.add_argument(
        "--root", metavar="PATH", help="root directory of the local store (default: the current directory)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on standard output")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name: str) -> argparse.ArgumentParser:
        short, description, epilog = _COMMANDS[name]
        return sub.add_parser(name, help=short, description=description, epilog=epilog, formatter_class=fmt)

    p = command("ls")
    p.add_argument("ref", metavar="REF", nargs="?", help="a prefix or object reference")
    p.add_argument("-l", "--long", action="store_true", help="also print size and last modification time")

    p = command("cat")
    p.add_argument("refs", metavar="REF", nargs="+", help="object references")
    p.add_argument("--no-limit", action="store_true", help="ignore the download limit (limits.maxDownloadMBs=0)")

    p = command("stat")
    p.add_argument("ref", metavar="REF", help="an object reference")

    p = command("cp")
    p.add_argument("paths", metavar="SRC", nargs="+", help="source references, then the destination DST")
    p.add_argument("-r", "--recursive", action="store_true", help="copy every object under the SRC prefix")
    _transfer_options(p)

    p = command("rm")
    p.add_argument("refs", metavar="REF", nargs="+", help="object references (prefixes with -r)")
    p.add_argument("-r", "--recursive", action="store_true", help="delete every object under each prefix")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--concurrency", type=_positive, default=32, metavar="N", help="deletes in flight (default 32)")

    p = command("sync")
    p.add_argument("src", metavar="SRC", help="the source prefix")
    p.add_argument("dst", metavar="DST", help="the destination prefix")
    p.add_argument("--delete", action="store_true", help="delete destination objects missing from SRC")
    _transfer_options(p)

    p = command("url")
    p.add_argument("ref", metavar="REF", help="an object reference")
    p.add_argument("--method", type=str.upper, choices=("GET", "PUT"), default="GET", help="allowed method (GET)")
    p.add_argument("--expires", type=_positive, default=3600, metavar="SECONDS", help="lifetime (default 3600)")
    return parser


def _transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=_positive, default=32, metavar="N", help="objects in flight (default 32)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress (by default: a bar on a terminal, else plain lines)",
    )


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


def _refs_of(args: argparse.Namespace) -> list[str]:
    refs: list[str] = []
    for name in ("ref", "refs", "paths", "src", "dst"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            refs.append(value)
        elif isinstance(value, list):
            refs.extend(value)
    return refs


def build_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config for a command line: ``--config`` < ``FLYTESTORE_*`` variables < flags."""
    env = dict(os.environ if environ is None else environ)
    if args.config:
        env[ENV_PREFIX + "CONFIG"] = args.config
    configured = any(name.upper().startswith(ENV_PREFIX) for name in env)
    if configured:
        config = Config.from_env(env, prefix=ENV_PREFIX)
    elif args.type:
        config = Config(type=args.type, container=args.container or "")
    else:
        config = _implicit_config(args)
    changes: dict[str, Any] = {}
    if args.type and args.type != config.type:
        changes["type"] = args.type
    if args.container:
        changes["container"] = args.container
    if changes:
        config = config.with_overrides(**changes)
    if config.primary_kind() == "local" and (args.root or not config.backend_config().get("path")):
        local = dict(config.local or {})
        local["path"] = os.path.abspath(args.root or os.getcwd())
        config = config.with_overrides(local=local)
    return config


def _implicit_config(args: argparse.Namespace) -> Config:
    refs = _refs_of(args)
    schemes = {split_reference(ref)[0].lower() for ref in refs}
    if refs and schemes == {"mem"}:
        return Config(type="mem", container=args.container or split_reference(refs[0])[1])
    if refs and schemes == {"file"}:
        container = args.container or split_reference(refs[0])[1]
        return Config(type="local", container=container)
    raise UsageError(
        "no storage configured: pass --config FILE (a Flyte `storage:` YAML), set FLYTESTORE_* "
        "environment variables (e.g. FLYTESTORE_CONFIG=storage.yaml), or give --type/--container "
        "(and --root for a local store); without any, only file:// and mem:// references work"
    )


# ---------------------------------------------------------------------------------------------
# Output helpers


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _count(n: int) -> str:
    return f"{n} object" if n == 1 else f"{n} objects"


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=None, sort_keys=False)
    sys.stdout.write("\n")


def _summary_dict(summary: Summary) -> dict[str, Any]:
    return {
        "ok": summary.ok,
        "copied": summary.copied,
        "skipped": summary.skipped,
        "deleted": summary.deleted,
        "failed": [{"src": f.src, "dst": f.dst, "error": str(f.error)} for f in summary.failed],
        "bytes": summary.bytes,
        "seconds": round(summary.seconds, 6),
        "throughput": round(summary.throughput, 3),
    }


def _progress(args: argparse.Namespace, label: str) -> ProgressDisplay:
    """A bar on a terminal, plain lines on standard error otherwise; nothing with --no-progress."""
    return ProgressDisplay(label, sys.stderr, tty=sys.stderr.isatty(), enabled=not args.no_progress)


def _report_summary(args: argparse.Namespace, summary: Summary, verb: str) -> int:
    for failure in summary.failed:
        what = f"{failure.src} -> {failure.dst}" if failure.src else failure.dst
        print(f"{PROG}: failed: {what}: {failure.error}", file=sys.stderr)
    if args.json:
        _print_json(_summary_dict(summary))
    else:
        parts = [f"{summary.copied} {verb}", f"{summary.skipped} skipped"]
        if summary.deleted:
            parts.append(f"{summary.deleted} deleted")
        parts.append(f"{len(summary.failed)} failed")
        print(
            ", ".join(parts)
            + f"; {human(summary.bytes)} in {summary.seconds:.2f}s ({human(int(summary.throughput))}/s)"
        )
    return EXIT_OK if summary.ok else EXIT_FAILURES


# ---------------------------------------------------------------------------------------------
# Commands


async def _cmd_ls(store: DataStore, args: argparse.Namespace) -> int:
    ref = args.ref or str(store.base_container)
    rows: list[dict[str, Any]] = []
    tty = sys.stdout.isatty()

    def emit(ref: str, size: int, etag: str, modified: datetime | None) -> None:
        if args.json:
            rows.append({"ref": ref, "size": size, "etag": etag, "last_modified": _iso(modified)})
        elif args.long:
            shown = human(size) if tty else str(size)
            print(f"{shown}\t{_iso(modified) or '-'}\t{ref}")
        else:
            print(ref)

    found = False
    async for entry in store.list(ref):
        found = True
        emit(str(entry.ref), entry.size, entry.etag, entry.last_modified)
    has_key = bool(split_reference(ref)[2].strip("/"))
    if not found and has_key:
        meta = await store.head(ref)
        if meta.exists:
            found = True
            emit(ref, meta.size, meta.etag, meta.last_modified)
    if args.json:
        _print_json(rows)
    if not found and has_key:  # an empty container is listed as empty, a missing key is not found
        raise NotFoundError(f"no object or prefix [{ref}]")
    return EXIT_OK


async def _cmd_cat(store: DataStore, args: argparse.Namespace) -> int:
    out = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    for ref in args.refs:
        stream = await store.read_raw(ref)
        async with stream:
            async for chunk in stream:
                if out is not None:
                    out.write(chunk)
                else:  # a text-only stdout (rare): decode what we can
                    sys.stdout.write(bytes(chunk).decode("utf-8", "replace"))
    if out is not None:
        out.flush()
    return EXIT_OK


def _meta_dict(ref: str, meta: Metadata) -> dict[str, Any]:
    return {
        "ref": ref,
        "size": meta.size,
        "etag": meta.etag,
        "content_md5": meta.content_md5,
        "content_type": meta.content_type,
        "last_modified": _iso(meta.last_modified),
        "version": meta.version,
        "metadata": dict(meta.user_metadata),
    }


async def _cmd_stat(store: DataStore, args: argparse.Namespace) -> int:
    meta = await store.head(args.ref)
    if not meta.exists:
        raise NotFoundError(f"object [{args.ref}] does not exist")
    info = _meta_dict(args.ref, meta)
    if args.json:
        _print_json(info)
        return EXIT_OK
    print(f"ref: {args.ref}")
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


def _basename(ref: str) -> str:
    key = split_reference(ref)[2].rstrip("/")
    name = key.rsplit("/", 1)[-1]
    if not name:
        raise UsageError(f"cannot copy [{ref}] into a directory: it names no object")
    return name


async def _cmd_cp(store: DataStore, args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise UsageError("cp needs a source and a destination")
    *sources, dst = args.paths
    progress = _progress(args, "cp")
    if args.recursive:
        if len(sources) != 1:
            raise UsageError("cp -r takes one source prefix and one destination prefix")
        src = sources[0]
        try:
            summary = await copy_many(
                store, prefix_pairs(store, src, dst), concurrency=args.concurrency, progress=progress
            )
        finally:
            progress.finish()
        if summary.copied == 0 and not summary.failed:
            raise NotFoundError(f"no objects under [{src}]")
        return _report_summary(args, summary, "copied")
    into = len(sources) > 1 or dst.endswith("/")
    pairs = [(src, dst.rstrip("/") + "/" + _basename(src) if into else dst) for src in sources]
    try:
        summary = await copy_many(store, pairs, concurrency=args.concurrency, progress=progress)
    finally:
        progress.finish()
    if len(pairs) == 1 and summary.failed:
        raise summary.failed[0].error  # one object: its own error decides the exit code
    return _report_summary(args, summary, "copied")


async def _expand_rm(store: DataStore, args: argparse.Namespace) -> list[str]:
    targets: list[str] = []
    for ref in args.refs:
        found = [str(entry.ref) async for entry in store.list(ref)]
        if not found:
            raise NotFoundError(f"no objects under [{ref}]")
        targets.extend(found)
    return targets


def _confirm(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


async def _cmd_rm(store: DataStore, args: argparse.Namespace) -> int:
    if not args.recursive:
        if len(args.refs) == 1:
            await store.delete(args.refs[0])
            if args.json:
                _print_json({"deleted": args.refs, "failed": []})
            return EXIT_OK
        targets = list(args.refs)
    else:
        targets = await _expand_rm(store, args)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"rm -r would delete {_count(len(targets))}: pass --yes to confirm (stdin is not a terminal)"
                )
            if not _confirm(f"delete {_count(len(targets))} under {', '.join(args.refs)}?"):
                print(f"{PROG}: nothing deleted", file=sys.stderr)
                return EXIT_USAGE
    deleted: list[str] = []
    failed: list[tuple[str, BaseException]] = []
    slots = asyncio.Semaphore(args.concurrency)

    async def delete(ref: str) -> None:
        async with slots:
            try:
                await store.delete(ref)
                deleted.append(ref)
            except Exception as err:
                failed.append((ref, err))

    await asyncio.gather(*(delete(ref) for ref in targets))
    for ref, err in failed:
        print(f"{PROG}: failed: {ref}: {err}", file=sys.stderr)
    if args.json:
        _print_json({"deleted": sorted(deleted), "failed": [{"ref": r, "error": str(e)} for r, e in failed]})
    else:
        print(f"{len(deleted)} deleted, {len(failed)} failed")
    if failed and not args.recursive and all(isinstance(e, NotFoundError) for _, e in failed):
        return EXIT_NOT_FOUND
    return EXIT_FAILURES if failed else EXIT_OK


async def _cmd_sync(store: DataStore, args: argparse.Namespace) -> int:
    progress = _progress(args, "sync")
    try:
        summary = await sync(
            store, args.src, args.dst, delete=args.delete, concurrency=args.concurrency, progress=progress
        )
    finally:
        progress.finish()
    return _report_summary(args, summary, "copied")


async def _cmd_url(store: DataStore, args: argparse.Namespace) -> int:
    props = SignedURLProperties(scope=args.method, expires_in=timedelta(seconds=args.expires))
    response = await store.create_signed_url(args.ref, props)
    if args.json:
        _print_json({"url": response.url, "method": args.method, "required_headers": dict(response.required_headers)})
    else:
        print(response.url)
        for name, value in response.required_headers.items():
            print(f"{name}: {value}", file=sys.stderr)
    return EXIT_OK


_HANDLERS: dict[str, Callable[[DataStore, argparse.Namespace], Any]] = {
    "ls": _cmd_ls,
    "cat": _cmd_cat,
    "stat": _cmd_stat,
    "cp": _cmd_cp,
    "rm": _cmd_rm,
    "sync": _cmd_sync,
    "url": _cmd_url,
}


async def _run(config: Config, args: argparse.Namespace) -> int:
    handler = _HANDLERS[args.command]
    async with DataStore(config) as store:
        result: int = await handler(store, args)
        return result


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flytestore`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    try:
        config = build_config(args)
        if args.command == "cat" and args.no_limit:
            config = config.with_overrides(limits={"max_download_mbs": 0})
        return asyncio.run(_run(config, args))
    except UsageError as err:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except NotFoundError as err:
        print(f"{PROG}: not found: {err}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except BrokenPipeError:
        # The reader went away (`flytestore cat ... | head`): not an error worth a traceback.
        with contextlib.suppress(OSError, ValueError), open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return EXIT_OK
    except (StorageError, ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_STORAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
