"""The example applications run as a user would run them: as processes, over real sockets and disk."""

from __future__ import annotations

import io
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MiB = 1024 * 1024
LIMIT_MBS = 6  # the web service's download limit in these tests


# ---------------------------------------------------------------------------------------------
# examples/web_service.py


class Server:
    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root

    def object_url(self, key: str) -> URL:
        return URL(f"{self.url}/objects/{key}", encoded=True)


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's first stdout line, waiting at most ``timeout`` seconds (no polling sleeps)."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"the web service printed no URL within {timeout}s") from None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web-root")
    log_path = tmp_path_factory.mktemp("web-log") / "stderr.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / "web_service.py"),
                "--port",
                "0",
                "--root",
                str(root),
                "--max-download-mbs",
                str(LIMIT_MBS),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        line = _first_line(proc, timeout=30).strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", line), (line, log_path.read_text())
        yield Server(line, root)
    finally:
        proc.terminate()  # the process started here, by its pid
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    if os.name == "posix":  # SIGTERM shuts it down gracefully, closing the DataStore
        assert proc.returncode == 0, log_path.read_text()[-4000:]


def _headers_recorder() -> tuple[aiohttp.TraceConfig, list[tuple[str, dict[str, str]]]]:
    """A trace config recording the method and headers of every request as sent."""
    sent: list[tuple[str, dict[str, str]]] = []

    async def on_headers_sent(
        session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
    ) -> None:
        sent.append((params.method, {k.lower(): v for k, v in params.headers.items()}))

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    return trace, sent


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _cache_hits(session: aiohttp.ClientSession, server: Server) -> float:
    async with session.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    match = re.search(r"^flyte:storage:cache_hit_total (\S+)$", text, re.M)
    assert match is not None, text
    return float(match.group(1))


async def test_web_service_streams_uploads_and_downloads(server: Server) -> None:
    big = os.urandom(5 * MiB + 12345)
    small = b"a small object with a content length\n"
    trace, sent = _headers_recorder()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with session.put(server.object_url("data/big.bin"), data=_chunks(big)) as resp:
            assert resp.status == 201, await resp.text()
            body = await resp.json()
            assert body["size"] == len(big) and body["key"] == "data/big.bin" and body["etag"]
        async with session.put(server.object_url("data/small.txt"), data=small) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["size"] == len(small)
        # The first upload went chunked, with no length; the second declared its length.
        (_, big_headers), (_, small_headers) = sent[:2]
        assert big_headers.get("transfer-encoding") == "chunked" and "content-length" not in big_headers
        assert small_headers["content-length"] == str(len(small))

        for key, data in (("data/big.bin", big), ("data/small.txt", small)):
            async with session.get(server.object_url(key)) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(len(data))
                assert resp.headers["Content-Type"] == "application/octet-stream"
                got = b"".join([chunk async for chunk in resp.content.iter_chunked(256 * 1024)])
            assert got == data
    # Stored under the local root, byte for byte.
    assert (server.root / "objects" / "data" / "big.bin").read_bytes() == big


async def test_web_service_errors(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.object_url("no/such/key")) as resp:
            assert resp.status == 404
            body = await resp.json()
            assert body["error"] == "not_found" and "no/such/key" in body["message"]
        for bad in ("a/../b", "a//b", "a/./b", "trailing/"):
            async with session.put(server.object_url(bad), data=b"x") as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["error"] == "bad_request"
            async with session.get(server.object_url(bad)) as resp:
                assert resp.status == 400, bad
        assert not (server.root / "objects" / "b").exists()  # a/../b wrote nothing anywhere

        oversized = os.urandom(LIMIT_MBS * MiB + 1)
        # (io.BytesIO: aiohttp warns about large raw bytes bodies)
        async with session.put(server.object_url("big/oversized.bin"), data=io.BytesIO(oversized)) as resp:
            assert resp.status == 201
        async with session.get(server.object_url("big/oversized.bin")) as resp:
            assert resp.status == 413
            body = await resp.json()
        assert body["error"] == "exceeds_limit"
        assert body["size"] == len(oversized) and body["limit"] == LIMIT_MBS * MiB
        assert "limit exceeded" in body["message"] and "maxDownloadMBs" in body["message"]
        async with session.head(server.object_url("big/oversized.bin")) as resp:  # metadata is not limited
            assert resp.status == 200 and resp.headers["Content-Length"] == str(len(oversized))

        async with session.put(
            server.object_url("big/oversized.bin"), data=b"create only", headers={"If-None-Match": "*"}
        ) as resp:
            assert resp.status == 412
        assert (server.root / "objects" / "big" / "oversized.bin").stat().st_size == len(oversized)


