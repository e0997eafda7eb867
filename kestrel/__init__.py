"""kestrel: an HTTP/1.1 server and micro-framework with a Cython engine."""

from kestrel._core import (
    BodyConsumedError,
    ClientDisconnect,
    FileResponse,
    HttpParseError,
    HttpParser,
    HttpResponseParser,
    InvalidResponseError,
    RejectReason,
    RequestHead,
    Response,
    ResponseHead,
    StreamingResponse,
)
from kestrel.app import App, StartupError
from kestrel.config import Limits
from kestrel.datastructures import URL, Headers, MutableHeaders, QueryParams
from kestrel.exceptions import HTTPException
from kestrel.request import Request
from kestrel.response import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
)
from kestrel.routing import Converter, Router, register_converter
from kestrel.server import Server, new_event_loop, serve_in_thread

__version__ = "0.1.0.dev0"

__all__ = [
    "URL",
    "App",
    "BodyConsumedError",
    "ClientDisconnect",
    "Converter",
    "FileResponse",
    "HTMLResponse",
    "HTTPException",
    "Headers",
    "HttpParseError",
    "HttpParser",
    "HttpResponseParser",
    "InvalidResponseError",
    "JSONResponse",
    "Limits",
    "MutableHeaders",
    "PlainTextResponse",
    "QueryParams",
    "RedirectResponse",
    "RejectReason",
    "Request",
    "RequestHead",
    "Response",
    "ResponseHead",
    "Router",
    "Server",
    "StartupError",
    "StreamingResponse",
    "__version__",
    "new_event_loop",
    "register_converter",
    "serve_in_thread",
]
