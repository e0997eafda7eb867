"""The three routes of the suite's benchmark app that the heavy scenarios use, as a kestrel
App: ``GET /``, ``POST /upload`` and ``GET /download?bytes=N``, as every server the suite
compares serves them.

The tests of kestrel/bench/transfer.py, idle.py and slowloris.py serve it in a thread. Run by
itself (``PYTHONPATH=.:tests python -m kestrel bench_app:app``), it is the server those
scenarios are measured against until ``kestrel-bench serve`` has the whole app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kestrel import App, Request, Response, StreamingResponse

PIECE = 64 * 1024  # the download is produced and sent in pieces of this size
MAX_UPLOAD = 1 << 40  # /upload keeps nothing, so any size the client sends is fine

app = App()
_piece = bytes(PIECE)


@app.get("/")
async def hello(request: Request) -> Response:
    return Response(b"Hello, World!", content_type="text/plain")


@app.post("/upload", max_body_size=MAX_UPLOAD)
async def upload(request: Request) -> Response:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return Response(b"%d" % received, content_type="text/plain")


async def _pieces(size: int) -> AsyncIterator[bytes]:
    while size > 0:
        piece = _piece if size >= PIECE else _piece[:size]
        size -= len(piece)
        yield piece


@app.get("/download")
async def download(request: Request) -> Response | StreamingResponse:
    try:
        size = int(request.query.get("bytes") or "")
    except ValueError:
        size = -1
    if size < 0:
        return Response(b"bytes=N wanted", status=400, content_type="text/plain")
    return StreamingResponse(
        _pieces(size),
        headers=[("content-length", str(size))],
        content_type="application/octet-stream",
    )