async def test_web_service_cache_hits_show_in_metrics(server: Server) -> None:
    data = os.urandom(2048)  # well under 1/1024 of the 64 MiB cache: cacheable
    async with aiohttp.ClientSession() as session:
        async with session.put(server.object_url("cached/one.bin"), data=data) as resp:
            assert resp.status == 201
        async with session.get(server.object_url("cached/one.bin")) as resp:  # cached by now
            assert await resp.read() == data
        before = await _cache_hits(session, server)
        for _ in range(2):
            async with session.get(server.object_url("cached/one.bin")) as resp:
                assert resp.status == 200
                assert await resp.read() == data
        assert await _cache_hits(session, server) == before + 2
        async with session.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json()) == {"status": "ok", "base_container": "file://objects"}


async def test_web_service_head_and_delete(server: Server) -> None:
    data = b"to be deleted"
    url = server.object_url("tmp/delete-me.txt")
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=data) as resp:
            etag = (await resp.json())["etag"]
        async with session.head(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(data))
            assert resp.headers["ETag"] == f'"{etag}"'
            assert await resp.read() == b""
        async with session.delete(url) as resp:
            assert resp.status == 204
        assert not (server.root / "objects" / "tmp" / "delete-me.txt").exists()
        async with session.head(url) as resp:
            assert resp.status == 404
        async with session.get(url) as resp:
            assert resp.status == 404
        async with session.delete(url) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "not_found"


# ---------------------------------------------------------------------------------------------
# examples/bulk_copy.py

SUMMARY = re.compile(
    r"^summary: (\d+) copied, (\d+) skipped, (\d+) failed, (\d+) bytes .* (\S+) objects/s, (\S+) MiB/s$", re.M
)


def _bulk_copy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "bulk_copy.py"), "--count", "300", "--size", "1024", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_bulk_copy_reports_summary_and_plain_progress(tmp_path: Path) -> None:
    result = _bulk_copy("--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    match = SUMMARY.search(result.stdout)
    assert match is not None, result.stdout
    copied, skipped, failed, nbytes = (int(g) for g in match.groups()[:4])
    assert (copied, skipped, failed, nbytes) == (300, 0, 0, 300 * 1024)
    assert float(match.group(5).replace(",", "")) > 0
    # Piped stderr: plain lines, no carriage-return redraws; several of them, ending at 300/300.
    assert "\r" not in result.stderr
    progress = re.findall(r"^copying: (\d+)/300 objects", result.stderr, re.M)
    assert len(progress) >= 3 and progress[-1] == "300"
    assert [int(n) for n in progress] == sorted(int(n) for n in progress)
    src, dst = _files(tmp_path / "bulk" / "src"), _files(tmp_path / "bulk" / "dst")
    assert len(src) == 300 and dst == src


def test_bulk_copy_to_a_directory_with_verify(tmp_path: Path) -> None:
    result = _bulk_copy("--root", str(tmp_path), "--dst", "file://out/copied", "--verify", "--concurrency", "8")
    assert result.returncode == 0, result.stderr
    assert "summary: 300 copied, 0 skipped, 0 failed" in result.stdout
    assert "verified 300 of 300 copies by content: 0 differ" in result.stdout
    copied = _files(tmp_path / "out" / "copied")
    source = _files(tmp_path / "bulk" / "src")
    assert len(copied) == 300 and copied == source
    assert all(len(data) == 1024 for data in copied.values())
    assert len(set(copied.values())) == 300  # every object has its own content


def test_bulk_copy_failures_exit_1(tmp_path: Path) -> None:
    # A file where the destination needs a directory: every object (keys 000/...) fails to copy.
    blocker = tmp_path / "out" / "blocked" / "000"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a directory")
    result = _bulk_copy("--root", str(tmp_path), "--dst", "file://out/blocked")
    assert result.returncode == 1, result.stdout + result.stderr
    match = SUMMARY.search(result.stdout)
    assert match is not None, result.stdout
    assert match.group(1, 3) == ("0", "300")
    # The first 20 failures (in completion order), each naming its pair and the cause, then a count.
    failures = re.findall(
        r"^failed: file://bulk/src/000/obj-(\d{6})\.bin -> file://out/blocked/000/obj-(\d{6})\.bin: "
        r".*cannot also be a directory",
        result.stderr,
        re.M,
    )
    assert len(failures) == 20 and all(a == b for a, b in failures), result.stderr
    assert "... and 280 more failures" in result.stderr
    assert blocker.read_bytes() == b"not a directory"
