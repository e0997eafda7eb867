"""The request contract (docs/contract.md: the limits, deadlines, rates and drains the server
keeps whatever the client or the handler does), proved over real loopback sockets.

Each test starts a server in a thread with small limits and talks to it with raw sockets:
early responses to uploads that are still being sent, drains of unread bodies (and the
requests smuggled inside them, which must never run), the headers, keep-alive, body-rate
and response-rate timeouts, lazy ``Expect: 100-continue``, ``max_connections`` and the
metrics that count all of it. The CLI side (flags, ``--metrics-path``, SIGTERM) is in
test_contract_cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wire import WireClient

from kestrel import FileResponse, Response, StreamingResponse, serve_in_thread
from kestrel._core import Request
from kestrel.server import Server

MIB = 1 << 20

# Small limits, so that every deadline of the contract is reached within a second or two.
FAST: dict[str, Any] = {
    "drain_timeout": 0.5,
    "request_headers_timeout": 0.5,
    "keep_alive_timeout": 5.0,
    "min_rate_grace": 1.0,
    "min_request_body_rate": 1000,
    "heartbeat_interval": 0.05,
}
# How late a deadline may fire: a heartbeat or two, plus a loaded CI machine.
SLACK = 0.4

Handler = Callable[[Request], Awaitable[Any]]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


# ---- Requests as bytes, and waiting on the server.


def head(method: str, path: str, **headers: str | int) -> bytes:
    """A request head; keyword names become header names (content_length: Content-Length)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    for name, value in headers.items():
        lines.append(f"{name.replace('_', '-').title()}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(method: str, path: str, body: bytes | None = None, **headers: str | int) -> bytes:
    if body is not None:
        headers["content_length"] = len(body)
    return head(method, path, **headers) + (body or b"")


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until predicate() holds; return how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def ends(server: Server) -> dict[str, int]:
    result: dict[str, int] = server.metrics()["connection_ends"]
    return result


def all_closed(server: Server) -> Callable[[], bool]:
    return lambda: server.metrics()["connections_active"] == 0


@contextlib.contextmanager
def serve(handler: Handler, **options: Any) -> Iterator[Server]:
    """serve_in_thread with the FAST limits, overridden by `options`."""
    with serve_in_thread(handler, **{**FAST, **options}) as server:
        yield server


async def ok(request: Request) -> str:
    return "ok"


def send_body_watching(client: WireClient, total: int) -> int:
    """Send `total` body bytes as fast as the server takes them; return how many had been
    sent when a response first became readable (-1: not before the last byte was sent)."""
    piece = b"x" * 65536
    sent = 0
    readable_at = -1
    while sent < total:
        size = min(len(piece), total - sent)
        client.sock.sendall(piece[:size])
        sent += size
        if readable_at < 0 and client.readable(0.002):
            readable_at = sent
            assert client.sock.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 4")
    return readable_at


# ---- An early response to an upload still being sent.


@pytest.mark.parametrize("suspends", [False, True], ids=["answers-at-once", "suspends"])
def test_early_400_arrives_while_the_upload_is_still_being_sent(suspends: bool) -> None:
    total = 8 * MIB

    async def reject(request: Request) -> Response:
        if suspends:
            await asyncio.sleep(0.01)
        return Response(b"bad upload", status=400)

    with serve(reject) as server, WireClient(server.port, timeout=10) as client:
        client.send(head("POST", "/upload", content_length=total))
        readable_at = send_body_watching(client, total)
        # The 400 was there to read while megabytes of the upload were still unsent (a
        # handler that suspends first lets the client fill the 1 MiB input buffer and the
        # socket buffers; one answering at once, only the first 64 KiB).
        assert 0 < readable_at < total - MIB, readable_at
        # The client sent everything before reading: the server discarded it (a lingering
        # close), so the response is intact and is followed by a FIN, never an RST.
        response = client.response()
        assert response.status == 400
        assert response.body == b"bad upload"
        assert client.at_eof(3.0)
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 3, "the connection to close")
        counted = ends(server)
    assert counted["drain_limit"] == 1  # 8 MiB is over the 256 KiB drain budget
    assert sum(counted.values()) == 1


