"""Atheris fuzz harness for the HTTP/1 processor (kestrel._core.Http1Processor), socket-free.

Run (against the DEBUG build: KESTREL_DEBUG=1 python setup.py build_ext --inplace -q):

    python fuzz/fuzz_processor.py fuzz/corpus_processor fuzz/seeds_processor -max_total_time=600

See fuzz/README.md ("The processor harness") for what it checks.

Each input decodes into a `Case`: a request stream assembled from templates (GET, HEAD, POST
with Content-Length, chunked with extensions and trailers, Expect: 100-continue, Connection:
close, HTTP/1.0, Upgrade, CONNECT, OPTIONS *, broken chunked) and raw bytes, a few byte
mutations of it, the points where it is cut, one app behaviour per request, optional small
Limits, optional advance() of the clock and an optional EOF. The case runs on a fresh
ProcessorPair (tests/processor_pair.py): a real HttpServer on a KestrelEventLoop with one
MemoryTransport connection.

Layout (FuzzedDataProvider conventions: integers from the END, bytes from the front):

    flags           bit0 send_eof, bit1 small limits, bit2 advance, bit3 advance after the EOF,
                    bit4 append the unused front bytes to the stream
    [limits]        10 bytes, only with bit1 (see _decode_limits)
    [advance]       1 byte: index into ADVANCE_SECONDS, only with bit2
    n_items         1..8, then per item: template 0..TEMPLATES (TEMPLATES: raw), 1 param byte;
                    a raw item takes `param` bytes from the front
    n_mutations     0..3, each: 2-byte position, 1-byte value
    n_behaviours    1..8, each one byte (low nibble: kind, high nibble: parameter)
    n_cuts          0..15, each a 2-byte offset modulo len(stream) + 1

`check_input(data)` runs one input without atheris (tests/test_fuzz_processor_seeds.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "tests"), str(_ROOT / "fuzz")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import h11  # noqa: E402
from fuzz_parser import PyDataProvider  # noqa: E402
from processor_pair import ProcessorPair  # noqa: E402

import kestrel  # noqa: E402
from kestrel import _core  # noqa: E402
from kestrel._core import HttpParseError, HttpParser, RequestHead  # noqa: E402

Feedback = Callable[[Hashable], None]


def _no_feedback(signature: Hashable) -> None:
    pass


class InvariantViolation(AssertionError):
    """The processor broke one of the properties this harness checks."""


# --------------------------------------------------------------------------------------------
# Request templates

BODY_SIZES = (0, 1, 5, 100, 1000, 9000, 70000, 300000)
ADVANCE_SECONDS = (0.5, 1.0, 4.0, 6.0, 11.0, 31.0, 131.0, 1000.0)


def _body(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def _chunked(param: int) -> bytes:
    n = param & 3
    size = (1, 7, 300, 5000)[(param >> 2) & 3]
    ext = b";a=b;c" if param & 16 else b""
    out = b"".join(b"%x%s\r\n%s\r\n" % (size, ext, _body(size)) for _ in range(n))
    trailers = b"x-trailer: t\r\nx-other: u\r\n" if param & 32 else b""
    return out + b"0" + ext + b"\r\n" + trailers + b"\r\n"


def _template(index: int, param: int) -> bytes:
    size = BODY_SIZES[param & 7]
    target = b"/t%d" % (param >> 3)
    if index == 0:
        return b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    if index == 1:
        return b"HEAD " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    if index == 2:
        return (
            b"POST "
            + target
            + b" HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size
            + _body(size)
        )
    if index == 3:
        return b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(
            param
        )
    if index == 4:
        body = _body(size) if param & 8 else b""
        return (
            b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % size + body
        )
    if index == 5:
        return b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    if index == 6:
        ka = b"Connection: keep-alive\r\n" if param & 8 else b""
        return b"GET " + target + b" HTTP/1.0\r\n" + ka + b"\r\n"
    if index == 7:
        ka = b"Connection: keep-alive\r\n" if param & 8 else b""
        return b"POST /p HTTP/1.0\r\n" + ka + b"Content-Length: %d\r\n\r\n" % size + _body(size)
    if index == 8:
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * (param & 31)) for i in range(param >> 3))
        return b"GET /" + b"p" * (param * 4) + b" HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
    if index == 9:
        return b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    if index == 10:
        return b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"
    if index == 11:
        return b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
    if index == 12:  # chunked, broken or cut short
        good = _chunked(param)
        return (
            b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + good[: max(1, len(good) * (param & 7) // 8)]
            + (b"zz\r\n" if param & 8 else b"")
        )
    if index == 13:  # Content-Length and more body than it says (the rest is a next "request")
        return b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n" + _body(2 + (param & 15))
    raise AssertionError(index)


TEMPLATES = 14


# --------------------------------------------------------------------------------------------
# App behaviours

(
    B_RETURN,
    B_SUSPEND,
    B_READ,
    B_READ_PART,
    B_IGNORE,
    B_STREAM,
    B_STREAM_SYNC_CL,
    B_HEADERS,
    B_RAISE,
    B_READ_RAISE,
    B_STREAM_RAISE,
    B_ROUTE_LIMIT,
    B_NOT_RESPONSE,
    B_CLOSE,
    B_NO_BODY_STATUS,
    B_READ_SLOW,
) = range(16)

BEHAVIOUR_NAMES = (
    "return",
    "suspend",
    "read",
    "read_part",
    "ignore",
    "stream",
    "stream_cl",
    "headers",
    "raise",
    "read_raise",
    "stream_raise",
    "route_limit",
    "not_response",
    "close",
    "no_body_status",
    "read_slow",
)

HEADER_POOL: tuple[tuple[Any, Any], ...] = (
    ("x-a", "b"),
    ("content-length", "5"),
    ("transfer-encoding", "chunked"),
    ("connection", "close"),
    ("bad name", "x"),
    ("x-b", "a\r\nb"),
    ("x-c", "\x00"),
    ("", "v"),
    ("content-type", "text/plain"),
    ("content-length", "abc"),
    ("set-cookie", "a=b"),
    ("x-d", "\u20ac"),
    (b"x-e", b"bytes"),
    ("date", "x"),
    ("upgrade", "websocket"),
    ("x-f", " lead "),
    ("keep-alive", "timeout=5"),
    ("content-length", "0"),
    ("x-g", "v\tw"),
    ("connection", "keep-alive"),
    ("x:h", "v"),
    ("x-i", 5),
    ("content-length", "2, 2"),
    ("transfer-encoding", "gzip"),
)
STATUSES = (200, 201, 204, 304, 404, 500, 101, 100, 199, 999, 0, 1000, 418, 205)


class AppError(Exception):
    """Raised by the app on purpose (logged by the engine as 'handler raised')."""


async def _gen(n: int, size: int, fail_after: int = -1) -> AsyncIterator[bytes]:
    for i in range(n):
        if i == fail_after:
            raise AppError("stream failed on purpose")
        await asyncio.sleep(0)
        yield b"s" * size
    if fail_after >= n:
        raise AppError("stream failed on purpose")


def _sync_chunks(n: int, size: int) -> Iterator[bytes]:
    for _ in range(n):
        yield b"s" * size


class App:
    def __init__(self, behaviours: list[int]) -> None:
        self.behaviours = behaviours
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, request: Any) -> Any:
        index = len(self.seen)
        self.seen.append((request.method, request.target))
        b = self.behaviours[index % len(self.behaviours)]
        kind, p = b & 15, b >> 4
        tag = [("x-req", str(index))]
        if kind == B_RETURN or (kind == B_IGNORE and p == 0):
            return kestrel.Response(b"ok", 200, tag)
        if kind in (B_SUSPEND, B_IGNORE):
            for _ in range(p + 1):
                await asyncio.sleep(0)
            return kestrel.Response(b"later", 200, tag)
        if kind == B_READ:
            body = await request.body()
            return kestrel.Response(b"%d" % len(body), 200, tag)
        if kind == B_READ_PART:
            stream = request.stream()
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                chunk = b""
            finally:
                await stream.aclose()
            return kestrel.Response(b"part %d" % len(chunk), 200, tag)
        if kind == B_READ_SLOW:
            n = 0
            async for chunk in request.stream():
                n += len(chunk)
                await asyncio.sleep(0)
            return kestrel.Response(b"%d" % n, 200, tag)
        if kind == B_STREAM:
            return kestrel.StreamingResponse(_gen(p, 1 + 97 * (p & 3)), 200, tag)
        if kind == B_STREAM_SYNC_CL:
            n, size = p & 3, 5
            declared = n * size + (0 if p < 8 else (p & 4) - 2)
            return kestrel.StreamingResponse(
                _sync_chunks(n, size), 200, [*tag, ("content-length", str(declared))]
            )
        if kind == B_HEADERS:
            headers = tag + [HEADER_POOL[(p * 7 + i * 5) % len(HEADER_POOL)] for i in range(p & 3)]
            return kestrel.Response(b"hdrs", STATUSES[p % len(STATUSES)], headers)
        if kind == B_RAISE:
            if p & 1:
                await asyncio.sleep(0)
            raise AppError("handler failed on purpose")
        if kind == B_READ_RAISE:
            await request.body()
            raise AppError("handler failed on purpose after reading")
        if kind == B_STREAM_RAISE:
            return kestrel.StreamingResponse(_gen(3, 10, fail_after=p & 3), 200, tag)
        if kind == B_ROUTE_LIMIT:
            request.max_body_size = p * 20
            body = await request.body()
            return kestrel.Response(b"%d" % len(body), 200, tag)
        if kind == B_NOT_RESPONSE:
            return (None, 123, {"a": 1}, "text")[p & 3]
        if kind == B_CLOSE:
            return kestrel.Response(b"bye", 200, [*tag, ("connection", "close")])
        if kind == B_NO_BODY_STATUS:
            return kestrel.Response(b"not allowed", (204, 304, 205, 100)[p & 3], tag)
        raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# Decoding


@dataclass
class Case:
    stream: bytes
    cuts: tuple[int, ...] = ()
    behaviours: list[int] = field(default_factory=lambda: [0])
    send_eof: bool = False
    limits: dict[str, Any] | None = None
    advance: float | None = None
    advance_after_eof: bool = False
    items: list[tuple[int, int]] = field(default_factory=list)


def _decode_limits(fdp: Any) -> dict[str, Any]:
    return {
        "max_request_line_size": 16 + fdp.ConsumeIntInRange(0, 255) * 4,
        "max_request_headers_size": 1 + fdp.ConsumeIntInRange(0, 255) * 4,
        "max_request_headers": 1 + fdp.ConsumeIntInRange(0, 15),
        "max_request_body_size": (0, 1, 5, 100, 1000, 9000, 70000, 10**9)[
            fdp.ConsumeIntInRange(0, 7)
        ],
        "max_request_buffer_size": 8192 * (1 + fdp.ConsumeIntInRange(0, 3)),
        "max_response_buffer_size": 4096 * (1 + fdp.ConsumeIntInRange(0, 3)),
        "max_drain_size": (0, 1, 100, 1000, 10000, 100000)[fdp.ConsumeIntInRange(0, 5)],
        "drain_timeout": (0, 0.5, 2.0, 5.0)[fdp.ConsumeIntInRange(0, 3)],
        "request_headers_timeout": (0.5, 2.0, 10.0, 30.0)[fdp.ConsumeIntInRange(0, 3)],
        "keep_alive_timeout": (0.5, 2.0, 10.0, 130.0)[fdp.ConsumeIntInRange(0, 3)],
    }


LIMIT_BYTES = 10


def decode_case(fdp: Any) -> Case:
    flags = fdp.ConsumeIntInRange(0, 255)
    limits = _decode_limits(fdp) if flags & 2 else None
    advance = ADVANCE_SECONDS[fdp.ConsumeIntInRange(0, 7)] if flags & 4 else None
    n_items = fdp.ConsumeIntInRange(1, 8)
    parts: list[bytes] = []
    items = []
    for _ in range(n_items):
        index = fdp.ConsumeIntInRange(0, TEMPLATES)
        param = fdp.ConsumeIntInRange(0, 255)
        items.append((index, param))
        if index == TEMPLATES:
            parts.append(fdp.ConsumeBytes(param))
        else:
            parts.append(_template(index, param))
    n_mut = fdp.ConsumeIntInRange(0, 3)
    mutations = [
        (fdp.ConsumeIntInRange(0, 65535), fdp.ConsumeIntInRange(0, 255)) for _ in range(n_mut)
    ]
    n_beh = fdp.ConsumeIntInRange(1, 8)
    behaviours = [fdp.ConsumeIntInRange(0, 255) for _ in range(n_beh)]
    n_cuts = fdp.ConsumeIntInRange(0, 15)
    raw_cuts = [fdp.ConsumeIntInRange(0, 65535) for _ in range(n_cuts)]
    if flags & 16:
        parts.append(fdp.ConsumeBytes(fdp.remaining_bytes()))
    stream = bytearray(b"".join(parts))
    for pos, value in mutations:
        if stream:
            stream[pos % len(stream)] = value
    n = len(stream)
    cuts = tuple(sorted({c % (n + 1) for c in raw_cuts} - {0, n}))
    return Case(
        bytes(stream), cuts, behaviours, bool(flags & 1), limits, advance, bool(flags & 8), items
    )


# --------------------------------------------------------------------------------------------
# Running one case


ALLOWED_ERRORS = (
    "handler raised for",
    "the app's response was refused",
    "streamed response failed",
    "could not send",
)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_capture = _Capture()
_unraisable: list[Any] = []
_loop_errors: list[dict[str, Any]] = []


def _unraisable_hook(unraisable: Any) -> None:
    _unraisable.append(
        (
            unraisable.exc_type,
            unraisable.exc_value,
            unraisable.err_msg,
            repr(unraisable.object)[:200],
        )
    )


class _Capturing:
    """While a case runs: kestrel's and asyncio's log records, and unraisable exceptions, go
    to this harness only (restored after, so importing the module changes nothing)."""

    NAMES = ("kestrel", "asyncio", "kestrel.access")

    def __enter__(self) -> None:
        self.saved = [
            (
                logging.getLogger(n),
                logging.getLogger(n).handlers[:],
                logging.getLogger(n).propagate,
                logging.getLogger(n).level,
            )
            for n in self.NAMES
        ]
        self.hook = sys.unraisablehook
        for name in ("kestrel", "asyncio"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [_capture]
            logger.propagate = False
            logger.setLevel(logging.WARNING)
        logging.getLogger("kestrel.access").setLevel(logging.CRITICAL)
        sys.unraisablehook = _unraisable_hook

    def __exit__(self, *exc: object) -> None:
        for logger, handlers, propagate, level in self.saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        sys.unraisablehook = self.hook


def _loop_exception_handler(loop: Any, context: dict[str, Any]) -> None:
    _loop_errors.append(context)


def _balance(before: dict[str, int], after: dict[str, int]) -> list[str]:
    problems = []
    for name in set(before) | set(after):
        if not name.endswith("_alloc"):
            continue
        free = name[: -len("_alloc")] + "_free"
        d_alloc = after.get(name, 0) - before.get(name, 0)
        d_free = after.get(free, 0) - before.get(free, 0)
        if d_alloc != d_free:
            problems.append(f"{name[:-6]}: {d_alloc} allocated, {d_free} freed")
    return problems


@dataclass
class Model:
    """The requests in the stream, as a parser with the server's limits sees them."""

    heads: list[RequestHead]
    rejected: bool
    ended: bool  # a request that ends the connection (close, upgrade, CONNECT) was parsed


