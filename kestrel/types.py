"""The type aliases shared across the Python layer, in one place.

The engine, the host interface, the App, the router, middleware, responses and the test
client all speak of the same few shapes: what the engine calls per request, a middleware and
its ``call_next``, what a handler may return, raw header lists. They are named here once.

This module imports nothing of kestrel at run time (the classes the aliases mention are
imported for the type checker only, and the aliases that mention them are strings), so any
module may import it without risking an import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from kestrel._core import FileResponse, Response, StreamingResponse
    from kestrel.app import App
    from kestrel.request import Request

__all__ = [
    "AnyResponse",
    "CallNext",
    "Endpoint",
    "ExceptionHandler",
    "FileField",
    "Handler",
    "HeaderInput",
    "Hook",
    "Lifespan",
    "Middleware",
    "RawHeaders",
]

# ---- The engine and its host (kestrel.host).

#: What the engine calls per request (with a kestrel._core.Request or the host's subclass):
#: it returns bytes, str, None (204), or a Response, StreamingResponse or FileResponse.
Handler: TypeAlias = Callable[[Any], Awaitable[Any]]

# ---- The framework (kestrel.app, kestrel.routing, kestrel.middleware).

#: A route's handler, ``async def`` or plain ``def``, called with the request and the path
#: parameters as keyword arguments.
Endpoint: TypeAlias = Callable[..., Any]
#: What middleware gets back from ``call_next`` (a handler's return value made a response).
AnyResponse: TypeAlias = "Response | StreamingResponse | FileResponse"
CallNext: TypeAlias = Callable[["Request"], Awaitable[AnyResponse]]
Middleware: TypeAlias = Callable[["Request", CallNext], Awaitable[AnyResponse]]
ExceptionHandler: TypeAlias = Callable[["Request", Any], Awaitable[Any] | Any]
#: A startup or shutdown hook, ``async def`` or plain ``def``.
Hook: TypeAlias = Callable[[], Awaitable[None] | None]
Lifespan: TypeAlias = "Callable[[App], AbstractAsyncContextManager[Any]]"

# ---- Headers (kestrel.datastructures, kestrel.response).

#: Header fields as the engine holds them: (name, value) byte pairs, in order.
RawHeaders: TypeAlias = list[tuple[bytes, bytes]]
#: What a Response or Headers accepts: a mapping, or (name, value) pairs of str or bytes.
HeaderInput: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] | None

# ---- The test client (kestrel.testing).

#: An upload for TestClient: (filename, content) or (filename, content, content type).
FileField: TypeAlias = tuple[str, bytes] | tuple[str, bytes, str]