def test_early_400_then_the_connection_serves_the_next_request() -> None:
    """With a drain budget above the body, the connection is kept for the next request."""
    total = 8 * MIB

    async def app(request: Request) -> Response:
        if request.target == b"/upload":
            return Response(b"bad upload", status=400)
        return Response(b"next")

    with (
        serve(app, max_drain_size=16 * MIB, drain_timeout=5) as server,
        WireClient(server.port, timeout=10) as client,
    ):
        client.send(head("POST", "/upload", content_length=total))
        readable_at = send_body_watching(client, total)
        assert 0 < readable_at < total - MIB, readable_at
        response = client.response()
        assert (response.status, response.closes) == (400, False)
        client.send(request("GET", "/next"))
        second = client.response()
        assert (second.status, second.body) == (200, b"next")
        metrics = server.metrics()
    assert metrics["drained_bodies"] == 1
    assert metrics["connections_total"] == 1
    assert metrics["requests_total"] == 2


# ---- Many early rejections on one connection keep it.


def test_500_early_rejections_keep_the_connection() -> None:
    async def unauthorized(request: Request) -> Response:
        return Response(b"no", status=401)

    body = b"b" * 4096
    with serve(unauthorized) as server, WireClient(server.port) as client:
        for i in range(500):
            client.send(request("POST", f"/upload/{i}", body))
            response = client.response()
            assert (response.status, response.closes) == (401, False), i
        metrics = server.metrics()
    assert metrics["drained_bodies"] == 500
    assert metrics["connections_total"] == 1
    assert metrics["requests_total"] == 500
    assert metrics["drain_closes"] == 0


# ---- A stalled body closes at the drain timeout.


def test_stalled_unread_body_closes_at_the_drain_timeout() -> None:
    drain_timeout = FAST["drain_timeout"]
    with serve(ok) as server, WireClient(server.port) as client:
        client.send(head("POST", "/", content_length=10_000) + b"x" * 100)
        response = client.response()
        start = time.monotonic()
        # 9,900 bytes are within the drain budget: the response promises to keep the
        # connection, and the server waits for the rest for drain_timeout.
        assert (response.status, response.closes) == (200, False)
        assert client.at_eof(drain_timeout + SLACK + 1)
        elapsed = time.monotonic() - start
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert drain_timeout - 0.1 <= elapsed <= drain_timeout + SLACK, elapsed
    assert metrics["connection_ends"]["drain_timeout"] == 1
    assert metrics["drain_closes"] == 1
    assert metrics["drained_bodies"] == 0


# ---- A request smuggled inside an unread body never runs.


def unread_body(framing: str) -> tuple[bytes, bytes]:
    """The head and body of a POST /upload whose body is a whole GET /smuggled request."""
    if framing == "content-length":
        return head("POST", "/upload", content_length=len(SMUGGLED)), SMUGGLED
    return head("POST", "/upload", transfer_encoding="chunked"), chunked(
        SMUGGLED[:10], SMUGGLED[10:]
    )


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("arrival", ["with-the-head", "after-the-response"])
def test_request_smuggled_in_a_drained_body_never_runs(framing: str, arrival: str) -> None:
    calls: list[bytes] = []

    async def app(request: Request) -> str:
        calls.append(request.target)
        return "ok"

    request_head, body = unread_body(framing)
    with serve(app) as server, WireClient(server.port) as client:
        if arrival == "with-the-head":
            client.send(request_head + body)
            first = client.response()
        else:
            client.send(request_head)
            first = client.response()
            client.send(body)
        assert (first.status, first.closes) == (200, False)
        client.send(request("GET", "/after"))
        second = client.response()
        assert second.status == 200
        assert not client.readable(0.2), "a third response: the body was parsed as a request"
        metrics = server.metrics()
    assert calls == [b"/upload", b"/after"]
    assert metrics["drained_bodies"] == 1
    assert metrics["requests_total"] == 2


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("why", ["over-the-drain-budget", "expect-100-never-read", "drain-timeout"])
def test_request_smuggled_in_a_body_that_closes_never_runs(framing: str, why: str) -> None:
    calls: list[bytes] = []

    async def app(request: Request) -> str:
        calls.append(request.target)
        return "ok"

    request_head, body = unread_body(framing)
    options: dict[str, Any] = {}
    if why == "over-the-drain-budget":
        options["max_drain_size"] = 16
    elif why == "expect-100-never-read":
        request_head = request_head[:-2] + b"Expect: 100-continue\r\n\r\n"
    with serve(app, **options) as server, WireClient(server.port) as client:
        if why == "drain-timeout":
            client.send(request_head)
            assert client.response().status == 200
            assert client.at_eof(FAST["drain_timeout"] + SLACK + 1)
            # The server lingers after its FIN: what the client still sends is discarded.
            client.send(body + request("GET", "/after"))
        else:
            client.send(request_head + body + request("GET", "/after"))
            response = client.response()
            assert response.status == 200
            assert response.interim == []
            assert client.at_eof(3.0)
        time.sleep(0.1)
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 3, "the connection to close")
    assert calls == [b"/upload"]


