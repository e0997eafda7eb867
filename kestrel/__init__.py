"""kestrel: an HTTP/1.1 server and micro-framework with a Cython engine."""

from kestrel._core import HttpParseError, HttpParser, RejectReason, RequestHead

__version__ = "0.1.0.dev0"

__all__ = ["HttpParseError", "HttpParser", "RejectReason", "RequestHead", "__version__"]
