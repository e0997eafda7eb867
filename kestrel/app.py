"""The App: routes, middleware, exception handlers and the lifespan.

How a request flows
-------------------
The engine calls the App's entry point with the request. The entry point is the middleware
onion, built once, at startup (the server keeps that one, so middleware is added before the
app starts; adding it to a running app is an error)::

    first middleware added  ->  ...  ->  last middleware added  ->  dispatch  ->  handler
          (outermost: sees the request first and the response last)

This is ASP.NET Core's order: middleware runs in the order it was added. Each middleware is
``async def mw(request, call_next)``; ``await call_next(request)`` runs the rest of the onion
and returns a Response (a handler's ``str``/``dict``/... has been turned into one by then),
whose ``headers`` the middleware may change.

``dispatch`` routes the request, runs the handler (``async def`` on the loop, plain ``def``
in the App's bounded ``thread_pool``, a kestrel.threadpool.ThreadPool) and turns exceptions
into responses: HTTPException, routing misses (404, 405 with Allow, 308 for a trailing
slash, 400 for a path that does not decode) and any exception type with a registered
handler. Anything else propagates through the
middleware to the engine, which logs the traceback and answers 500 (with ``App(debug=True)``
the App answers instead, with the traceback in the body). A path that does not decode is a
400 wherever it is first read: by the router here, or by a middleware, in which case the
BadRequest reaches the engine, which answers 400 itself. Likewise an HTTPException that a
middleware raises (an auth check's 401, say) reaches the engine, which asks the App's
``error_response`` and answers with the exception's status instead of a 500. Exception
handlers registered per type run inside the middleware, for what handlers raise.

With no middleware the handler's return value goes to the engine as it is: the engine
serializes str, bytes, None, Response, StreamingResponse and FileResponse itself, in C, and
only dict and list are encoded here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from kestrel._core import (
    ClientDisconnect,
    HttpParseError,
    Response,
    to_response,
)
from kestrel.exceptions import HTTPException
from kestrel.request import BadRequest, Request
from kestrel.response import json_response
from kestrel.routing import MethodNotAllowed, NotFound, Router
from kestrel.threadpool import DEFAULT_THREADS, ThreadPool
from kestrel.types import (
    AnyResponse,
    CallNext,
    ExceptionHandler,
    Handler,
    Hook,
    Lifespan,
    Middleware,
)

log = logging.getLogger("kestrel.app")

F = TypeVar("F", bound=Callable[..., Any])

_TEXT = b"text/plain; charset=utf-8"


class StartupError(RuntimeError):
    """A startup hook or the lifespan failed; the server does not start."""


class App(Router):
    """A kestrel application: ``app = App()``, then ``@app.get("/")`` and friends."""

    def __init__(
        self,
        *,
        debug: bool = False,
        lifespan: Lifespan | None = None,
        max_threads: int = DEFAULT_THREADS,
    ) -> None:
        super().__init__()
        self.debug = debug
        self.lifespan = lifespan
        self.thread_pool = ThreadPool(max_threads)  # for plain def handlers
        self.user_middleware: list[Middleware] = []
        self.exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._entry: Handler | None = None
        self._convert = False
        self._body_limits = False
        self._lifespan_context: contextlib.AbstractAsyncContextManager[Any] | None = None
        self._started = False  # between startup() and shutdown(): the onion is fixed

    # ---- Middleware.

    def middleware(self, func: Middleware) -> Middleware:
        """Decorator: ``@app.middleware`` on ``async def mw(request, call_next)``."""
        self.add_middleware(func)
        return func

    def add_middleware(self, middleware: Any, **options: Any) -> None:
        """Add a middleware function, or a class instantiated with ``options``.

        A class's instances are called as ``await instance(request, call_next)``; the bundled
        ones are in kestrel.middleware (CORS, GZip, TrustedHost, RequestId).
        """
        if isinstance(middleware, type):
            middleware = middleware(**options)
        elif options:
            raise TypeError("options are for middleware classes; a function takes none")
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, not {middleware!r}")
        if self._started:
            # The server runs the onion built at startup: a later addition would be ignored.
            raise RuntimeError("middleware must be added before the app starts")
        self.user_middleware.append(middleware)
        self._entry = None

    def exception_handler(self, exc_type: type[BaseException]) -> Callable[[F], F]:
        """Decorator: ``@app.exception_handler(KeyError)`` on ``async def h(request, exc)``."""

        def register(func: F) -> F:
            self.exception_handlers[exc_type] = func
            return func

        return register

    # ---- The entry point the engine calls.

    @property
    def entry(self) -> Handler:
        """The callable the engine runs per request (the middleware onion, built once)."""
        if self._entry is None:
            self._entry = self._build()
        return self._entry

    def __call__(self, request: Request) -> Awaitable[Any]:
        return self.entry(request)

    def _build(self) -> Handler:
        # Without middleware the engine serializes what a handler returns; with it, each
        # middleware must get a Response (whose headers it may change).
        self._convert = bool(self.user_middleware)
        # Without per-route body limits the parser's limit is the server's, and it refuses a
        # larger Content-Length before any handler runs (Server.serve sets it from the routes).
        self._body_limits = bool(self.route_body_limits())
        entry: Handler = self._dispatch
        for middleware in reversed(self.user_middleware):
            entry = _layer(middleware, entry)
        if self.debug:
            entry = functools.partial(self._debug_errors, entry)
        return entry

    # ---- The rest of the host interface (kestrel.host.Host) the server runs the app through.

    #: CONNECT is for proxies: the engine refuses it (501) for an App.
    accepts_connect = False

    @property
    def request_class(self) -> type[Request]:
        return Request

    def max_body_size(self, server_limit: int) -> int:
        """The largest body any route takes: the parser refuses only what none could."""
        return max([server_limit, *self.route_body_limits()])

    def route_body_limits(self) -> list[int]:
        """The body limits routes set for themselves (``max_body_size=``), in bytes."""
        return [
            handler.max_body_size
            for route in self.routes
            for handler in route.handlers.values()
            if handler.max_body_size is not None
        ]

    async def _dispatch(self, request: Request) -> Any:
        """Route, run the handler, and turn what it returns or raises into a response."""
        try:
            # The common case inline: a static path and a method it has.
            path = request.path
            route = self.static.get(path)
            if route is None:
                # Not a static path: only the parameterised routes are left to look at.
                handler, params = self.match_parameters(request.method, path)
            else:
                static = route.handlers.get(request.method)
                if static is None:
                    handler, params = self.match(request.method, path)  # HEAD, 405
                else:
                    handler, params = static, {}
            request._routed(self, handler.path, params)
            if self._body_limits:
                # Some route has its own body limit, so the parser only refuses what no route
                # could take: this request's own limit is checked here.
                if handler.max_body_size is not None:
                    request.max_body_size = handler.max_body_size
                content_length = request.content_length
                if content_length > 0 and 0 <= request.max_body_size < content_length:
                    raise HTTPException(413)  # the same reason phrase as the engine's 413
            if handler.is_async:
                if params:
                    result = await handler.endpoint(request, **params)
                else:
                    result = await handler.endpoint(request)
            else:
                result = await self.thread_pool.run(handler.endpoint, request, **params)
        except (HttpParseError, ClientDisconnect):
            raise  # the engine answers these (with the parser's status) and closes
        except Exception as exc:
            result = await self._handle_exception(request, exc)
        if request._form is not None:
            # Uploads spooled to temporary files are closed once the handler is done with
            # them, so a handler that forgets to close its form does not leak descriptors.
            await request._form.aclose()
        if type(result) is Response or not self._convert:
            # A Response needs no mapping; without middleware the engine maps the result
            # itself (with the same to_response).
            return result
        return to_response(result)

    def error_response(self, request: Request, exc: Exception) -> Response | None:
        """The engine's question when an exception escaped the middleware onion: an
        HTTPException a middleware raised is answered with its status, as one from a handler
        is; anything else (None here) is the engine's 500 with the traceback logged.
        Exception handlers registered with exception_handler() run inside the middleware,
        for what handlers raise, and are not asked here."""
        if isinstance(exc, HTTPException):
            return http_exception_response(exc)
        return None

    async def _handle_exception(self, request: Request, exc: Exception) -> Any:
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                result = handler(request, exc)
                if asyncio.iscoroutine(result):
                    result = await result
                return result
        if isinstance(exc, HTTPException):
            return http_exception_response(exc)
        if isinstance(exc, NotFound):
            return self._not_found(request)
        if isinstance(exc, MethodNotAllowed):
            return Response(b"Method Not Allowed", 405, [(b"allow", exc.allow.encode())], _TEXT)
        if isinstance(exc, BadRequest):
            return Response(str(exc).encode(), 400, None, _TEXT)
        raise exc

    def _not_found(self, request: Request) -> Response:
        path = request.path
        if path == "*":
            # OPTIONS * asks about the server, not a resource (RFC 9110 §9.3.7; the parser
            # lets no other method use "*"). An app's own route for "*" answers instead.
            return Response(b"", 200, [(b"allow", self._server_methods().encode())])
        if path != "/":
            other = path[:-1] if path.endswith("/") else path + "/"
            if self.has_path(other):
                location = request.raw_path.decode("ascii")
                location = location[:-1] if location.endswith("/") else location + "/"
                if request.query_string:
                    location += "?" + request.query_string.decode("latin-1")
                return Response(b"", 308, [(b"location", location.encode("latin-1"))])
        return Response(b"Not Found", 404, None, _TEXT)

    def _server_methods(self) -> str:
        """Every method some route takes (GET implying HEAD), and OPTIONS."""
        methods = {"OPTIONS"}
        for route in self.routes:
            methods.update(route.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    async def _debug_errors(self, entry: Handler, request: Request) -> Any:
        try:
            return await entry(request)
        except (HttpParseError, ClientDisconnect, asyncio.CancelledError, HTTPException):
            raise  # the engine answers these (an HTTPException through error_response)
        except Exception as exc:
            log.error(
                "%s %s (route %s) raised",
                request.method,
                request.path,
                request.route,
                exc_info=exc,
            )
            body = "".join(traceback.format_exception(exc))
            return Response(body.encode(), 500, None, _TEXT)

    # ---- Lifespan.

    def on_startup(self, func: F) -> F:
        self.startup_hooks.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        self.shutdown_hooks.append(func)
        return func

    async def startup(self) -> None:
        """Run the lifespan's entry and the startup hooks; any failure is a StartupError."""
        self.entry  # noqa: B018 - build the onion now, not on the first request
        self._started = True
        try:
            if self.lifespan is not None:
                context = self.lifespan(self)
                await context.__aenter__()
                self._lifespan_context = context
            for hook in self.startup_hooks:
                result = hook()
                if result is not None:
                    await result
        except Exception as exc:
            if self._lifespan_context is not None:
                # A startup hook failed after the lifespan was entered: let it clean up.
                context, self._lifespan_context = self._lifespan_context, None
                try:
                    await context.__aexit__(type(exc), exc, exc.__traceback__)
                except Exception:
                    log.exception("lifespan exit after a failed startup failed")
            self._started = False
            raise StartupError(f"application startup failed: {exc!r}") from exc

    async def shutdown(self) -> None:
        """Run the shutdown hooks, then the lifespan's exit; failures are logged."""
        for hook in self.shutdown_hooks:
            try:
                result = hook()
                if result is not None:
                    await result
            except Exception:
                log.exception("shutdown hook %r failed", hook)
        if self._lifespan_context is not None:
            context, self._lifespan_context = self._lifespan_context, None
            try:
                await context.__aexit__(None, None, None)
            except Exception:
                log.exception("lifespan shutdown failed")
        self.thread_pool.shutdown()
        self._started = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """``async with app.running():`` startup on entry, shutdown on exit."""
        await self.startup()
        try:
            yield self
        finally:
            await self.shutdown()


def _layer(middleware: Middleware, call_next: CallNext) -> CallNext:
    # A plain function, not a coroutine: a layer adds a call, not a coroutine object.
    def layer(request: Request) -> Awaitable[AnyResponse]:
        return middleware(request, call_next)

    return layer


def http_exception_response(exc: HTTPException) -> Response:
    if isinstance(exc.detail, (dict, list)):
        response = json_response(exc.detail, exc.status)
    else:
        response = Response(str(exc.detail).encode(), exc.status, None, _TEXT)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
