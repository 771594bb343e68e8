"""One behaviour suite every backend passes (run against real servers for remote backends)."""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from flytestore import (
    AlreadyExistsError,
    ByteStream,
    Cursor,
    DataReference,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    Options,
    SignedURLProperties,
    SizeMismatchError,
    UnsupportedError,
    construct_reference,
    is_not_found,
)

from .backend_stack import CACHE_MBS
from .backends import Backend

MiB = 1024 * 1024


async def read(b: Backend, ref: str, **kw: int) -> bytes:
    stream = await b.store.read_raw(ref, **kw)
    async with stream:
        return await stream.read()


# -- put / get / head ------------------------------------------------------------------------


async def test_round_trip(backend: Backend) -> None:
    ref = backend.ref("a", "b.bin")
    meta = await backend.store.write_raw(ref, b"hello world")
    assert meta.exists and meta.size == 11
    assert await read(backend, ref) == b"hello world"
    head = await backend.store.head(ref)
    assert head.exists and head.size == 11
    if backend.etag:
        assert head.etag


async def test_head_missing_is_not_an_error(backend: Backend) -> None:
    meta = await backend.store.head(backend.ref("missing"))
    assert not meta.exists


async def test_read_missing_raises_not_found(backend: Backend) -> None:
    with pytest.raises(NotFoundError) as info:
        await backend.store.read_raw(backend.ref("missing"))
    assert isinstance(info.value, FileNotFoundError)
    assert is_not_found(info.value)
    assert "missing" in str(info.value)


async def test_overwrite_replaces_content(backend: Backend) -> None:
    ref = backend.ref("over")
    await backend.store.write_raw(ref, b"first version")
    await backend.store.write_raw(ref, b"second")
    assert await read(backend, ref) == b"second"
    assert (await backend.store.head(ref)).size == 6


async def test_empty_object(backend: Backend) -> None:
    ref = backend.ref("empty")
    meta = await backend.store.write_raw(ref, b"")
    assert meta.size == 0
    head = await backend.store.head(ref)
    assert head.exists and head.size == 0
    assert await read(backend, ref) == b""
    stream = await backend.store.read_raw(ref)
    assert [c async for c in stream] == []


@pytest.mark.parametrize(
    "key",
    [
        "unicode/ü-日本語.txt",
        "with space/a b c",
        "percent/100%/x%20y",
        "sym/a+b=c,d;e@f:g",
        "q/what?is#this",
        "dots/..a/b..",
        "~tilde/!'()*",
    ],
)
async def test_awkward_keys_round_trip_and_list(backend: Backend, key: str) -> None:
    from urllib.parse import quote

    ref = construct_reference(backend.base, quote(key, safe="/"))
    await backend.store.write_raw(ref, key.encode())
    assert await read(backend, ref) == key.encode()
    listed = [e.ref async for e in backend.store.list(backend.base)]
    assert len(listed) == 1
    # The listed reference names the same object.
    assert listed[0].split()[2] == ref.split()[2]
    assert await read(backend, listed[0]) == key.encode()


async def test_write_returns_metadata_matching_head(backend: Backend) -> None:
    ref = backend.ref("meta")
    written = await backend.store.write_raw(ref, b"x" * 1000)
    head = await backend.store.head(ref)
    assert written.size == head.size == 1000
    if backend.etag:
        assert written.etag == head.etag


async def test_user_metadata_and_content_type(backend: Backend) -> None:
    if not (backend.user_metadata and backend.content_type):
        pytest.skip(f"{backend.name} does not store object metadata")
    ref = backend.ref("with-meta")
    await backend.store.write_raw(
        ref, b"{}", options=Options(metadata={"owner": "me"}, content_type="application/json")
    )
    head = await backend.store.head(ref)
    assert head.content_type == "application/json"
    assert dict(head.user_metadata) == {"owner": "me"}


# -- ranges -----------------------------------------------------------------------------------

