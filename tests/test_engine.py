"""The engine over real loopback sockets: responses and the headers it adds, keep-alive,
pipelining, HEAD, bodies, asyncio in handlers, errors, serve_in_thread and the CLI.

Clients are http.client, httpx and curl, plus raw sockets wherever the exact bytes on the wire
matter (pipelining, framing errors, half-closes). Every server runs in a thread through
`kestrel.serve_in_thread`, every socket has a 5 s timeout and is closed by a `with`, so a
hang fails one test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import processes
import pytest
import wire
from wire import Exchange, ResponseParser, WireClient, WireResponse

from kestrel import ClientDisconnect, Response, Server, serve_in_thread
from kestrel._core import BodyConsumedError, Request

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 5.0

App = Callable[[Request], Awaitable[Any]]


# ---- Raw HTTP over a socket: send exact bytes, split what comes back into responses.


def sized(response: WireResponse, method: str = "GET") -> WireResponse:
    """`response`, which must carry a Content-Length if it has a body: every body these
    tests read raw is one whose size the engine knows, which it frames with a length."""
    if method != "HEAD" and response.status >= 200 and response.status not in (204, 304):
        assert response.header("content-length") is not None, f"no content-length: {response}"
    return response


class RawConnection(WireClient):
    """A WireClient whose responses must carry a Content-Length (see sized())."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=TIMEOUT_S)

    def __enter__(self) -> RawConnection:
        return self

    def response(self, method: str = "GET", *, interim: bool = False) -> WireResponse:
        return sized(super().response(method, interim=interim), method)


def split_responses(data: Exchange | bytes, methods: Sequence[str] = ()) -> list[WireResponse]:
    """Every response in what the server sent until it closed (an Exchange, or the bytes of
    RawConnection.read_to_eof()), which must hold only complete, sized responses.

    methods[i] is the method of the i-th request (HEAD responses have no body); GET by default.
    """
    received = data if isinstance(data, Exchange) else Exchange(data, closed=True, reset=False)
    found = wire.split_responses(received, methods)
    return [sized(r, methods[i] if i < len(methods) else "GET") for i, r in enumerate(found)]


def exchange(port: int, data: bytes, *, half_close: bool = False) -> Exchange:
    """Send data on a new connection and take all the server sends until it closes (which
    it must, with a FIN, within TIMEOUT_S of quiet)."""
    received = wire.exchange(port, data, wait=TIMEOUT_S, half_close=half_close)
    assert received.closed, f"nothing from the server for {TIMEOUT_S} s: {received.raw[:300]!r}"
    assert not received.reset, f"reset instead of closed: {received.raw[:300]!r}"
    return received


