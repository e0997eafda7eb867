"""Dispatch: one request through kestrel's App, with and without a middleware, against
Starlette with one middleware. The apps are the framework benchmark's (perf/apps/framework.py):
``GET /users/42?q=hello`` -> ``{"id":42,"q":"hello"}`` as JSON, the middleware setting
``x-mw: 1``.

* kestrel: the engine itself (HttpServer) serves one keep-alive connection over its in-memory
  transport, as perf/bench_dispatch.py drives it over a socketpair but with no socket: the
  timed call feeds the request's bytes and reads the response's back. A handler that does not
  suspend finishes inside the feed (its first step runs without a Task), so the request is
  parsed, routed, handled and its response written within the call, with the loop marked as
  running as it is when the selector delivers bytes. So kestrel's figures include the
  server's work too; "kestrel-engine", a bare handler with no App, is that work alone.
* Starlette: the ASGI app called with a scope as uvicorn builds it (copied per call, as the
  scope is per request), a receive with the empty body and a send that keeps the messages;
  driven with coroutine.send(None), no loop and no Task: nothing in it suspends. No server
  work at all (no parse, no Task, no serialization), so the ratio understates kestrel's
  advantage by the server's share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from framework import kestrel_app, starlette_app
from pytest_benchmark.fixture import BenchmarkFixture

import kestrel
from kestrel import Request, Response
from kestrel._core import HttpServer
from kestrel._core import Request as CoreRequest

REQUEST = (
    b"GET /users/42?q=hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
)
BODY = b'{"id":42,"q":"hello"}'
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/users/42",
    "raw_path": b"/users/42",
    "query_string": b"q=hello",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "state": {},
}


async def bare(request: CoreRequest) -> Response:
    return Response(BODY, 200, None, b"application/json")


KESTREL: dict[str, Callable[[], tuple[Any, type[CoreRequest]]]] = {
    "kestrel-engine": lambda: (bare, CoreRequest),
    "kestrel-app": lambda: (kestrel_app(middleware=False).entry, Request),
    "kestrel-app-mw": lambda: (kestrel_app().entry, Request),
}
CONTENDERS = [*KESTREL, "starlette-mw"]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A kestrel loop, marked running (as in a selector callback) while the test runs."""
    loop = kestrel.new_event_loop()
    asyncio.events._set_running_loop(loop)
    try:
        yield loop
    finally:
        asyncio.events._set_running_loop(None)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def kestrel_exchange(contender: str, loop: asyncio.AbstractEventLoop) -> Callable[[], bytes]:
    handler, request_class = KESTREL[contender]()
    server = HttpServer(handler, loop=loop, request_class=request_class)
    transport = server.open_in_memory()
    feed, read = transport.feed, transport.read

    def exchange() -> bytes:
        feed(REQUEST)
        return read()

    return exchange


def starlette_exchange() -> Callable[[], list[Any]]:
    app = starlette_app()
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    def exchange() -> list[Any]:
        messages.clear()
        call = app(dict(SCOPE), receive, send)
        try:
            call.send(None)
        except StopIteration:
            return messages
        call.close()
        raise RuntimeError("the Starlette app suspended")

    return exchange


@pytest.mark.parametrize("contender", KESTREL)
def test_kestrel_answers(contender: str, loop: asyncio.AbstractEventLoop) -> None:
    exchange = kestrel_exchange(contender, loop)
    for _ in range(2):
        head, body = exchange().split(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == BODY
        assert (b"\r\nx-mw: 1" in head) == contender.endswith("-mw")
    assert not loop._ready  # type: ignore[attr-defined]  # nothing left for the loop to do


def test_starlette_answers() -> None:
    exchange = starlette_exchange()
    for _ in range(2):
        start, body = exchange()
        assert start["status"] == 200 and (b"x-mw", b"1") in start["headers"]
        assert body["body"] == BODY


@pytest.mark.parametrize("contender", CONTENDERS)
def test_dispatch(
    benchmark: BenchmarkFixture, contender: str, loop: asyncio.AbstractEventLoop
) -> None:
    benchmark.group = "dispatch GET /users/42?q=hello"
    if contender in KESTREL:
        benchmark(kestrel_exchange(contender, loop))
        assert not loop._ready  # type: ignore[attr-defined]
    else:
        benchmark(starlette_exchange())