def _model(case: Case) -> Model:
    lim = case.limits or {}
    parser = HttpParser(
        max_request_line_size=lim.get("max_request_line_size", 8192),
        max_request_headers_size=lim.get("max_request_headers_size", 32768),
        max_request_headers=lim.get("max_request_headers", 100),
        max_request_body_size=-1,
    )
    heads: list[RequestHead] = []
    rejected = ended = False
    try:
        parser.feed(case.stream)
        if case.send_eof:
            parser.feed_eof()
        for _ in range(3 * len(case.stream) + 64):
            event = parser.next_event()
            if isinstance(event, RequestHead):
                heads.append(event)
                if not event.keep_alive or event.upgrade:
                    ended = True
            elif event is _core.NEED_DATA or event is _core.PAUSED or event is _core.CLOSED:
                break
    except HttpParseError:
        rejected = True
    return Model(heads, rejected, ended)


@dataclass
class Outcome:
    responses: list[tuple[int, dict[bytes, bytes], int]]  # status, headers, body length
    partial: bool
    informational: int


def _parse_output(data: bytes, methods: list[bytes], eof: bool) -> Outcome:
    """Parse what the server sent as responses to `methods`, in order (h11 as the client)."""
    responses: list[tuple[int, dict[bytes, bytes], int]] = []
    informational = 0
    rest = data
    index = 0
    while rest:
        if index >= len(methods):
            raise InvariantViolation(
                f"{len(responses)} responses for {len(methods)} requests; more bytes follow: "
                f"{rest[:200]!r}"
            )
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=methods[index], target="/", headers=[("Host", "a")]))
        client.send(h11.EndOfMessage())
        client.receive_data(rest)
        if eof:
            client.receive_data(b"")
        status = -1
        headers: dict[bytes, bytes] = {}
        body = 0
        complete = False
        try:
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.InformationalResponse):
                    informational += 1
                    if event.status_code != 100:
                        raise InvariantViolation(f"informational {event.status_code}")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = dict(event.headers)
                elif isinstance(event, h11.Data):
                    body += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    complete = True
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except h11.RemoteProtocolError as exc:
            if "peer closed connection without sending complete" in str(
                exc
            ) or "ConnectionClosed when role=SERVER" in str(exc):
                return Outcome(responses, status != -1, informational)
            raise InvariantViolation(
                f"response {index} does not parse: {exc}: {rest[:300]!r}"
            ) from None
        if not complete:
            # Only 100 Continue so far (the server waits for the body) is not a partial response.
            return Outcome(responses, status != -1, informational)
        responses.append((status, headers, body))
        index += 1
        trailing, _closed = client.trailing_data
        if client.their_state is h11.MUST_CLOSE and trailing:
            raise InvariantViolation(
                f"bytes after a response that closes the connection: {trailing[:200]!r}"
            )
        if client.their_state is h11.MUST_CLOSE:
            break
        rest = trailing
    return Outcome(responses, False, informational)


