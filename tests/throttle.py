"""A loopback HTTP proxy in front of a real S3 server (moto) that answers chosen requests with
S3 errors (``503 SlowDown``, ``403 AccessDenied``...) and counts the requests it receives.

``tests/faultproxy.py`` breaks connections; this one speaks HTTP, for the failures a server
reports in its response (throttling, 5xx, 4xx), which moto never produces. Every request is
counted by method and path; a request an armed rule matches gets the rule's error, the rest are
forwarded to the server unchanged and its response relayed. It runs in daemon threads, so a
sync test (the ``flytestore`` command runs its own event loop) and an async one can both use it.

::

    with ThrottleProxy(moto_port) as proxy:
        proxy.refuse("PUT", "/bucket/key", 503, "SlowDown")            # every PUT of the key
        proxy.refuse("PUT", "/bucket/key", 503, "SlowDown", times=2)   # the next two only
        proxy.count("PUT", "/bucket/key")                              # PUTs received
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["ThrottleProxy"]

HOST = "127.0.0.1"
#: Request headers not passed on (hop-by-hop, or handled by this proxy).
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"})


@dataclass
class _Rule:
    method: str
    path: str
    status: int
    code: str
    remaining: int | None  # None: until clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and ``Expect: 100-continue`` answered
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # no noise on stderr

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self._body()
        path = unquote(urlsplit(self.path).path)
        rule = proxy._received(self.command, path)
        if rule is not None:
            error = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
                f"<Message>injected {rule.code}</Message><RequestId>t-1</RequestId><HostId>t-1</HostId></Error>"
            ).encode()
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(error)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        upstream = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=60)
        try:
            upstream.request(
                self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers
            )
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        length = None
        for name, value in response.getheaders():
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower not in _HOP:
                self.send_header(name, value)
        # A HEAD answer keeps the object's length; any other carries the body read here.
        self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: ThrottleProxy


class ThrottleProxy:
    """An HTTP proxy on a free 127.0.0.1 port forwarding to ``target_host:target_port``."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._server = _Server((HOST, 0), _Handler)
        self._server.proxy = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"ThrottleProxy->{target_port}", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def refuse(self, method: str, path: str, status: int, code: str, *, times: int | None = None) -> None:
        """Answer the next ``times`` requests ``method path`` (None: all until ``clear()``) with
        ``status`` and an S3 error document of ``code``."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), path, status, code, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def count(self, method: str, path: str) -> int:
        """Requests ``method path`` received so far (answered here or forwarded)."""
        with self._lock:
            return self._counts[(method.upper(), path)]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def _received(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            self._counts[(method, path)] += 1
            for rule in self._rules:
                if rule.method == method and rule.path == path:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ThrottleProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
