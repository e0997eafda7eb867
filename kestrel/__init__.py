"""kestrel: an HTTP/1.1 server and micro-framework with a Cython engine."""

from kestrel._core import (
    ClientDisconnect,
    HttpParseError,
    HttpParser,
    RejectReason,
    Request,
    RequestHead,
    Response,
    StreamingResponse,
)
from kestrel.server import Server, new_event_loop, serve_in_thread

__version__ = "0.1.0.dev0"

__all__ = [
    "ClientDisconnect",
    "HttpParseError",
    "HttpParser",
    "RejectReason",
    "Request",
    "RequestHead",
    "Response",
    "Server",
    "StreamingResponse",
    "__version__",
    "new_event_loop",
    "serve_in_thread",
]
