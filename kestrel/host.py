"""The seam between the engine and what it serves: one interface, whatever the app is.

The engine (kestrel._core.HttpServer, run by kestrel.server.Server) asks a *host* for
everything it needs to know about the application: how to start and stop it, what to call
per request, which request class to hand that call, what to answer for an exception that
escaped the app, the largest body any route may take, and whether the app takes CONNECT.
``App`` implements it; a bare ``async def app(request)`` is wrapped in ``HandlerHost``; the
ASGI and WSGI adapters implement it too.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kestrel._core import Request, Response
from kestrel.types import Handler


@runtime_checkable
class Host(Protocol):
    """What the engine asks of the application it serves."""

    #: The engine refuses CONNECT (501) unless the host takes it (a proxy would).
    accepts_connect: bool

    @property
    def entry(self) -> Handler:
        """What the engine calls per request."""

    @property
    def request_class(self) -> type[Request]:
        """The Request (sub)class the engine makes for each request."""

    async def startup(self) -> None:
        """Run before the socket is listened on; raising StartupError serves nothing."""

    async def shutdown(self) -> None:
        """Run after the last connection closed."""

    def error_response(self, request: Any, exc: Exception) -> Response | None:
        """The answer to an exception that escaped `entry`, or None for the engine's 500."""

    def max_body_size(self, server_limit: int) -> int:
        """The largest body the parser may let through (per-route limits are the host's)."""


class HandlerHost:
    """A bare ``async def app(request)`` as a host: no lifecycle, the engine's Request."""

    accepts_connect = False
    request_class = Request

    def __init__(self, handler: Handler) -> None:
        if not callable(handler):
            raise TypeError(f"the app must be callable, not {handler!r}")
        self.entry = handler

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def error_response(self, request: Any, exc: Exception) -> Response | None:
        return None

    def max_body_size(self, server_limit: int) -> int:
        return server_limit


def as_host(app: Any) -> Host:
    """The host for `app`: an App (or any Host) as it is, a bare handler wrapped."""
    if isinstance(app, Host):
        return app
    return HandlerHost(app)