# ---- The minimum request body rate.


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_trickled_under_the_minimum_rate_is_cut(framing: str) -> None:
    grace = FAST["min_rate_grace"]
    failures: list[BaseException] = []

    async def upload(request: Request) -> str:
        try:
            await request.body()
        except Exception as exc:
            failures.append(exc)
            raise
        return "complete"

    if framing == "content-length":
        request_head, piece = head("POST", "/upload", content_length=10_000), b"x" * 20
    else:
        request_head = head("POST", "/upload", transfer_encoding="chunked")
        piece = b"14\r\n" + b"x" * 20 + b"\r\n"
    with serve(upload) as server, WireClient(server.port) as client:
        client.send(request_head)
        start = time.monotonic()
        while not client.readable(0.1):  # 20 bytes of body every 0.1 s: 200 B/s
            assert time.monotonic() - start < grace + 2, "not cut within grace + 2 s"
            client.send(piece)
        elapsed = time.monotonic() - start
        response = client.response()
        assert (response.status, response.closes) == (408, True)
        assert client.at_eof(2.0)
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert grace <= elapsed <= grace + 2, elapsed
    assert metrics["body_rate_aborts"] == 1
    assert metrics["connection_ends"]["body_rate"] == 1
    assert len(failures) == 1  # the handler's read raised


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limits", "size"),
    [
        # The trickle test's limits: 1000 B/s after 1 s; ten reads of 64 KiB.
        ({}, 10 * 65536),
        # A minimum the body never reaches in wall-clock time (reading pauses at 8 KiB, so
        # it arrives at about 64 KiB per 0.3 s, ~200 KB/s): only time spent waiting on the
        # client may count.
        ({"min_request_body_rate": 1_000_000, "max_request_buffer_size": 8192}, 8 * 65536),
    ],
    ids=["brief-limits", "wall-clock-rate-under-the-minimum"],
)
def test_handler_sleeping_between_reads_is_not_cut(limits: dict[str, Any], size: int) -> None:
    reads: list[int] = []

    async def slow_reader(request: Request) -> str:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            reads.append(len(chunk))
            await asyncio.sleep(0.3)
        return str(total)

    with serve(slow_reader, **limits) as server, WireClient(server.port, timeout=10) as client:
        start = time.monotonic()
        client.send(request("POST", "/upload", b"x" * size))  # as fast as it is taken
        response = client.response()
        elapsed = time.monotonic() - start
        metrics = server.metrics()
    assert (response.status, response.body) == (200, str(size).encode())
    assert elapsed > 2 * FAST["min_rate_grace"], elapsed  # long past the grace period
    assert len(reads) >= 7, reads
    assert metrics["body_rate_aborts"] == 0


# ---- The minimum response rate.