def get_request(path: str = "/", *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_request(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


# ---- Small helpers for the real clients and for apps.


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def http_request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a new http.client connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


async def echo_target(request: Request) -> bytes:
    return request.target


async def echo_body(request: Request) -> bytes:
    return await request.body()


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(TIMEOUT_S), f"timed out waiting for {what}"


def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()
    except ConnectionRefusedError:
        return True
    return False


IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT"
)


# ---- GET: status line, body and the headers the engine adds.


def test_get_returns_status_body_and_standard_headers() -> None:
    with serve_in_thread(echo_target) as server:
        reply = http_request(server.port, "/hello?x=1")
    assert reply.status == 200
    assert reply.body == b"/hello?x=1"
    assert reply.headers["Content-Length"] == str(len(b"/hello?x=1"))
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Server"] == "kestrel"
    date = reply.headers["Date"]
    assert IMF_FIXDATE.fullmatch(date), date
    sent = email.utils.parsedate_to_datetime(date)
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 3


def test_result_types_map_to_responses() -> None:
    async def app(request: Request) -> Any:
        results: dict[bytes, Any] = {
            b"/str": "héllo",
            b"/none": None,
            b"/response": Response(
                b"made",
                status=201,
                headers=[("x-one", "1"), (b"x-two", b"2")],
                content_type="text/csv",
            ),
            b"/dict-headers": Response("d", headers={"x-dict": "yes"}),
        }
        return results[request.target]

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(
            b"".join(get_request(path) for path in ["/str", "/none", "/response", "/dict-headers"])
        )
        text, empty, made, dict_headers = (connection.response() for _ in range(4))
    assert (text.status, text.body) == (200, "héllo".encode())
    assert text.header("content-type") == "text/plain; charset=utf-8"
    assert empty.status == 204
    assert empty.header("content-length") is None
    assert empty.header("content-type") is None
    assert (made.status, made.reason, made.body) == (201, "Created", b"made")
    assert made.header("content-type") == "text/csv"
    assert (made.header("x-one"), made.header("x-two")) == ("1", "2")
    assert dict_headers.header("x-dict") == "yes"
    assert dict_headers.header("content-type") == "text/plain; charset=utf-8"


def test_request_attributes_reach_the_handler() -> None:
    async def app(request: Request) -> str:
        return json.dumps(
            {
                "method": request.method,
                "target": request.target.decode("latin-1"),
                "version": request.http_version,
                "headers": [[n.decode(), v.decode()] for n, v in request.headers],
                "client": request.client,
            }
        )

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(
            b"DELETE /a%20b/c?q=%2F&x HTTP/1.1\r\nHost: test\r\nX-Mixed-Case: Some Value\r\n\r\n"
        )
        seen = json.loads(connection.response().body)
        local_port = connection.local_port
    assert seen == {
        "method": "DELETE",
        "target": "/a%20b/c?q=%2F&x",
        "version": "1.1",
        "headers": [["host", "test"], ["x-mixed-case", "Some Value"]],
        "client": ["127.0.0.1", local_port],
    }


def test_server_header_can_be_turned_off() -> None:
    with serve_in_thread(echo_target, server_header=None) as server:
        reply = http_request(server.port)
        rejected = exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
    assert reply.status == 200
    assert "Server" not in reply.headers
    assert "Date" in reply.headers
    [response] = split_responses(rejected)
    assert response.status == 400
    assert response.header("server") is None


def test_date_is_formatted_per_heartbeat_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted_on_server = 0
    formatdate = email.utils.formatdate

    def counting_formatdate(*args: Any, **kwargs: Any) -> str:
        nonlocal formatted_on_server
        if threading.current_thread().name.startswith("kestrel:"):
            formatted_on_server += 1
        return formatdate(*args, **kwargs)

    with serve_in_thread(echo_target) as server, RawConnection(server.port) as connection:
        monkeypatch.setattr(email.utils, "formatdate", counting_formatdate)
        started = time.monotonic()
        dates: list[str] = []
        for _ in range(200):
            connection.send(get_request())
            date = connection.response().header("date")
            assert date is not None
            dates.append(date)
        elapsed = time.monotonic() - started
    # The Date string changes only at a heartbeat tick (one a second), and it is formatted
    # only then: 200 requests see and cause at most one format per second elapsed, plus one.
    ticks = int(elapsed) + 2
    assert len(set(dates)) <= ticks
    assert formatted_on_server <= ticks < len(dates)
    sent = [email.utils.parsedate_to_datetime(date) for date in dates]
    assert sent == sorted(sent)


# ---- Keep-alive and Connection: close.


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    with serve_in_thread(echo_target) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
        try:
            local_ports = set()
            for i in range(50):
                connection.request("GET", f"/n/{i}")
                response = connection.getresponse()
                assert response.status == 200
                assert response.read() == f"/n/{i}".encode()
                assert not response.will_close
                assert connection.sock is not None
                local_ports.add(connection.sock.getsockname()[1])
        finally:
            connection.close()
        metrics = server.metrics()
    assert len(local_ports) == 1
    assert metrics["connections_total"] == 1
    assert metrics["requests_total"] == 50


def test_httpx_client_keeps_its_connection_alive() -> None:
    with serve_in_thread(echo_target) as server:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client:
            bodies = [client.get(f"/x/{i}").content for i in range(20)]
        metrics = server.metrics()
    assert bodies == [f"/x/{i}".encode() for i in range(20)]
    assert metrics["connections_total"] == 1


def test_http10_closes_by_default() -> None:
    with serve_in_thread(echo_target) as server:
        data = exchange(server.port, b"GET /old HTTP/1.0\r\n\r\n")
    [response] = split_responses(data)
    assert (response.status, response.body) == (200, b"/old")
    assert response.header("connection") == "close"


def test_http10_stays_open_with_keep_alive() -> None:
    with serve_in_thread(echo_target) as server, RawConnection(server.port) as connection:
        for path in ("/one", "/two", "/three"):
            connection.send(get_request(path, "Connection: keep-alive", version="1.0"))
            response = connection.response()
            assert (response.status, response.body) == (200, path.encode())
            assert response.header("connection") == "keep-alive"
        # Still open: a 1.0 request without keep-alive is answered, then the server closes.
        connection.send(get_request("/last", version="1.0"))
        [last] = split_responses(connection.read_to_eof())
    assert last.body == b"/last"
    assert last.header("connection") == "close"


def test_connection_close_is_honoured() -> None:
    with serve_in_thread(echo_target) as server:
        with RawConnection(server.port) as connection:
            connection.send(get_request("/a"))
            assert connection.response().header("connection") is None
            connection.send(get_request("/bye", "Connection: close"))
            response = connection.response()
            assert response.header("connection") == "close"
            assert connection.read_to_eof() == b""  # the server closed after it
        reply = http_request(server.port, "/bye", headers={"Connection": "close"})
        assert reply.headers["Connection"] == "close"
    assert response.body == b"/bye"


# ---- Pipelining.


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    handled: list[str] = []
    running = 0
    most_running = 0

    async def app(request: Request) -> bytes:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        handled.append(request.target.decode())
        if request.target.startswith(b"/sleep"):
            await asyncio.sleep(0.02)
        running -= 1
        return request.target

    paths = [f"/sleep/{i}" if i % 5 == 2 else f"/fast/{i}" for i in range(20)]
    pipeline = b"".join(get_request(path) for path in paths[:-1])
    pipeline += get_request(paths[-1], "Connection: close")
    with serve_in_thread(app) as server:
        responses = split_responses(exchange(server.port, pipeline))
    assert [response.body.decode() for response in responses] == paths
    assert all(response.status == 200 for response in responses)
    assert handled == paths
    assert most_running == 1


def test_pipelined_requests_split_at_every_kind_of_boundary() -> None:
    """A pipeline sent in awkward pieces (mid-line, mid-body) is still answered in order."""
    pipeline = (
        get_request("/a")
        + post_request("/b", b"body-of-b")
        + b"POST /c HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"chunk", b"ed-c")
        + get_request("/d", "Connection: close")
    )

    async def app(request: Request) -> bytes:
        return request.target + b":" + await request.body()

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        for start in range(0, len(pipeline), 7):
            connection.send(pipeline[start : start + 7])
            time.sleep(0.001)
        responses = split_responses(connection.read_to_eof())
    assert [response.body for response in responses] == [
        b"/a:",
        b"/b:body-of-b",
        b"/c:chunked-c",
        b"/d:",
    ]


@pytest.mark.parametrize("suspends", [False, True], ids=["sync", "async"])
def test_bytes_after_connection_close_are_never_processed(suspends: bool) -> None:
    calls: list[bytes] = []

    async def app(request: Request) -> bytes:
        calls.append(request.target)
        if suspends:
            await asyncio.sleep(0.02)
        return request.target

    pipeline = (
        get_request("/first", "Connection: close")
        + get_request("/second")
        + post_request("/third", b"x" * 100)
    )
    with serve_in_thread(app) as server:
        data = exchange(server.port, pipeline)
        metrics = server.metrics()
    [response] = split_responses(data)
    assert response.body == b"/first"
    assert calls == [b"/first"]
    assert metrics["requests_total"] == 1


@pytest.mark.parametrize("suspends", [False, True], ids=["sync", "async"])
def test_a_client_that_half_closes_still_gets_its_response(suspends: bool) -> None:
    async def app(request: Request) -> bytes:
        if suspends:
            await asyncio.sleep(0.05)
        return request.target

    with serve_in_thread(app) as server:
        data = exchange(server.port, get_request("/only"), half_close=True)
    [response] = split_responses(data)
    assert response.body == b"/only"


def test_pipelined_requests_before_a_half_close_are_all_answered() -> None:
    async def app(request: Request) -> bytes:
        if request.target == b"/sleep":
            await asyncio.sleep(0.05)
        return request.target

    pipeline = get_request("/a") + get_request("/sleep") + get_request("/c")
    with serve_in_thread(app) as server:
        data = exchange(server.port, pipeline, half_close=True)
    assert [response.body for response in split_responses(data)] == [b"/a", b"/sleep", b"/c"]


# ---- HEAD.


def test_head_sends_the_get_headers_and_no_body() -> None:
    body = b"0123456789" * 100

    async def app(request: Request) -> bytes:
        return body

    with serve_in_thread(app) as server:
        with RawConnection(server.port) as connection:
            # HEAD then GET on one connection: the GET response must start right after the
            # HEAD's header section, which proves no body byte was sent for the HEAD.
            connection.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n" + get_request("/"))
            head = connection.response("HEAD")
            get = connection.response("GET")
        reply = http_request(server.port, method="HEAD")
    assert head.status == 200
    assert head.header("content-length") == str(len(body))
    assert head.header("content-type") == "application/octet-stream"
    assert get.body == body
    assert reply.status == 200
    assert reply.headers["Content-Length"] == str(len(body))
    assert reply.body == b""


# ---- Request and response bodies.


def test_post_with_content_length_is_echoed() -> None:
    body = os.urandom(256 * 1024)
    with serve_in_thread(echo_body) as server:
        reply = http_request(server.port, "/echo", method="POST", body=body)
        empty = http_request(server.port, "/echo", method="POST", body=b"")
    assert reply.status == 200
    assert reply.body == body
    assert (empty.status, empty.body) == (200, b"")


def test_large_upload_and_response_through_httpx() -> None:
    body = os.urandom(4 * 1024 * 1024)
    with (
        serve_in_thread(echo_body) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client,
    ):
        response = client.post("/echo", content=body)
        again = client.get("/after")
    assert response.status_code == 200
    assert response.content == body
    assert again.status_code == 200


def test_chunked_upload_over_a_raw_socket() -> None:
    async def app(request: Request) -> bytes:
        return b"%d:%s" % (len(request.headers), await request.body())

    upload = (
        b"POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5;name=value\r\nhello\r\n"
        + chunked(b" ", b"chunked", b" world" * 1000)[:-2]
        + b"X-Trailer: t\r\n\r\n"
    )
    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(upload)
        response = connection.response()
        connection.send(get_request("/next"))  # the connection is still in step
        after = connection.response()
    assert response.status == 200
    assert response.body == b"2:hello chunked" + b" world" * 1000
    assert after.status == 200


def test_chunked_upload_streamed_by_httpx() -> None:
    transfer_encodings: list[bytes | None] = []

    async def app(request: Request) -> bytes:
        transfer_encodings.append(dict(request.headers).get(b"transfer-encoding"))
        return await request.body()

    pieces = [os.urandom(n) for n in (1, 100, 65536, 3, 200_000)]

    def generate() -> Iterator[bytes]:
        yield from pieces

    with (
        serve_in_thread(app) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client,
    ):
        response = client.post("/stream", content=generate())
    assert transfer_encodings == [b"chunked"]
    assert response.content == b"".join(pieces)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stream_yields_data_before_the_client_has_finished(framing: str) -> None:
    first_chunk_seen = threading.Event()

    async def app(request: Request) -> bytes:
        received = []
        async for chunk in request.stream():
            received.append(chunk)
            first_chunk_seen.set()
        return b"".join(received)

    first, second = b"a" * 1000, b"b" * 3000
    if framing == "chunked":
        head = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        part_one, part_two = b"%x\r\n%s\r\n" % (len(first), first), chunked(second)
    else:
        head = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4000\r\n\r\n"
        part_one, part_two = first, second
    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(head + part_one)
        # The rest is sent only once the handler has seen the first part.
        wait_for(first_chunk_seen, "the handler to see the first part of the body")
        connection.send(part_two)
        response = connection.response()
    assert response.body == first + second


def test_a_second_full_read_raises_body_consumed_error() -> None:
    async def app(request: Request) -> str:
        outcomes = []
        if request.target == b"/stream-then-body":
            async for _ in request.stream():
                pass
            reads: list[Callable[[], Awaitable[object]]] = [
                request.body,
                lambda: anext(aiter(request.stream())),
            ]
        else:
            outcomes.append(f"body {len(await request.body())}")
            outcomes.append(f"body again {len(await request.body())}")  # cached, not re-read
            reads = [lambda: anext(aiter(request.stream()))]
        for read in reads:
            try:
                await read()
            except BodyConsumedError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
        return " | ".join(outcomes)

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(post_request("/stream-then-body", b"x" * 10))
        connection.send(post_request("/body-then-stream", b"x" * 10))
        streamed, bodied = connection.response(), connection.response()
    error = "BodyConsumedError: the request body was already read"
    assert streamed.body.decode() == f"{error} | {error}"
    assert bodied.body.decode() == f"body 10 | body again 10 | {error}"


@pytest.mark.parametrize(
    ("framing", "leave"),
    [("content-length", "close"), ("chunked", "close"), ("content-length", "reset")],
)
def test_client_leaving_mid_body_raises_client_disconnect(framing: str, leave: str) -> None:
    """A FIN or an RST in the middle of a body: the reader gets ClientDisconnect, not a
    cancellation, and the server goes on serving others."""
    outcomes: list[str] = []
    reading = threading.Event()
    finished = threading.Event()

    async def app(request: Request) -> bytes:
        if request.method == "GET":
            return b"still serving"
        reading.set()
        try:
            await request.body()
            outcomes.append("complete")
        except ClientDisconnect:
            outcomes.append("ClientDisconnect")
        except BaseException as exc:
            outcomes.append(type(exc).__name__)
            raise
        finally:
            finished.set()
        return b"unused"

    if framing == "chunked":
        partial = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
    else:
        partial = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc"
    with serve_in_thread(app) as server:
        connection = RawConnection(server.port)
        connection.send(partial)
        wait_for(reading, "the handler to start reading")
        if leave == "reset":
            connection.reset()
        else:
            connection.sock.close()  # a FIN
        wait_for(finished, "the handler's read to end")
        reply = http_request(server.port)
    assert outcomes == ["ClientDisconnect"]
    assert reply.body == b"still serving"


def test_an_unread_body_is_discarded_and_never_parsed_as_a_request() -> None:
    calls: list[bytes] = []

    async def app(request: Request) -> bytes:
        calls.append(request.target)
        return b"answered " + request.target

    smuggled = get_request("/smuggled")
    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        # The whole body is there when the handler returns...
        connection.send(post_request("/ignore", smuggled) + get_request("/next"))
        first, second = connection.response(), connection.response()
        # ...or it arrives only after the response went out.
        connection.send(post_request("/late", smuggled)[: -len(smuggled)])
        late = connection.response()
        connection.send(smuggled + get_request("/last"))
        last = connection.response()
    assert [first.body, second.body, late.body, last.body] == [
        b"answered /ignore",
        b"answered /next",
        b"answered /late",
        b"answered /last",
    ]
    assert calls == [b"/ignore", b"/next", b"/late", b"/last"]


def test_large_response_is_delivered_whole() -> None:
    body = os.urandom(8 * 1024 * 1024)

    async def app(request: Request) -> bytes:
        return body

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(get_request("/") + get_request("/"))
        time.sleep(0.2)  # let the server fill the socket and queue the rest
        assert connection.response().body == body
        assert connection.response().body == body


def test_large_response_survives_the_client_half_closing() -> None:
    body = b"x" * (4 * 1024 * 1024)

    async def app(request: Request) -> bytes:
        return body

    with serve_in_thread(app) as server, RawConnection(server.port) as connection:
        connection.send(get_request("/"))
        connection.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the FIN arrives while most of the response is still queued
        data = connection.read_to_eof()
    assert len(data) > len(body)
    [response] = split_responses(data)
    assert response.body == body


# ---- asyncio inside handlers.


def call_app(app: App, path: str = "/") -> Reply:
    with serve_in_thread(app) as server:
        return http_request(server.port, path)


def test_running_loop_and_current_task_inside_handlers() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def app(request: Request) -> str:
        loop = asyncio.get_running_loop()
        loops.append(loop)
        task = asyncio.current_task()
        if task is None:
            return "no task"
        if request.target == b"/suspend":
            await asyncio.sleep(0.01)
            if asyncio.current_task() is not task or asyncio.get_running_loop() is not loop:
                return "changed across an await"
        return f"task ok, done={task.done()}"

    with serve_in_thread(app) as server:
        eager = http_request(server.port, "/")
        suspended = http_request(server.port, "/suspend")
    assert eager.body == b"task ok, done=False"
    assert suspended.body == b"task ok, done=False"
    assert loops[0] is loops[1]
    assert type(loops[0]).__name__ == "KestrelEventLoop"


def test_first_step_task_is_safe_to_inspect_and_keeps_its_identity() -> None:
    # The first step runs on a RequestTask that is initialized only if the handler suspends
    # (server.pxi): what a handler or a library may ask of it must answer, not crash.
    seen: dict[str, object] = {}

    async def app(request: Request) -> str:
        task = asyncio.current_task()
        assert task is not None
        seen["name"] = task.get_name()
        seen["coro"] = task.get_coro() is not None
        seen["loop"] = task.get_loop() is asyncio.get_running_loop()
        seen["repr"] = repr(task)
        seen["context"] = task.get_context() is not None  # type: ignore[attr-defined]  # 3.12+ API, RequestTask has it on 3.11 too
        seen["done"] = task.done()
        seen["cancelling"] = task.cancelling()
        if request.target == b"/suspend":
            await asyncio.sleep(0)
            seen["same"] = asyncio.current_task() is task
            seen["coro_after"] = task.get_coro() is seen.get("first_coro")
        seen["first_coro"] = task.get_coro()
        return "ok"

    with serve_in_thread(app) as server:
        assert http_request(server.port, "/").body == b"ok"
        assert seen["name"] == "kestrel-request" and seen["coro"] and seen["loop"]
        assert seen["context"] and seen["done"] is False and seen["cancelling"] == 0
        assert "kestrel-request" in str(seen["repr"])
        seen.clear()
        assert http_request(server.port, "/suspend").body == b"ok"
        assert seen["same"] is True


def test_a_first_step_task_is_reused_only_when_nothing_kept_it() -> None:
    # A RequestTask nothing references after a first step that finished is reused for the
    # next request (server.pxi). Whatever kept one, a reference, a weak reference, an
    # attribute or a cancel(), must keep it out of that reuse: each request sees a task of
    # its own, answering for its own coroutine and context.
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="-")
    kept: list[tuple[str, asyncio.Task[Any], Any]] = []
    weak: list[weakref.ref[asyncio.Task[Any]]] = []
    seen: dict[str, object] = {}

    async def app(request: Request) -> str:
        task = asyncio.current_task()
        assert task is not None
        target = request.target.decode()
        variable.set(target)
        seen[f"{target}:attribute"] = getattr(task, "kestrel_test", None)
        seen[f"{target}:weak"] = bool(weak) and weak[-1]() is task
        seen[f"{target}:kept"] = any(other is task for _, other, _ in kept)
        if target.startswith("/keep"):
            kept.append((target, task, task.get_coro()))
        elif target == "/weak":
            weak.append(weakref.ref(task))
        elif target == "/attribute":
            task.kestrel_test = target  # type: ignore[attr-defined]
        elif target == "/cancel":
            task.cancel()  # finished without suspending: nothing left to cancel
        elif target == "/suspend":
            await asyncio.sleep(0)
            return "suspended, not cancelled"
        return "ok"

    with serve_in_thread(app) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        targets = "/plain /keep1 /plain2 /keep2 /weak /after-weak /attribute /after-attribute"
        for target in [*targets.split(), "/cancel", "/suspend"]:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (target, body)
        connection.close()
    assert body == b"suspended, not cancelled"
    assert [target for target, _, _ in kept] == ["/keep1", "/keep2"]
    assert kept[0][1] is not kept[1][1]
    for target, task, coro in kept:
        # A task that outlived its step still answers for its own request.
        assert task.get_coro() is coro
        assert task.get_context()[variable] == target  # type: ignore[attr-defined]
        assert target in repr(task.get_coro()) or "app" in repr(task.get_coro())
    assert not any(value for key, value in seen.items() if key.endswith(":kept"))
    assert seen["/after-weak:weak"] is False
    assert seen["/after-attribute:attribute"] is None


