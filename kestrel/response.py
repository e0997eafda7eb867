"""Responses. The three the engine sends itself come from the core:

- ``Response(body, status=200, headers=None, content_type=None)``: sent as given;
- ``StreamingResponse(iterable, ...)``: a sync or async iterable, sent chunked with the
  engine's output backpressure (the iteration waits while the client is behind);
- ``FileResponse(path, ...)``: sent with sendfile(2), with Range requests answered.

The classes here are conveniences built on ``Response``.
"""

from __future__ import annotations

from typing import Any

from kestrel._core import FileResponse, Response, StreamingResponse
from kestrel.json_encoding import json_dumps
from kestrel.types import HeaderInput

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
    "json_dumps",
    "json_response",
]

JSON = b"application/json"


def json_response(content: Any, status: int = 200) -> Response:
    """A plain Response carrying `content` as JSON (what a returned dict becomes)."""
    return Response(json_dumps(content), status, None, JSON)


class JSONResponse(Response):
    def __init__(self, content: Any, status: int = 200, headers: HeaderInput = None) -> None:
        super().__init__(json_dumps(content), status, headers, JSON)


class PlainTextResponse(Response):
    def __init__(self, content: str, status: int = 200, headers: HeaderInput = None) -> None:
        super().__init__(content.encode(), status, headers, "text/plain; charset=utf-8")


class HTMLResponse(Response):
    def __init__(self, content: str, status: int = 200, headers: HeaderInput = None) -> None:
        super().__init__(content.encode(), status, headers, "text/html; charset=utf-8")


class RedirectResponse(Response):
    """A redirect; 307 by default, which keeps the method (as Starlette's does)."""

    def __init__(self, url: str, status: int = 307, headers: HeaderInput = None) -> None:
        if not 300 <= status <= 399:
            raise ValueError(f"a redirect needs a 3xx status, not {status}")
        super().__init__(b"", status, headers)
        self.headers["location"] = url