def big_response(kind: str, size: int, tmp_path: Path) -> Handler:
    if kind == "file":
        path = tmp_path / "big.bin"
        with path.open("wb") as file:
            file.truncate(size)  # sparse: no time spent writing it

    async def handler(request: Request) -> Response | StreamingResponse | FileResponse:
        if kind == "buffered":
            return Response(b"z" * size)
        if kind == "file":
            return FileResponse(tmp_path / "big.bin")

        async def body() -> AsyncIterator[bytes]:
            piece = b"z" * 65536
            for _ in range(size // len(piece)):
                yield piece

        return StreamingResponse(body())

    return handler


@pytest.mark.parametrize("kind", ["streaming", "buffered", "file"])
def test_client_reading_the_response_too_slowly_is_aborted(kind: str, tmp_path: Path) -> None:
    grace = 0.5
    with (
        serve(
            big_response(kind, 32 * MIB, tmp_path), min_response_rate=1000, min_rate_grace=grace
        ) as server,
        WireClient(server.port, rcvbuf=4096) as client,
    ):
        client.send(request("GET", "/big"))
        start = time.monotonic()
        received = 0
        while server.metrics()["response_rate_aborts"] == 0:
            assert time.monotonic() - start < grace + 3, "not aborted within grace + 3 s"
            received += len(client.sock.recv(40))  # 400 B/s
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        counted = ends(server)
    assert grace <= elapsed, elapsed
    assert received < MIB
    assert counted["response_rate"] == 1
    assert sum(counted.values()) == 1


@pytest.mark.parametrize("kind", ["streaming", "buffered", "file"])
def test_client_reading_the_response_at_full_speed_is_not_cut(kind: str, tmp_path: Path) -> None:
    size = 8 * MIB
    with (
        serve(
            big_response(kind, size, tmp_path), min_response_rate=1000, min_rate_grace=0.5
        ) as server,
        WireClient(server.port, timeout=10) as client,
    ):
        client.send(request("GET", "/big"))
        response = client.response()
        metrics = server.metrics()
    assert (response.status, len(response.body)) == (200, size)
    assert metrics["response_rate_aborts"] == 0


@pytest.mark.parametrize(
    "kind",
    [
        "streaming",
        "buffered",
    ],
)
def test_response_still_being_sent_is_not_cut_by_the_keep_alive_timeout(
    kind: str, tmp_path: Path
) -> None:
    """A steady reader (about 6 MB/s, so the 8 MiB take over a second) is not idle."""
    size = 8 * MIB
    with (
        serve(
            big_response(kind, size, tmp_path), keep_alive_timeout=0.5, min_response_rate=0
        ) as server,
        WireClient(server.port, rcvbuf=65536) as client,
    ):
        client.send(request("GET", "/big"))
        start = time.monotonic()
        received = 0
        while received < size:  # the head and chunk framing make the whole response larger
            chunk = client.sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        metrics = server.metrics()
    assert elapsed > 0.5 + SLACK, "read faster than the keep-alive timeout: no proof"
    assert received >= size, f"the response was cut after {received} bytes"
    assert metrics["keep_alive_timeouts"] == 0


# ---- The headers and keep-alive timeouts.


@pytest.mark.parametrize("how", ["partial-head", "trickled-head"])
def test_head_not_arriving_in_time_gets_408_and_close(how: str) -> None:
    timeout = FAST["request_headers_timeout"]
    calls: list[bytes] = []

    async def app(request: Request) -> str:
        calls.append(request.target)
        return "ok"

    with serve(app) as server, WireClient(server.port) as client:
        if how == "partial-head":
            client.send(b"GET /partial HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
        else:
            # Every byte arrives 0.05 s after the last, the whole head in about 3 s: the
            # timeout runs from the first byte, not from the latest.
            whole = request("GET", "/trickled", x_padding="p" * 20)
            start = time.monotonic()
            for byte in whole:
                client.send(bytes([byte]))
                if client.readable(0.05):
                    break
        response = client.response()
        elapsed = time.monotonic() - start
        assert (response.status, response.closes) == (408, True)
        assert client.at_eof(2.0)
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert timeout - 0.1 <= elapsed <= timeout + SLACK, elapsed
    assert calls == []
    assert metrics["headers_timeouts"] == 1
    assert metrics["connection_ends"]["headers_timeout"] == 1


async def maybe_suspending(request: Request) -> str:
    if request.target == b"/suspends":
        await asyncio.sleep(0.01)
    return "ok"


@pytest.mark.parametrize(
    "path",
    [
        "/answers-at-once",
        "/suspends",
    ],
)
def test_idle_connection_closes_after_the_keep_alive_timeout(path: str) -> None:
    timeout = 0.5
    with serve(maybe_suspending, keep_alive_timeout=timeout) as server:
        with WireClient(server.port) as client:
            client.send(request("GET", path))
            assert client.response().status == 200
            start = time.monotonic()
            assert client.at_eof(timeout + SLACK + 1), "the idle connection was not closed"
            elapsed = time.monotonic() - start
            client.close()  # the server lingers until the client closes too
            wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert timeout - 0.1 <= elapsed <= timeout + SLACK, elapsed
    assert metrics["keep_alive_timeouts"] == 1
    assert metrics["connection_ends"]["keep_alive_timeout"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/answers-at-once",
        "/suspends",
    ],
)
def test_partial_head_pipelined_behind_a_request_gets_408(path: str) -> None:
    timeout = FAST["request_headers_timeout"]
    with serve(maybe_suspending) as server, WireClient(server.port) as client:
        client.send(request("GET", path) + b"GET /next HTTP/1.1\r\n")
        start = time.monotonic()
        assert client.response().status == 200
        assert client.readable(timeout + SLACK + 1), "no 408 for the partial head"
        response = client.response()
        elapsed = time.monotonic() - start
        assert (response.status, response.closes) == (408, True)
        assert client.at_eof(2.0)
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert timeout - 0.1 <= elapsed <= timeout + SLACK, elapsed
    assert metrics["headers_timeouts"] == 1


def test_connection_that_never_sends_closes_after_the_keep_alive_timeout() -> None:
    timeout = 0.5
    with serve(ok, keep_alive_timeout=timeout) as server, WireClient(server.port) as client:
        start = time.monotonic()
        assert client.at_eof(timeout + SLACK + 1)
        elapsed = time.monotonic() - start
        client.close()  # the server lingers until the client closes too
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert timeout - 0.1 <= elapsed <= timeout + SLACK, elapsed
    assert metrics["keep_alive_timeouts"] == 1


def test_busy_connection_is_not_closed_by_the_keep_alive_timeout() -> None:
    """Each request restarts the idle clock, and a handler running longer than the timeout
    is not idle."""

    async def app(request: Request) -> str:
        if request.target == b"/long":
            await asyncio.sleep(0.8)
        return "ok"

    with serve(app, keep_alive_timeout=0.5) as server, WireClient(server.port) as client:
        for _ in range(5):
            client.send(request("GET", "/"))
            assert client.response().status == 200
            time.sleep(0.3)
        client.send(request("GET", "/long"))
        assert client.response().status == 200
        metrics = server.metrics()
    assert metrics["keep_alive_timeouts"] == 0
    assert metrics["connections_total"] == 1


# ---- Expect: 100-continue, lazily.


def test_100_continue_is_sent_only_when_the_handler_reads() -> None:
    async def app(request: Request) -> bytes | Response:
        if request.target == b"/read":
            await asyncio.sleep(0.3)
            return await request.body()
        return Response(b"denied", status=401)

    with serve(app) as server:
        with WireClient(server.port) as client:
            client.send(head("POST", "/read", content_length=5, expect="100-continue"))
            assert not client.readable(0.15), "a 100 before the handler read the body"
            interim = client.response(interim=True)
            assert (interim.status, interim.reason, interim.headers) == (100, "Continue", [])
            client.send(b"hello")
            response = client.response()
            assert (response.status, response.body, response.closes) == (200, b"hello", False)
        with WireClient(server.port) as client:
            client.send(head("POST", "/deny", content_length=5, expect="100-continue"))
            response = client.response()
            # No 100 ever: the handler did not read. The client may or may not send the
            # body now, so the connection cannot be kept.
            assert (response.status, response.interim, response.closes) == (401, [], True)
            client.send(b"hello")
            assert client.at_eof(2.0)


# ---- --max-connections.


def test_max_connections_holds_the_next_connection_until_one_closes() -> None:
    with serve(ok, max_connections=2) as server:
        first, second = WireClient(server.port), WireClient(server.port)
        with first, second:
            for client in (first, second):
                client.send(request("GET", "/"))
                assert client.response().status == 200
            with WireClient(server.port) as third:  # the kernel accepts it into the backlog
                third.send(request("GET", "/"))
                assert not third.readable(0.5), "served beyond max_connections"
                assert server.metrics()["connections_active"] == 2
                first.sock.close()
                assert third.readable(3.0), "not served after a connection closed"
                assert third.response().status == 200
                second.send(request("GET", "/"))
                assert second.response().status == 200
                assert server.metrics()["connections_total"] == 3


# ---- Metrics.

PROMETHEUS_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?\d+(\.\d+)?$'
)