def test_a_first_step_task_kept_by_a_handler_that_raised_answers_for_itself() -> None:
    kept: list[tuple[asyncio.Task[Any], Any]] = []

    async def app(request: Request) -> str:
        task = asyncio.current_task()
        assert task is not None
        kept.append((task, task.get_coro()))
        raise RuntimeError("the step fails after its task was kept")

    with serve_in_thread(app) as server:
        assert http_request(server.port, "/").status == 500
        assert http_request(server.port, "/").status == 500
    (first, first_coro), (second, second_coro) = kept
    assert first is not second
    assert first.get_coro() is first_coro and second.get_coro() is second_coro


def test_a_request_without_a_body_still_streams_and_reports_its_limit() -> None:
    # A request without a body gets no body stream unless it asks: then an empty one.
    async def app(request: Request) -> str:
        before = request.max_body_size
        chunks = [chunk async for chunk in request.stream()]
        try:
            async for _ in request.stream():
                pass
        except BodyConsumedError:
            again = "consumed"
        else:
            again = "read twice"
        return f"{before} {chunks} {await request.body()!r} {again}"

    with serve_in_thread(app, max_request_body_size=1234) as server:
        assert http_request(server.port, "/").body == b"1234 [] b'' consumed"


def test_context_variables_follow_the_handler_and_do_not_leak() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")

    async def app(request: Request) -> str:
        before = variable.get()
        variable.set(request.target.decode())
        if request.target == b"/suspend":
            await asyncio.sleep(0.01)
        return f"{before}->{variable.get()}"

    with serve_in_thread(app) as server:
        # Set in the first step, read after a suspension; never seen by the next request.
        assert http_request(server.port, "/suspend").body == b"unset->/suspend"
        assert http_request(server.port, "/eager").body == b"unset->/eager"
        assert http_request(server.port, "/again").body == b"unset->/again"


