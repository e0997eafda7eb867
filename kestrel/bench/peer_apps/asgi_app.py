"""The benchmark app as a bare ASGI 3 app, for uvicorn, granian and hypercorn.

It imports neither kestrel nor any framework: the peers run under another interpreter (the
benchmark venv), where kestrel is not installed, and the suite measures the servers, not a
framework. It is started by file: ``uvicorn --app-dir DIR asgi_app:app`` and the like.

The endpoints are those of kestrel/bench/bench_app.py (see there). A small router maps the
path to a handler (one dict lookup for the static paths, a prefix for ``/users/``); one
middleware wraps the whole app and adds ``x-mw: 1`` to every response start, as the kestrel
app's one middleware does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

HELLO = b"Hello, World!"
JSON_HELLO = b'{"message":"Hello, World!"}'
PIECE = 64 * 1024
_PIECE_BYTES = b"\0" * PIECE
TEXT = b"text/plain"
JSON = b"application/json"
OCTETS = b"application/octet-stream"


async def respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def query_value(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope["query_string"].decode("latin-1")).get(name)
    return values[0] if values else None


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, TEXT, HELLO)


async def json_hello(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, JSON, JSON_HELLO)


async def user(scope: Scope, receive: Receive, send: Send) -> None:
    text = scope["path"][len("/users/") :]
    if not text.isdigit():
        await respond(send, 404, TEXT, b"Not Found")
        return
    body = json.dumps({"id": int(text), "q": query_value(scope, "q")}, separators=(",", ":"))
    await respond(send, 200, JSON, body.encode())


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await respond(send, 200, OCTETS, b"".join(parts))


async def upload(scope: Scope, receive: Receive, send: Send) -> None:
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await respond(send, 200, TEXT, str(received).encode())


async def download(scope: Scope, receive: Receive, send: Send) -> None:
    text = query_value(scope, "bytes") or ""
    if not text.isdigit():
        await respond(send, 400, TEXT, b"bytes=N is required")
        return
    size = int(text)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", OCTETS), (b"content-length", text.encode())],
        }
    )
    # Each send returns once the server has taken the piece: its flow control paces the loop.
    whole, rest = divmod(size, PIECE)
    for _ in range(whole):
        await send({"type": "http.response.body", "body": _PIECE_BYTES, "more_body": True})
    await send({"type": "http.response.body", "body": _PIECE_BYTES[:rest]})


async def early(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, TEXT, b"early")


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 404, TEXT, b"Not Found")


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/"): hello,
    ("GET", "/json"): json_hello,
    ("POST", "/echo"): echo,
    ("POST", "/upload"): upload,
    ("GET", "/download"): download,
    ("POST", "/early"): early,
}


async def router(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    handler = ROUTES.get((method, path))
    if handler is None:
        handler = user if method == "GET" and path.startswith("/users/") else not_found
    await handler(scope, receive, send)


def stamp(inner: Handler) -> Handler:
    """The one middleware: ``x-mw: 1`` on every response's start message."""

    async def stamped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-mw", b"1")]
            await send(message)

        await inner(scope, receive, send_stamped)

    return stamped


_http = stamp(router)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "lifespan":
        # Answered, so that no server logs that lifespan is unsupported.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