def test_metrics_snapshot_counts_what_happened() -> None:
    async def app(request: Request) -> str:
        return "ok"

    with serve(app) as server:
        with WireClient(server.port) as client:
            for _ in range(3):
                client.send(request("GET", "/"))
                assert client.response().status == 200
            client.send(head("POST", "/", content_length=1000))
            assert client.response().status == 200
            client.send(b"d" * 1000 + request("GET", "/"))  # drained, then the next request
            assert client.response().status == 200
            metrics = server.metrics()
            assert metrics["connections_active"] == 1
            assert metrics["requests_active"] == 0
        with WireClient(server.port) as client:
            client.send(b"BAD LINE\r\n\r\n")
            assert client.response().status == 400
        wait_for(all_closed(server), 2, "the connections to close")
        final = server.metrics()
    assert metrics["requests_total"] == 5
    assert metrics["drained_bodies"] == 1
    assert metrics["bytes_read"] >= 1000 + 5 * len(request("GET", "/"))
    assert metrics["bytes_written"] > 5 * len(b"HTTP/1.1 200 OK\r\n")
    assert final["connections_total"] == 2
    assert final["connections_active"] == 0
    assert final["connection_ends"]["rejected"] == 1
    assert sum(final["rejections"].values()) == 1
    assert final["pool_blocks_in_use"] == 0