def test_cancel_during_the_first_step_is_delivered_once_it_suspends() -> None:
    async def app(request: Request) -> str:
        task = asyncio.current_task()
        assert task is not None
        assert task.cancel("stop") is True
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError as exc:
            return f"cancelled: {exc.args[0] if exc.args else ''}"
        return "not cancelled"

    started = time.monotonic()
    assert call_app(app).body == b"cancelled: stop"
    assert time.monotonic() - started < 0.9


def test_task_group_and_anyio_cancel_scopes_span_the_first_suspension() -> None:
    import anyio

    async def app(request: Request) -> str:
        # Entered in the first step, exited after suspending: both check it is the same task.
        async with asyncio.TaskGroup() as group:
            first = group.create_task(asyncio.sleep(0.01, "a"))
            second = group.create_task(asyncio.sleep(0.02, "b"))
        with anyio.move_on_after(0.02) as scope:
            await anyio.sleep(1)
        with anyio.fail_after(1):
            await anyio.sleep(0)
        return f"{first.result()}{second.result()} {scope.cancelled_caught}"

    assert call_app(app).body == b"ab True"


def test_asyncio_sleep_inside_a_handler() -> None:
    async def app(request: Request) -> str:
        started = time.monotonic()
        await asyncio.sleep(0.1)
        return f"{time.monotonic() - started:.3f}"

    assert 0.09 <= float(call_app(app).body) < 2