RANGES = [
    (0, None, b"0123456789"),
    (3, None, b"3456789"),
    (0, 4, b"0123"),
    (2, 5, b"23456"),
    (8, 10, b"89"),
    (9, 1, b"9"),
    (10, None, b""),
    (25, 5, b""),
    (4, 0, b""),
]


@pytest.mark.parametrize(("offset", "length", "expected"), RANGES)
async def test_range_reads(backend: Backend, offset: int, length: int | None, expected: bytes) -> None:
    ref = backend.ref("digits")
    await backend.store.write_raw(ref, b"0123456789")
    stream = await backend.store.read_raw(ref, offset=offset, length=length)
    async with stream:
        if stream.size is not None:
            assert stream.size == len(expected)
        assert await stream.read() == expected


async def test_range_read_of_large_object(backend: Backend) -> None:
    ref = backend.ref("big")
    data = os.urandom(3 * MiB + 17)
    await backend.store.write_raw(ref, data)
    assert await read(backend, ref, offset=MiB - 5, length=MiB + 10) == data[MiB - 5 : 2 * MiB + 5]


async def test_reads_carry_the_object_etag_so_a_resumed_read_can_be_pinned(backend: Backend) -> None:
    ref = backend.ref("pinned")
    await backend.store.write_raw(ref, b"0123456789" * 1000)
    head = await backend.store.head(ref)
    for offset, length in ((0, None), (1234, None), (10, 100)):
        stream = await backend.store.read_raw(ref, offset=offset, length=length)
        async with stream:
            if not stream.in_memory:  # a body already in memory (Redis) has nothing to resume
                assert stream.metadata is not None
                assert stream.metadata.etag == head.etag
            assert await stream.read() == (b"0123456789" * 1000)[offset : None if length is None else offset + length]


async def test_read_bytes_max_size(backend: Backend) -> None:
    ref = backend.ref("capped")
    data = bytes(range(256)) * 4
    await backend.store.write_raw(ref, data)
    assert await backend.store.read_bytes(ref, max_size=len(data)) == data
    assert await backend.store.read_bytes(ref, max_size=len(data) + 1) == data
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, max_size=len(data) - 1)
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, max_size=1)
    # A range is judged by its own length, not the object's.
    assert await backend.store.read_bytes(ref, offset=100, length=50, max_size=50) == data[100:150]
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, offset=100, length=50, max_size=49)
    assert await backend.store.read_bytes(ref, offset=1000, max_size=24) == data[1000:]
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, offset=1000, max_size=23)
    # Once more, now that a cache in the stack may hold the object.
    assert await backend.store.read_bytes(ref) == data
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, max_size=len(data) - 1)
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, offset=1, max_size=len(data) - 2)


async def test_read_bytes_max_size_of_a_large_object(backend: Backend) -> None:
    ref = backend.ref("capped-large")
    data = os.urandom(3 * MiB + 5)
    await backend.store.write_raw(ref, data)
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_bytes(ref, max_size=MiB)
    assert await backend.store.read_bytes(ref, offset=MiB, length=MiB, max_size=MiB) == data[MiB : 2 * MiB]
    assert await backend.store.read_bytes(ref, max_size=len(data)) == data


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1)])
async def test_bad_ranges(backend: Backend, offset: int, length: int | None) -> None:
    ref = backend.ref("r")
    await backend.store.write_raw(ref, b"abc")
    with pytest.raises(InvalidArgumentError):
        await backend.store.read_raw(ref, offset=offset, length=length)


# -- streaming ---------------------------------------------------------------------------------