def test_connections_rejected_counts_refused_requests() -> None:
    with serve(ok) as server:
        with WireClient(server.port) as client:
            client.send(b"BAD LINE\r\n\r\n")
            assert client.response().status == 400
        wait_for(all_closed(server), 2, "the connection to close")
        metrics = server.metrics()
    assert metrics["connection_ends"]["rejected"] == 1
    assert metrics["connections_rejected"] == 1


def test_metrics_path_serves_prometheus_text() -> None:
    with serve(ok, metrics_path="/metrics") as server, WireClient(server.port) as client:
        client.send(request("GET", "/"))
        assert client.response().status == 200
        client.send(request("GET", "/metrics"))
        response = client.response()
    assert response.status == 200
    content_type = response.header("content-type")
    assert content_type is not None and content_type.startswith("text/plain; version=0.0.4")
    values: dict[str, float] = {}
    for line in response.body.decode().splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert PROMETHEUS_LINE.match(line), line
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    assert values["kestrel_requests_total"] == 2  # the metrics request is counted too
    assert values["kestrel_connections_active"] == 1
    assert values['kestrel_connection_ends_total{reason="keep_alive_timeout"}'] == 0
    assert 'kestrel_pool_blocks{state="free"}' in values
    assert {n.split("{")[0] for n in values} >= {
        "kestrel_drained_bodies_total",
        "kestrel_body_rate_aborts_total",
        "kestrel_response_rate_aborts_total",
        "kestrel_headers_timeouts_total",
        "kestrel_responses_total",
        "kestrel_accept_pauses_total",
    }


