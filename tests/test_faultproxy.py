"""The fault proxy's own tests, against tiny asyncio servers: each fault does what it says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from .faultproxy import Delay, Drop, FaultProxy, Refuse, Reset, Truncate

KiB = 1024
PAYLOAD = os.urandom(256 * KiB)


@dataclass
class Upstream:
    """A TCP server that sends ``greeting`` to each client, then records what it receives
    (echoing it back when ``echo``) until the client closes."""

    greeting: bytes = b""
    echo: bool = False
    received: list[bytearray] = field(default_factory=list)
    connections: int = 0
    open: int = 0
    server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        got = bytearray()
        self.received.append(got)
        try:
            if self.greeting:
                writer.write(self.greeting)
                await writer.drain()
            while chunk := await reader.read(64 * KiB):
                got += chunk
                if self.echo:
                    writer.write(chunk)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    up.server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    try:
        yield up
    finally:
        up.server.close()
        await up.server.wait_closed()


@pytest.fixture
def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    with FaultProxy(upstream.port) as p:
        yield p  # type: ignore[misc]


class Client:
    """A raw non-blocking socket. Not asyncio streams: ``StreamReader.read`` raises a connection
    error before handing over bytes it already buffered, which would hide what arrived before an RST."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, proxy: FaultProxy) -> Client:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", proxy.port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def end_writing(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def recv(self, n: int = 64 * KiB, timeout: float = 10) -> bytes:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, n), timeout)

    async def read_all(self) -> tuple[bytes, BaseException | None]:
        """Everything the connection delivers, and the error that ended it (None: clean EOF)."""
        got = bytearray()
        try:
            while chunk := await self.recv():
                got += chunk
        except (ConnectionError, OSError) as err:
            return bytes(got), err
        return bytes(got), None

    def close(self) -> None:
        self.sock.close()


async def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# -- no fault --------------------------------------------------------------------------------------


