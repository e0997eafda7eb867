"""The App: handlers (loop / thread pool / watchdog), the Request, per-route body limits,
middleware, startup/shutdown hooks and the lifespan, startup failure (embedded and CLI), and
the TestClient itself.

Routing is in test_routing.py and return values / responses in test_responses.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.client
import inspect
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kestrel
from kestrel import App, Request, Response, StartupError, _core
from kestrel.datastructures import QueryParams
from kestrel.testing import TestClient
from kestrel.threadpool import ThreadPool

REPO = Path(kestrel.__file__).resolve().parent.parent


def fetch(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh loopback connection (an iterator body is sent chunked)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(
            method,
            path,
            body=body,
            headers=headers or {},
            encode_chunked=body is not None and not isinstance(body, bytes),
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---- Handlers: async on the loop, def in a bounded thread pool.


def test_async_handlers_run_on_the_loop_and_def_handlers_in_threads() -> None:
    app = App()
    seen: dict[str, Any] = {}

    @app.get("/async")
    async def on_loop(request: Request) -> str:
        seen["async"] = (threading.get_ident(), asyncio.get_running_loop())
        await asyncio.sleep(0)  # any asyncio code works here
        return "async"

    @app.get("/sync")
    def in_thread(request: Request) -> str:
        seen["sync"] = threading.current_thread().name
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # not on the loop
        return "sync"

    @app.get("/loop-thread")
    async def loop_thread(request: Request) -> str:
        return str(threading.get_ident())

    with TestClient(app) as client:
        assert client.get("/async").text == "async"
        assert client.get("/sync").text == "sync"
        loop_ident = int(client.get("/loop-thread").text)
    assert seen["async"][0] == loop_ident
    assert isinstance(seen["async"][1], asyncio.AbstractEventLoop)
    assert seen["sync"].startswith("kestrel")
    assert seen["sync"] != threading.current_thread().name


def test_blocking_def_handler_does_not_stall_the_loop() -> None:
    app = App()
    started, finished = threading.Event(), threading.Event()

    @app.get("/slow")
    def slow(request: Request) -> str:
        started.set()
        # Blocking, but in the thread pool; long enough that a VM's pause of a few hundred
        # milliseconds cannot let it finish before the quick requests are done.
        time.sleep(1.5)
        finished.set()
        return "slow"

    @app.get("/quick/{n:int}")
    async def quick(request: Request, n: int) -> dict[str, int]:
        return {"n": n}

    with kestrel.serve_in_thread(app, port=0) as server:
        slow_result: list[tuple[int, bytes]] = []
        worker = threading.Thread(
            target=lambda: slow_result.append(fetch(server.port, "GET", "/slow"))
        )
        worker.start()
        try:
            assert started.wait(5)
            t0 = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for n in range(20):
                    response = client.get(f"/quick/{n}")
                    assert response.json() == {"n": n}
            elapsed = time.monotonic() - t0
            # All 20 were answered while the def handler was still sleeping.
            assert not finished.is_set()
            assert elapsed < 1.0, f"20 quick requests took {elapsed:.3f} s behind a blocked thread"
        finally:
            worker.join(5)
        assert slow_result == [(200, b"slow")]


def test_thread_pool_is_bounded() -> None:
    app = App(max_threads=2)
    lock = threading.Lock()
    running = peak = 0

    @app.get("/work")
    def work(request: Request) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.15)
        with lock:
            running -= 1
        return threading.current_thread().name

    with kestrel.serve_in_thread(app, port=0) as server:
        results: list[tuple[int, bytes]] = []
        workers = [
            threading.Thread(target=lambda: results.append(fetch(server.port, "GET", "/work")))
            for _ in range(4)
        ]
        t0 = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(5)
        elapsed = time.monotonic() - t0
    assert sorted(status for status, _ in results) == [200] * 4
    assert peak == 2  # never more than max_threads at once
    assert elapsed >= 0.29  # 4 jobs of 0.15 s, two at a time
    assert len({body for _, body in results}) == 2  # on two pool threads


def test_thread_pool_starts_on_first_call_carries_the_context_and_restarts() -> None:
    pool = ThreadPool(1, name="pool-test")
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def work(suffix: str, *, sep: str) -> tuple[str, str]:
        return threading.current_thread().name, var.get() + sep + suffix

    async def main() -> list[tuple[str, str]]:
        var.set("mw")
        results = [await pool.run(work, "a", sep="-")]
        pool.shutdown()  # as the app's shutdown does
        results.append(await pool.run(work, "b", sep="+"))  # a restarted app gets a new pool
        pool.shutdown()
        return results

    assert pool._executor is None  # no thread until a plain def handler runs
    (first_thread, first), (second_thread, second) = asyncio.run(main())
    assert (first, second) == ("mw-a", "mw+b")
    assert first_thread.startswith("pool-test") and second_thread.startswith("pool-test")
    assert pool._executor is None


# ---- The watchdog.


def test_watchdog_names_the_route_and_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kestrel.watchdog")
    app = App()

    @app.get("/block/{ms:int}")
    async def block(request: Request, ms: int) -> str:
        time.sleep(ms / 1000)  # wrong in async def: holds the loop
        return "blocked"

    @app.get("/sync-block")
    def sync_block(request: Request) -> str:
        time.sleep(0.3)  # fine: the thread pool
        return "not blocked"

    @app.get("/quick")
    async def quick(request: Request) -> str:
        return "quick"

    lines, first = inspect.getsourcelines(block)
    sleep_line = first + next(i for i, line in enumerate(lines) if "time.sleep" in line)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "kestrel.watchdog"]

    with kestrel.serve_in_thread(app, port=0) as server:
        assert fetch(server.port, "GET", "/sync-block") == (200, b"not blocked")
        assert fetch(server.port, "GET", "/quick") == (200, b"quick")
        assert not any("block" in message for message in warnings())

        assert fetch(server.port, "GET", "/block/300") == (200, b"blocked")
        deadline = time.monotonic() + 1
        while not warnings() and time.monotonic() < deadline:
            time.sleep(0.01)
    messages = [m for m in warnings() if "GET /block/{ms:int}" in m]
    assert len(messages) == 1, warnings()
    message = messages[0]
    assert "threshold 100 ms" in message
    assert f"{__file__}:{sleep_line} in block" in message
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "kestrel.watchdog")


def native_threads() -> set[int]:
    """This process's OS threads (the watchdog's is not a threading.Thread)."""
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def test_watchdog_takes_no_gil_while_the_loop_is_healthy() -> None:
    # A loop kept busy with pipelined requests for 2 s: the watchdog's thread looks at it every
    # threshold/4 and never calls back into Python (the only way it takes the GIL). The
    # threshold is generous so that a loop thread descheduled on a busy machine is no stall.
    app = App()

    @app.get("/")
    async def index(request: Request) -> str:
        return "ok"

    batch = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 16
    threads_before = native_threads()
    with kestrel.serve_in_thread(app, port=0, blocking_threshold=0.4) as server:
        started = native_threads() - threads_before  # the server's thread and the watchdog's
        assert len(started) >= 2
        watchdog = server.watchdog
        assert watchdog is not None
        responses = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                sock.sendall(batch)
                received = b""
                while received.count(b"HTTP/1.1 200") < 16:
                    received += sock.recv(65536)
                responses += 16
        assert responses > 100
        assert watchdog.passes >= 8  # 2 s / 0.1 s, with room for a slow machine
        assert watchdog.callbacks == 0
        assert watchdog.warnings == 0
    # The server stopped and joined its watchdog's thread. (The server's own Python thread
    # is joined too, but the OS may take a moment to reap it after join() returns.)
    deadline = time.monotonic() + 2
    while native_threads() & started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not native_threads() & started


def test_watchdog_reports_each_stall_once_and_stops_at_once() -> None:
    loop = kestrel.new_event_loop()
    try:
        selector = loop._selector  # type: ignore[attr-defined]
        held: list[float] = []
        watch = _core.LoopWatch(selector, 0.05, held.append)
        threads_before = native_threads()
        watch.start()
        started = native_threads() - threads_before
        assert watch.running and len(started) == 1

        def stall() -> None:
            time.sleep(0.3)  # one pass of the loop holding it for 300 ms

        loop.call_soon(stall)
        loop.run_until_complete(asyncio.sleep(0.05))
        deadline = time.monotonic() + 1
        while not held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watch.callbacks == 1 and len(held) == 1  # one pass over: one report
        assert 0.05 < held[0] < 0.3
        passes = watch.passes
        assert passes >= 4
        t0 = time.monotonic()
        watch.stop()
        assert time.monotonic() - t0 < 0.05  # woken, not waited for
        assert not watch.running and not native_threads() & started  # joined: gone
        watch.stop()  # a second stop does nothing
        with pytest.raises(RuntimeError):
            watch.start()
        with pytest.raises(ValueError):
            _core.LoopWatch(selector, 0, held.append)
    finally:
        loop.close()


# ---- The Request.


def test_query_without_decoding_is_split_in_the_core_alike() -> None:
    app = App()

    @app.get("/q")
    async def query(request: Request) -> dict[str, Any]:
        return {"first": dict(request.query), "items": request.query.multi_items()}

    with TestClient(app) as client:
        data = client.get("/q?a=1&&b=&a=2&c&=x").json()
    assert data == {
        "first": {"a": "1", "b": "", "c": "", "": "x"},
        "items": [["a", "1"], ["b", ""], ["a", "2"], ["c", ""], ["", "x"]],
    }


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab=&%+1~", max_size=24))
def test_split_query_matches_the_python_parser(query: str) -> None:
    # The core splits what needs no decoding; the rest is left to parse_query.
    split = _core.split_query(query.encode("latin-1"))
    if "%" in query or "+" in query:
        assert split is None
        return
    expected = QueryParams.from_query_string(query)
    assert split is not None and type(split) is QueryParams
    assert split.multi_items() == expected.multi_items()
    assert dict(split) == dict(expected)


def test_request_attributes() -> None:
    app = App()

    @app.get("/info/{name}")
    async def info(request: Request, name: str) -> dict[str, Any]:
        return {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path.decode(),
            "query_a": request.query.getlist("a"),
            "query_first": request.query["a"],
            "query_b": request.query.get("b"),
            "query_missing": request.query.get("zzz", "default"),
            "query_items": request.query.multi_items(),
            "header": request.headers["X-Custom-Header"],
            "header_lower": request.headers.get("x-custom-header"),
            "has_header": "X-CUSTOM-HEADER" in request.headers,
            "cookies": request.cookies,
            "client": list(request.client or ()),
            "url": str(request.url),
            "route": request.route,
            "path_params": request.path_params,
        }

    with TestClient(app) as client:
        data = client.get(
            "/info/J%C3%B6rg%20X?a=1&b=x+y&a=2&c=%26",
            headers={"X-Custom-Header": "value"},
            cookies={"session": "abc", "theme": "dark"},
        ).json()
    assert data == {
        "method": "GET",
        "path": "/info/Jörg X",
        "raw_path": "/info/J%C3%B6rg%20X",
        "query_a": ["1", "2"],
        "query_first": "1",
        "query_b": "x y",
        "query_missing": "default",
        "query_items": [["a", "1"], ["b", "x y"], ["a", "2"], ["c", "&"]],
        "header": "value",
        "header_lower": "value",
        "has_header": True,
        "cookies": {"session": "abc", "theme": "dark"},
        "client": ["testclient", 50000],
        "url": "http://testserver/info/Jörg X?a=1&b=x+y&a=2&c=%26",
        "route": "/info/{name}",
        "path_params": {"name": "Jörg X"},
    }


def test_request_repeated_headers_and_client_over_tcp() -> None:
    app = App()

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, Any]:
        return {
            "tags": request.headers.getlist("X-Tag"),
            "first": request.headers["x-tag"],
            "cookies": request.cookies,
            "client": list(request.client or ()),
            "url": str(request.url),
        }

    with kestrel.serve_in_thread(app, port=0) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.putrequest("GET", "/headers?x=1", skip_host=True)
            connection.putheader("Host", "example.test:8080")
            connection.putheader("X-Tag", "one")
            connection.putheader("x-tag", "two")
            connection.putheader("Cookie", 'a=1; b="quoted"')
            connection.putheader("Cookie", "a=ignored; c=3")
            connection.endheaders()
            response = connection.getresponse()
            data = httpx.Response(200, content=response.read()).json()
            local_port = connection.sock.getsockname()[1]
        finally:
            connection.close()
    assert data == {
        "tags": ["one", "two"],
        "first": "one",
        "cookies": {"a": "1", "b": "quoted", "c": "3"},  # the first of a repeated name wins
        "client": ["127.0.0.1", local_port],
        "url": "http://example.test:8080/headers?x=1",
    }


def test_request_body_json_and_stream() -> None:
    app = App()

    @app.post("/body")
    async def body(request: Request) -> dict[str, Any]:
        data = await request.body()
        again = await request.body()  # cached
        return {"n": len(data), "same": data == again, "head": data[:5].decode()}

    @app.post("/json")
    async def as_json(request: Request) -> Any:
        return {"got": await request.json()}

    @app.post("/stream")
    async def stream(request: Request) -> dict[str, Any]:
        sizes = []
        total = bytearray()
        async for chunk in request.stream():
            sizes.append(len(chunk))
            total += chunk
        return {"n": len(total), "chunks": len(sizes), "ok": bytes(total) == PAYLOAD}

    @app.post("/sync-body")
    def sync_body(request: Request) -> str:
        return "def handlers may not await; they still get the request"

    with TestClient(app) as client:
        assert client.post("/body", content=b"hello world").json() == {
            "n": 11,
            "same": True,
            "head": "hello",
        }
        assert client.post("/body").json() == {"n": 0, "same": True, "head": ""}
        assert client.post("/json", json={"a": [1, "é"]}).json() == {"got": {"a": [1, "é"]}}
        response = client.post("/json", content=b"{broken")
        assert (response.status_code, response.text) == (400, "the request body is not valid JSON")
        # Sent with Content-Length, then chunked (an iterator body).
        data = client.post("/stream", content=PAYLOAD).json()
        assert data["n"] == len(PAYLOAD) and data["ok"]
        pieces = iter([PAYLOAD[:1000], PAYLOAD[1000:100_000], PAYLOAD[100_000:]])
        data = client.post("/stream", content=pieces).json()
        assert data["n"] == len(PAYLOAD) and data["ok"]
        assert data["chunks"] >= 1
        assert client.post("/sync-body", content=b"x").status_code == 200


PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes


# ---- Per-route body limits.


def test_per_route_body_limit_overrides_server_default() -> None:
    app = App()
    ran: list[str] = []

    @app.post("/default")
    async def default(request: Request) -> dict[str, int]:
        ran.append("default")
        return {"n": len(await request.body()), "limit": request.max_body_size}

    @app.post("/tiny", max_body_size=10)
    async def tiny(request: Request) -> dict[str, int]:
        ran.append("tiny")
        return {"n": len(await request.body()), "limit": request.max_body_size}

    @app.post("/upload", max_body_size=1 << 30)
    async def upload(request: Request) -> dict[str, int]:
        ran.append("upload")
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return {"n": n, "limit": request.max_body_size}

    with kestrel.serve_in_thread(app, port=0, max_request_body_size=1000) as server:
        port = server.port
        # Within the limits.
        assert fetch(port, "POST", "/default", b"x" * 1000) == (200, b'{"n":1000,"limit":1000}')
        assert fetch(port, "POST", "/tiny", b"x" * 10) == (200, b'{"n":10,"limit":10}')
        ran.clear()

        # Content-Length over the limit: 413 before the handler runs.
        assert fetch(port, "POST", "/tiny", b"x" * 11)[0] == 413
        assert fetch(port, "POST", "/default", b"x" * 1001)[0] == 413
        assert ran == []

        # A chunked body says nothing up front: 413 once it grows past the limit.
        assert fetch(port, "POST", "/tiny", iter([b"x" * 6, b"y" * 6]))[0] == 413
        assert fetch(port, "POST", "/default", iter([b"x" * 600, b"y" * 600]))[0] == 413
        assert fetch(port, "POST", "/tiny", iter([b"x" * 4, b"y" * 6]))[0] == 200

        # A route with a larger limit takes more than the server default, both ways.
        expected = b'{"n":5000,"limit":%d}' % (1 << 30)
        assert fetch(port, "POST", "/upload", b"u" * 5000) == (200, expected)
        assert fetch(port, "POST", "/upload", iter([b"u" * 2500] * 2)) == (200, expected)
        # ... while the other routes keep theirs.
        assert fetch(port, "POST", "/default", b"x" * 5000)[0] == 413
        # The server still answers on fresh connections after all those 413s.
        assert fetch(port, "POST", "/default", b"ok") == (200, b'{"n":2,"limit":1000}')


# ---- Middleware.


def test_middleware_onion_order() -> None:
    order: list[str] = []
    app = App()

    @app.middleware
    async def outer(request: Request, call_next: Any) -> Any:
        order.append("outer in")
        response = await call_next(request)
        order.append("outer out")
        response.headers["x-seen-by"] = response.headers.get("x-seen-by", "") + "outer"
        return response

    async def middle(request: Request, call_next: Any) -> Any:
        order.append("middle in")
        response = await call_next(request)
        order.append("middle out")
        response.headers["x-seen-by"] = response.headers.get("x-seen-by", "") + "middle,"
        return response

    class Tagging:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def __call__(self, request: Request, call_next: Any) -> Any:
            order.append(f"{self.tag} in")
            response = await call_next(request)
            order.append(f"{self.tag} out")
            response.headers["x-tag"] = self.tag
            return response

    app.add_middleware(middle)
    app.add_middleware(Tagging, tag="inner")

    @app.get("/")
    async def handler(request: Request) -> str:
        order.append("handler")
        return "hi"  # a str; the middleware sees a Response

    with TestClient(app) as client:
        response = client.get("/")
        assert response.text == "hi"
        assert response.headers["x-tag"] == "inner"
        assert response.headers["x-seen-by"] == "middle,outer"  # inner ones finish first
        assert order == [
            "outer in",
            "middle in",
            "inner in",
            "handler",
            "inner out",
            "middle out",
            "outer out",
        ]
        # Middleware sees the router's answers too.
        response = client.get("/missing")
        assert (response.status_code, response.headers["x-tag"]) == (404, "inner")

    with pytest.raises(TypeError, match="options are for middleware classes"):
        app.add_middleware(middle, tag="x")
    with pytest.raises(TypeError, match="callable"):
        app.add_middleware(42)


def test_middleware_short_circuit_and_none_added_while_running() -> None:
    app = App()
    handled: list[str] = []

    @app.middleware
    async def auth(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != "Bearer ok":
            return Response(b"denied", status=401)
        request.state.user = "alice"  # type: ignore[attr-defined]
        return await call_next(request)

    @app.get("/me")
    async def me(request: Request) -> dict[str, str]:
        handled.append("me")
        user: str = request.state.user  # type: ignore[attr-defined]
        return {"user": user}

    with TestClient(app) as client:
        assert client.get("/me").status_code == 401
        assert handled == []
        assert client.get("/me", headers={"Authorization": "Bearer ok"}).json() == {"user": "alice"}

        async def late(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-late"] = "1"
            return response

        # The server runs the onion built at startup: a later addition is refused, not
        # silently ignored.
        with pytest.raises(RuntimeError, match="before the app starts"):
            app.add_middleware(late)
        assert "x-late" not in client.get("/me", headers={"Authorization": "Bearer ok"}).headers

    # Once the app has stopped, it may be changed and started again.
    app.add_middleware(late)
    with TestClient(app) as client:
        response = client.get("/me", headers={"Authorization": "Bearer ok"})
        assert response.headers["x-late"] == "1"


# ---- Startup, shutdown, lifespan.


def test_hooks_and_lifespan_run_in_order() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        events.append("lifespan enter")
        app.state_value = "ready"  # type: ignore[attr-defined]
        yield
        events.append("lifespan exit")

    app = App(lifespan=lifespan)

    @app.on_startup
    async def open_pool() -> None:
        events.append("startup async")

    @app.on_startup
    def warm_cache() -> None:
        events.append("startup sync")

    @app.on_shutdown
    async def close_pool() -> None:
        events.append("shutdown async")

    @app.on_shutdown
    def flush() -> None:
        events.append("shutdown sync")

    @app.get("/")
    async def root(request: Request) -> str:
        events.append("request")
        return str(request.app.state_value)  # type: ignore[attr-defined]

    with TestClient(app) as client:
        assert events == ["lifespan enter", "startup async", "startup sync"]
        assert client.get("/").text == "ready"
    assert events == [
        "lifespan enter",
        "startup async",
        "startup sync",
        "request",
        "shutdown async",
        "shutdown sync",
        "lifespan exit",
    ]


def test_hooks_run_around_a_real_server() -> None:
    events: list[str] = []
    app = App()
    app.on_startup(lambda: events.append("startup"))
    app.on_shutdown(lambda: events.append("shutdown"))

    @app.get("/")
    async def root(request: Request) -> str:
        return ",".join(events)

    with kestrel.serve_in_thread(app, port=0) as server:
        assert fetch(server.port, "GET", "/") == (200, b"startup")
    assert events == ["startup", "shutdown"]


def test_failed_startup_hook_stops_the_server() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        events.append("lifespan enter")
        try:
            yield
        finally:
            events.append("lifespan cleanup")

    app = App(lifespan=lifespan)

    @app.on_startup
    async def connect() -> None:
        raise ConnectionRefusedError("database at db:5432 refused")

    @app.get("/")
    async def root(request: Request) -> str:
        events.append("served")
        return "never"

    with (
        pytest.raises(StartupError, match="database at db:5432 refused") as caught,
        kestrel.serve_in_thread(app, port=0),
    ):
        pass
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert "application startup failed" in str(caught.value)
    # The lifespan was entered, so it is exited again; nothing was served.
    assert events == ["lifespan enter", "lifespan cleanup"]


def test_failed_lifespan_stops_the_server() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise OSError("config file missing")
        yield  # pragma: no cover

    app = App(lifespan=lifespan)
    with pytest.raises(StartupError, match="config file missing"), TestClient(app):
        pass


CLI_APP = """
from kestrel import App