def test_every_connection_end_is_counted_exactly_once() -> None:
    async def app(request: Request) -> str:
        if request.target == b"/hang":
            await asyncio.sleep(30)  # still running when the server shuts down
        return "ok"

    # The clients outlive the server: it shuts down while /hang still runs.
    with (
        contextlib.ExitStack() as stack,
        serve(app, keep_alive_timeout=0.5, max_drain_size=1024, graceful_timeout=0.3) as server,
    ):
        clients: list[WireClient] = []

        def connect(data: bytes = b"") -> WireClient:
            client = stack.enter_context(WireClient(server.port))
            clients.append(client)
            if data:
                client.send(data)
            return client

        connect(request("GET", "/", connection="close"))  # connection_close
        connect(b"BAD LINE\r\n\r\n")  # rejected
        connect(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers_timeout
        connect(request("GET", "/"))  # keep_alive_timeout after the response
        connect()  # keep_alive_timeout, never sent anything
        connect(head("POST", "/", content_length=1000) + b"x" * 10)  # drain_timeout
        connect(request("POST", "/", b"x" * 4096))  # drain_limit
        client_closes = connect(request("GET", "/"))  # closed by the client below
        hangs = connect(request("GET", "/hang"))  # open until the server shuts down
        wait_for(lambda: server.metrics()["connections_total"] == len(clients), 2, "accepts")
        assert client_closes.response().status == 200
        client_closes.close()
        for client in clients[:-2]:  # the server closes each of these
            client.sock.settimeout(3)
            client.read_to_eof()
            client.close()  # after a lingering close, the server waits for this
        wait_for(lambda: server.metrics()["connections_active"] == 1, 3, "all but one to close")
        metrics = server.metrics()
        assert not hangs.readable(0)
    final = server.metrics()
    counted = metrics["connection_ends"]
    assert sum(counted.values()) == metrics["connections_total"] - 1
    # Which of these two the client's own close counts as: see
    # test_client_closing_is_counted_as_client_closed.
    assert counted["connection_close"] + counted["client_closed"] == 2
    assert {reason: n for reason, n in counted.items() if n} | {
        "connection_close": 0,
        "client_closed": 0,
    } == {
        "connection_close": 0,
        "client_closed": 0,
        "rejected": 1,
        "headers_timeout": 1,
        "keep_alive_timeout": 2,
        "drain_timeout": 1,
        "drain_limit": 1,
    }
    assert sum(final["connection_ends"].values()) == final["connections_total"] == len(clients)
    assert final["connection_ends"]["shutdown"] == 1


def test_client_closing_is_counted_as_client_closed() -> None:
    with serve(ok) as server:
        with WireClient(server.port) as client:
            client.send(request("GET", "/"))
            assert client.response().status == 200
        with WireClient(server.port):
            pass
        # Both accepted (the second may still be in the backlog) and both closed.
        wait_for(
            lambda: server.metrics()["connections_total"] == 2 and all_closed(server)(),
            2,
            "the connections to close",
        )
        counted = ends(server)
    assert counted["client_closed"] == 2
    assert counted["connection_close"] == 0


async def answers_at_once_or_suspends(request: Request) -> Response:
    if request.target == b"/suspends":
        await asyncio.sleep(0)
    return Response(b"refused", status=400)


@pytest.mark.parametrize(
    "path",
    [
        "/answers-at-once",
        "/suspends",
    ],
)
def test_response_says_close_when_the_unread_body_is_over_the_drain_budget(path: str) -> None:
    with serve(answers_at_once_or_suspends, max_drain_size=1024) as server:
        with WireClient(server.port) as client:
            client.send(head("POST", path, content_length=4096) + b"x" * 100)
            response = client.response()
            assert response.status == 400
            client.send(b"x" * 3996)
            assert client.at_eof(2.0)
        wait_for(all_closed(server), 2, "the connection to close")
        counted = ends(server)
    assert counted["drain_limit"] == 1
    assert response.closes, "the server closed the connection without saying so"


@pytest.mark.parametrize("interval", [0, -1, float("nan")])
def test_heartbeat_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="heartbeat_interval must be more than 0"):
        Server(ok, port=0, heartbeat_interval=interval)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("drain_timeout", -1, "drain_timeout must be 0 or more"),
        ("keep_alive_timeout", 0, "keep_alive_timeout must be more than 0"),
        ("min_request_body_rate", "fast", "min_request_body_rate must be a number"),
    ],
)
def test_server_refuses_bad_limits(option: str, value: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Server(ok, port=0, **{option: value})
    with pytest.raises(TypeError, match="unknown Server option"):
        Server(ok, port=0, drain_timeot=1)
