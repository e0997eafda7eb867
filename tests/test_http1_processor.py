"""The HTTP/1 processor with no socket: exact bytes in, at every split point, exact bytes out.

Each test drives one connection of a real HttpServer through tests/processor_pair.py (a
MemoryTransport under the Http1Processor, on a KestrelEventLoop) and compares what the server
sent, byte for byte (less the Date line; the pair has no Server header). Every input is sent
cut at each of its byte boundaries in turn, and once a byte at a time (cuts()): a request
split anywhere must get the same answer. Time is advanced by running the heartbeat's
deadline check as of a later moment (ProcessorPair.advance), so no test sleeps.

The loopback versions of some of these are tests/test_contract.py (the request contract) and
tests/test_response_framing.py (the writer's rules); this tier adds the cut points, the
exact bytes, and what a socket makes awkward to reach: the peer's window, the processor's
upgraded state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cut_points import cuts
from processor_pair import ProcessorPair, strip_date

from kestrel import App, HttpParseError, Limits, Response, StreamingResponse
from kestrel._core import Request

Handler = Callable[..., Any]

KIB = 1 << 10
MIB = 1 << 20

# ---- Exact answers.

INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\n\r\nInternal Server Error"
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 11\r\nconnection: close\r\n\r\nBad Request"
)
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def ok(body: bytes, close: bool = False) -> bytes:
    """A 200 for a Response(body) with no content type."""
    connection = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), connection, body)


# ---- Requests.


def get(path: bytes, *fields: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (path, b"".join(f + b"\r\n" for f in fields))


def post(path: bytes, body: bytes, *fields: bytes) -> bytes:
    length = b"Content-Length: %d" % len(body)
    return (
        b"POST %s HTTP/1.1\r\nHost: a\r\n%s\r\n"
        % (
            path,
            b"".join(f + b"\r\n" for f in (length, *fields)),
        )
        + body
    )


def post_chunked(path: bytes, body: bytes, *fields: bytes) -> bytes:
    """A chunked POST whose body is `body` as it goes on the wire (chunks and all)."""
    lines = b"".join(f + b"\r\n" for f in (b"Transfer-Encoding: chunked", *fields))
    return b"POST %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (path, lines) + body


def chunks(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


NEXT = get(b"/next")

# ---- Cut points.


def each_cut(
    app: Handler, data: bytes, **server: Any
) -> Iterator[tuple[list[int], ProcessorPair, bytes]]:
    """For each split of `data`: a fresh connection it was sent over, and what came back."""
    for split in cuts(data):
        with ProcessorPair(app, **server) as pair:
            pair.send(data, split=split)
            yield split, pair, strip_date(pair.received())


def ends(pair: ProcessorPair) -> dict[str, int]:
    """The connection ends counted so far, the reasons with a count only."""
    return {k: v for k, v in pair.metrics()["connection_ends"].items() if v}


def first_piece_end(split: list[int], length: int, at: int) -> int:
    """Where the piece of a send cut at `split` that holds offset `at - 1` ends."""
    return min([c for c in split if c >= at] + [length])


# ---- Handlers.


async def echo_target(request: Request) -> Response:
    """Answers with its target; under /sleep it suspends once first."""
    if request.target.startswith(b"/sleep"):
        await asyncio.sleep(0)
    return Response(request.target)


async def echo_body(request: Request) -> Response:
    return Response(await request.body())


def early(suspends: bool) -> Handler:
    """A handler that answers without reading the body."""

    async def handler(request: Request) -> Response:
        if suspends:
            await asyncio.sleep(0)
        return Response(b"early:" + request.target)

    return handler


MODES = pytest.mark.parametrize("suspends", [False, True], ids=["returns", "suspends"])


# ---- Pipelining.


def test_no_deadline_runs_while_a_handler_does() -> None:
    # A slow handler is never blamed on the client: no keep-alive, headers or body deadline.
    gate: list[asyncio.Future[None]] = []

    async def handler(request: Request) -> Response:
        gate.append(asyncio.get_running_loop().create_future())
        await gate[0]
        return Response(await request.body())

    with ProcessorPair(handler) as pair:
        pair.send(post(b"/", b"hello"))
        pair.advance(1000)
        assert not pair.closed and pair.received() == b""
        gate[0].set_result(None)
        pair.run()
        assert strip_date(pair.received()) == ok(b"hello")
        assert ends(pair) == {}


def test_pipelined_requests_are_answered_in_order_at_every_cut() -> None:
    # A handler that returns at once, one that suspends, then one that returns again.
    data = get(b"/a") + get(b"/sleep") + get(b"/c")
    expected = ok(b"/a") + ok(b"/sleep") + ok(b"/c")
    for split, pair, received in each_cut(echo_target, data):
        assert received == expected, split
        assert not pair.closed and not pair.fin_sent
        assert pair.metrics()["responses_total"] == 3


@MODES
def test_pipelined_requests_with_bodies_at_every_cut(suspends: bool) -> None:
    async def handler(request: Request) -> Response:
        if suspends:
            await asyncio.sleep(0)
        return Response(request.target + b"=" + await request.body())

    data = post(b"/1", b"hello") + post_chunked(b"/2", chunks(b"ab", b"cde")) + get(b"/3")
    expected = ok(b"/1=hello") + ok(b"/2=abcde") + ok(b"/3=")
    for split, pair, received in each_cut(handler, data):
        assert received == expected, split
        assert pair.metrics()["drained_bodies"] == 0


def test_a_long_pipeline_at_the_interesting_cuts() -> None:
    # Over cuts()'s limit: cut around every CRLF (each line end, head end, chunk boundary).
    async def handler(request: Request) -> Response:
        if request.target.endswith(b"s"):
            await asyncio.sleep(0)
        return Response(request.target + b"=" + await request.body())

    requests, answers = [], []
    for i in range(12):
        target = b"/%d%s" % (i, b"s" if i % 3 == 0 else b"")
        body = b"b%d" % i * (i % 4)
        if i % 2:
            requests.append(post_chunked(target, chunks(body, body) if body else chunks()))
            body += body
        else:
            requests.append(post(target, body))
        answers.append(ok(target + b"=" + body))
    data = b"".join(requests)
    assert len(data) > 320 and len(cuts(data)) < len(data) // 2
    for split, pair, received in each_cut(handler, data):
        assert received == b"".join(answers), split
        assert pair.metrics()["requests_total"] == 12


def test_a_pipelined_request_waits_for_a_suspended_handler() -> None:
    gate: list[asyncio.Future[None]] = []

    async def handler(request: Request) -> Response:
        if request.target == b"/slow":
            gate.append(asyncio.get_running_loop().create_future())
            await gate[0]
        return Response(request.target)

    with ProcessorPair(handler) as pair:
        pair.send(get(b"/slow") + get(b"/fast"))
        assert pair.received() == b""  # /fast is held until /slow has answered
        assert pair.metrics()["requests_total"] == 1
        gate[0].set_result(None)
        pair.run()
        assert strip_date(pair.received()) == ok(b"/slow") + ok(b"/fast")


# ---- Drains: a body the handler left unread.


@MODES
def test_an_unread_content_length_body_is_drained(suspends: bool) -> None:
    body = b"0123456789"
    data = post(b"/early", body) + NEXT
    head_end = len(post(b"/early", body)) - len(body)
    expected = ok(b"early:/early") + ok(b"early:/next")
    for split, pair, received in each_cut(early(suspends), data):
        assert received == expected, split
        assert not pair.closed and not pair.fin_sent, split
        # A handler that answered before the whole body was in leaves it to the drain; a
        # suspended one may find it all buffered already (discarded, not drained).
        drained = not suspends or first_piece_end(split, len(data), head_end) < head_end + 10
        assert pair.metrics()["drained_bodies"] == int(drained), split


@MODES
def test_an_unread_chunked_body_is_drained(suspends: bool) -> None:
    body = chunks(b"hello", b"x" * 20) + b""
    data = post_chunked(b"/early", body) + NEXT
    head_end = len(post_chunked(b"/early", body)) - len(body)
    expected = ok(b"early:/early") + ok(b"early:/next")
    for split, pair, received in each_cut(early(suspends), data):
        assert received == expected, split
        assert not pair.closed and not pair.fin_sent, split
        drained = not suspends or first_piece_end(split, len(data), head_end) < head_end + len(body)
        assert pair.metrics()["drained_bodies"] == int(drained), split


def test_a_request_inside_an_unread_body_never_runs() -> None:
    smuggled = get(b"/smuggled")
    data = post(b"/early", smuggled) + NEXT
    expected = ok(b"early:/early") + ok(b"early:/next")
    for split, _pair, received in each_cut(early(False), data):
        assert received == expected, split


def test_a_content_length_over_the_drain_budget_closes_after_the_response() -> None:
    # Known up front: the response itself says Connection: close; /next is never answered.
    data = post(b"/early", b"0123456789") + NEXT
    for split, pair, received in each_cut(early(False), data, limits=Limits(max_drain_size=4)):
        assert received == ok(b"early:/early", close=True), split
        assert pair.fin_sent and not pair.closed, split  # lingering: our FIN is out
        pair.send_eof()
        assert pair.closed
        assert ends(pair) == {"drain_limit": 1}, split
        assert pair.metrics()["drain_closes"] == 1


def test_a_chunked_body_over_the_drain_budget_closes() -> None:
    # A chunked body's size is not known when the response goes: it says keep-alive, and
    # the connection closes (FIN, no second response) once the drain passes the budget.
    data = post_chunked(b"/early", chunks(b"0123456789")) + NEXT
    for split, pair, received in each_cut(early(False), data, limits=Limits(max_drain_size=4)):
        assert received == ok(b"early:/early"), split
        assert pair.fin_sent, split
        pair.send_eof()
        assert pair.closed
        assert ends(pair) == {"drain_limit": 1}, split


def test_a_drain_that_does_not_finish_in_time_closes() -> None:
    data = post(b"/early", b"0123456789")[:-5]  # half the body
    for split in cuts(data):
        with ProcessorPair(early(False)) as pair:
            pair.send(data, split=split)
            assert strip_date(pair.received()) == ok(b"early:/early"), split
            pair.advance(4)  # the drain timeout is 5 s
            assert not pair.fin_sent
            pair.advance(6)
            assert pair.fin_sent and pair.received() == b""
            pair.send(b"01234" + NEXT)  # too late: discarded while lingering
            assert pair.received() == b""
            pair.send_eof()
            assert pair.closed and ends(pair) == {"drain_timeout": 1}


@pytest.mark.parametrize("app_kind", ["handler", "app-404"])
def test_a_malformed_chunk_in_a_drained_body_gets_no_second_response(app_kind: str) -> None:
    app = App()
    handler: Handler = early(False) if app_kind == "handler" else app  # App: a 404, unread
    first = (
        ok(b"early:/early")
        if app_kind == "handler"
        else (
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 9\r\n\r\nNot Found"
        )
    )
    data = post_chunked(b"/early", b"5\r\nhello\r\nzz\r\nabc\r\n") + NEXT
    for split, pair, received in each_cut(handler, data):
        assert received == first, split
        assert pair.fin_sent and not pair.closed, split
        pair.send_eof()
        assert pair.closed
        metrics = pair.metrics()
        assert ends(pair) == {"rejected": 1}, split
        assert metrics["rejections"] == {"INVALID_CHUNK_SIZE": 1}
        assert metrics["responses_total"] == 1


# ---- Lazy 100-continue.

EXPECT = b"Expect: 100-continue"


@MODES
def test_100_continue_is_sent_once_when_the_handler_reads(suspends: bool) -> None:
    async def handler(request: Request) -> Response:
        if suspends:
            await asyncio.sleep(0)
        return Response(await request.body())

    head = post(b"/", b"", EXPECT).replace(b"Content-Length: 0", b"Content-Length: 5")
    for split in cuts(head):
        with ProcessorPair(handler) as pair:
            pair.send(head, split=split)
            assert pair.received() == CONTINUE, split  # the client waits for it
            pair.send(b"hello")
            assert strip_date(pair.received()) == ok(b"hello")
            # Once per request: the next one gets its own, unless its body is all in by the
            # time the handler reads (the client did not wait: nothing to tell it).
            pair.send(head + b"world")
            interim = b"" if suspends else CONTINUE
            assert strip_date(pair.received()) == interim + ok(b"world")


def test_100_continue_is_never_sent_to_a_handler_that_does_not_read() -> None:
    head = post(b"/early", b"", EXPECT).replace(b"Content-Length: 0", b"Content-Length: 5")
    for split, pair, received in each_cut(early(False), head):
        # The client may send the body or not: nobody could tell where the next request
        # would start, so the connection closes after the response.
        assert received == ok(b"early:/early", close=True), split
        assert pair.fin_sent
        pair.send(b"hello" + NEXT)
        assert pair.received() == b""
        pair.send_eof()
        assert pair.closed and ends(pair) == {"drain_limit": 1}


# ---- Framing errors while the handler reads.


@MODES
def test_a_malformed_chunk_fails_the_handlers_read_with_a_400(suspends: bool) -> None:
    raised: list[int] = []

    async def handler(request: Request) -> Response:
        if suspends:
            await asyncio.sleep(0)
        try:
            return Response(await request.body())
        except HttpParseError as error:
            raised.append(error.status)
            raise

    data = post_chunked(b"/", b"3\r\nabc\r\nzz\r\n") + NEXT
    for split, pair, received in each_cut(handler, data):
        assert received == BAD_REQUEST, split
        assert raised == [400], split
        raised.clear()
        assert pair.fin_sent
        pair.send_eof()
        assert ends(pair) == {"rejected": 1}
        assert pair.metrics()["rejections"] == {"INVALID_CHUNK_SIZE": 1}


def test_chunk_extensions_with_bws_are_accepted_and_a_size_with_a_space_is_not() -> None:
    good = post_chunked(b"/", b"5; name; param=value\r\nhello\r\n0\r\n\r\n") + NEXT
    for split, _pair, received in each_cut(echo_body, good):
        assert received == ok(b"hello") + ok(b""), split
    bad = post_chunked(b"/", b"5 \r\nhello\r\n0\r\n\r\n") + NEXT
    for split, pair, received in each_cut(echo_body, bad):
        assert received == BAD_REQUEST, split
        assert pair.fin_sent


# ---- Rejections and timeouts.


def test_a_tls_client_hello_is_refused_at_its_first_byte() -> None:
    hello = bytes.fromhex("160301020001000000fc0303") + bytes(range(32))
    with ProcessorPair(echo_target) as pair:
        pair.send(hello[:1])
        assert strip_date(pair.received()) == BAD_REQUEST
        assert pair.fin_sent
        pair.send(hello[1:])  # discarded
        assert pair.received() == b""
    for split, pair, received in each_cut(echo_target, hello):
        assert received == BAD_REQUEST, split
        pair.send_eof()
        assert ends(pair) == {"rejected": 1}
        assert pair.metrics()["rejections"] == {"INVALID_REQUEST_LINE": 1}


def test_a_target_with_a_fragment_is_refused() -> None:
    for split, pair, received in each_cut(echo_target, get(b"/p#frag") + NEXT):
        assert received == BAD_REQUEST, split
        pair.send_eof()
        assert pair.metrics()["rejections"] == {"INVALID_REQUEST_TARGET": 1}


def test_the_headers_timeout_is_a_408() -> None:
    data = get(b"/p", b"X-Long: " + b"v" * 20)
    for split in cuts(data[:-3]):  # never complete
        with ProcessorPair(echo_target) as pair:
            pair.send(data[:-3], split=split)
            pair.advance(29)  # request_headers_timeout is 30 s
            assert pair.received() == b""
            pair.advance(31)
            assert strip_date(pair.received()) == REQUEST_TIMEOUT, split
            assert pair.fin_sent
            pair.send_eof()
            assert ends(pair) == {"headers_timeout": 1}


def test_the_keep_alive_timeout_closes_silently() -> None:
    with ProcessorPair(echo_target) as pair:  # a connection that never sends
        pair.advance(129)
        assert not pair.closed
        pair.advance(131)
        assert pair.closed and not pair.reset and pair.received() == b""
        assert ends(pair) == {"keep_alive_timeout": 1}
    for split, pair, received in each_cut(echo_target, get(b"/a")):
        assert received == ok(b"/a"), split
        pair.advance(131)
        assert pair.closed and pair.received() == b""
        assert ends(pair) == {"keep_alive_timeout": 1}


def test_options_asterisk_on_an_app_is_a_200_with_allow() -> None:
    app = App()

    @app.get("/next")
    async def following(request: Request) -> str:
        return "next"

    data = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + NEXT
    expected = (
        b"HTTP/1.1 200 OK\r\nallow: GET, HEAD, OPTIONS\r\ncontent-length: 0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\n"
        b"\r\nnext"
    )
    for split, _pair, received in each_cut(app, data, error_response=app.error_response):
        assert received == expected, split


def test_connect_is_a_501_and_closes() -> None:
    data = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"
    expected = (
        b"HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 24\r\nconnection: close\r\n\r\nNot Implemented: CONNECT"
    )
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        return Response(b"tunnel")

    for split, pair, received in each_cut(handler, data):
        assert received == expected, split
        assert pair.fin_sent
        assert pair.metrics()["connections_rejected"] == 1
    assert ends(pair) == {"rejected": 1}
    assert calls == []  # refused by the engine, never routed


# ---- The response writer's framing rules, through a real handler.

FRAMING: dict[bytes, Callable[[], Response]] = {
    b"/length": lambda: Response(b"hello", headers={"content-length": "5"}),
    b"/length-twice": lambda: Response(
        b"hello", headers=[("content-length", "5"), ("Content-Length", "5")]
    ),
    b"/wrong-length": lambda: Response(b"hello", headers={"content-length": "4"}),
    b"/two-lengths": lambda: Response(
        b"hello", headers=[("content-length", "5"), ("content-length", "6")]
    ),
    b"/chunked": lambda: Response(b"hello", headers={"transfer-encoding": "chunked"}),
    b"/te-and-cl": lambda: Response(
        b"hello", headers={"transfer-encoding": "chunked", "content-length": "5"}
    ),
    b"/gzip": lambda: Response(b"hello", headers={"transfer-encoding": "gzip"}),
    b"/204": lambda: Response(b"", status=204, headers={"content-length": "3"}),
    b"/304": lambda: Response(b"", status=304, headers={"content-length": "5", "etag": '"e"'}),
    b"/inject": lambda: Response(b"hello", headers={"x-evil": "a\r\nSet-Cookie: injected=1"}),
    b"/bad-name-space": lambda: Response(b"hello", headers={"x evil": "1"}),
    b"/bad-name-colon": lambda: Response(b"hello", headers={"x:evil": "1"}),
    b"/hello": lambda: Response(b"hello", headers={"x-own": "1"}),
    b"/close": lambda: Response(b"bye", headers={"connection": "close"}),
    b"/keep-alive": lambda: Response(b"hi", headers={"connection": "keep-alive, x-hop"}),
}


async def framing_app(request: Request) -> Response:
    return FRAMING[request.target.split(b"?")[0]]()


HELLO = ok(b"hello")
FRAMED = {
    b"/length": HELLO,
    b"/length-twice": HELLO,
    b"/wrong-length": INTERNAL_ERROR,
    b"/two-lengths": INTERNAL_ERROR,
    b"/chunked": HELLO,
    b"/te-and-cl": INTERNAL_ERROR,
    b"/gzip": INTERNAL_ERROR,
    b"/204": b"HTTP/1.1 204 No Content\r\n\r\n",
    b"/304": b'HTTP/1.1 304 Not Modified\r\netag: "e"\r\ncontent-length: 5\r\n\r\n',
    b"/inject": INTERNAL_ERROR,
    b"/bad-name-space": INTERNAL_ERROR,
    b"/bad-name-colon": INTERNAL_ERROR,
    b"/keep-alive": ok(b"hi"),
}


@pytest.mark.parametrize("path", list(FRAMED), ids=[p.decode() for p in FRAMED])
def test_the_writer_frames_what_a_handler_returns(
    path: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Each answer is followed by the next pipelined request's: a refused head left nothing
    # behind, and a response's framing ended where it said it would.
    data = get(path) + get(b"/hello")
    expected = FRAMED[path] + b"HTTP/1.1 200 OK\r\nx-own: 1\r\ncontent-length: 5\r\n\r\nhello"
    with caplog.at_level(logging.CRITICAL, logger="kestrel.error"):
        for split, pair, received in each_cut(framing_app, data):
            assert received == expected, split
            assert not pair.fin_sent


def test_an_apps_connection_close_is_honoured() -> None:
    data = get(b"/close") + get(b"/hello")
    for split, pair, received in each_cut(framing_app, data):
        assert received == ok(b"bye", close=True), split
        assert pair.fin_sent and not pair.closed
        pair.send_eof()
        assert pair.closed and ends(pair) == {"connection_close": 1}
        assert pair.metrics()["requests_total"] == 1  # /hello never ran


def test_head_has_the_gets_content_length_and_no_body() -> None:
    data = get(b"/hello").replace(b"GET", b"HEAD") + get(b"/hello")
    head = b"HTTP/1.1 200 OK\r\nx-own: 1\r\ncontent-length: 5\r\n\r\n"
    for split, _pair, received in each_cut(framing_app, data):
        assert received == head + head + b"hello", split


def test_an_http10_client() -> None:
    one = b"GET /hello HTTP/1.0\r\n\r\n"
    for split, pair, received in each_cut(framing_app, one + one):
        assert received == (
            b"HTTP/1.1 200 OK\r\nx-own: 1\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
        ), split
        assert pair.fin_sent
    kept = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    for split, pair, received in each_cut(framing_app, kept + kept):
        answer = (
            b"HTTP/1.1 200 OK\r\nx-own: 1\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n"
            b"hello"
        )
        assert received == answer + answer, split
        assert not pair.fin_sent


# ---- Streamed responses.


def pieces(*parts: bytes, suspend: bool = False) -> AsyncIterator[bytes]:
    async def produce() -> AsyncIterator[bytes]:
        for part in parts:
            if suspend:
                await asyncio.sleep(0)
            yield part

    return produce()


STREAMS: dict[bytes, Callable[[], StreamingResponse]] = {
    b"/sync": lambda: StreamingResponse(iter([b"ab", b"", b"c"])),
    b"/async": lambda: StreamingResponse(pieces(b"ab", b"c", suspend=True)),
    b"/declared-chunked": lambda: StreamingResponse(
        iter([b"ab", b"c"]), headers={"transfer-encoding": "chunked"}
    ),
    b"/length": lambda: StreamingResponse(pieces(b"ab", b"c"), headers={"content-length": "3"}),
    b"/short": lambda: StreamingResponse(pieces(b"ab"), headers={"content-length": "3"}),
    b"/long": lambda: StreamingResponse(pieces(b"ab", b"cd"), headers={"content-length": "3"}),
    b"/bad-header": lambda: StreamingResponse(iter([b"abc"]), headers={"x-evil": "\n"}),
}


async def streaming_app(request: Request) -> StreamingResponse:
    if request.target == b"/hello":
        return StreamingResponse(iter([b"hello"]), headers={"content-length": "5"})
    return STREAMS[request.target]()


CHUNKED_ABC = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"/sync", CHUNKED_ABC),
        (b"/async", CHUNKED_ABC),
        (b"/declared-chunked", CHUNKED_ABC),
        (b"/length", ok(b"abc")),
        (b"/bad-header", INTERNAL_ERROR),
    ],
)
def test_a_streamed_response(
    path: bytes, expected: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = get(path) + get(b"/hello")
    with caplog.at_level(logging.CRITICAL, logger="kestrel.error"):
        for split, pair, received in each_cut(streaming_app, data):
            assert received == expected + ok(b"hello"), split
            assert not pair.fin_sent and not pair.closed


def test_streams_sent_at_once_behind_a_suspended_handler() -> None:
    # They are answered while the requests held behind /sleep are parsed: a stream that ends
    # in its first step must not parse that held input again from inside (it crashed).
    async def handler(request: Request) -> Response | StreamingResponse:
        if request.target == b"/sleep":
            await asyncio.sleep(0)
            return Response(b"slept")
        return StreamingResponse(iter([request.target]))

    data = get(b"/sleep") + get(b"/1") + get(b"/2") + get(b"/sleep") + get(b"/3")
    stream = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n%s\r\n0\r\n\r\n"
    expected = ok(b"slept") + stream % b"/1" + stream % b"/2" + ok(b"slept") + stream % b"/3"
    for split, pair, received in each_cut(handler, data):
        assert received == expected, split
        assert not pair.closed


@pytest.mark.parametrize("path", [b"/short", b"/long"])
def test_a_stream_that_breaks_its_content_length_is_reset(
    path: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # The head is out: only an incomplete response can say so, never a next one.
    with caplog.at_level(logging.CRITICAL, logger="kestrel.error"):
        for split, pair, received in each_cut(streaming_app, get(path) + get(b"/hello")):
            assert received == b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab", split
            assert pair.reset and pair.closed and not pair.fin_sent
            assert ends(pair) == {"error": 1}


def test_a_streamed_response_to_head_and_to_http10() -> None:
    head = get(b"/sync").replace(b"GET", b"HEAD") + get(b"/length").replace(b"GET", b"HEAD")
    expected = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
    )
    for split, _pair, received in each_cut(streaming_app, head):
        assert received == expected, split
    # An HTTP/1.0 client takes no chunks: the body ends with the connection.
    old = b"GET /sync HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    for split, pair, received in each_cut(streaming_app, old):
        assert received == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc", split
        assert pair.fin_sent


# ---- Backpressure.


def test_a_stream_waits_while_the_peer_is_behind() -> None:
    piece, count, watermark = 4 * KIB, 64, 16 * KIB
    produced: list[int] = []

    async def handler(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for i in range(count):
                produced.append(i)
                yield bytes([65 + i % 26]) * piece

        return StreamingResponse(body())

    body = b"".join(b"1000\r\n" + bytes([65 + i % 26]) * piece + b"\r\n" for i in range(count))
    expected = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
    limits = Limits(max_response_buffer_size=watermark)
    with ProcessorPair(handler, limits=limits, window=1000) as pair:
        pair.send(get(b"/"))
        received = pair.received(window=0)
        # The producer stopped once the transport held more than the watermark.
        assert pair.transport.held_bytes <= watermark + piece + 16
        stopped_at = len(produced)
        assert stopped_at < count // 2
        pair.run()
        assert len(produced) == stopped_at  # no progress while the peer reads nothing
        # The peer reads 4 KiB at a time: the producer resumes each time the transport's
        # holding falls to half the watermark, and never runs ahead of it.
        resumed = 0
        for _ in range(4 * count):
            if len(produced) == count:
                break
            before = len(produced)
            received += pair.received(window=4 * KIB)
            assert pair.transport.held_bytes <= watermark + piece + 16
            resumed += len(produced) > before
        assert len(produced) == count and resumed > 5  # a few pieces per resume
        received += pair.received(window=10 * MIB)
        assert strip_date(received) == expected
        assert pair.metrics()["write_pauses"] >= 1
        assert pair.transport.held_bytes == 0


def test_reading_pauses_while_the_handler_does_not_read() -> None:
    gate: list[asyncio.Future[None]] = []
    taken: list[int] = []

    async def handler(request: Request) -> Response:
        if not gate:  # the first request waits until the test lets it read
            gate.append(asyncio.get_running_loop().create_future())
            await gate[0]
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            taken.append(len(chunk))
        return Response(b"%d" % size)

    total, piece = 2 * MIB, 64 * KIB
    with ProcessorPair(handler) as pair:
        pair.send(post(b"/", b"").replace(b"Content-Length: 0", b"Content-Length: %d" % total))
        for _ in range(total // piece):
            pair.send(b"y" * piece)
        # 1 MiB (max_request_buffer_size) buffered, the rest left with the peer.
        assert pair.transport.paused
        assert MIB <= pair.metrics()["bytes_read"] <= MIB + piece + 100
        assert pair.metrics()["read_pauses"] == 1
        assert pair.received() == b""
        gate[0].set_result(None)
        pair.run()
        assert not pair.transport.paused
        assert sum(taken) == total
        assert strip_date(pair.received()) == ok(b"%d" % total)
        pair.send(NEXT)
        assert strip_date(pair.received()) == ok(b"0")


# ---- The upgraded state.


class Receiver:
    """The protocol an upgraded connection is handed to."""

    def __init__(self, fail: bool = False) -> None:
        self.data: list[bytes] = []
        self.lost = 0
        self.fail = fail

    def data_received(self, data: bytes) -> None:
        self.data.append(data)
        if self.fail:
            raise ValueError("the new protocol failed")

    def connection_lost(self) -> None:
        self.lost += 1


SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n"
UPGRADE = get(b"/ws", b"Connection: upgrade", b"Upgrade: echo")


def upgrading_app(
    pairs: list[ProcessorPair], receiver: Receiver, result: Any = None, raises: bool = False
) -> Handler:
    async def handler(request: Request) -> Any:
        await asyncio.sleep(0)  # the message is complete once the handler has suspended
        processor = pairs[-1].transport.processor
        processor.upgrade(receiver)
        processor.send_raw(SWITCHING)
        if raises:
            raise RuntimeError("after the upgrade")
        return result

    return handler


def first_step_upgrading_app(pairs: list[ProcessorPair], receiver: Receiver) -> Handler:
    """Upgrades before it suspends: inside the parse that found its request."""

    async def handler(request: Request) -> Any:
        if request.target != b"/ws":
            await asyncio.sleep(0)
            return Response(request.target)
        processor = pairs[-1].transport.processor
        processor.upgrade(receiver)
        processor.send_raw(SWITCHING)
        return None

    return handler


def test_a_handler_may_upgrade_in_its_first_step() -> None:
    data = UPGRADE + b"hello " + NEXT  # in the same read as the request, at most cuts
    for split in cuts(data):
        receiver = Receiver()
        pairs: list[ProcessorPair] = []
        with ProcessorPair(first_step_upgrading_app(pairs, receiver)) as pair:
            pairs.append(pair)
            pair.send(data, split=split)
            assert pair.received() == SWITCHING, split
            assert b"".join(receiver.data) == b"hello " + NEXT, split
            assert b"" not in receiver.data
            pair.send_eof()
            assert receiver.data[-1] == b"" and not pair.closed
            assert pair.metrics()["responses_total"] == 0


def test_a_first_step_upgrade_behind_a_pipelined_request() -> None:
    """The upgrade request is parsed from held input, behind one whose handler suspended,
    and the client's EOF came before that: the new protocol gets the rest, then the EOF."""
    receiver = Receiver()
    pairs: list[ProcessorPair] = []
    with ProcessorPair(first_step_upgrading_app(pairs, receiver)) as pair:
        pairs.append(pair)
        pair.loop.call_soon(pair.transport.feed, get(b"/first") + UPGRADE + b"bye")
        pair.loop.call_soon(pair.transport.feed_eof)
        pair.run()
        assert strip_date(pair.received()) == ok(b"/first") + SWITCHING
        assert receiver.data == [b"bye", b""]
        assert not pair.closed