async def test_forwards_both_ways_and_counts(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    client = await Client.connect(proxy)
    await client.send(PAYLOAD)
    client.end_writing()
    got, err = await client.read_all()
    client.close()
    assert err is None and got == PAYLOAD
    await eventually(lambda: proxy.stats.active == 0)
    stats = proxy.stats
    assert stats.connections == 1
    assert stats.bytes_up == stats.bytes_down == len(PAYLOAD)
    assert sum(stats.faults.values()) == 0
    assert proxy.endpoint == f"http://127.0.0.1:{proxy.port}"


# -- Reset -----------------------------------------------------------------------------------------


async def test_reset_down_delivers_exactly_n_bytes_then_econnreset(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.greeting = PAYLOAD
    proxy.inject(Reset(100_000, "down"))
    client = await Client.connect(proxy)
    got, err = await client.read_all()
    client.close()
    assert isinstance(err, ConnectionResetError)
    assert got == PAYLOAD[:100_000]
    assert proxy.stats.faults["Reset"] == 1


async def test_reset_up_cuts_the_request_body(upstream: Upstream, proxy: FaultProxy) -> None:
    proxy.inject(Reset(50_000, "up"))
    client = await Client.connect(proxy)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        for _ in range(100):  # more than any socket buffer: a send must fail
            await client.send(PAYLOAD)
        raise AssertionError("the connection was not reset")
    client.close()
    await eventually(lambda: upstream.received and proxy.stats.active == 0)
    await eventually(lambda: upstream.connections and not upstream.open)
    assert bytes(upstream.received[0]) == PAYLOAD[:50_000]
    assert proxy.stats.faults == {"Reset": 1}


async def test_reset_at_zero_fires_on_the_first_byte_not_at_accept(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    proxy.inject(Reset(0, "down"))
    client = await Client.connect(proxy)
    await asyncio.sleep(0.1)
    assert proxy.stats.faults["Reset"] == 0  # an idle connection is left alone
    await client.send(b"ping")
    got, err = await client.read_all()
    client.close()
    assert got == b"" and isinstance(err, ConnectionResetError)
    assert proxy.stats.faults["Reset"] == 1


# -- Truncate --------------------------------------------------------------------------------------


async def test_truncate_down_is_a_clean_eof_after_exactly_n_bytes(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.greeting = PAYLOAD
    proxy.inject(Truncate(123_457, "down"))
    client = await Client.connect(proxy)
    got, err = await client.read_all()
    client.close()
    assert err is None
    assert got == PAYLOAD[:123_457]
    assert proxy.stats.faults["Truncate"] == 1


async def test_truncate_up_gives_the_server_exactly_n_bytes_then_eof(upstream: Upstream, proxy: FaultProxy) -> None:
    proxy.inject(Truncate(70_000, "up"))
    client = await Client.connect(proxy)
    with contextlib.suppress(ConnectionError):
        await client.send(PAYLOAD)
    got, _ = await client.read_all()
    client.close()
    assert got == b""
    await eventually(lambda: upstream.connections and not upstream.open)
    assert bytes(upstream.received[0]) == PAYLOAD[:70_000]
    assert proxy.stats.faults == {"Truncate": 1}


# -- Delay -----------------------------------------------------------------------------------------


async def test_delay_down_holds_the_first_byte(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    proxy.inject(Delay(0.5, "down"))
    client = await Client.connect(proxy)
    start = time.monotonic()
    await client.send(b"hello")
    assert await client.recv() == b"hello"
    assert time.monotonic() - start >= 0.45
    client.end_writing()
    assert await client.read_all() == (b"", None)
    client.close()
    assert proxy.stats.faults["Delay"] == 1


async def test_delay_up_after_bytes_stalls_mid_body(upstream: Upstream, proxy: FaultProxy) -> None:
    proxy.inject(Delay(0.6, "up", after_bytes=40_000))
    client = await Client.connect(proxy)
    start = time.monotonic()
    sending = asyncio.ensure_future(client.send(PAYLOAD))
    await eventually(lambda: upstream.received and len(upstream.received[0]) >= 40_000)
    await asyncio.sleep(0.2)
    assert len(upstream.received[0]) == 40_000  # held at the threshold
    await eventually(lambda: len(upstream.received[0]) == len(PAYLOAD))
    await sending
    assert time.monotonic() - start >= 0.55
    assert bytes(upstream.received[0]) == PAYLOAD
    client.close()


# -- Drop / Refuse ---------------------------------------------------------------------------------


async def test_drop_reads_and_never_answers(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    proxy.inject(Drop())
    client = await Client.connect(proxy)
    await client.send(b"anyone there?")
    with pytest.raises(asyncio.TimeoutError):
        await client.recv(timeout=0.3)
    client.close()
    assert upstream.connections == 0
    assert proxy.stats.faults["Drop"] == 1


async def test_refuse_resets_on_accept(upstream: Upstream, proxy: FaultProxy) -> None:
    proxy.inject(Refuse())
    try:
        client = await Client.connect(proxy)
    except ConnectionResetError:
        pass  # the RST can beat the end of the client's handshake
    else:
        got, err = await client.read_all()
        client.close()
        assert got == b"" and isinstance(err, ConnectionResetError)
    assert upstream.connections == 0
    await eventually(lambda: proxy.stats.faults["Refuse"] == 1)


# -- arming ----------------------------------------------------------------------------------------


async def one_exchange(proxy: FaultProxy) -> tuple[bytes, BaseException | None]:
    """Send one byte, end writing, read everything back."""
    try:
        client = await Client.connect(proxy)
    except ConnectionError as err:  # an RST can beat the end of the handshake
        return b"", err
    try:
        await client.send(b"x")
        client.end_writing()
        return await client.read_all()
    except (ConnectionError, OSError) as err:
        return b"", err
    finally:
        client.close()


async def test_times_counts_connections_and_none_lasts_until_clear(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    proxy.inject(Refuse(), times=2)
    results = [await one_exchange(proxy) for _ in range(3)]
    assert [r[0] for r in results] == [b"", b"", b"x"]
    assert [r[1] is None for r in results] == [False, False, True]
    proxy.inject(Truncate(0, "down"), times=None)
    assert [await one_exchange(proxy) for _ in range(3)] == [(b"", None)] * 3
    proxy.clear()
    assert await one_exchange(proxy) == (b"x", None)
    await eventually(lambda: proxy.stats.active == 0)
    assert proxy.stats.faults == {"Refuse": 2, "Truncate": 3}
    assert proxy.stats.connections == 7


async def test_faults_are_taken_in_the_order_armed(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    proxy.inject(Refuse())
    proxy.inject(Truncate(0, "down"))
    assert (await one_exchange(proxy))[1] is not None
    assert await one_exchange(proxy) == (b"", None)
    assert await one_exchange(proxy) == (b"x", None)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="direction"):
        Reset(1, "sideways")  # type: ignore[arg-type]
    with FaultProxy(1) as p, pytest.raises(ValueError, match="times"):
        p.inject(Drop(), times=0)


# -- the server going away -------------------------------------------------------------------------


async def test_stop_and_start_listening_on_the_same_port(upstream: Upstream, proxy: FaultProxy) -> None:
    upstream.echo = True
    port = proxy.port
    client = await Client.connect(proxy)
    await client.send(b"a")
    assert await client.recv() == b"a"
    proxy.stop_listening()
    assert not proxy.listening
    got, err = await client.read_all()  # the open connection is reset
    client.close()
    assert got == b"" and isinstance(err, ConnectionResetError)
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(proxy)
    proxy.start_listening()
    assert proxy.listening and proxy.port == port
    assert await one_exchange(proxy) == (b"x", None)


async def test_target_down_resets_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # bound, not listening: connecting is refused
        with FaultProxy(dead_port) as p:
            assert (await one_exchange(p))[1] is not None


def test_usable_from_sync_code_and_close_frees_everything() -> None:
    # A sync caller (a session fixture) with a blocking socket: the proxy runs on its own thread.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        p = FaultProxy(listener.getsockname()[1])
        port = p.port
        p.inject(Refuse())
        # The reset shows from connect (an early RST), send or recv.
        with pytest.raises(ConnectionResetError), socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"x")
            if not s.recv(1):
                raise ConnectionResetError("EOF")  # some kernels report the RST as EOF
        p.close()
        p.close()  # idempotent
        assert not p._thread.is_alive()
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


# -- HTTP ------------------------------------------------------------------------------------------

BODY = os.urandom(1024 * KiB)


@pytest_asyncio.fixture
async def http_server() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.Response:
        data = await request.read()
        return web.Response(body=BODY if request.method == "GET" else str(len(data)).encode())

    app = web.Application(client_max_size=64 * 1024 * KiB)
    app.router.add_route("*", "/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_http_faults_mid_body(http_server: int) -> None:
    with FaultProxy(http_server) as p:
        # force_close: one connection per request, so a fault armed for "the next connection"
        # lands on the next request.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            async with session.get(p.endpoint + "/") as resp:
                assert await resp.read() == BODY
            for fault in (Reset(300 * KiB, "down"), Truncate(300 * KiB, "down")):
                p.inject(fault)
                with pytest.raises(aiohttp.ClientPayloadError):
                    async with session.get(p.endpoint + "/") as resp:
                        await resp.read()
            p.inject(Reset(200 * KiB, "up"))
            with pytest.raises(aiohttp.ClientError):
                # POST: aiohttp resends an idempotent request (PUT) once on a new connection.
                async with session.post(p.endpoint + "/", data=BODY) as resp:
                    await resp.read()
            p.inject(Delay(0.3, "down"))
            start = time.monotonic()
            async with session.get(p.endpoint + "/") as resp:
                assert await resp.read() == BODY
            assert time.monotonic() - start >= 0.25
        assert p.stats.faults == {"Reset": 2, "Truncate": 1, "Delay": 1}
