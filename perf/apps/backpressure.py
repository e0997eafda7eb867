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

``app`` is kestrel's native app: PLACEHOLDER until ``kestrel.App`` exists (see
``_kestrel_app``), built on first access so that serving ``asgi_app`` never imports kestrel.
``asgi_app`` is the same in ASGI 3, used to take reference figures from uvicorn or granian
(``rss_probe.py --server uvicorn --parts 2,3``).
"""

from __future__ import annotations

import asyncio
import importlib
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


def _kestrel_app() -> tuple[Any, str]:
    """kestrel's app for the three routes and what kind it is, built on first access to ``app``.

    * ``kestrel.App`` exists: native routes per DESIGN.md.
    * INTERIM: no ``App`` yet but ``kestrel.Response`` exists: one bare ``async def
      app(request)`` that dispatches on the request target itself; ``/stream`` answers 501
      until ``kestrel.StreamingResponse`` exists.
    * PLACEHOLDER: neither exists; ``app`` is None.

    rss_probe.py tries each route with a small request before measuring and skips a part with
    a clear message when its route does not work yet.

    For the lead: replace this with direct, typed code against the real API, keeping the
    routes' contract (module docstring). ``/upload`` must accept a 64 MiB body: the default
    request body limit (30,000,000 bytes) answers 413 before reading, so give the route a
    per-route limit above the probe's upload size. The upload handler must read the body through
    ``request.stream()`` at the paced rate, and the stream handler must write through the
    server's flow-controlled writer, so that the probe measures the engine's watermarks.
    """
    kestrel: Any = importlib.import_module("kestrel")
    App = getattr(kestrel, "App", None)
    Response = getattr(kestrel, "Response", None)
    StreamingResponse = getattr(kestrel, "StreamingResponse", None)
    if Response is None:
        return None, "placeholder (kestrel has no Response/App yet)"

    async def hello(request: Any) -> Any:
        return Response(HELLO, status=200, content_type="text/plain")

    async def upload(request: Any) -> Any:
        pacer = Pacer(_query_int(_query_of(request), "rate", UPLOAD_RATE))
        async for chunk in request.stream():
            await pacer.took(len(chunk))
        return Response(b"received %d" % pacer.consumed, status=200, content_type="text/plain")

    async def stream(request: Any) -> Any:
        if StreamingResponse is None:
            return Response(b"no kestrel.StreamingResponse yet", status=501)
        size = _query_int(_query_of(request), "size", STREAM_SIZE)
        return StreamingResponse(stream_chunks(size), content_type="application/octet-stream")

    if App is None:

        async def interim(request: Any) -> Any:
            path = request.target.partition(b"?")[0]
            if path == b"/upload" and request.method == "POST":
                return await upload(request)
            if path == b"/stream":
                return await stream(request)
            if path == b"/":
                return await hello(request)
            return Response(b"Not Found", status=404, content_type="text/plain")

        return interim, "interim bare handler (no kestrel.App yet)"

    kapp = App()
    # Registered by call: mypy --strict rejects decorators of an untyped (Any) app.
    kapp.get("/")(hello)
    kapp.post("/upload")(upload)
    kapp.get("/stream")(stream)
    return kapp, "native App"


def _query_of(request: Any) -> bytes:
    target: bytes = request.target
    return target.partition(b"?")[2]


_built: tuple[Any, str] | None = None


def __getattr__(name: str) -> Any:
    """``app`` and ``KESTREL_APP_KIND`` are built lazily, so the peers never import kestrel."""
    global _built
    if name in ("app", "KESTREL_APP_KIND"):
        if _built is None:
            _built = _kestrel_app()
        return _built[0] if name == "app" else _built[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
