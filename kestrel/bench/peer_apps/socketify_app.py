"""The benchmark app on socketify's native API (uWebSockets), not its ASGI adapter.

Run as ``python socketify_app.py --host 127.0.0.1 --port PORT`` under the benchmark venv's
interpreter; it imports socketify and nothing of kestrel. It serves every endpoint of
kestrel/bench/bench_app.py (see there).

uWebSockets writes the status line on the first header written, so a middleware cannot add a
header before the handler has chosen its status. The one middleware here is therefore the step
every response begins with: ``begin()`` writes the status and then runs ``stamp``, which adds
``x-mw: 1`` (the kestrel app's middleware does the same to every response).

The handlers that read a body or stream are ``async def``: socketify's response factory (which
recycles response objects, as its own benchmarks do) would recycle a plain handler's response
as soon as it returned, before its ``on_data`` callbacks ran. Bodies come through ``on_data``
(a handler that never sets one, ``/early``, leaves the body to uWebSockets). ``/download``
sends with ``send_chunk``, whose future resolves once uWebSockets has taken the piece, so a
slow reader pauses the loop (backpressure).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import socketify

HELLO = b"Hello, World!"
JSON_HELLO = b'{"message":"Hello, World!"}'
PIECE = 64 * 1024
_PIECE_BYTES = b"\0" * PIECE
TEXT = b"text/plain"
JSON = b"application/json"
OCTETS = b"application/octet-stream"


def stamp(res: Any) -> None:
    """The one middleware."""
    res.write_header(b"x-mw", b"1")


def begin(res: Any, status: int, content_type: bytes) -> None:
    res.write_status(status)
    stamp(res)
    res.write_header(b"Content-Type", content_type)


def hello(res: Any, req: Any) -> None:
    begin(res, 200, TEXT)
    res.end(HELLO)


def json_hello(res: Any, req: Any) -> None:
    begin(res, 200, JSON)
    res.end(JSON_HELLO)


def user(res: Any, req: Any) -> None:
    text = req.get_parameter(0)
    if not text.isdigit():
        begin(res, 404, TEXT)
        res.end(b"Not Found")
        return
    body = json.dumps({"id": int(text), "q": req.get_query("q")}, separators=(",", ":"))
    begin(res, 200, JSON)
    res.end(body.encode())


async def echo(res: Any, req: Any) -> None:
    body = await res.get_data()  # a BytesIO of the whole body
    begin(res, 200, OCTETS)
    res.end(body.getvalue())


async def upload(res: Any, req: Any) -> None:
    received = 0
    done = res.app.loop.create_future()

    def on_data(res: Any, chunk: bytes | None, is_end: bool) -> None:
        nonlocal received
        if chunk:
            received += len(chunk)
        if is_end:
            done.set_result(None)

    res.on_data(on_data)
    await done
    begin(res, 200, TEXT)
    res.end(str(received).encode())


async def download(res: Any, req: Any) -> None:
    # The request is valid only until the first await (uWebSockets reuses it).
    text = req.get_query("bytes") or ""
    if not text.isdigit():
        begin(res, 400, TEXT)
        res.end(b"bytes=N is required")
        return
    size = int(text)
    begin(res, 200, OCTETS)
    if size == 0:
        res.end(b"")
        return
    sent = 0
    while sent < size and not res.aborted:
        piece = _PIECE_BYTES if size - sent >= PIECE else _PIECE_BYTES[: size - sent]
        await res.send_chunk(piece, size)  # resolves once taken; sets Content-Length: size
        sent += len(piece)


def early(res: Any, req: Any) -> None:
    begin(res, 200, TEXT)
    res.end(b"early")


def not_found(res: Any, req: Any) -> None:
    begin(res, 404, TEXT)
    res.end(b"Not Found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the kestrel-bench app on socketify")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # Reusing request/response objects is what socketify's own benchmarks do.
    app = socketify.App(request_response_factory_max_items=200_000)
    app.get("/", hello)
    app.get("/json", json_hello)
    app.get("/users/:id", user)
    app.post("/echo", echo)
    app.post("/upload", upload)
    app.get("/download", download)
    app.post("/early", early)
    app.any("/*", not_found)

    def listening(config: Any) -> None:
        print(f"socketify listening on http://{args.host}:{config.port}/", flush=True)

    app.listen(socketify.AppListenOptions(port=args.port, host=args.host), listening)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
