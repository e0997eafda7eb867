"""The plaintext route every contender serves: ``GET /`` -> 200 ``Hello, World!`` text/plain.

* ``asgi_app``: a bare ASGI 3 app for uvicorn and granian (no framework in between);
* ``run_socketify(port)``: socketify's native app (its uWebSockets API, not its ASGI adapter),
  started with ``python -m perf.apps.plaintext socketify --port PORT``;
* ``app``: kestrel's native App, an ``async def`` handler behind one middleware, as the engine
  issue's acceptance asks (``app_stamp``: the middleware also sets a header).

Nothing here imports a peer at module level: uvicorn, granian and socketify live in the
benchmark venv (perf/.venv, made by perf/setup_peers.sh), not in kestrel's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

BODY = b"Hello, World!"
CONTENT_TYPE = b"text/plain"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(BODY))],
}
_BODY: Message = {"type": "http.response.body", "body": BODY, "more_body": False}
_NOT_FOUND_START: Message = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", CONTENT_TYPE), (b"content-length", b"9")],
}
_NOT_FOUND_BODY: Message = {"type": "http.response.body", "body": b"Not Found", "more_body": False}


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Bare ASGI 3 app: the same two messages every time, no routing beyond ``/``."""
    if scope["type"] == "http":
        if scope["path"] == "/":
            await send(_START)
            await send(_BODY)
        else:
            await send(_NOT_FOUND_START)
            await send(_NOT_FOUND_BODY)
    elif scope["type"] == "lifespan":
        # Answer lifespan properly so neither server logs that it is unsupported.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def run_socketify(port: int, host: str = "127.0.0.1") -> None:
    """socketify's native App on one core, configured as in its TechEmpower entry."""
    socketify: Any = importlib.import_module("socketify")

    def plaintext(res: Any, req: Any) -> None:
        res.write_header(b"Content-Type", CONTENT_TYPE)
        res.end(BODY)

    def listening(config: Any) -> None:
        print(f"socketify listening on http://{host}:{config.port}/", flush=True)

    # Reusing request/response objects is what socketify's own benchmarks do.
    sapp = socketify.App(request_response_factory_max_items=200_000)
    sapp.get("/", plaintext)
    sapp.listen(socketify.AppListenOptions(port=port, host=host), listening)
    sapp.run()


# --------------------------------------------------------------------------------------------
# kestrel


def _kestrel_app(stamp: bool) -> Any:
    """kestrel's native App: an ``async def`` handler behind one middleware.

    ``app``: the middleware passes the response through (the acceptance configuration:
    one middleware layer, the handler's str turned into a Response for it). ``app_stamp``:
    the middleware also sets a header, as DESIGN.md's example does. Built on first access,
    so that serving ``asgi_app`` never imports kestrel.
    """
    from kestrel import App, Request, Response

    app = App()

    if stamp:

        @app.middleware
        async def stamp_header(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-mw"] = "1"
            return response

    else:

        @app.middleware
        async def passthrough(request: Request, call_next: Any) -> Any:
            return await call_next(request)

    @app.get("/")
    async def hello(request: Request) -> Response:
        return Response(BODY, status=200, content_type=CONTENT_TYPE)

    return app


KESTREL_APP_KIND = "native App, async def handler behind one middleware"
_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``app`` and ``app_stamp`` are built lazily, so the peers never import kestrel."""
    if name in ("app", "app_stamp"):
        if name not in _built:
            _built[name] = _kestrel_app(stamp=name == "app_stamp")
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run a peer app that has no CLI")
    ap.add_argument("server", choices=["socketify"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    run_socketify(args.port, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
