"""An object service over HTTP with aiohttp: uploads and downloads stream through a DataStore.

    python examples/web_service.py [--port 8080] [--root DIR] [--config FILE]
                                   [--max-download-mbs N] [--cache-mbs N]

With no --config it serves a local store in a fresh temporary directory (or --root DIR): nothing
to install or start. It listens on 127.0.0.1 only and prints its URL as the first line of stdout
(--port 0 picks a free port). Logs go to stderr. Try it:

    curl -T big.bin http://127.0.0.1:8080/objects/data/big.bin     # PUT, streamed to the store
    curl http://127.0.0.1:8080/objects/data/big.bin -o copy.bin      # GET, streamed back
    curl -I http://127.0.0.1:8080/objects/data/big.bin               # HEAD: size, etag, type
    curl -X DELETE http://127.0.0.1:8080/objects/data/big.bin
    curl http://127.0.0.1:8080/metrics                               # cache hits, latencies, ...

    PUT    /objects/{key}  body streamed into the store -> 201 {"key", "size", "etag"}
                           (If-None-Match: * creates only: 412 when the key exists)
    GET    /objects/{key}  body streamed out; 413 above the download limit, 404 when missing
    HEAD   /objects/{key}  Content-Length, ETag, Content-Type and Last-Modified only
    DELETE /objects/{key}  204, or 404 when missing
    GET    /metrics        Prometheus text from the DataStore's Scope
    GET    /healthz        {"status": "ok", ...}

A key is one or more non-empty segments separated by "/", none of them "." or ".."; anything else,
and anything the store refuses, is 400. Neither direction holds a whole object in memory: the
request body is handed to ``write_raw`` as an async iterator of chunks (with its Content-Length
when the client sent one), and a read's chunks are written to the response as they arrive.

--config FILE takes Flyte's ``storage:`` YAML (the section, or a whole Flyte config holding it);
--max-download-mbs and --cache-mbs then override its ``limits`` and ``cache`` when given. Without
--config the limit is 2 MiB (Flyte's default) and the cache 64 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flytestore import (
    AlreadyExistsError,
    Config,
    DataReference,
    DataStore,
    ExceedsLimitError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    Options,
    PermissionDeniedError,
    Scope,
    StorageError,
    TransientError,
)
from flytestore.reference import escape_key

#: Chunk size for reading request bodies. Response chunks are whatever the store yields.
UPLOAD_CHUNK = 256 * 1024
DEFAULT_CONTAINER = "objects"

log = logging.getLogger("web_service")

STORE = web.AppKey("store", DataStore)
SCOPE = web.AppKey("scope", Scope)
CONFIG = web.AppKey("config", Config)


# ---------------------------------------------------------------------------------------------
# Keys and errors


class BadKeyError(InvalidReferenceError):
    """A key the service refuses before it reaches the store."""


def object_ref(store: DataStore, key: str) -> DataReference:
    """The reference of ``key`` below the base container: escaped, so the store sees ``key`` as is."""
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise BadKeyError(f"bad key [{key}]: use non-empty segments separated by '/', none of them '.' or '..'")
    return DataReference(f"{store.base_container}/{escape_key(key)}")


def error_response(status: int, code: str, err: BaseException, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": str(err), **extra}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def storage_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map flytestore's exception tree onto HTTP statuses with a JSON body."""
    try:
        return await handler(request)
    except ExceedsLimitError as err:
        return error_response(413, "exceeds_limit", err, size=err.size, limit=err.limit)
    except NotFoundError as err:
        return error_response(404, "not_found", err)
    except AlreadyExistsError as err:
        return error_response(412, "already_exists", err)
    except (InvalidReferenceError, InvalidArgumentError) as err:  # bad keys, size mismatches
        return error_response(400, "bad_request", err)
    except PermissionDeniedError as err:
        return error_response(403, "permission_denied", err)
    except TransientError as err:
        return error_response(503, "unavailable", err)
    except StorageError as err:
        log.exception("storage error on %s %s", request.method, request.path)
        return error_response(500, "storage_error", err)


class StreamAbortedError(Exception):
    """A download failed after its headers were sent: the connection is dropped, not completed."""


# ---------------------------------------------------------------------------------------------
# Handlers


