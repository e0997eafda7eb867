"""Routes for rss_probe.py parts (2) and (3): flow control under slow peers.

Routes (the same in every flavour):

* ``GET /``: 200 ``Hello, World!`` text/plain (the probe's readiness check);
* ``POST /upload?rate=BYTES_PER_S``: reads the whole request body slowly, pacing itself so that
  it consumes at most ``rate`` bytes per second (default ``UPLOAD_RATE``), then answers
  200 ``received N`` text/plain. A server with input flow control stops reading the socket while
  the handler is behind; one without buffers the upload in memory;
* ``GET /stream?size=BYTES``: a streamed (chunked, no Content-Length) response of ``size`` bytes
  (default 64 MiB), written in ``CHUNK`` pieces of one preallocated buffer, so the handler
  allocates nothing per chunk and any RSS growth is the server's output buffering. The probe's
  clients read the response head and then stop reading.

``app`` is kestrel's native App, built on first access so that serving ``asgi_app`` never
imports kestrel.
``asgi_app`` is the same in ASGI 3, used to take reference figures from uvicorn or granian
(``rss_probe.py --server uvicorn --parts 2,3``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

UPLOAD_RATE = 8 * 1024 * 1024  # bytes per second the slow reader consumes, per request
STREAM_SIZE = 64 * 1024 * 1024
CHUNK = 64 * 1024
_CHUNK_DATA = b"x" * CHUNK
HELLO = b"Hello, World!"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _query_int(query: bytes | str, name: str, default: int) -> int:
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    values = parse_qs(query).get(name)
    return int(values[0]) if values else default


class Pacer:
    """Sleeps so that ``consumed`` bytes take at least ``consumed / rate`` seconds."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.consumed = 0

    async def took(self, n: int) -> None:
        self.consumed += n
        ahead = self.consumed / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def stream_chunks(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes in CHUNK pieces, all views of one buffer (the last one may be shorter)."""
    view = memoryview(_CHUNK_DATA)
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield bytes(view[:n]) if n < CHUNK else _CHUNK_DATA
        sent += n


# --------------------------------------------------------------------------------------------
# ASGI 3 (reference figures from uvicorn / granian)


async def _asgi_text(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await _asgi_text(send, 200, HELLO)
    elif path == "/upload" and method == "POST":
        pacer = Pacer(_query_int(scope["query_string"], "rate", UPLOAD_RATE))
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await pacer.took(len(message.get("body", b"")))
            if not message.get("more_body", False):
                break
        await _asgi_text(send, 200, b"received %d" % pacer.consumed)
    elif path == "/stream" and method == "GET":
        size = _query_int(scope["query_string"], "size", STREAM_SIZE)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        async for chunk in stream_chunks(size):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _asgi_text(send, 404, b"Not Found")


# --------------------------------------------------------------------------------------------
# kestrel


def _kestrel_app() -> Any:
    """kestrel's App for the three routes (module docstring), built on first access to ``app``.

    ``/upload`` reads through ``request.stream()`` at the paced rate, so reading pauses at the
    engine's input watermark; it takes bodies up to 1 GiB (a per-route limit: the server's
    default, 30,000,000 bytes, is below the probe's 64 MiB). ``/stream`` writes through
    StreamingResponse, the engine's flow-controlled writer.
    """
    from kestrel import App, Request, Response, StreamingResponse

    app = App()

    @app.get("/")
    async def hello(request: Request) -> Response:
        return Response(HELLO, status=200, content_type="text/plain")

    @app.post("/upload", max_body_size=1 << 30)
    async def upload(request: Request) -> Response:
        pacer = Pacer(_query_int(request.query_string, "rate", UPLOAD_RATE))
        async for chunk in request.stream():
            await pacer.took(len(chunk))
        return Response(b"received %d" % pacer.consumed, status=200, content_type="text/plain")

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        size = _query_int(request.query_string, "size", STREAM_SIZE)
        return StreamingResponse(stream_chunks(size), content_type="application/octet-stream")

    return app


KESTREL_APP_KIND = "native App"
_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``app`` is built lazily, so the peers never import kestrel."""
    if name == "app":
        if "app" not in _built:
            _built["app"] = _kestrel_app()
        return _built["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