# Pool blocks must be back right after close (strict), or at least after gc.collect().
STRICT_POOL = os.environ.get("KESTREL_FUZZ_POOL_AFTER_GC", "") in ("", "0")


def run_case(case: Case, feedback: Feedback = _no_feedback) -> None:
    with _Capturing():
        _run_case(case, feedback)


def _run_case(case: Case, feedback: Feedback = _no_feedback) -> None:
    gc.collect()
    counters_before = _core.debug_counters()
    _capture.records.clear()
    _unraisable.clear()
    _loop_errors.clear()
    limits = kestrel.Limits(**case.limits) if case.limits else None
    app = App(case.behaviours)
    pair = ProcessorPair(app, limits=limits)
    pair.loop.set_exception_handler(_loop_exception_handler)
    try:
        pair.send(case.stream, split=case.cuts)
        if case.advance is not None and not case.advance_after_eof:
            pair.advance(case.advance)
        if case.send_eof and not pair.closed:
            pair.send_eof()
        if case.advance is not None and case.advance_after_eof:
            pair.advance(case.advance)
        output = pair.received()
        closed, reset = pair.closed, pair.reset
        fin = pair.fin_sent
        pair.close()
        output += pair.transport.read()
        metrics = pair.metrics()
    except InvariantViolation:
        raise
    finally:
        loop = pair.loop
        if not loop.is_closed():
            loop.close()
    seen = list(app.seen)
    # What was logged, as text: the records (and their tracebacks) must not keep the case's
    # objects alive past the leak check.
    errors = [
        f"{r.name}: {r.getMessage()[:500]}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
        for r in _capture.records
        if r.levelno >= logging.ERROR
        and not (r.name == "kestrel.error" and any(a in str(r.msg) for a in ALLOWED_ERRORS))
    ]
    logged = [(r.levelno, str(r.msg)[:40]) for r in _capture.records]
    loop_errors = [f"{c.get('message')}: {c.get('exception')!r}" for c in _loop_errors]
    unraisable = list(_unraisable)
    _capture.records.clear()
    _loop_errors.clear()
    _unraisable.clear()
    server = pair.server
    del pair, app, loop
    gc.collect()
    blocks_after_gc = server.metrics()["pool_blocks_in_use"]
    # The server holds the parsers its connections gave back (spares): they are freed with it.
    del server
    gc.collect()
    counters_after = _core.debug_counters()

    # -- The engine's own complaints.
    if errors:
        raise InvariantViolation(f"unexpected error log: {errors[0]}")
    if loop_errors:
        raise InvariantViolation(f"loop exception handler: {loop_errors[0]}")
    if unraisable:
        raise InvariantViolation(f"unraisable exception: {unraisable[0]!r}")

    # -- Leaks.
    problems = _balance(counters_before, counters_after)
    if problems:
        raise InvariantViolation("debug counters do not balance: " + "; ".join(problems))
    if STRICT_POOL and metrics["pool_blocks_in_use"] != 0:
        raise InvariantViolation(
            f"{metrics['pool_blocks_in_use']} pool blocks in use after close "
            f"({blocks_after_gc} after gc.collect())"
        )

    if blocks_after_gc != 0:
        raise InvariantViolation(f"{blocks_after_gc} pool blocks in use after close and gc")

    # -- The responses.
    model = _model(case)
    methods = [h.method.encode() for h in model.heads]
    # One more answer is allowed: an error for what follows (a rejection, a timeout).
    outcome = _parse_output(output, [*methods, b"GET"], eof=True)
    n = len(outcome.responses)
    if n > len(methods):
        status, headers, _ = outcome.responses[-1]
        if not (400 <= status <= 599):
            raise InvariantViolation(
                f"{n} responses for {len(methods)} requests, the last one {status}"
            )
    # The app saw the requests in order, as the model parsed them.
    app_heads = [(h.method, h.target) for h in model.heads if h.method != "CONNECT"]
    if seen != app_heads[: len(seen)]:
        raise InvariantViolation(f"the app saw {seen[:8]!r}, the stream has {app_heads[:8]!r}")
    # Response i answers request i: a tag from the app names the app call it came from.
    app_index = 0
    for i, (_status, headers, _body_len) in enumerate(outcome.responses):
        if i >= len(model.heads):
            break
        tag = headers.get(b"x-req")
        if tag is not None and int(tag) != app_index:
            raise InvariantViolation(f"response {i} carries x-req {tag!r}, expected {app_index}")
        if model.heads[i].method != "CONNECT":
            app_index += 1
    if outcome.partial and not (reset or closed):
        raise InvariantViolation(f"a partial response on an open connection: {output[-300:]!r}")

    feedback(("n", min(n, 6), min(len(methods), 6), model.rejected, model.ended))
    feedback(("end", closed, reset, fin, outcome.partial, case.send_eof))
    for status, _, _ in outcome.responses:
        feedback(("status", status))
    for key, value in metrics["connection_ends"].items():
        if value:
            feedback(("ends", key))
    for key, value in metrics["rejections"].items():
        if value:
            feedback(("rej", key))
    for key in ("read_pauses", "write_pauses", "drained_bodies", "drain_closes"):
        if metrics[key]:
            feedback((key, min(metrics[key], 3)))
    for entry in logged:
        feedback(("log", *entry))
    for i, b in enumerate(case.behaviours[: min(len(seen), 8)]):
        feedback(("beh", b & 15, i > 0, outcome.informational > 0))


