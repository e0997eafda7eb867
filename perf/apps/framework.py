"""The framework benchmark's app, written twice: kestrel's App and Starlette.

Both serve ``GET /users/{user_id:int}?q=...`` -> ``{"id": <int>, "q": <str or null>}`` as
application/json, through one middleware that sets ``x-mw: 1`` on the response (Starlette's
is a pure ASGI middleware, the fastest kind it has). Both also answer ``GET /`` with the
plaintext body, which is what perf/servers.py checks before measuring.

* ``app``: kestrel (``kestrel perf.apps.framework:app``);
* ``asgi_app``: Starlette, for uvicorn (uvloop + httptools) from the benchmark venv.

perf/micro/test_dispatch_bench.py times both in-process, through kestrel_app() and
starlette_app().

Starlette is imported only when ``asgi_app`` is asked for, kestrel only for ``app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

BODY = b"Hello, World!"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def kestrel_app(middleware: bool = True) -> Any:
    """The kestrel App (without its middleware for perf/micro's dispatch group)."""
    from kestrel import App, Request, Response

    app = App()

    async def stamp(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-mw"] = "1"
        return response

    if middleware:
        app.add_middleware(stamp)

    @app.get("/users/{user_id:int}")
    async def user(request: Request, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "q": request.query.get("q")}

    @app.get("/")
    async def hello(request: Request) -> Response:
        return Response(BODY, content_type="text/plain")

    return app


class StampMiddleware:
    """Pure ASGI middleware: adds ``x-mw: 1`` to the response start message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-mw", b"1")]
            await send(message)

        await self.app(scope, receive, send_stamped)


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def user(request: Request) -> JSONResponse:
        return JSONResponse(
            {"id": request.path_params["user_id"], "q": request.query_params.get("q")}
        )

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(BODY)

    return Starlette(
        routes=[Route("/users/{user_id:int}", user), Route("/", hello)],
        middleware=[Middleware(StampMiddleware)],
    )


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name in ("app", "asgi_app"):
        if name not in _built:
            _built[name] = kestrel_app() if name == "app" else starlette_app()
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