@pytest.mark.parametrize("expires", [True, False], ids=["expiring", "not-expiring"])
def test_asyncio_timeout_inside_a_handler(expires: bool) -> None:
    async def app(request: Request) -> str:
        try:
            async with asyncio.timeout(0.05 if expires else 5):
                await asyncio.sleep(10 if expires else 0.01)
        except TimeoutError:
            return "timed out"
        return "in time"

    started = time.monotonic()
    reply = call_app(app)
    assert reply.body == (b"timed out" if expires else b"in time")
    assert time.monotonic() - started < 3


def test_call_later_inside_a_handler() -> None:
    async def app(request: Request) -> str:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.02, fired.set_result, "fired")
        return await fired

    assert call_app(app).body == b"fired"


def test_run_in_executor_inside_a_handler() -> None:
    def blocking_work() -> int:
        time.sleep(0.05)  # blocks a pool thread, not the loop
        return threading.get_ident()

    async def app(request: Request) -> str:
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(None, blocking_work)
        return "elsewhere" if worker != threading.get_ident() else "on the loop thread"

    assert call_app(app).body == b"elsewhere"


def test_open_connection_to_an_asyncio_server_on_the_same_loop() -> None:
    async def app(request: Request) -> bytes:
        async def shout(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        echo_server = await asyncio.start_server(shout, "127.0.0.1", 0)
        async with echo_server:
            port = echo_server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping\n")
            await writer.drain()
            reply = await reader.readline()
            writer.close()
            await writer.wait_closed()
        return reply

    assert call_app(app).body == b"PING\n"


def test_httpx_async_client_inside_a_handler_calls_another_kestrel_server() -> None:
    async def inner(request: Request) -> bytes:
        return b"inner saw " + request.target

    with serve_in_thread(inner) as inner_server:

        async def outer(request: Request) -> bytes:
            async with httpx.AsyncClient(base_url=inner_server.url, timeout=TIMEOUT_S) as client:
                first = await client.get("/one")
                second = await client.get("/two")
            return first.content + b", " + second.content

        reply = call_app(outer)
    assert reply.body == b"inner saw /one, inner saw /two"


def test_handlers_on_different_connections_run_concurrently() -> None:
    """A handler waiting on another connection's handler: only possible if both run at once."""
    waiting = threading.Event()

    async def app(request: Request) -> str:
        state = app_state.setdefault("event", asyncio.Event())
        if request.target == b"/wait":
            waiting.set()
            async with asyncio.timeout(TIMEOUT_S):
                await state.wait()
            return "released"
        state.set()
        return "released the other"

    app_state: dict[str, asyncio.Event] = {}
    with serve_in_thread(app) as server, RawConnection(server.port) as waiter:
        waiter.send(get_request("/wait"))
        wait_for(waiting, "the first handler to suspend")
        releaser = http_request(server.port, "/release")
        released = waiter.response()
    assert releaser.body == b"released the other"
    assert released.body == b"released"


# ---- Errors.


class Boom(Exception):
    pass


@pytest.mark.parametrize("suspends", [False, True], ids=["sync", "async"])
def test_handler_exception_is_a_500_and_is_logged(
    suspends: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(request: Request) -> bytes:
        if request.target == b"/boom":
            if suspends:
                await asyncio.sleep(0)
            raise Boom("kaboom")
        return b"fine"

    with caplog.at_level("ERROR", logger="kestrel.error"), serve_in_thread(app) as server:
        with RawConnection(server.port) as connection:
            connection.send(get_request("/boom"))
            failed = connection.response()
            connection.send(get_request("/same-connection"))
            same_connection = connection.response()
        new_connection = http_request(server.port, "/new-connection")
    assert failed.status == 500
    assert failed.body == b"Internal Server Error"
    assert (same_connection.status, same_connection.body) == (200, b"fine")
    assert (new_connection.status, new_connection.body) == (200, b"fine")
    [record] = [r for r in caplog.records if r.name == "kestrel.error"]
    assert record.levelname == "ERROR"
    assert "GET /boom" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is Boom
    assert "kaboom" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("suspends", [False, True], ids=["sync", "async"])
def test_unsupported_result_type_is_a_500(suspends: bool) -> None:
    async def app(request: Request) -> object:
        if suspends:
            await asyncio.sleep(0)
        return 42

    with serve_in_thread(app) as server:
        data = exchange(server.port, get_request("/", "Connection: close"))
    assert data, "the connection was closed with no response"
    [response] = split_responses(data)
    assert response.status == 500


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
            id="cl-and-te",
        ),
        pytest.param(b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400, id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, id="bad-cl"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, id="long-line"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n", 431, id="big-head"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            id="unknown-coding",
        ),
    ],
)
def test_rejected_requests_get_a_status_and_a_close(request_bytes: bytes, status: int) -> None:
    calls: list[bytes] = []

    async def app(request: Request) -> bytes:
        calls.append(request.target)
        return b"handled"

    with serve_in_thread(app) as server:
        # A valid request first, and one pipelined behind the bad one that must not run.
        data = exchange(server.port, get_request("/ok") + request_bytes + get_request("/after"))
        metrics = server.metrics()
    ok, rejected = split_responses(data)  # exchange() returning means the server closed
    assert ok.body == b"handled"
    assert rejected.status == status
    assert rejected.header("connection") == "close"
    assert calls == [b"/ok"]
    assert sum(metrics["rejections"].values()) == 1