async def _agen(total: int, chunk: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield bytes([sent // chunk % 256]) * n
        sent += n
        await asyncio.sleep(0)


def _expected(total: int, chunk: int) -> bytes:
    return b"".join(bytes([i % 256]) * min(chunk, total - i * chunk) for i in range((total + chunk - 1) // chunk))


@pytest.mark.parametrize("declared", [False, True])
async def test_streaming_write_and_read(backend: Backend, declared: bool) -> None:
    total, chunk = 6 * MiB + 123, 700 * 1024
    ref = backend.ref("stream")
    meta = await backend.store.write_raw(ref, _agen(total, chunk), size=total if declared else None)
    assert meta.size == total
    stream = await backend.store.read_raw(ref)
    sizes = []
    parts = []
    async with stream:
        async for piece in stream:
            sizes.append(len(piece))
            parts.append(bytes(piece))
    assert b"".join(parts) == _expected(total, chunk)
    assert len(sizes) > 1, "a 6 MiB read should arrive in several chunks"
    assert max(sizes) <= 8 * MiB


async def test_write_from_sync_iterable_and_files(backend: Backend, tmp_path: object) -> None:
    def gen() -> Iterator[bytes]:
        yield b"ab"
        yield bytearray(b"cd")
        yield memoryview(b"ef")

    ref = backend.ref("sync")
    await backend.store.write_raw(ref, gen())
    assert await read(backend, ref) == b"abcdef"

    await backend.store.write_raw(ref, io.BytesIO(b"from a file object"))
    assert await read(backend, ref) == b"from a file object"

    import aiofiles

    path = os.path.join(str(tmp_path), "payload.bin")
    async with aiofiles.open(path, "wb") as out:
        await out.write(b"line one\nline two\n" * 1000)
    async with aiofiles.open(path, "rb") as af:
        await backend.store.write_raw(ref, af)
    assert await read(backend, ref) == b"line one\nline two\n" * 1000


# A producer that refills one buffer for every chunk (the ``readinto`` pattern of fast readers)
# owns that buffer again as soon as the store asks for the next chunk: what was stored must be
# what was yielded at each step, whether the store sends it at once, gathers it into a part or
# holds it while earlier parts upload. Chunks are an odd size, so part boundaries fall inside them.
REUSED_CHUNK = 16 * 1024 + 3


def _reused_buffer_payload(total: int, view: bool) -> tuple[list[bytes], Iterator[bytes | bytearray | memoryview]]:
    """What a reusing producer yields step by step, and the producer itself.

    It yields one ``bytearray`` refilled in place, or (``view``) a ``memoryview`` of it, the last
    one cut short to the bytes that step filled.
    """
    rng = random.Random(total * 2 + view)
    steps = [rng.randbytes(min(REUSED_CHUNK, total - at)) for at in range(0, total, REUSED_CHUNK)]
    buf = bytearray(REUSED_CHUNK)

    def produce() -> Iterator[bytes | bytearray | memoryview]:
        for step in steps:
            buf[: len(step)] = step
            if view:
                yield memoryview(buf)[: len(step)]
            else:
                assert len(step) == len(buf), "a bytearray producer only yields whole chunks"
                yield buf

    return steps, produce()


async def _async(chunks: Iterable[bytes | bytearray | memoryview]) -> AsyncIterator[bytes | bytearray | memoryview]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)  # let the store's uploads run before the buffer is refilled


@pytest.mark.parametrize("size", ["single-part", "multi-part"])
@pytest.mark.parametrize("producer", ["async", "sync"])
@pytest.mark.parametrize("buffer", ["bytearray", "memoryview"])
async def test_reused_producer_buffer_is_stored_as_yielded(
    backend: Backend, size: str, producer: str, buffer: str
) -> None:
    # Whole chunks for a bytearray; a memoryview producer ends on a short chunk. Even the
    # single-part object is more than a stack entry's cache admits, so it is read back from the
    # store, not from the copy a cache took.
    chunks = 6 if size == "single-part" else backend.part_size * 3 // 2 // REUSED_CHUNK + 1
    total = chunks * REUSED_CHUNK - (0 if buffer == "bytearray" else 1000)
    assert (total < backend.part_size) == (size == "single-part")
    assert total > CACHE_MBS * 1024
    steps, chunks_of = _reused_buffer_payload(total, view=buffer == "memoryview")
    expected = b"".join(steps)
    ref = backend.ref("reused", f"{buffer}-{producer}-{size}")
    if producer == "async":
        meta = await backend.store.write_raw(ref, _async(chunks_of))
    else:  # a sync iterable, with its size declared
        meta = await backend.store.write_raw(ref, chunks_of, size=total)
    assert meta.size == total
    got = await read(backend, ref)
    assert len(got) == total
    if got != expected:
        # Say which chunks differ: a store that kept the buffer stores the last step repeated.
        bad = [i for i, step in enumerate(steps) if got[i * REUSED_CHUNK : i * REUSED_CHUNK + len(step)] != step]
        pytest.fail(f"{len(bad)} of {len(steps)} chunks differ from what was yielded (first: chunk {bad[0]})")


async def test_stream_longer_than_declared_writes_nothing(backend: Backend) -> None:
    ref = backend.ref("mismatch")
    with pytest.raises(SizeMismatchError):
        await backend.store.write_raw(ref, _agen(1000, 100), size=999)
    assert not (await backend.store.head(ref)).exists
    with pytest.raises(SizeMismatchError):
        await backend.store.write_raw(ref, _agen(1000, 100), size=1001)
    assert not (await backend.store.head(ref)).exists


async def test_failed_write_keeps_previous_object(backend: Backend) -> None:
    ref = backend.ref("keep")
    await backend.store.write_raw(ref, b"precious")

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial data"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        await backend.store.write_raw(ref, broken())
    assert await read(backend, ref) == b"precious"
    with pytest.raises(SizeMismatchError):
        await backend.store.write_raw(ref, b"0123456789", size=4)
    assert await read(backend, ref) == b"precious"


async def test_cancelled_write_leaves_nothing(backend: Backend) -> None:
    ref = backend.ref("cancelled")
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(backend.store.write_raw(ref, slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (await backend.store.head(ref)).exists
    assert [e async for e in backend.store.list(backend.base)] == []


@pytest.mark.parametrize("size", [-1, -100])
async def test_negative_size_is_rejected(backend: Backend, size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="negative"):
        await backend.store.write_raw(backend.ref("neg"), b"", size=size)


@pytest.mark.parametrize("payload", ["text", 42, object(), [b"ok", "not bytes"]])
async def test_bad_payloads_are_rejected(backend: Backend, payload: object) -> None:
    ref = backend.ref("bad-payload")
    with pytest.raises(InvalidArgumentError):
        await backend.store.write_raw(ref, payload)
    assert not (await backend.store.head(ref)).exists


async def test_stream_closes_early_without_error(backend: Backend) -> None:
    ref = backend.ref("early")
    await backend.store.write_raw(ref, os.urandom(5 * MiB))
    stream = await backend.store.read_raw(ref)
    async with stream:
        first = await stream.__anext__()
        assert first
    # Nothing leaks: the store still works for the same object.
    assert len(await read(backend, ref)) == 5 * MiB


# -- spellings of one reference ----------------------------------------------------------------------


def _spellings(backend: Backend, *keys: str) -> list[str]:
    """References naming the same object as ``backend.ref(*keys)``: its last character
    percent-escaped, its scheme upper-cased, and the backend's other spellings of its base."""
    plain = backend.ref(*keys)
    escaped = f"{plain[:-1]}%{ord(plain[-1]):02X}"
    scheme, rest = plain.split("://", 1)
    others = [b.rstrip("/") + "/" + "/".join(keys) for b in backend.base_spellings]
    return [plain, escaped, f"{scheme.upper()}://{rest}", *others]


async def test_spellings_of_one_reference_name_one_object(backend: Backend) -> None:
    spellings = _spellings(backend, "spelled", "k")
    plain = spellings[0]
    assert len({DataReference(s).split()[1:] for s in spellings}) == 1
    for other in spellings[1:]:
        for one, two in ((plain, other), (other, plain)):
            # Read both first, so a cache in the stack holds each spelling before the overwrite.
            await backend.store.write_raw(one, b"first")
            assert await read(backend, two) == b"first"
            assert await backend.store.read_bytes(one) == b"first"
            assert await backend.store.read_bytes(two) == b"first"
            await backend.store.write_raw(two, b"second!")
            assert await read(backend, one) == b"second!", (one, two)
            assert await backend.store.read_bytes(one) == b"second!", (one, two)
            assert (await backend.store.head(one)).size == 7
            await backend.store.write_raw(one, b"third")
            assert await backend.store.read_bytes(two) == b"third", (one, two)
            assert await read(backend, two) == b"third"
        listed = [e.ref async for e in backend.store.list(backend.ref("spelled"))]
        assert len(listed) == 1
    # A copy onto one spelling and a delete through another reach every spelling.
    source = backend.ref("spelled-source")
    await backend.store.write_raw(source, b"copied")
    await backend.store.copy_raw(source, spellings[1])
    for spelling in spellings:
        assert await backend.store.read_bytes(spelling) == b"copied", spelling
    await backend.store.delete(spellings[-1])
    for spelling in spellings:
        assert not (await backend.store.head(spelling)).exists, spelling
        with pytest.raises(NotFoundError):
            await backend.store.read_bytes(spelling)


# -- conditional create ---------------------------------------------------------------------------


async def test_conditional_create(backend: Backend) -> None:
    ref = backend.ref("once")
    create = Options(if_not_exists=True)
    await backend.store.write_raw(ref, b"first", options=create)
    with pytest.raises(AlreadyExistsError) as info:
        await backend.store.write_raw(ref, b"second", options=create)
    assert isinstance(info.value, FileExistsError)
    assert await read(backend, ref) == b"first"


async def test_conditional_create_race_has_one_winner(backend: Backend) -> None:
    ref = backend.ref("race")
    create = Options(if_not_exists=True)
    results = await asyncio.gather(
        *(backend.store.write_raw(ref, f"writer {i}".encode(), options=create) for i in range(8)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyExistsError) for r in results if isinstance(r, BaseException))


# -- delete -----------------------------------------------------------------------------------------


async def test_delete(backend: Backend) -> None:
    ref = backend.ref("doomed")
    await backend.store.write_raw(ref, b"x")
    await backend.store.delete(ref)
    assert not (await backend.store.head(ref)).exists
    with pytest.raises(NotFoundError):
        await backend.store.read_raw(ref)


async def test_delete_missing_raises_not_found(backend: Backend) -> None:
    with pytest.raises(NotFoundError):
        await backend.store.delete(backend.ref("never-was"))


async def test_delete_leaves_siblings(backend: Backend) -> None:
    await backend.store.write_raw(backend.ref("d", "a"), b"a")
    await backend.store.write_raw(backend.ref("d", "b"), b"b")
    await backend.store.delete(backend.ref("d", "a"))
    assert await read(backend, backend.ref("d", "b")) == b"b"


async def test_delete_many(backend: Backend) -> None:
    store = backend.store
    assert await store.delete_many([]) == []
    doomed = [backend.ref("dm", f"o{i:03d}") for i in range(70)]  # more than the deletes in flight
    await asyncio.gather(*(store.write_raw(ref, b"x") for ref in doomed))
    keep = backend.ref("dm", "keep")
    await store.write_raw(keep, b"keep")
    assert await read(backend, doomed[0]) == b"x"  # cached where a cache is: deleting must forget it
    missing = backend.ref("dm", "never-was")
    refs = [doomed[0], missing, backend.wrong_scheme_ref, *doomed[1:]]
    results = await store.delete_many(refs)
    assert len(results) == len(refs)
    assert results[0] is None and results[1] is None  # a missing object counts as deleted
    assert isinstance(results[2], InvalidReferenceError)
    assert results[3:] == [None] * (len(doomed) - 1)
    for ref in doomed:
        assert not (await store.head(ref)).exists
    with pytest.raises(NotFoundError):
        await read(backend, doomed[0])
    assert [e.ref async for e in store.list(backend.ref("dm"))] == [keep]
    assert await read(backend, keep) == b"keep"
    assert await store.delete_many((keep,)) == [None]
    assert not (await store.head(keep)).exists


async def test_delete_many_refuses_a_single_reference(backend: Backend) -> None:
    ref = backend.ref("one")
    await backend.store.write_raw(ref, b"x")
    with pytest.raises(InvalidArgumentError, match="sequence"):
        await backend.store.delete_many(ref)  # type: ignore[arg-type]
    assert (await backend.store.head(ref)).exists


# -- read_ranges ------------------------------------------------------------------------------------


async def test_read_ranges(backend: Backend) -> None:
    """One bytes per range, in the order asked: overlapping, repeated, out-of-order, empty and
    past-the-end ranges alike, whether nearby ranges are merged into one request or not."""
    ref = backend.ref("ranges")
    data = os.urandom(200_000)
    await backend.store.write_raw(ref, data)
    ranges = [
        (100_000, 100_100),
        (0, 10),
        (5, 15),  # overlaps the one before
        (50, 60),  # before the one before
        (7, 7),  # empty
        (199_990, 200_050),  # runs past the end
        (300_000, 300_010),  # wholly past the end
        (0, 200_000),  # the whole object
        (0, 10),  # a repeat
        (150_000, 150_001),
        (10, 20),  # adjacent to (0, 10)
    ]
    expected = [data[start:end] for start, end in ranges]
    assert await backend.store.read_ranges(ref, ranges) == expected
    for coalesce in (0, 1, 64 * 1024):
        assert await backend.store.read_ranges(ref, ranges, coalesce=coalesce) == expected
    assert await backend.store.read_ranges(ref, tuple(ranges[:2])) == expected[:2]
    assert await backend.store.read_ranges(ref, [[1, 4]]) == [data[1:4]]  # type: ignore[list-item]
    assert await backend.store.read_ranges(ref, []) == []
    # Once more, now that a cache in the stack may hold the object.
    assert await read(backend, ref) == data
    assert await backend.store.read_ranges(ref, ranges) == expected


async def test_read_ranges_of_an_empty_and_a_missing_object(backend: Backend) -> None:
    empty = backend.ref("ranges-empty")
    await backend.store.write_raw(empty, b"")
    assert await backend.store.read_ranges(empty, [(0, 10), (3, 3), (5, 6)]) == [b"", b"", b""]
    with pytest.raises(NotFoundError):
        await backend.store.read_ranges(backend.ref("ranges-missing"), [(0, 10)])


@pytest.mark.parametrize(
    ("ranges", "coalesce"),
    [
        ([(-1, 5)], 0),
        ([(5, 4)], 0),
        ([(0, -1)], 0),
        ([("0", 5)], 0),
        ([(0, 5.0)], 0),
        ([(True, 5)], 0),
        ([(0, None)], 0),
        ([(0, 1, 2)], 0),
        ([5], 0),
        ("0-5", 0),
        ((0, 5), 0),  # one range, not a sequence of them
        ([(0, 5)], -1),
        ([(0, 5)], 1.5),
    ],
)
async def test_read_ranges_refuses_bad_ranges(backend: Backend, ranges: object, coalesce: object) -> None:
    ref = backend.ref("ranges-bad")
    await backend.store.write_raw(ref, b"0123456789")
    with pytest.raises(InvalidArgumentError):
        await backend.store.read_ranges(ref, ranges, coalesce=coalesce)  # type: ignore[arg-type]


async def test_read_ranges_max_size_bounds_the_total(backend: Backend) -> None:
    """``max_size`` (the download limit's) bounds the bytes one call returns: the ranges clipped
    to the object's size, summed."""
    ref = backend.ref("ranges-capped")
    data = bytes(range(256)) * 4
    await backend.store.write_raw(ref, data)
    ranges = [(0, 300), (500, 800)]
    assert await backend.store.read_ranges(ref, ranges, max_size=600) == [data[0:300], data[500:800]]
    with pytest.raises(ExceedsLimitError) as info:
        await backend.store.read_ranges(ref, ranges, max_size=599)
    assert (info.value.size, info.value.limit) == (600, 599)
    assert isinstance(info.value, OSError)
    # Each range fits on its own; the call does not.
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_ranges(ref, [(0, 400), (0, 400)], max_size=500)
    # Past the end only what exists counts.
    assert await backend.store.read_ranges(ref, [(1000, 5000)], max_size=24) == [data[1000:]]
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_ranges(ref, [(1000, 5000)], max_size=23)
    # Once more, now that a cache in the stack may hold the object.
    assert await read(backend, ref) == data
    with pytest.raises(ExceedsLimitError):
        await backend.store.read_ranges(ref, ranges, max_size=599)
    assert await backend.store.read_ranges(ref, ranges, max_size=600) == [data[0:300], data[500:800]]


# -- copy -----------------------------------------------------------------------------------------


async def test_copy(backend: Backend) -> None:
    src, dst = backend.ref("src"), backend.ref("sub", "dst")
    data = os.urandom(2 * MiB + 3)
    await backend.store.write_raw(src, data)
    meta = await backend.store.copy_raw(src, dst)
    assert meta.size == len(data)
    assert await read(backend, dst) == data
    assert await read(backend, src) == data


async def test_copy_overwrites_destination(backend: Backend) -> None:
    src, dst = backend.ref("src"), backend.ref("dst")
    await backend.store.write_raw(src, b"new")
    await backend.store.write_raw(dst, b"old content")
    await backend.store.copy_raw(src, dst)
    assert await read(backend, dst) == b"new"


async def test_copy_missing_source(backend: Backend) -> None:
    with pytest.raises(NotFoundError):
        await backend.store.copy_raw(backend.ref("nope"), backend.ref("dst"))
    assert not (await backend.store.head(backend.ref("dst"))).exists


async def test_copy_if_not_exists(backend: Backend) -> None:
    src, dst = backend.ref("src"), backend.ref("dst")
    await backend.store.write_raw(src, b"new")
    await backend.store.write_raw(dst, b"old")
    with pytest.raises(AlreadyExistsError):
        await backend.store.copy_raw(src, dst, options=Options(if_not_exists=True))
    assert await read(backend, dst) == b"old"


# -- listing --------------------------------------------------------------------------------------


async def _fill(backend: Backend, keys: list[str]) -> None:
    await asyncio.gather(*(backend.store.write_raw(backend.ref(k), k.encode()) for k in keys))


def _keys(backend: Backend, refs: list[str]) -> list[str]:
    base_key = backend.base.split("://", 1)[1].split("/", 1)[1]
    out = []
    for r in refs:
        key = _split(r)[2]
        assert key.startswith(base_key + "/"), (r, backend.base)
        out.append(key[len(base_key) + 1 :])
    return out


def _split(ref: str) -> tuple[str, str, str]:
    from flytestore import DataReference

    return DataReference(ref).split()


async def test_list_is_sorted_recursive_and_directory_aware(backend: Backend) -> None:
    keys = ["a/1", "a/2", "a/sub/3", "ab/4", "a-c", "b", "a.x"]
    await _fill(backend, keys)
    everything = [e async for e in backend.store.list(backend.base)]
    assert _keys(backend, [e.ref for e in everything]) == sorted(keys)
    assert [e.size for e in everything] == [len(k) for k in sorted(keys)]
    under_a = [e.ref async for e in backend.store.list(backend.ref("a"))]
    assert _keys(backend, under_a) == ["a/1", "a/2", "a/sub/3"]
    with_slash = [e.ref async for e in backend.store.list(backend.ref("a") + "/")]
    assert with_slash == under_a


async def test_list_pages(backend: Backend) -> None:
    keys = [f"p/{i:02d}" for i in range(7)]
    await _fill(backend, keys)
    cursor = Cursor.start()
    pages = []
    while True:
        refs, cursor = await backend.store.list_page(backend.ref("p"), max_items=3, cursor=cursor)
        pages.append(_keys(backend, refs))
        if cursor.is_end():
            break
        assert len(pages) < 10
    assert pages == [keys[0:3], keys[3:6], keys[6:7]]
    all_refs, end = await backend.store.list_page(backend.ref("p"), max_items=100)
    assert end == Cursor.end() and len(all_refs) == 7


async def test_list_exact_page_boundary_ends(backend: Backend) -> None:
    await _fill(backend, ["e/1", "e/2"])
    refs, cursor = await backend.store.list_page(backend.ref("e"), max_items=2)
    assert len(refs) == 2
    if not cursor.is_end():
        more, cursor = await backend.store.list_page(backend.ref("e"), max_items=2, cursor=cursor)
        assert more == [] and cursor.is_end()


async def test_list_empty_prefix(backend: Backend) -> None:
    refs, cursor = await backend.store.list_page(backend.ref("nothing-here"))
    assert refs == [] and cursor.is_end()
    assert [e async for e in backend.store.list(backend.ref("nothing-here"))] == []


async def test_list_with_end_cursor_is_an_error(backend: Backend) -> None:
    with pytest.raises(InvalidArgumentError):
        await backend.store.list_page(backend.base, cursor=Cursor.end())


async def test_list_many_pages(backend: Backend) -> None:
    keys = [f"m/{i:04d}" for i in range(120)]
    await _fill(backend, keys)
    got = [e.ref async for e in backend.store.list(backend.ref("m"), page_size=25)]
    assert _keys(backend, got) == keys


# -- bad references ---------------------------------------------------------------------------------


async def test_bad_references(backend: Backend) -> None:
    store = backend.store
    for ref in [backend.wrong_scheme_ref, "s3://bucket:abc/key", "gs://bucket/%zz", "://container/path"]:
        for op in (store.head(ref), store.read_raw(ref), store.write_raw(ref, b"x"), store.delete(ref)):
            with pytest.raises(InvalidReferenceError):
                await op
    container_only = backend.base.split("://")[0] + "://" + backend.base.split("://", 1)[1].split("/", 1)[0]
    for op in (store.read_raw(container_only), store.write_raw(container_only + "/", b"x")):
        with pytest.raises(InvalidReferenceError, match="empty key"):
            await op


# -- signed URLs -----------------------------------------------------------------------------------


async def test_signed_urls(backend: Backend) -> None:
    ref = backend.ref("signed")
    await backend.store.write_raw(ref, b"x")
    props = SignedURLProperties(scope="GET")
    if not backend.signed_urls:
        with pytest.raises(UnsupportedError):
            await backend.store.create_signed_url(ref, props)
        return
    signed = await backend.store.create_signed_url(ref, props)
    assert signed.url.startswith("http")


# -- concurrency -----------------------------------------------------------------------------------


async def test_many_concurrent_operations(backend: Backend) -> None:
    refs = [backend.ref("c", f"{i}") for i in range(64)]
    await asyncio.gather(*(backend.store.write_raw(r, r.encode()) for r in refs))
    bodies = await asyncio.gather(*(read(backend, r) for r in refs))
    assert bodies == [r.encode() for r in refs]
    await asyncio.gather(*(backend.store.delete(r) for r in refs))
    assert [e async for e in backend.store.list(backend.ref("c"))] == []


async def test_byte_stream_is_a_context_manager_and_iterator(backend: Backend) -> None:
    ref = backend.ref("cm")
    await backend.store.write_raw(ref, b"abc")
    stream = await backend.store.read_raw(ref)
    assert isinstance(stream, ByteStream)
    async with stream as s:
        assert b"".join([bytes(c) async for c in s]) == b"abc"
