"""The benchmark app on kestrel's native App: what `kestrel-bench suite` measures kestrel with,
and what `kestrel-bench serve` runs for people who bring their own load generator.

Every server flavor of the suite serves these same endpoints (the peers' versions are in
kestrel/bench/peer_apps/, written without kestrel or any framework):

- ``GET /``: ``Hello, World!`` as text/plain;
- ``GET /json``: ``{"message":"Hello, World!"}``;
- ``GET /users/{id:int}?q=...``: ``{"id": id, "q": q or null}`` (a non-integer id is a 404);
- ``POST /echo``: the request body, read in full and sent back;
- ``POST /upload``: the body read piece by piece and dropped; the answer is its length;
- ``GET /download?bytes=N``: N bytes with a Content-Length, produced 64 KiB at a time through
  StreamingResponse, which waits whenever the client is behind (output backpressure);
- ``POST /early``: ``early``, without reading the body (the engine drains or closes).

One middleware wraps the whole app and stamps ``x-mw: 1`` on every response, as the peers'
one middleware does: every flavor pays for one layer on every endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kestrel import App, Request, Response, StreamingResponse
from kestrel.types import AnyResponse, CallNext

HELLO = b"Hello, World!"
JSON_HELLO = b'{"message":"Hello, World!"}'
PIECE = 64 * 1024
_PIECE_BYTES = b"\0" * PIECE
# /upload and /echo take bodies of any size the suite sends (1 GiB uploads); the server's
# default limit (30 MB) would refuse them with 413 before the handler runs.
LARGEST_BODY = 1 << 40

app = App()


@app.middleware
async def stamp(request: Request, call_next: CallNext) -> AnyResponse:
    response = await call_next(request)
    response.headers["x-mw"] = "1"
    return response


@app.get("/")
async def hello(request: Request) -> Response:
    return Response(HELLO, content_type="text/plain")


@app.get("/json")
async def json_hello(request: Request) -> Response:
    return Response(JSON_HELLO, content_type="application/json")


@app.get("/users/{user_id:int}")
async def user(request: Request, user_id: int) -> dict[str, object]:
    return {"id": user_id, "q": request.query.get("q")}


@app.post("/echo", max_body_size=LARGEST_BODY)
async def echo(request: Request) -> Response:
    return Response(await request.body(), content_type="application/octet-stream")


@app.post("/upload", max_body_size=LARGEST_BODY)
async def upload(request: Request) -> Response:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return Response(str(received), content_type="text/plain")


async def _pieces(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes, PIECE at a time, all from one buffer (the last piece may be shorter)."""
    whole, rest = divmod(size, PIECE)
    for _ in range(whole):
        yield _PIECE_BYTES
    if rest:
        yield _PIECE_BYTES[:rest]


@app.get("/download")
async def download(request: Request) -> Response | StreamingResponse:
    text = request.query.get("bytes", "")
    if not text.isdigit():
        return Response(b"bytes=N is required", status=400, content_type="text/plain")
    size = int(text)
    return StreamingResponse(
        _pieces(size),
        headers={"content-length": str(size)},
        content_type="application/octet-stream",
    )


@app.post("/early")
async def early(request: Request) -> Response:
    return Response(b"early", content_type="text/plain")
