"""A loopback TCP proxy that injects network faults between a client and a real server.

The proxy runs its own asyncio loop in a daemon thread, so a sync session fixture and an async
test (on the test's own loop) can both drive it; every public method is thread-safe and returns
once the proxy has done what it says. It listens on a free ``127.0.0.1`` port and forwards each
connection to ``(target_host, target_port)``.

::

    with FaultProxy(server_port) as proxy:
        store = SomeStore(endpoint=proxy.endpoint)
        proxy.inject(Reset(after_bytes=7 * MiB, direction="up"))   # the next connection only
        proxy.inject(Delay(5.0), times=None)                       # every connection until clear()
        proxy.stop_listening(); proxy.start_listening()            # the server goes away, comes back
        proxy.stats.faults["Reset"]                                # faults that actually fired

Faults (one per connection; armed faults are taken first-armed, first-served at accept time):

- ``Delay(seconds, direction="down", after_bytes=0)``: once ``after_bytes`` bytes went that way,
  hold the stream for ``seconds`` (``after_bytes=0``: before the first byte, i.e. a slow server
  or a slow upload start).
- ``Reset(after_bytes, direction)``: forward exactly ``after_bytes`` bytes that way, then reset
  both sides (``SO_LINGER`` 0, then close: an RST, the client sees ``ECONNRESET``). The bytes are
  flushed out of the proxy's socket before the RST, so the client receives all of them.
- ``Truncate(after_bytes, direction)``: forward exactly ``after_bytes`` bytes that way, then close
  both sides cleanly (FIN: the client sees EOF).
- ``Drop()``: accept and read the client's bytes, never connect upstream, never answer.
- ``Refuse()``: reset the connection as soon as it is accepted.

``direction`` is ``"down"`` (server to client: the response, e.g. mid-body of a download) or
``"up"`` (client to server: the request, e.g. mid-body of an upload). Byte thresholds count the
bytes of that direction on that connection, from its first byte (a keep-alive connection carries
several requests: the count runs across them).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = ["Delay", "Drop", "Fault", "FaultProxy", "ProxyStats", "Refuse", "Reset", "Truncate"]

Direction = Literal["up", "down"]
_T = TypeVar("_T")

HOST = "127.0.0.1"
_READ_SIZE = 64 * 1024
#: How long a Reset/Truncate waits for the bytes it forwarded to leave the proxy's socket.
_FLUSH_TIMEOUT = 2.0


def _check_direction(direction: str) -> None:
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")


@dataclass(frozen=True)
class Delay:
    """Hold the ``direction`` stream for ``seconds`` once ``after_bytes`` bytes went that way."""

    seconds: float
    direction: Direction = "down"
    after_bytes: int = 0

    def __post_init__(self) -> None:
        _check_direction(self.direction)


@dataclass(frozen=True)
class Reset:
    """Forward ``after_bytes`` bytes in ``direction``, then RST both sides."""

    after_bytes: int
    direction: Direction = "down"

    def __post_init__(self) -> None:
        _check_direction(self.direction)


@dataclass(frozen=True)
class Truncate:
    """Forward ``after_bytes`` bytes in ``direction``, then close both sides cleanly (FIN)."""

    after_bytes: int
    direction: Direction = "down"

    def __post_init__(self) -> None:
        _check_direction(self.direction)


@dataclass(frozen=True)
class Drop:
    """Accept, read and discard the client's bytes; never answer."""


@dataclass(frozen=True)
class Refuse:
    """Reset the connection right after accepting it."""


Fault = Delay | Reset | Truncate | Drop | Refuse


@dataclass
class ProxyStats:
    """A snapshot of what the proxy saw. ``faults`` counts faults that fired, by class name
    (a fault armed on a connection that ended before its threshold does not fire)."""

    connections: int = 0
    active: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    faults: Counter[str] = field(default_factory=Counter)


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None  # None: until clear()


class _Cut(Exception):
    """A fault ended the connection (raised inside a pump to stop both directions)."""