def test_a_tls_client_hello_is_refused_at_its_first_byte() -> None:
    # 0x16 cannot begin a request line: the answer comes as soon as it arrives, not when a
    # line ends or when the request-headers timeout (30 s by default) fires.
    with serve_in_thread(echo_target) as server:
        started = time.monotonic()
        data = exchange(server.port, b"\x16")
        elapsed = time.monotonic() - started
        stats = server.metrics()
    [response] = split_responses(data)
    assert response.status == 400
    assert response.header("connection") == "close"
    assert elapsed < 2.0
    assert sum(stats["rejections"].values()) == 1


def test_many_concurrent_connections_all_succeed() -> None:
    clients, requests_each = 200, 5
    errors: list[str] = []
    peak: list[int] = []
    with serve_in_thread(echo_target) as server:
        all_connected = threading.Barrier(
            clients,
            action=lambda: peak.append(server.metrics()["connections_active"]),
            timeout=30,
        )

        def client(n: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                for i in range(requests_each):
                    connection.request("GET", f"/{n}/{i}")
                    response = connection.getresponse()
                    body = response.read()
                    if (response.status, body) != (200, f"/{n}/{i}".encode()):
                        errors.append(f"{n}/{i}: {response.status} {body!r}")
                    if i == 0:
                        all_connected.wait()
            except Exception as exc:
                errors.append(f"{n}: {exc!r}")
                all_connected.abort()
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        metrics = server.metrics()
    assert errors == []
    assert peak == [clients]
    assert metrics["connections_total"] == clients
    assert metrics["responses_total"] == clients * requests_each


# ---- serve_in_thread.


def test_serve_in_thread_with_port_zero_binds_a_real_port() -> None:
    with serve_in_thread(echo_target, port=0) as server:
        assert isinstance(server, Server)
        assert 0 < server.port < 65536
        assert server.url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(timeout=TIMEOUT_S) as client:
            assert client.get(server.url + "/via-url").content == b"/via-url"


def kestrel_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kestrel:")]


def test_leaving_the_with_block_stops_the_server_and_frees_the_port() -> None:
    with serve_in_thread(echo_target) as server:
        port = server.port
        # Leave a keep-alive connection open: stopping must close it too.
        idle = RawConnection(port)
        idle.send(get_request("/"))
        idle.response()
    try:
        assert idle.read_to_eof() == b""
    finally:
        idle.sock.close()
    assert kestrel_threads() == []
    assert port_is_closed(port)
    with socket.socket() as again:  # rebinding works: nobody listens there any more
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def test_an_exception_in_the_with_block_still_stops_the_server() -> None:
    port = 0
    with (
        pytest.raises(RuntimeError, match="inside the block"),
        serve_in_thread(echo_target) as server,
    ):
        port = server.port
        assert http_request(port).status == 200
        raise RuntimeError("inside the block")
    assert kestrel_threads() == []
    assert port_is_closed(port)


def test_serve_in_thread_on_a_busy_port_raises() -> None:
    with serve_in_thread(echo_target) as server:
        with pytest.raises(OSError) as error, serve_in_thread(echo_target, port=server.port):
            pass  # pragma: no cover
        assert http_request(server.port).status == 200
    assert "in use" in str(error.value)


# ---- The CLI: python -m kestrel MODULE:ATTR.


@contextlib.contextmanager
def cli_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m kestrel examples.hello:app --port N *args`, answering requests."""
    with processes.cli_server("examples.hello:app", *args, cwd=ROOT) as started:
        yield started


def stop_cli(process: subprocess.Popen[str]) -> str:
    """SIGTERM; the process must exit 0 within 5 s. Returns its stderr."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr
    return stderr


def test_cli_serves_the_app_and_exits_0_on_sigterm() -> None:
    with cli_server() as (process, port):
        hello = http_request(port, "/")
        posted = http_request(port, "/", method="POST", body=b"payload")
        stderr = stop_cli(process)
    assert (hello.status, hello.body) == (200, b"Hello, World!")
    assert hello.headers["Server"] == "kestrel"
    assert (posted.status, posted.body) == (201, b"payload")
    # The access log is on by default, one line per response.
    assert '"GET / HTTP/1.1" 200' in stderr
    assert '"POST / HTTP/1.1" 201' in stderr
    assert "Traceback" not in stderr


def test_cli_without_access_log_or_server_header() -> None:
    with cli_server("--no-access-log", "--no-server-header") as (process, port):
        hello = http_request(port, "/")
        stderr = stop_cli(process)
    assert hello.body == b"Hello, World!"
    assert "Server" not in hello.headers
    assert "GET /" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchmodule:app"], "cannot import module 'nosuchmodule'"),
        (["examples.hello:nosuch"], "module 'examples.hello' has no attribute 'nosuch'"),
        (["examples.hello"], "app must be given as MODULE:ATTRIBUTE"),
        (["examples.hello:app", "--port", "70000"], "--port must be 0-65535, not 70000"),
    ],
    ids=["no-module", "no-attribute", "no-colon", "bad-port"],
)
def test_cli_bad_arguments_exit_with_a_clear_message(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kestrel", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=20,
    )
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert message in stderr
    assert "Traceback" not in stderr


# ---- curl.


def curl(*args: str, data: bytes | None = None) -> tuple[WireResponse, bytes]:
    """Run curl and return (response head, body); the head goes to stdout via -D - or -I."""
    dump_head = [] if "-I" in args else ["-D", "-"]
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "5", *dump_head, *args],
        input=data,
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    parser = ResponseParser()
    parser.receive(head + b"\r\n\r\n")
    response = parser.next_response("HEAD")
    assert response is not None
    return response, body


def test_curl_get_post_and_head() -> None:
    async def app(request: Request) -> bytes:
        if request.method == "POST":
            return b"got " + await request.body()
        return b"hello curl"

    with serve_in_thread(app) as server:
        got, got_body = curl(server.url + "/")
        posted, posted_body = curl("--data-binary", "@-", server.url + "/", data=b"a\x00b" * 10)
        head, head_body = curl("-I", server.url + "/")
    assert (got.status, got_body) == (200, b"hello curl")
    assert got.header("content-length") == "10"
    assert (posted.status, posted_body) == (200, b"got " + b"a\x00b" * 10)
    assert head.status == 200
    assert head.header("content-length") == "10"
    assert head_body == b""


def test_curl_reuses_the_connection_for_several_urls() -> None:
    with serve_in_thread(echo_target) as server:
        result = subprocess.run(
            [
                "curl",
                "--silent",
                "--max-time",
                "5",
                "-w",
                " connects=%{num_connects}\n",
                server.url + "/1",
                server.url + "/2",
                server.url + "/3",
            ],
            capture_output=True,
            timeout=20,
        )
        metrics = server.metrics()
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "/1 connects=1",
        "/2 connects=0",
        "/3 connects=0",
    ]
    assert metrics["connections_total"] == 1


def test_max_request_body_size_is_applied_before_the_body_is_read() -> None:
    async def app(request: Request) -> bytes:
        return await request.body()

    with (
        serve_in_thread(app, max_request_body_size=10) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
        response = sock.recv(4096)  # no body byte was sent: the 413 must not wait for one
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close\r\n" in response
