"""moto's S3 served over HTTP/1.1 keep-alive, multi-threaded: a fairer server for client benchmarks.

``python -m moto.server`` runs Werkzeug's development server, which closes the connection after
every response, so every request a client makes pays a TCP connect (and the server a thread start)
that real S3, which keeps connections alive, does not charge. Werkzeug cannot be talked out of it:
its handler sends ``Connection: close`` on every response even with
``protocol_version = "HTTP/1.1"`` (checked with Werkzeug 3.1: three requests on one
``http.client`` connection, each answered ``Connection: close``). This serves the same WSGI
application (moto's ``DomainDispatcherApplication``) from waitress (``pip install waitress``): a
pure-Python HTTP/1.1 server that keeps connections open and answers them from a pool of threads
(``--threads``, 8 by default).

One difference from moto's own server: waitress drops request headers whose names contain an
underscore (moto's handler keeps them), so S3 user metadata with ``_`` in a name is lost. The
benchmarks send none.

Run it directly (``python benchmarks/keepalive_moto.py -p 5000``, bound to 127.0.0.1), or use
``start_keepalive_moto()`` (a context manager yielding the same ``MotoS3`` handle as the tests'
``start_moto()``), or ``start_s3(name)`` behind a benchmark's ``--server moto|keepalive`` flag.
The tests keep the plain moto server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.servers import HOST, free_port, http_ready, run_server  # noqa: E402
from tests.servers_s3 import MotoS3, start_moto  # noqa: E402

__all__ = ["keepalive_missing", "main", "start_keepalive_moto", "start_s3"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default=HOST)
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    try:
        import waitress
    except ImportError:
        raise SystemExit("the keep-alive moto server needs waitress: pip install waitress") from None
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads, ident="moto", _quiet=True)


def keepalive_missing() -> str | None:
    """Why the keep-alive server cannot run here (``None``: it can)."""
    try:
        import waitress  # noqa: F401
    except ImportError:
        return "waitress is not installed (pip install waitress)"
    return None


@contextlib.contextmanager
def start_keepalive_moto() -> Iterator[MotoS3]:
    """Run the keep-alive moto server on a free loopback port until the block exits."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "-H", HOST, "-p", str(port)]
    with run_server(argv, http_ready(f"http://{HOST}:{port}/moto-api/"), port=port) as server:
        yield MotoS3(server.endpoint)


def start_s3(server: str) -> contextlib.AbstractContextManager[MotoS3]:
    """The server a benchmark's ``--server`` flag names: ``moto`` (plain, one connection per
    request) or ``keepalive`` (this module)."""
    if server == "moto":
        return start_moto()
    if server == "keepalive":
        return start_keepalive_moto()
    raise ValueError(f"unknown S3 server {server!r} (moto or keepalive)")


if __name__ == "__main__":
    main()