class _Conn:
    """One proxied connection: the client side, the upstream side (once connected), its fault."""

    def __init__(self, client: asyncio.StreamWriter, fault: Fault | None) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.fault = fault
        self.tasks: list[asyncio.Task[None]] = []

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST: SO_LINGER on, timeout 0, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _unsent(writer: asyncio.StreamWriter) -> int:
    """Bytes still buffered by the transport or the kernel (unsent or unacknowledged)."""
    pending = writer.transport.get_write_buffer_size()
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            pending += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return pending


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Wait (bounded) until what was written to ``writer`` has left the proxy."""
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
    deadline = time.monotonic() + _FLUSH_TIMEOUT
    # Polling: the kernel's send queue draining has no event to wait on.
    while _unsent(writer) and time.monotonic() < deadline and not writer.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


class FaultProxy:
    """A fault-injecting TCP proxy in front of ``target_host:target_port`` (see the module doc)."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._stats = ProxyStats()
        self._conns: set[_Conn] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # connection noise, by design
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"FaultProxy->{target_port}", daemon=True)
        self._thread.start()
        self._closed = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self.port: int = sock.getsockname()[1]
        try:
            self._call(self._listen(sock))
        except BaseException:
            self.close()
            raise

    # -- public API -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def inject(self, fault: Fault, *, times: int | None = 1) -> None:
        """Arm ``fault`` for the next ``times`` connections (``None``: all of them until ``clear()``)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be positive or None, got {times}")
        with self._lock:
            self._armed.append(_Armed(fault, times))

    def clear(self) -> None:
        """Disarm every fault not yet taken by a connection (faults already on a connection stay)."""
        with self._lock:
            self._armed.clear()

    def stop_listening(self, *, reset_connections: bool = True) -> None:
        """Stop accepting (new connections are refused by the kernel) and, by default, reset the
        open ones: the server went away."""
        self._call(self._stop(reset_connections))

    def start_listening(self) -> None:
        """Listen again on the same port: the server came back."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self.port))
        except OSError:
            sock.close()
            raise
        self._call(self._listen(sock))

    def reset_connections(self) -> None:
        """Reset every open connection (the listener stays)."""
        self._call(self._reset_all())

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def stats(self) -> ProxyStats:
        """A copy of the counters, safe to keep."""
        with self._lock:
            s = self._stats
            return ProxyStats(s.connections, s.active, s.bytes_up, s.bytes_down, Counter(s.faults))

    def close(self) -> None:
        """Stop listening, reset every connection, stop the proxy's thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy(port={self.port} -> {self.target_host}:{self.target_port}, {self.stats})"

    # -- loop side ------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed and not self._loop.is_running():
            coro.close()
            raise RuntimeError("the proxy is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _listen(self, sock: socket.socket) -> None:
        if self._server is not None:
            sock.close()
            return
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=1024)

    async def _stop(self, reset_connections: bool) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Not server.wait_closed(): on 3.12+ it waits for the connections too.
        if reset_connections:
            await self._reset_all()

    async def _reset_all(self) -> None:
        for conn in list(self._conns):
            for writer in conn.writers():
                _reset(writer)
            for task in conn.tasks:
                task.cancel()
        await asyncio.sleep(0)

    async def _shutdown(self) -> None:
        await self._stop(reset_connections=True)
        tasks = [t for c in self._conns for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _take_fault(self) -> Fault | None:
        with self._lock:
            self._stats.connections += 1
            self._stats.active += 1
            for armed in self._armed:
                fault = armed.fault
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                return fault
        return None

    def _fired(self, fault: Fault) -> None:
        with self._lock:
            self._stats.faults[type(fault).__name__] += 1

    def _count(self, direction: Direction, n: int) -> None:
        with self._lock:
            if direction == "up":
                self._stats.bytes_up += n
            else:
                self._stats.bytes_down += n

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer, self._take_fault())
        task = asyncio.current_task()
        assert task is not None
        conn.tasks.append(task)  # type: ignore[arg-type]
        self._conns.add(conn)
        try:
            await self._serve(conn, reader)
        except (asyncio.CancelledError, _Cut, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(conn)
            for w in conn.writers():
                if not w.transport.is_closing():
                    w.close()
            with self._lock:
                self._stats.active -= 1

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        fault = conn.fault
        if isinstance(fault, Refuse):
            self._fired(fault)
            _reset(conn.client)
            return
        if isinstance(fault, Drop):
            self._fired(fault)
            while await reader.read(_READ_SIZE):
                pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(conn.client)  # the target is down: the client sees a reset connection
            return
        conn.upstream = up_writer
        up = asyncio.ensure_future(self._pump(conn, reader, up_writer, "up"))
        down = asyncio.ensure_future(self._pump(conn, up_reader, conn.client, "down"))
        try:
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
            if pending:
                # One side ended cleanly (its EOF was passed on): let the other finish.
                done2, _ = await asyncio.wait(pending)
                done |= done2
            for t in done:
                t.result()
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _pump(
        self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: Direction
    ) -> None:
        fault = conn.fault
        mine = fault if isinstance(fault, (Delay, Reset, Truncate)) and fault.direction == direction else None
        sent = 0
        while True:
            # ``room`` is how far the threshold is; at 0 the next chunk is the one that triggers the
            # fault (so a fault at 0 fires on the first byte, not on an idle pooled connection).
            room = None if mine is None else max(0, mine.after_bytes - sent)
            chunk = await src.read(min(_READ_SIZE, room) if room else _READ_SIZE)
            if not chunk:
                break
            if room == 0:
                if isinstance(mine, Delay):
                    self._fired(mine)
                    delay, mine = mine.seconds, None  # once per connection
                    await asyncio.sleep(delay)
                elif mine is not None:
                    await self._cut(conn, dst, mine)
            dst.write(chunk)
            sent += len(chunk)
            self._count(direction, len(chunk))
            await dst.drain()
        # EOF from this side: pass it on (half-close), the other direction may still be talking.
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof() and not dst.transport.is_closing():
                dst.write_eof()

    async def _cut(self, conn: _Conn, dst: asyncio.StreamWriter, fault: Reset | Truncate) -> None:
        """The threshold was reached: flush what was forwarded, then end the connection."""
        await _flushed(dst)
        self._fired(fault)
        for writer in conn.writers():
            if isinstance(fault, Reset):
                _reset(writer)
            else:
                writer.close()
        raise _Cut