app = App()

@app.on_startup
async def connect():
    raise RuntimeError("cannot reach the database")

@app.get("/")
async def root(request):
    return "never served"
"""


def test_cli_failed_startup_exits_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(CLI_APP)
    result = subprocess.run(
        [sys.executable, "-m", "kestrel", "failing_app:app", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "kestrel: application startup failed: "
        "RuntimeError('cannot reach the database'); not serving"
    )


# ---- The TestClient.


def test_test_client_uses_the_real_engine() -> None:
    app = App()

    @app.post("/echo")
    async def echo(request: Request) -> bytes:
        return await request.body()

    @app.get("/")
    async def root(request: Request) -> dict[str, Any]:
        return {"client": list(request.client or ()), "version": request.http_version}

    with TestClient(app, max_request_body_size=8) as client:
        assert client.get("/").json() == {"client": ["testclient", 50000], "version": "1.1"}
        # The real parser: a header section over 32 KiB is a 431 ...
        assert client.get("/", headers={"x-big": "a" * 40_000}).status_code == 431
        # ... and server options apply: the body limit is 8 bytes here.
        assert client.post("/echo", content=b"12345678").content == b"12345678"
        assert client.post("/echo", content=b"123456789").status_code == 413
        # Keep-alive, and a fresh connection after the engine closed one.
        for _ in range(3):
            assert client.get("/").status_code == 200


def test_test_client_without_context_manager() -> None:
    events: list[str] = []
    app = App()
    app.on_startup(lambda: events.append("startup"))
    app.on_shutdown(lambda: events.append("shutdown"))

    @app.get("/")
    async def root(request: Request) -> str:
        return "ok"

    client = TestClient(app)
    assert events == []  # nothing runs until the first request
    assert client.get("/").text == "ok"
    assert events == ["startup"]
    client.close()
    assert events == ["startup", "shutdown"]
