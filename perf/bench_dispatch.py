"""Per-request cost of the engine and the framework layer, without a load generator.

One process: the engine serves one end of a socketpair on its own event loop while a
coroutine on the same loop writes pipelined batches of ``GET /`` into the other end and reads
the responses back. No second core and no wrk, so the figure is the server's own cost per
request (plus a client that does little), and it is repeatable enough to compare two builds
or two app configurations on a busy machine. Run under ``valgrind --tool=callgrind`` with a
small ``--requests`` for exact instruction counts.

    python perf/bench_dispatch.py                       # bare handler, App, App + middleware
    python perf/bench_dispatch.py --apps app_mw --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kestrel import App, Request, Response, new_event_loop
from kestrel._core import HttpServer
from kestrel._core import Request as CoreRequest

BODY = b"Hello, World!"
REQUEST = b"GET /?q=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def bare_handler() -> tuple[Any, type[CoreRequest]]:
    async def hello(request: CoreRequest) -> Response:
        return Response(BODY, 200, None, b"text/plain")

    return hello, CoreRequest


def native_app(middleware: str | None, route: str = "/") -> tuple[Any, type[CoreRequest]]:
    app = App()
    if middleware == "passthrough":

        @app.middleware
        async def passthrough(request: Request, call_next: Any) -> Any:
            return await call_next(request)

    elif middleware == "stamp":

        @app.middleware
        async def stamp(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-mw"] = "1"
            return response

    @app.get(route)
    async def hello(request: Request) -> Response:
        return Response(BODY, 200, None, b"text/plain")

    return app.entry, Request


def framework_app(variant: str) -> tuple[Any, type[CoreRequest]]:
    """perf/apps/framework.py's route, or a part of it (to see what each part costs)."""
    app = App()
    if variant in ("full", "no_query", "no_json"):

        @app.middleware
        async def stamp(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-mw"] = "1"
            return response

    @app.get("/users/{user_id:int}")
    async def user(request: Request, user_id: int) -> Any:
        if variant == "no_json":
            return Response(BODY, 200, None, b"text/plain")
        q = None if variant == "no_query" else request.query.get("q")
        return {"id": user_id, "q": q}

    return app.entry, Request


APPS: dict[str, Callable[[], tuple[Any, type[CoreRequest]]]] = {
    "bare": bare_handler,
    "app": lambda: native_app(None),
    "app_mw": lambda: native_app("passthrough"),
    "app_stamp": lambda: native_app("stamp"),
    "fw": lambda: framework_app("full"),
    "fw_no_mw": lambda: framework_app("no_middleware"),
    "fw_no_query": lambda: framework_app("no_query"),
    "fw_no_json": lambda: framework_app("no_json"),
}
TARGETS = {
    "fw": b"/users/42?q=hello",
    "fw_no_mw": b"/users/42?q=hello",
    "fw_no_query": b"/users/42?q=hello",
    "fw_no_json": b"/users/42?q=hello",
}


async def drive(
    handler: Any,
    request_class: type[CoreRequest],
    requests: int,
    depth: int,
    target: bytes = b"/?q=1",
) -> float:
    loop = asyncio.get_running_loop()
    engine = HttpServer(handler, loop=loop, request_class=request_class)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    engine.adopt(theirs)
    batch = REQUEST.replace(b"/?q=1", target) * depth
    marker = b"HTTP/1.1 200 OK"
    started = time.perf_counter()
    for _ in range(requests // depth):
        await loop.sock_sendall(ours, batch)
        seen = 0
        tail = b""
        while seen < depth:
            data = tail + await loop.sock_recv(ours, 1 << 20)
            seen += data.count(marker)
            tail = data[-len(marker) :]
            if tail.count(marker):
                tail = b""
    elapsed = time.perf_counter() - started
    ours.close()
    engine.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", default="bare,app,app_mw,app_stamp,fw")
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    loop = new_event_loop()
    for name in args.apps.split(","):
        handler, request_class = APPS[name]()
        best = min(
            loop.run_until_complete(
                drive(
                    handler, request_class, args.requests, args.depth, TARGETS.get(name, b"/?q=1")
                )
            )
            for _ in range(args.rounds)
        )
        per_request = best / args.requests * 1e6
        print(f"{name:10s} {per_request:6.2f} us/request  {1e6 / per_request:9.0f} req/s")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