async def put_object(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    key = request.match_info["key"]
    ref = object_ref(store, key)
    options = Options(
        content_type=request.headers.get("Content-Type") or None,
        if_not_exists=request.headers.get("If-None-Match", "").strip() == "*",
    )
    # Chunk by chunk into the store; with a Content-Length the store also checks the size, and a
    # body that ends early or runs long stores nothing.
    body = request.content.iter_chunked(UPLOAD_CHUNK)
    meta = await store.write_raw(ref, body, size=request.content_length, options=options)
    return web.json_response({"key": key, "size": meta.size, "etag": meta.etag}, status=201)


def _etag(value: str) -> str | None:
    value = value.strip('"')
    return value if value and '"' not in value else None


async def get_object(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    # Opening the read raises NotFoundError or ExceedsLimitError (size known) before any byte
    # is sent, so the middleware can still answer 404 or 413.
    stream = await store.read_raw(object_ref(store, request.match_info["key"]))
    async with stream:
        response = web.StreamResponse()
        meta = stream.metadata
        response.content_type = (meta.content_type if meta is not None else None) or "application/octet-stream"
        if meta is not None:
            response.etag = _etag(meta.etag)
            response.last_modified = meta.last_modified
        if stream.size is not None:
            response.content_length = stream.size
        await response.prepare(request)
        try:
            async for chunk in stream:
                await response.write(chunk)
        except StorageError as err:
            # Only a stream of unknown size can pass the limit here. The status is sent already:
            # drop the connection so the client sees a failed download, never a short success.
            raise StreamAbortedError(f"download of {request.path} failed after the headers: {err}") from err
        await response.write_eof()
    return response


async def head_object(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    meta = await store.head(object_ref(store, request.match_info["key"]))
    if not meta.exists:
        return web.Response(status=404)
    response = web.StreamResponse()
    response.content_length = meta.size
    response.content_type = meta.content_type or "application/octet-stream"
    response.etag = _etag(meta.etag)
    response.last_modified = meta.last_modified
    await response.prepare(request)
    await response.write_eof()
    return response


async def delete_object(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    await store.delete(object_ref(store, request.match_info["key"]))
    return web.Response(status=204)


async def metrics(request: web.Request) -> web.StreamResponse:
    registry = request.app[SCOPE].registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    return web.json_response({"status": "ok", "base_container": str(store.base_container)})


# ---------------------------------------------------------------------------------------------
# The application


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the DataStore at startup and close it on cleanup."""
    async with DataStore(app[CONFIG], scope=app[SCOPE]) as store:
        app[STORE] = store
        yield


def make_app(config: Config, scope: Scope | None = None) -> web.Application:
    """The application; its DataStore opens with the app and closes on its cleanup."""
    app = web.Application(middlewares=[storage_errors])
    app[CONFIG] = config
    app[SCOPE] = scope if scope is not None else Scope("flyte:storage", registry=CollectorRegistry())
    app.cleanup_ctx.append(_store_ctx)
    objects = "/objects/{key:.+}"
    app.router.add_put(objects, put_object)
    app.router.add_get(objects, get_object, allow_head=False)
    app.router.add_head(objects, head_object)
    app.router.add_delete(objects, delete_object)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def build_config(args: argparse.Namespace, root: str) -> Config:
    if args.config:
        config = Config.from_yaml(args.config)
        if args.max_download_mbs is not None:
            config = config.with_overrides(limits={"max_download_mbs": args.max_download_mbs})
        if args.cache_mbs is not None:
            config = config.with_overrides(cache={"max_size_mbs": args.cache_mbs})
        return config
    return Config(
        type="local",
        container=DEFAULT_CONTAINER,
        local={"path": root},
        limits={"max_download_mbs": 2 if args.max_download_mbs is None else args.max_download_mbs},
        cache={"max_size_mbs": 64 if args.cache_mbs is None else args.cache_mbs},
    )


async def serve(config: Config, port: int) -> None:
    """Serve on 127.0.0.1 until SIGINT or SIGTERM; the URL is the first line of stdout."""
    runner = web.AppRunner(make_app(config))
    await runner.setup()  # runs the cleanup context's startup: the store is open from here
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        print(f"http://{host}:{bound}", flush=True)
        log.info("serving %r", config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()  # closes the DataStore


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="An HTTP object service over a flytestore DataStore.")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: a free port); default 8080")
    parser.add_argument("--root", metavar="DIR", help="local store root (default: a temporary directory)")
    parser.add_argument("--config", metavar="FILE", help="Flyte storage YAML instead of the local store")
    parser.add_argument("--max-download-mbs", type=int, metavar="N", help="download limit in MiB (0: none)")
    parser.add_argument("--cache-mbs", type=int, metavar="N", help="size of the in-memory read cache in MiB")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    with contextlib.ExitStack() as stack:
        root = args.root or stack.enter_context(tempfile.TemporaryDirectory(prefix="flytestore-web-"))
        try:
            config = build_config(args, root)
        except StorageError as err:  # ConfigError: names the offending field
            print(f"web_service: {err}", file=sys.stderr)
            return 2
        try:
            asyncio.run(serve(config, args.port))
        except StorageError as err:  # the store could not be opened (credentials, a bad root...)
            print(f"web_service: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