def test_no_upgrade_for_a_request_with_a_body_in_flight_or_an_answered_one() -> None:
    failures: list[str] = []

    def upgrade_now() -> None:
        try:
            pairs[-1].transport.processor.upgrade(Receiver())
        except RuntimeError as error:
            failures.append(str(error))

    async def handler(request: Request) -> Any:
        if request.target == b"/body":
            upgrade_now()  # its body has not arrived yet
            return Response(await request.body())

        def pieces() -> Iterator[bytes]:
            upgrade_now()  # its response head is out
            yield b"x"

        return StreamingResponse(pieces(), 200)

    pairs: list[ProcessorPair] = []
    with ProcessorPair(handler) as pair:
        pairs.append(pair)
        pair.send(b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
        pair.send(b"hi" + get(b"/stream"))
        received = strip_date(pair.received())
        assert received.startswith(ok(b"hi"))
        assert received.endswith(b"1\r\nx\r\n0\r\n\r\n")
        assert not pair.closed
    assert len(failures) == 2 and all("upgraded" in f for f in failures)


def test_an_upgraded_connection_belongs_to_its_new_protocol() -> None:
    data = UPGRADE + b"hello " + NEXT  # what follows the request is the new protocol's
    for split in cuts(data):
        receiver = Receiver()
        pairs: list[ProcessorPair] = []
        with ProcessorPair(upgrading_app(pairs, receiver, Response(b"ignored"))) as pair:
            pairs.append(pair)
            pair.send(data, split=split)
            assert pair.received() == SWITCHING, split  # the handler's Response is dropped
            assert b"".join(receiver.data) == b"hello " + NEXT, split
            assert b"" not in receiver.data
            receiver.data.clear()
            pair.send(b"more")
            assert receiver.data == [b"more"]
            pair.transport.processor.send_raw(b"\x81\x02hi")
            assert pair.received() == b"\x81\x02hi"  # as is
            pair.advance(200)  # no HTTP deadline applies any more
            assert not pair.closed
            pair.send_eof()
            assert receiver.data == [b"more", b""] and not pair.closed
            assert receiver.lost == 0
            pair.server.close()
            assert pair.closed and receiver.lost == 1
            assert ends(pair) == {"shutdown": 1}
            assert pair.metrics()["responses_total"] == 0


def test_an_upgrade_with_input_already_ended() -> None:
    receiver = Receiver()
    pairs: list[ProcessorPair] = []
    with ProcessorPair(upgrading_app(pairs, receiver)) as pair:
        pairs.append(pair)
        # The request, more bytes and the EOF all arrive before the handler upgrades.
        pair.loop.call_soon(pair.transport.feed, UPGRADE + b"bye")
        pair.loop.call_soon(pair.transport.feed_eof)
        pair.run()
        assert pair.received() == SWITCHING
        assert receiver.data == [b"bye", b""]


def test_a_handler_that_raises_after_upgrading_leaves_the_connection_to_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    pairs: list[ProcessorPair] = []
    with ProcessorPair(upgrading_app(pairs, receiver, raises=True)) as pair:
        pairs.append(pair)
        with caplog.at_level(logging.ERROR, logger="kestrel.error"):
            pair.send(UPGRADE)
        assert pair.received() == SWITCHING  # and no 500 behind it
        assert not pair.closed
        assert any("after upgrading" in r.getMessage() for r in caplog.records)
        pair.send(b"x")
        assert receiver.data == [b"x"]


def test_a_new_protocol_that_fails_resets_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(fail=True)
    pairs: list[ProcessorPair] = []
    with ProcessorPair(upgrading_app(pairs, receiver)) as pair:
        pairs.append(pair)
        with caplog.at_level(logging.CRITICAL, logger="kestrel.error"):
            pair.send(UPGRADE)
            pair.send(b"boom")
        assert pair.reset and pair.closed
        assert receiver.lost == 1


def test_only_a_complete_request_in_flight_can_be_upgraded() -> None:
    with ProcessorPair(echo_target) as pair:
        processor = pair.transport.processor
        with pytest.raises(RuntimeError):
            processor.upgrade(Receiver())  # idle: no request
        with pytest.raises(RuntimeError):
            processor.send_raw(b"x")  # not upgraded
        pair.send(get(b"/a"))
        assert strip_date(pair.received()) == ok(b"/a")
