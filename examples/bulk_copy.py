"""Copy thousands of small objects between two prefixes with bounded concurrency and a progress bar.

    python examples/bulk_copy.py [--count 5000] [--size 4096] [--concurrency 32] [--root DIR]
    python examples/bulk_copy.py --config flyte.yaml --src s3://bucket/in --dst s3://bucket/out
    python examples/bulk_copy.py ... --verify [N|all]

By default it needs nothing: a local store in a fresh temporary directory (or --root DIR), where it
first writes --count random objects of --size bytes below file://bulk/src (concurrently, through
the store), then copies them below file://bulk/dst with ``flytestore.transfer.copy_many``. A
``file://CONTAINER/KEY`` reference is the file ROOT/CONTAINER/KEY. Any other scheme the store routes
works as a source or destination too: ``--dst mem://bulk/dst`` copies into memory, and with
--config (Flyte ``storage:`` YAML) s3://, gs://, abfs:// and redis:// references reach real stores.

With --src, the objects already under it are copied (add --generate to write --count new ones
there first). --verify compares the content of every copied object (or a random sample of N) with
its source, streaming both sides. The download limit is switched off for those reads.

Progress goes to stderr: a bar redrawn in place on a terminal, plain lines otherwise (every
--interval seconds and every tenth of the job). The summary goes to stdout. Exit code: 0 when
everything was copied (and verified), 1 when an object failed or differs, 2 on a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from flytestore import Config, ConfigError, DataStore, StorageError
from flytestore.progress import ProgressDisplay, human
from flytestore.reference import split_reference
from flytestore.transfer import Summary, copy_many, prefix_pairs

MiB = 1024 * 1024
DEFAULT_CONTAINER = "bulk"


# ---------------------------------------------------------------------------------------------
# The steps


def object_key(i: int) -> str:
    return f"{i // 1000:03d}/obj-{i:06d}.bin"


async def generate(
    store: DataStore, prefix: str, count: int, size: int, concurrency: int, display: ProgressDisplay
) -> None:
    """Write ``count`` random objects of ``size`` bytes below ``prefix``, ``concurrency`` at a time."""
    indices = iter(range(count))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in indices:  # shared: each index is taken by one worker
            await store.write_raw(store.construct_reference(prefix, object_key(i)), random.randbytes(size))
            done += 1
            display.update(done, count, done * size)

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    finally:
        display.finish()


class Recorder:
    """Passes ``(src, dst)`` pairs through, keeping all of them or a random sample (reservoir)."""

    def __init__(self, sample: int | None) -> None:
        self.sample = sample  # None: keep every pair
        self.kept: list[tuple[str, str]] = []
        self.seen = 0

    async def pairs(self, source: AsyncIterator[tuple[str, str]]) -> AsyncIterator[tuple[str, str]]:
        async for pair in source:
            self.seen += 1
            if self.sample is None or len(self.kept) < self.sample:
                self.kept.append(pair)
            else:
                j = random.randrange(self.seen)
                if j < self.sample:
                    self.kept[j] = pair
            yield pair


async def digest(store: DataStore, ref: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    stream = await store.read_raw(ref)
    async with stream:
        async for chunk in stream:
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


async def verify(store: DataStore, pairs: list[tuple[str, str]], concurrency: int) -> list[str]:
    """The problems found comparing each destination's content with its source's."""
    slots = asyncio.Semaphore(concurrency)
    problems: list[str] = []

    async def check(src: str, dst: str) -> None:
        async with slots:
            try:
                a, b = await asyncio.gather(digest(store, src), digest(store, dst))
            except StorageError as err:
                problems.append(f"{src} -> {dst}: {err}")
                return
            if a != b:
                problems.append(f"{src} -> {dst}: content differs ({a[0]} vs {b[0]} bytes)")

    await asyncio.gather(*(check(src, dst) for src, dst in pairs))
    return problems


def report(summary: Summary) -> str:
    seconds = max(summary.seconds, 1e-9)
    return (
        f"summary: {summary.copied} copied, {summary.skipped} skipped, {len(summary.failed)} failed, "
        f"{summary.bytes} bytes ({human(summary.bytes)}) in {summary.seconds:.3f} s: "
        f"{summary.copied / seconds:,.0f} objects/s, {summary.bytes / seconds / MiB:.2f} MiB/s"
    )


def _inside(ref: str, prefix: str) -> bool:
    """Whether ``ref`` is ``prefix`` or lies below it (same scheme and container)."""
    scheme, container, key = split_reference(ref)
    p_scheme, p_container, p_key = split_reference(prefix)
    if (scheme, container) != (p_scheme, p_container):
        return False
    return not p_key or key == p_key or key.startswith(p_key + "/")


async def run(args: argparse.Namespace, config: Config, local_root: str | None) -> int:
    tty = sys.stderr.isatty()
    shown = not args.no_progress
    async with DataStore(config) as store:
        base = store.base_container
        src = args.src or store.construct_reference(base, "src")
        dst = args.dst or store.construct_reference(base, "dst")
        if _inside(dst, src) or _inside(src, dst):
            print(f"bulk_copy: {src} and {dst} overlap: pick prefixes that do not contain each other", file=sys.stderr)
            return 2
        if local_root is not None:
            # A local container is a directory that must exist, like a bucket: create them.
            for ref in (src, dst):
                scheme, container, _ = split_reference(ref)
                if scheme == "file" and container:
                    os.makedirs(os.path.join(local_root, container), exist_ok=True)
        print(f"source {src} -> destination {dst}", flush=True)

        expected = None
        if args.generate or not args.src:
            display = ProgressDisplay("writing", sys.stderr, tty=tty, interval=args.interval, enabled=shown)
            started = time.perf_counter()
            await generate(store, src, args.count, args.size, args.concurrency, display)
            took = time.perf_counter() - started
            print(f"wrote {args.count} objects of {args.size} B in {took:.2f} s ({args.count / took:,.0f} objects/s)")
            expected = args.count

        # args.verify: 0 without --verify, None for every copy, else the sample size.
        recorder = Recorder(args.verify) if args.verify != 0 else None
        pairs = prefix_pairs(store, src, dst)
        display = ProgressDisplay(
            "copying", sys.stderr, tty=tty, expected=expected, interval=args.interval, enabled=shown
        )
        try:
            summary = await copy_many(
                store,
                recorder.pairs(pairs) if recorder is not None else pairs,
                concurrency=args.concurrency,
                progress=display,
            )
        finally:
            display.finish()

        for failure in summary.failed[:20]:
            print(f"failed: {failure.src} -> {failure.dst}: {failure.error}", file=sys.stderr)
        if len(summary.failed) > 20:
            print(f"... and {len(summary.failed) - 20} more failures", file=sys.stderr)
        print(report(summary), flush=True)
        if summary.copied == 0 and not summary.failed:
            print(f"bulk_copy: no objects under {src}", file=sys.stderr)
            return 1

        problems: list[str] = []
        if recorder is not None:
            failed = {f.src for f in summary.failed}
            checked = [pair for pair in recorder.kept if pair[0] not in failed]
            problems = await verify(store, checked, args.concurrency)
            for problem in problems[:20]:
                print(f"verify: {problem}", file=sys.stderr)
            print(f"verified {len(checked)} of {summary.copied} copies by content: {len(problems)} differ")
        return 0 if summary.ok and not problems else 1


# ---------------------------------------------------------------------------------------------
# Command line


def _sample(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the sample must be at least 1, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Copy many objects between two prefixes with flytestore.")
    parser.add_argument("--count", type=_positive, default=5000, help="objects to generate (default 5000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per generated object (default 4096)")
    parser.add_argument("--concurrency", type=_positive, default=32, help="objects in flight (default 32)")
    parser.add_argument(
        "--src",
        metavar="REF",
        help="source prefix (default: BASE/src, generated; BASE is file://bulk without --config)",
    )
    parser.add_argument("--dst", metavar="REF", help="destination prefix (default: BASE/dst)")
    parser.add_argument("--generate", action="store_true", help="write --count objects under --src first")
    parser.add_argument("--config", metavar="FILE", help="Flyte storage YAML (default: a local store)")
    parser.add_argument("--root", metavar="DIR", help="local store root (default: a temporary directory)")
    parser.add_argument(
        "--verify",
        type=_sample,
        nargs="?",
        const=None,
        default=0,
        metavar="N|all",
        help="compare copies with their sources by content: all of them (the default) or a random sample of N",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between plain progress lines")
    parser.add_argument("--no-progress", action="store_true", help="print no progress at all")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.size < 0:
        print("bulk_copy: --size must not be negative", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="flytestore-bulk-") as tmp:
        try:
            local_root = None
            if args.config:
                config = Config.from_yaml(args.config)
            else:
                local_root = args.root or tmp
                config = Config(
                    type="local",
                    container=DEFAULT_CONTAINER,
                    enable_multicontainer=True,  # file://C/K is ROOT/C/K for any container C
                    local={"path": local_root},
                )
            # Copies are never limited; the limit would only stop --verify reading large objects.
            config = config.with_overrides(limits={"max_download_mbs": 0})
            return asyncio.run(run(args, config, local_root))
        except ConfigError as err:  # names the offending field
            print(f"bulk_copy: {err}", file=sys.stderr)
            return 2
        except StorageError as err:  # a listing that fails, a store that cannot be opened...
            print(f"bulk_copy: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bulk_copy: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
