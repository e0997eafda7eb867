"""Engine bugs found by fuzz/fuzz_processor.py, each replayed on a ProcessorPair."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from processor_pair import ProcessorPair

import kestrel


def test_stream_finished_at_once_does_not_reparse_held_input() -> None:
    """A StreamingResponse over a sync iterable finishes inside the parse of its request.

    Its request (POST /x, a 2-byte body the handler ignores) was parsed from held input,
    behind a request whose handler suspended. Finishing the stream re-entered the parsing of
    held input while the outer parse was still on it: the held bytes were read a second time
    from the start, "PO" taken as the body and "ST /x HTTP/1.1" parsed as a third request,
    which then looped forever.
    """
    seen: list[tuple[str, bytes]] = []

    async def app(request):  # type: ignore[no-untyped-def]
        seen.append((request.method, request.target))
        if len(seen) == 1:
            await asyncio.sleep(0)
            return kestrel.Response(b"first")
        if len(seen) == 2:
            return kestrel.StreamingResponse(
                iter([b"aaaaa", b"bbbbb"]), 200, [("content-length", "10")]
            )
        return kestrel.Response(b"ok")

    with ProcessorPair(app) as pair:
        pair.send(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n01"
            b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        responses = [e for e in pair.responses() if type(e).__name__ == "Response"]
        assert seen == [("GET", b"/"), ("POST", b"/x"), ("GET", b"/y")]
        assert not pair.closed
    assert len(responses) == 1  # responses() parses one exchange; the bytes are below


def test_stream_finished_at_once_answers_every_pipelined_request() -> None:
    async def app(request):  # type: ignore[no-untyped-def]
        if request.target == b"/slow":
            await asyncio.sleep(0)
            return kestrel.Response(b"slow")
        return kestrel.StreamingResponse(iter([b"s"]), 200)

    with ProcessorPair(app) as pair:
        pair.send(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        data = pair.received()
    assert data.count(b"HTTP/1.1 200 OK") == 3


def test_failed_stream_releases_the_unread_body_at_once() -> None:
    """A StreamingResponse that fails after its head aborts the connection; the body its
    handler never read went back to the pool only when the request was freed, which a log
    handler keeping the error's record (and so its traceback, and so the request) delays
    indefinitely."""

    async def fail_after_two() -> AsyncIterator[bytes]:
        for _ in range(2):
            await asyncio.sleep(0)
            yield b"0123456789"
        raise RuntimeError("stream failed on purpose")

    async def app(request):  # type: ignore[no-untyped-def]
        return kestrel.StreamingResponse(fail_after_two(), 200)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("kestrel.error")
    logger.addHandler(handler)
    try:
        pair = ProcessorPair(app)
        pair.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
            + b"x" * 100
            + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert pair.reset
        pair.close()
        assert [r.msg for r in records] == ["streamed response failed"]
        assert pair.metrics()["pool_blocks_in_use"] == 0
    finally:
        logger.removeHandler(handler)


def test_stream_finished_at_once_after_the_handler_suspended_goes_on_once() -> None:
    """The handler suspends, then returns a stream that is sent in full at once: the done
    callback that applies its result is the one caller that goes on with held input. Going
    on a second time from inside it would parse the held requests twice."""
    seen: list[bytes] = []

    async def app(request):  # type: ignore[no-untyped-def]
        seen.append(request.target)
        await asyncio.sleep(0)
        return kestrel.StreamingResponse(iter([b"s", b"t"]), 200)

    with ProcessorPair(app) as pair:
        pair.send(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        data = pair.received()
        assert not pair.closed
    assert seen == [b"/1", b"/2", b"/3"]
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.count(b"\r\n\r\n1\r\ns\r\n1\r\nt\r\n0\r\n\r\n") == 3
