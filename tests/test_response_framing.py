"""What reaches the wire when an app hands the server a response: over real loopback sockets.

Each test here was a defect: a response the app built could go out ambiguous or split (two
Content-Lengths, chunked and a length, a header with a CRLF in it), an app's
`Connection: close` was ignored, an unread body's framing error got a second response, and an
aborted slow reader was only closed, not reset. The writer's rules alone are in
tests/test_response_writer.py; here every answer is read back with h11 (tests/wire.py), so
anything ambiguous fails the parse.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from processes import send_queues
from wire import exchange, responses

from kestrel import App, FileResponse, Request, Response, StreamingResponse, serve_in_thread

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
NEXT = GET % b"/next"


def framing_app(middleware: bool) -> App:
    app = App()

    if middleware:

        @app.middleware
        async def passthrough(request: Any, call_next: Any) -> Any:
            return await call_next(request)

    @app.get("/next")
    async def following(request: Request) -> str:
        return "next"

    @app.get("/length")
    async def length(request: Request) -> Response:
        return Response(b"hello", headers={"content-length": "5"})

    @app.get("/wrong-length")
    async def wrong_length(request: Request) -> Response:
        return Response(b"hello", headers={"content-length": "4"})

    @app.get("/chunked")
    async def chunked(request: Request) -> Response:
        return Response(b"hello", headers={"transfer-encoding": "chunked"})

    @app.get("/no-content")
    async def no_content(request: Request) -> Response:
        return Response(b"", status=204, headers={"content-length": "3"})

    @app.get("/inject")
    async def inject(request: Request) -> Response:
        return Response(b"hello", headers={"x-evil": "a\r\nSet-Cookie: injected=1"})

    @app.get("/bad-name/{kind}")
    async def bad_name(request: Request, kind: str) -> Response:
        name = {"space": "x evil", "colon": "x:evil"}[kind]
        return Response(b"hello", headers={name: "1"})

    @app.get("/close")
    async def close(request: Request) -> Response:
        return Response(b"bye", headers={"connection": "close"})

    @app.get("/stream-chunked")
    async def stream_chunked(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"ab", b"c"]), headers={"transfer-encoding": "chunked"})

    @app.get("/stream-bad")
    async def stream_bad(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"abc"]), headers={"x-evil": "\n"})

    @app.get("/file-bad")
    async def file_bad(request: Request) -> FileResponse:
        return FileResponse(__file__, headers={"x-evil": "\n"})

    @app.post("/early")
    async def early(request: Request) -> str:
        return "early"  # answers without reading the body

    return app


@pytest.fixture(params=[False, True], ids=["bare", "middleware"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    # With and without a middleware: safety must not depend on whether one ran.
    with serve_in_thread(framing_app(request.param), port=0) as server:
        yield server.port


def test_an_apps_content_length_is_sent_once(port: int) -> None:
    # half_close: the FIN after the requests lets the server close once it has answered, so
    # the exchange ends then instead of after a second of silence.
    received = exchange(port, GET % b"/length" + NEXT, half_close=True)
    first, second = responses(received, ["GET", "GET"])
    assert received.raw.lower().count(b"content-length: 5\r\n") == 1
    assert (first.status, first.body, second.body) == (200, b"hello", b"next")


def test_an_apps_chunked_never_goes_with_a_length(port: int) -> None:
    received = exchange(port, GET % b"/chunked" + NEXT, half_close=True)
    first, second = responses(received, ["GET", "GET"])
    assert first.header("transfer-encoding") is None
    assert (first.header("content-length"), first.body) == ("5", b"hello")
    assert second.body == b"next"
    received = exchange(port, GET % b"/stream-chunked" + NEXT, half_close=True)
    first, second = responses(received, ["GET", "GET"])
    assert first.header("transfer-encoding") == "chunked"
    assert first.header("content-length") is None
    assert (first.body, second.body) == (b"abc", b"next")


def test_no_content_length_on_204(port: int) -> None:
    received = exchange(port, GET % b"/no-content" + NEXT, half_close=True)
    first, second = responses(received, ["GET", "GET"])
    assert first.status == 204 and first.header("content-length") is None
    assert second.body == b"next"


@pytest.mark.parametrize(
    "path",
    [
        b"/inject",
        b"/bad-name/space",
        b"/bad-name/colon",
        b"/wrong-length",
        b"/stream-bad",
        b"/file-bad",
    ],
)
def test_a_response_the_server_cannot_frame_is_a_500(
    port: int, path: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="kestrel.error"):
        received = exchange(port, GET % path + NEXT, half_close=True)
    first, second = responses(received, ["GET", "GET"])
    assert first.status == 500
    assert b"injected" not in received.raw and b"evil" not in received.raw
    assert b"hello" not in received.raw and b"abc" not in received.raw
    assert b"framing_app" not in received.raw  # nothing of the file either
    # Nothing of it was sent, so the connection goes on.
    assert second.body == b"next"
    # Logged with the route it came from.
    assert any(
        path.decode() in r.getMessage() or "{kind}" in r.getMessage() for r in caplog.records
    )


def test_a_refused_file_response_closes_its_file() -> None:
    with serve_in_thread(framing_app(False), port=0) as server:
        exchange(
            server.port, GET % b"/file-bad", half_close=True
        )  # opens the file once: the lazy imports
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            received = exchange(server.port, GET % b"/file-bad", half_close=True)
            assert received.raw.startswith(b"HTTP/1.1 500 ")
        assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_an_apps_connection_close_is_honoured(port: int) -> None:
    received = exchange(port, GET % b"/close" + NEXT)
    assert received.closed
    (only,) = responses(received, ["GET", "GET"])
    assert (only.header("connection"), only.body) == ("close", b"bye")
    assert b"next" not in received.raw


@pytest.mark.parametrize("path", [b"/missing", b"/early"])
def test_a_framing_error_in_a_drained_body_gets_no_second_response(port: int, path: bytes) -> None:
    # The route answers without reading the body; its malformed chunk size turns up while
    # the body is drained, after the response went out.
    request = (
        b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n" % path
    )
    received = exchange(port, request + NEXT, wait=2)
    assert received.closed
    assert received.raw.count(b"HTTP/1.1 ") == 1, received.raw
    (only,) = responses(received, ["POST", "GET"])
    assert only.status in (404, 200)


def test_the_drain_error_is_counted() -> None:
    app = framing_app(False)
    with serve_in_thread(app, port=0) as server:
        request = b"POST /early HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        # The body's first chunk arrives only after the response, so the error is the drain's.
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(request)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"zz\r\n")
            assert sock.recv(4096) == b""  # closed, and nothing more said
        deadline = time.monotonic() + 2
        while server.metrics()["connection_ends"]["rejected"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        metrics = server.metrics()
    assert metrics["connection_ends"]["rejected"] == 1
    assert metrics["rejections"] == {"INVALID_CHUNK_SIZE": 1}


def test_options_asterisk_and_connect() -> None:
    app = framing_app(False)
    with serve_in_thread(app, port=0) as server:
        received = exchange(
            server.port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n" + NEXT, half_close=True
        )
        first, second = responses(received, ["OPTIONS", "GET"])
        assert first.status == 200 and first.header("content-length") == "0"
        assert first.header("allow") == "GET, HEAD, OPTIONS, POST"
        assert second.body == b"next"
        received = exchange(
            server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        (only,) = responses(received, ["CONNECT"])
        assert only.status == 501 and received.closed

    @app.route("*", methods=["OPTIONS"])
    async def server_options(request: Request) -> Response:
        return Response(b"", headers={"allow": "GET", "x-own": "1"})

    with serve_in_thread(app, port=0) as server:
        received = exchange(server.port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", half_close=True)
        (only,) = responses(received, ["OPTIONS"])
        assert only.header("x-own") == "1"


# ---- An abort is a reset.


def test_an_aborted_slow_reader_is_reset_and_holds_no_kernel_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def huge(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            piece = b"x" * 65536
            for _ in range(256):  # 16 MiB
                yield piece

        return StreamingResponse(body())

    with serve_in_thread(huge, port=0, min_response_rate=1000, min_rate_grace=0.5) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(GET % b"/")
            deadline = time.monotonic() + 10
            # Read ~400 B/s, well under the minimum rate, until the server gives up.
            aborted = reset = False
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if running.metrics()["connection_ends"]["response_rate"]:
                    aborted = True
                    break
                sock.recv(40)
            assert aborted, "the slow reader was never aborted"
            # Nothing is left queued in the server's kernel for this client: no FIN-WAIT
            # socket still sending megabytes.
            time.sleep(0.1)
            assert send_queues(running.port) == []
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                reset = True
            assert reset, "the client saw a clean close, not a reset"
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            gc.collect()
            time.sleep(0.1)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_the_kernel_holds_little_unsent_for_a_stalled_reader() -> None:
    async def huge(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            piece = b"x" * 65536
            for _ in range(1024):  # 64 MiB
                yield piece
                await asyncio.sleep(0)

        return StreamingResponse(body())

    with (
        serve_in_thread(huge, port=0) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(GET % b"/")
        time.sleep(1.0)  # the server fills what it may, then waits
        queued = send_queues(running.port)
    assert len(queued) == 1 and queued[0][0] == "ESTAB"
    # TCP_NOTSENT_LOWAT (128 KiB) bounds what the kernel takes beyond what the client's
    # window holds; without it Linux queues megabytes for a reader that stopped.
    assert queued[0][1] <= 256 * 1024, queued