def encode(
    flags: int = 0,
    limits: list[int] | None = None,
    advance: int | None = None,
    items: Sequence[tuple[int, int, bytes]] = (),
    mutations: Sequence[tuple[int, int]] = (),
    behaviours: Sequence[int] = (0,),
    cuts: Sequence[int] = (),
    tail: bytes = b"",
) -> bytes:
    """Inverse of decode_case, for seeds: the input that decodes to these choices.

    `limits` is LIMIT_BYTES raw control bytes; `advance` an index into ADVANCE_SECONDS;
    `items` (template, param, raw bytes for a raw item); `tail` the front bytes flag 16 adds.
    """
    control: list[int] = []  # in consumption order; 2-byte values as (hi, lo)

    def one(value: int) -> None:
        control.append(value)

    def two(value: int) -> None:
        control.extend((value >> 8, value & 255))

    if limits is not None:
        flags |= 2
    if advance is not None:
        flags |= 4
    if tail:
        flags |= 16
    one(flags)
    if limits is not None:
        assert len(limits) == LIMIT_BYTES
        for v in limits:
            one(v)
    if advance is not None:
        one(advance)
    one(len(items) - 1)
    front = b""
    for index, param, raw in items:
        one(index)
        if index == TEMPLATES:
            param = len(raw)
            front += raw
        one(param)
    one(len(mutations))
    for pos, value in mutations:
        two(pos)
        one(value)
    one(len(behaviours) - 1)
    for b in behaviours:
        one(b)
    one(len(cuts))
    for c in cuts:
        two(c)
    return front + tail + bytes(reversed(control))


def check_input(data: bytes, feedback: Feedback = _no_feedback) -> None:
    run_case(decode_case(PyDataProvider(data)), feedback)


def main(argv: list[str]) -> None:
    import atheris

    if not _core.DEBUG_BUILD:
        sys.exit(
            "fuzz_processor.py needs the debug core: "
            "KESTREL_DEBUG=1 python setup.py build_ext --inplace"
        )
    pool = [atheris._reserve_counter() for _ in range(16384)]

    def feedback(signature: Hashable) -> None:
        atheris._trace_branch(pool[zlib.crc32(repr(signature).encode()) % len(pool)])

    for func in (_run_case, decode_case, _parse_output, _model, _template, _chunked):
        atheris.instrument_func(func)
    atheris.instrument_func(App.__call__)

    def test_one_input(data: bytes) -> None:
        run_case(decode_case(atheris.FuzzedDataProvider(data)), feedback)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
