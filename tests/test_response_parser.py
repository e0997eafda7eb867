"""Table-driven tests of the response parser (HttpResponseParser) against docs/parser.md.

As in test_parser.py, every case is parsed from the whole input, from the input cut once at
each byte boundary, and one byte at a time (cuts() below, as tests/test_http1_processor.py
does), and each run must report exactly the case's events. A case says which requests the
responses answer (`expects`: one "is HEAD" flag per request) and whether the server then
closes the connection (`eof`). Valid cases are also parsed by h11 as a client; every
difference between the two has a rule below.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
from cut_points import cuts
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel._core import (
    CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    REJECT_STATUS,
    HttpParseError,
    HttpResponseParser,
    RejectReason,
    ResponseHead,
)

R = RejectReason

# A normalized event (see drain()).
Ev = tuple[object, ...]
Fields = list[tuple[bytes, bytes]]


def head(
    status: int,
    reason: bytes,
    headers: Fields,
    *,
    version: str = "1.1",
    keep_alive: bool = True,
    content_length: int = -1,
    chunked: bool = False,
) -> Ev:
    return ("head", status, reason, version, headers, keep_alive, content_length, chunked)


def body(data: bytes) -> Ev:
    return ("body", data)


def trailers(*fields: tuple[bytes, bytes]) -> Ev:
    return ("trailers", list(fields))


def error(reason: RejectReason) -> Ev:
    return ("error", reason)


END: Ev = ("end",)
PAUSE: Ev = ("paused",)
CLOSE: Ev = ("closed",)
INCOMPLETE = error(R.INCOMPLETE_MESSAGE)


def response(status_line: bytes, *field_lines: bytes, content: bytes = b"") -> bytes:
    """Raw response bytes: the lines joined with CRLF, the empty line, then the content."""
    return b"".join(line + b"\r\n" for line in (status_line, *field_lines)) + b"\r\n" + content


OK = b"HTTP/1.1 200 OK"
CL5 = b"Content-Length: 5"
TE_CHUNKED = b"Transfer-Encoding: chunked"
F_CL5 = (b"content-length", b"5")
F_CHUNKED = (b"transfer-encoding", b"chunked")
OK_CL5 = response(OK, CL5, content=b"hello")
OK_CL5_EVENTS = [head(200, b"OK", [F_CL5], content_length=5), body(b"hello"), END]
CHUNKED_HEAD = head(200, b"OK", [F_CHUNKED], chunked=True)


def chunked(content: bytes, *fields: bytes) -> bytes:
    """A chunked 200 whose body bytes (chunks and trailers) are `content`."""
    return response(OK, *fields, TE_CHUNKED, content=content)


def cl(value: bytes, content: bytes, status_line: bytes = OK) -> bytes:
    return response(status_line, b"Content-Length: " + value, content=content)


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    events: list[Ev]
    expects: tuple[bool, ...] = (False,)  # one per request sent: is it HEAD?
    eof: bool = False  # the server closes after `raw`
    # Keyword arguments of HttpResponseParser: its limits.
    limits: dict[str, Any] = field(default_factory=dict)
    # Why h11 cannot be compared on this case (None: it is compared).
    h11_differs: str | None = None


def case(
    name: str,
    raw: bytes,
    events: list[Ev],
    *,
    expects: tuple[bool, ...] = (False,),
    eof: bool = False,
    h11_differs: str | None = None,
    **limits: int,
) -> Case:
    return Case(name, raw, events, expects, eof, limits, h11_differs)


HEAD_REQ = (True,)
EARLY_HINTS = response(b"HTTP/1.1 103 Early Hints", b"Link: </style.css>; rel=preload")
EARLY_HINTS_HEAD = head(
    103, b"Early Hints", [(b"link", b"</style.css>; rel=preload")], content_length=0
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CONTINUE_HEAD = head(100, b"Continue", [], content_length=0)
# Bytes after a response that ends the connection: never parsed.
NOT_HTTP = b"\x81\x05hello, not HTTP"

H11_TE = "h11 takes exactly `Transfer-Encoding: chunked` and refuses other codings or lists"
H11_NO_10_KEEP_ALIVE = "h11 does not honour HTTP/1.0 keep-alive (RFC 9112 §9.3 allows it)"
H11_MINOR = "h11 reports the version as sent; a higher 1.x minor is read as 1.1 here"
H11_CL_LIST = "h11 merges a Content-Length list into one value in its headers"
H11_BWS = "h11 refuses the BWS RFC 9112 §7.1.1 allows before a chunk extension's ';'"
H11_UNANSWERED = (
    "h11 fails an EOF while a request awaits its response; here it is a clean close, and "
    "`outstanding` counts the requests left unanswered"
)

# fmt: off
VALID = [
    # ---- Content-Length.
    case("content-length", OK_CL5, OK_CL5_EVENTS),
    case("content-length-then-eof", OK_CL5, [*OK_CL5_EVENTS, CLOSE], eof=True),
    case("content-length-zero", cl(b"0", b""),
         [head(200, b"OK", [(b"content-length", b"0")], content_length=0), END]),
    case("content-length-leading-zeros", cl(b"005", b"hello"),
         [head(200, b"OK", [(b"content-length", b"005")], content_length=5), body(b"hello"),
          END]),
    case("content-length-list-identical", cl(b"5, 5", b"hello"),
         [head(200, b"OK", [(b"content-length", b"5, 5")], content_length=5),
          body(b"hello"), END], h11_differs=H11_CL_LIST),
    case("content-length-repeated-identical", response(OK, CL5, CL5, content=b"hello"),
         [head(200, b"OK", [F_CL5, F_CL5], content_length=5), body(b"hello"), END],
         h11_differs=H11_CL_LIST),
    case("many-fields-mixed-case",
         response(OK, b"Date: Mon, 01 Jan 2024 00:00:00 GMT", b"Server: test",
                  b"Content-Type: text/plain; charset=utf-8", b"X-Empty:", b"SET-COOKIE: a=1",
                  b"Set-Cookie: b=2", b"content-LENGTH:  5  ", content=b"hello"),
         [head(200, b"OK", [(b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"server", b"test"),
                            (b"content-type", b"text/plain; charset=utf-8"), (b"x-empty", b""),
                            (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), F_CL5],
               content_length=5), body(b"hello"), END]),
    # ---- Status lines.
    case("status-not-found", cl(b"2", b"no", b"HTTP/1.1 404 Not Found"),
         [head(404, b"Not Found", [(b"content-length", b"2")], content_length=2), body(b"no"),
          END]),
    case("reason-empty-with-sp", cl(b"0", b"", b"HTTP/1.1 200 "),
         [head(200, b"", [(b"content-length", b"0")], content_length=0), END]),
    # The grammar requires the SP; servers omit it and h11, llhttp and curl accept that.
    case("reason-and-sp-missing", cl(b"0", b"", b"HTTP/1.1 200"),
         [head(200, b"", [(b"content-length", b"0")], content_length=0), END]),
    case("reason-with-spaces-tab-obs-text", cl(b"0", b"", b"HTTP/1.1 200 Tr\xe8s  bien\t!"),
         [head(200, b"Tr\xe8s  bien\t!", [(b"content-length", b"0")], content_length=0), END]),
    case("status-unknown-2xx", cl(b"0", b"", b"HTTP/1.1 299 Whatever"),
         [head(299, b"Whatever", [(b"content-length", b"0")], content_length=0), END]),
    # RFC 9110 §15: 600..999 are invalid, to be processed as 5xx; their framing is a 5xx's.
    case("status-999", cl(b"1", b"x", b"HTTP/1.1 999 Library Error"),
         [head(999, b"Library Error", [(b"content-length", b"1")], content_length=1),
          body(b"x"), END]),
    case("status-100-as-final-status-range-start", CONTINUE + OK_CL5,
         [CONTINUE_HEAD, *OK_CL5_EVENTS]),
    case("http-1.2-read-as-1.1", cl(b"0", b"", b"HTTP/1.2 200 OK"),
         [head(200, b"OK", [(b"content-length", b"0")], content_length=0), END],
         h11_differs=H11_MINOR),
    # ---- Chunked.
    case("chunked", chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, body(b"hello world"), END]),
    case("chunked-extensions-and-trailers",
         chunked(b'5;name=value;flag\r\nhello\r\nA;q="a \\"b\\""\r\n0123456789\r\n'
                 b"0;last\r\nX-Checksum: abc\r\nServer-Timing: db;dur=53\r\n\r\n"),
         [CHUNKED_HEAD, body(b"hello0123456789"),
          trailers((b"x-checksum", b"abc"), (b"server-timing", b"db;dur=53")), END]),
    case("chunked-extensions-with-bws", chunked(b'5 ; a = "b" ;c\r\nhello\r\n0\r\n\r\n'),
         [CHUNKED_HEAD, body(b"hello"), END], h11_differs=H11_BWS),
    case("chunked-hex-sizes", chunked(b"a\r\n0123456789\r\nF\r\n" + b"f" * 15 + b"\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, body(b"0123456789" + b"f" * 15), END]),
    case("chunked-empty", chunked(b"0\r\n\r\n"), [CHUNKED_HEAD, END]),
    case("chunked-coding-case-and-list",
         response(OK, b"Transfer-Encoding: , Chunked", content=b"1\r\nx\r\n0\r\n\r\n"),
         [head(200, b"OK", [(b"transfer-encoding", b", Chunked")], chunked=True), body(b"x"),
          END], h11_differs=H11_TE),
    # chunked is the final coding: chunked framing; the content is still gzip'ed.
    case("gzip-then-chunked",
         response(OK, b"Transfer-Encoding: gzip, chunked", content=b"2\r\n\x1f\x8b\r\n0\r\n\r\n"),
         [head(200, b"OK", [(b"transfer-encoding", b"gzip, chunked")], chunked=True),
          body(b"\x1f\x8b"), END], h11_differs=H11_TE),
    # ---- Until the server closes (RFC 9112 §6.3 points 4 and 8).
    case("close-delimited", response(OK, content=b"hello world"),
         [head(200, b"OK", [], keep_alive=False), body(b"hello world"), END, CLOSE], eof=True),
    case("close-delimited-empty", response(OK), [head(200, b"OK", [], keep_alive=False), END,
                                                  CLOSE], eof=True),
    case("close-delimited-before-eof", response(OK, content=b"hello"),
         [head(200, b"OK", [], keep_alive=False), body(b"hello")]),
    # What follows is body, however much it looks like a response.
    case("close-delimited-swallows-a-response", response(OK, content=OK_CL5),
         [head(200, b"OK", [], keep_alive=False), body(OK_CL5), END, CLOSE], eof=True),
    case("close-delimited-http-1.0", response(b"HTTP/1.0 200 OK", content=b"old"),
         [head(200, b"OK", [], version="1.0", keep_alive=False), body(b"old"), END, CLOSE],
         eof=True),
    case("te-not-chunked-is-close-delimited",
         response(OK, b"Transfer-Encoding: gzip", content=b"\x1f\x8b\x08"),
         [head(200, b"OK", [(b"transfer-encoding", b"gzip")], keep_alive=False),
          body(b"\x1f\x8b\x08"), END, CLOSE], eof=True, h11_differs=H11_TE),
    case("te-chunked-not-final-is-close-delimited",
         response(OK, b"Transfer-Encoding: chunked, gzip", content=b"1\r\nx\r\n0\r\n\r\n"),
         [head(200, b"OK", [(b"transfer-encoding", b"chunked, gzip")], keep_alive=False),
          body(b"1\r\nx\r\n0\r\n\r\n"), END, CLOSE], eof=True, h11_differs=H11_TE),
    # ---- No body whatever the fields say (RFC 9112 §6.3 point 1).
    case("head-content-length", cl(b"100", b""),
         [head(200, b"OK", [(b"content-length", b"100")], content_length=0), END],
         expects=HEAD_REQ),
    case("head-chunked", response(OK, TE_CHUNKED), [head(200, b"OK", [F_CHUNKED],
                                                         content_length=0), END],
         expects=HEAD_REQ),
    case("head-no-framing-stays-open", response(OK), [head(200, b"OK", [], content_length=0),
                                                      END], expects=HEAD_REQ),
    case("head-te-gzip", response(OK, b"Transfer-Encoding: gzip"),
         [head(200, b"OK", [(b"transfer-encoding", b"gzip")], content_length=0), END],
         expects=HEAD_REQ, h11_differs=H11_TE),
    case("204", response(b"HTTP/1.1 204 No Content"),
         [head(204, b"No Content", [], content_length=0), END]),
    case("204-content-length-ignored", response(b"HTTP/1.1 204 No Content", CL5) + OK_CL5,
         [head(204, b"No Content", [F_CL5], content_length=0), END, *OK_CL5_EVENTS],
         expects=(False, False)),
    case("304-content-length", response(b"HTTP/1.1 304 Not Modified", b"Content-Length: 100",
                                        b'ETag: "x"'),
         [head(304, b"Not Modified", [(b"content-length", b"100"), (b"etag", b'"x"')],
               content_length=0), END]),
    case("304-chunked", response(b"HTTP/1.1 304 Not Modified", TE_CHUNKED) + OK_CL5,
         [head(304, b"Not Modified", [F_CHUNKED], content_length=0), END, *OK_CL5_EVENTS],
         expects=(False, False)),
    # ---- 1xx (RFC 9110 §15.2): reported, then the final response to the same request.
    case("100-continue-then-final", CONTINUE + OK_CL5, [CONTINUE_HEAD, *OK_CL5_EVENTS]),
    case("103-early-hints-then-final", EARLY_HINTS + OK_CL5, [EARLY_HINTS_HEAD, *OK_CL5_EVENTS]),
    case("several-1xx-then-final", CONTINUE + EARLY_HINTS + CONTINUE + OK_CL5,
         [CONTINUE_HEAD, EARLY_HINTS_HEAD, CONTINUE_HEAD, *OK_CL5_EVENTS]),
    case("1xx-content-length-ignored",
         response(b"HTTP/1.1 102 Processing", CL5) + OK_CL5,
         [head(102, b"Processing", [F_CL5], content_length=0), *OK_CL5_EVENTS]),
    case("1xx-to-head-then-final", CONTINUE + cl(b"5", b""),
         [CONTINUE_HEAD, head(200, b"OK", [F_CL5], content_length=0), END], expects=HEAD_REQ),
    # 101: HTTP ends on this connection after its head; the rest is the new protocol's.
    case("101-switching-protocols",
         response(b"HTTP/1.1 101 Switching Protocols", b"Connection: upgrade",
                  b"Upgrade: websocket") + NOT_HTTP,
         [head(101, b"Switching Protocols",
               [(b"connection", b"upgrade"), (b"upgrade", b"websocket")],
               keep_alive=False, content_length=0), END, PAUSE]),
    case("100-then-101",
         CONTINUE + response(b"HTTP/1.1 101 Switching Protocols", b"Connection: upgrade",
                             b"Upgrade: h2c") + NOT_HTTP,
         [CONTINUE_HEAD, head(101, b"Switching Protocols",
                              [(b"connection", b"upgrade"), (b"upgrade", b"h2c")],
                              keep_alive=False, content_length=0), END, PAUSE]),
    # Upgrade in a 200 (Apache advertises h2c so) is not a switch.
    case("upgrade-advertised-in-200",
         response(OK, b"Upgrade: h2,h2c", b"Connection: Upgrade", CL5, content=b"hello")
         + OK_CL5,
         [head(200, b"OK", [(b"upgrade", b"h2,h2c"), (b"connection", b"Upgrade"), F_CL5],
               content_length=5), body(b"hello"), END, *OK_CL5_EVENTS],
         expects=(False, False)),
    # ---- Persistence (RFC 9112 §9.3).
    case("connection-close", response(OK, b"Connection: close", CL5, content=b"hello")
         + NOT_HTTP,
         [head(200, b"OK", [(b"connection", b"close"), F_CL5], keep_alive=False,
               content_length=5), body(b"hello"), END, PAUSE], expects=(False, False)),
    case("connection-close-in-a-list",
         response(OK, b"Connection: foo, CLOSE", b"Content-Length: 0"),
         [head(200, b"OK", [(b"connection", b"foo, CLOSE"), (b"content-length", b"0")],
               keep_alive=False, content_length=0), END, PAUSE]),
    case("http-1.0-keep-alive",
         response(b"HTTP/1.0 200 OK", b"Connection: keep-alive", CL5, content=b"hello")
         + OK_CL5,
         [head(200, b"OK", [(b"connection", b"keep-alive"), F_CL5], version="1.0",
               content_length=5), body(b"hello"), END, *OK_CL5_EVENTS],
         expects=(False, False), h11_differs=H11_NO_10_KEEP_ALIVE),
    case("http-1.0-close", response(b"HTTP/1.0 200 OK", CL5, content=b"hello") + OK_CL5,
         [head(200, b"OK", [F_CL5], version="1.0", keep_alive=False, content_length=5),
          body(b"hello"), END, PAUSE], expects=(False, False)),
    case("http-1.0-keep-alive-and-close",
         response(b"HTTP/1.0 200 OK", b"Connection: keep-alive, close", CL5, content=b"hello"),
         [head(200, b"OK", [(b"connection", b"keep-alive, close"), F_CL5], version="1.0",
               keep_alive=False, content_length=5), body(b"hello"), END, PAUSE]),
    # ---- Pipelined responses, in the order of the requests they answer.
    case("pipelined-mixed-head",
         OK_CL5 + cl(b"5", b"") + chunked(b"3\r\nabc\r\n0\r\n\r\n")
         + response(b"HTTP/1.1 304 Not Modified") + response(OK, TE_CHUNKED)
         + cl(b"2", b"ok"),
         [*OK_CL5_EVENTS, head(200, b"OK", [F_CL5], content_length=0), END,
          CHUNKED_HEAD, body(b"abc"), END, head(304, b"Not Modified", [], content_length=0),
          END, head(200, b"OK", [F_CHUNKED], content_length=0), END,
          head(200, b"OK", [(b"content-length", b"2")], content_length=2), body(b"ok"), END],
         expects=(False, True, False, False, True, False)),
    case("pipelined-then-eof", OK_CL5 + OK_CL5, [*OK_CL5_EVENTS, *OK_CL5_EVENTS, CLOSE],
         expects=(False, False), eof=True),
    # The server may close before answering every request: a clean close, and `outstanding`
    # tells the client how many went unanswered (test_outstanding_after_close).
    case("closed-before-second-response", OK_CL5, [*OK_CL5_EVENTS, CLOSE],
         expects=(False, False), eof=True, h11_differs=H11_UNANSWERED),
    case("no-response-at-all", b"", [CLOSE], eof=True, h11_differs=H11_UNANSWERED),
]

INVALID = [
    # ---- Status line (RFC 9112 §4).
    case("not-http", b"ICY 200 OK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("tls-alert", b"\x15\x03\x03\x00\x02\x02\x28", [error(R.INVALID_STATUS_LINE)]),
    case("lowercase-http-name", b"http/1.1 200 OK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("https-name", b"HTTPS/1.1 200 OK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    # RFC 9112 §2.2 lets a server skip empty lines before a request line; not a client.
    case("empty-line-first", b"\r\n" + OK_CL5, [error(R.INVALID_STATUS_LINE)]),
    case("empty-line-between", OK_CL5 + b"\r\n" + OK_CL5,
         [*OK_CL5_EVENTS, error(R.INVALID_STATUS_LINE)], expects=(False, False)),
    case("leading-space", b" HTTP/1.1 200 OK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("no-status-code", b"HTTP/1.1\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("tab-after-version", b"HTTP/1.1\t200 OK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("tab-after-status", b"HTTP/1.1 200\tOK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("nul-in-reason", b"HTTP/1.1 200 O\x00K\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("del-in-reason", b"HTTP/1.1 200 O\x7fK\r\n\r\n", [error(R.INVALID_STATUS_LINE)]),
    case("bare-cr-in-reason", b"HTTP/1.1 200 O\rK\r\n\r\n", [error(R.INVALID_LINE_ENDING)]),
    case("bare-cr-in-status", b"HTTP/1.1 2\r0 OK\r\n\r\n", [error(R.INVALID_LINE_ENDING)]),
    case("bare-lf-status-line", b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
         [error(R.INVALID_LINE_ENDING)]),
    case("bare-lf-first", b"\nHTTP/1.1 200 OK\r\n\r\n", [error(R.INVALID_LINE_ENDING)]),
    case("status-two-digits", b"HTTP/1.1 20 OK\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-two-digits-no-reason", b"HTTP/1.1 20\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-four-digits", b"HTTP/1.1 2000 OK\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-four-digits-no-reason", b"HTTP/1.1 2000\r\n\r\n",
         [error(R.INVALID_STATUS_CODE)]),
    case("status-099", b"HTTP/1.1 099 Low\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-000", b"HTTP/1.1 000 Zero\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-not-digits", b"HTTP/1.1 2x0 OK\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-signed", b"HTTP/1.1 +200 OK\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-two-spaces", b"HTTP/1.1  200 OK\r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("status-empty", b"HTTP/1.1 \r\n\r\n", [error(R.INVALID_STATUS_CODE)]),
    case("version-one-digit", b"HTTP/1 200 OK\r\n\r\n", [error(R.INVALID_HTTP_VERSION)]),
    case("version-cut", b"HTTP/1.\r\n\r\n", [error(R.INVALID_HTTP_VERSION)]),
    case("version-letters", b"HTTP/1.x 200 OK\r\n\r\n", [error(R.INVALID_HTTP_VERSION)]),
    case("version-two-digit-minor", b"HTTP/1.10 200 OK\r\n\r\n", [error(R.INVALID_HTTP_VERSION)]),
    case("version-2.0", b"HTTP/2.0 200 OK\r\n\r\n", [error(R.UNSUPPORTED_HTTP_VERSION)]),
    case("version-0.9", b"HTTP/0.9 200 OK\r\n\r\n", [error(R.UNSUPPORTED_HTTP_VERSION)]),
    case("status-line-too-long", b"HTTP/1.1 200 " + b"a" * 100 + b"\r\n\r\n",
         [error(R.STATUS_LINE_TOO_LONG)], max_request_line_size=64),
    # ---- Which request it answers.
    case("no-request-sent", OK_CL5, [error(R.UNEXPECTED_RESPONSE)], expects=()),
    case("more-responses-than-requests", OK_CL5 + OK_CL5,
         [*OK_CL5_EVENTS, error(R.UNEXPECTED_RESPONSE)]),
    case("1xx-does-not-answer", CONTINUE + OK_CL5 + CONTINUE,
         [CONTINUE_HEAD, *OK_CL5_EVENTS, error(R.UNEXPECTED_RESPONSE)]),
    # ---- Framing (RFC 9112 §6).
    case("cl-and-te", response(OK, CL5, TE_CHUNKED, content=b"5\r\nhello\r\n0\r\n\r\n"),
         [error(R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING)]),
    case("te-and-cl", response(OK, TE_CHUNKED, CL5, content=b"5\r\nhello\r\n0\r\n\r\n"),
         [error(R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING)]),
    # A sign of response splitting even where no body follows.
    case("cl-and-te-to-head", response(OK, CL5, TE_CHUNKED),
         [error(R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING)], expects=HEAD_REQ),
    case("te-in-http-1.0", response(b"HTTP/1.0 200 OK", TE_CHUNKED, content=b"0\r\n\r\n"),
         [error(R.INVALID_TRANSFER_ENCODING)]),
    case("te-chunked-twice", response(OK, b"Transfer-Encoding: chunked, chunked"),
         [error(R.INVALID_TRANSFER_ENCODING)]),
    case("te-chunked-twice-over-lines", response(OK, TE_CHUNKED, TE_CHUNKED),
         [error(R.INVALID_TRANSFER_ENCODING)]),
    case("te-chunked-twice-then-gzip", response(OK, b"Transfer-Encoding: chunked, chunked, gzip"),
         [error(R.INVALID_TRANSFER_ENCODING)]),
    case("te-parameter", response(OK, b"Transfer-Encoding: chunked;q=1"),
         [error(R.INVALID_TRANSFER_ENCODING)]),
    case("te-empty", response(OK, b"Transfer-Encoding: "), [error(R.INVALID_TRANSFER_ENCODING)]),
    case("cl-differing-values", response(OK, CL5, b"Content-Length: 6", content=b"hello!"),
         [error(R.CONFLICTING_CONTENT_LENGTH)]),
    case("cl-differing-list", response(OK, b"Content-Length: 5, 6", content=b"hello!"),
         [error(R.CONFLICTING_CONTENT_LENGTH)]),
    case("cl-differing-in-304", response(b"HTTP/1.1 304 Not Modified", CL5, b"Content-Length: 6"),
         [error(R.CONFLICTING_CONTENT_LENGTH)]),
    case("cl-not-digits", response(OK, b"Content-Length: five"), [error(R.INVALID_CONTENT_LENGTH)]),
    case("cl-negative", response(OK, b"Content-Length: -1"), [error(R.INVALID_CONTENT_LENGTH)]),
    case("cl-plus", response(OK, b"Content-Length: +5"), [error(R.INVALID_CONTENT_LENGTH)]),
    case("cl-empty", response(OK, b"Content-Length: "), [error(R.INVALID_CONTENT_LENGTH)]),
    case("cl-too-large", response(OK, b"Content-Length: 1234567890123456789"),
         [error(R.INVALID_CONTENT_LENGTH)]),
    # ---- Chunked bodies (RFC 9112 §7.1).
    case("chunk-size-not-hex", chunked(b"xyz\r\n"), [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-17-digits", chunked(b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-size-too-large", chunked(b"4000000000000000\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_SIZE)]),
    case("chunk-extension-bad", chunked(b"5;\r\nhello\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, error(R.INVALID_CHUNK_EXTENSION)]),
    case("chunk-data-too-long", chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, body(b"hello"), error(R.MISSING_CHUNK_DATA_TERMINATOR)]),
    case("chunk-data-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n"),
         [CHUNKED_HEAD, body(b"hello"), error(R.INVALID_LINE_ENDING)]),
    case("trailer-obs-fold", chunked(b"0\r\nX-T: a\r\n b\r\n\r\n"),
         [CHUNKED_HEAD, error(R.OBSOLETE_LINE_FOLDING)]),
    # ---- Header fields (RFC 9112 §5).
    case("obs-fold", response(OK, b"X-A: a", b" b", CL5, content=b"hello"),
         [error(R.OBSOLETE_LINE_FOLDING)]),
    case("obs-fold-tab", response(OK, b"X-A: a", b"\tb"), [error(R.OBSOLETE_LINE_FOLDING)]),
    case("space-before-first-field", response(OK, b" X-A: a"), [error(R.OBSOLETE_LINE_FOLDING)]),
    case("nul-in-value", response(OK, b"X-A: a\x00b"), [error(R.INVALID_HEADER_VALUE)]),
    case("ctl-in-value", response(OK, b"X-A: a\x01b"), [error(R.INVALID_HEADER_VALUE)]),
    case("cr-in-value", response(OK, b"X-A: a\rb"), [error(R.INVALID_LINE_ENDING)]),
    case("bare-lf-in-headers", b"HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 0\r\n\r\n",
         [error(R.INVALID_LINE_ENDING)]),
    case("bare-lf-end-of-head", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
         [error(R.INVALID_LINE_ENDING)]),
    case("space-before-colon", response(OK, b"Content-Length : 5"), [error(R.INVALID_HEADER_NAME)]),
    case("no-colon", response(OK, b"Content-Length 5"), [error(R.INVALID_HEADER_NAME)]),
    case("empty-name", response(OK, b": 5"), [error(R.INVALID_HEADER_NAME)]),
    case("non-token-name", response(OK, b"X(A): 5"), [error(R.INVALID_HEADER_NAME)]),
    # ---- Limits (the request parser's, under its names).
    case("headers-too-large", response(OK, b"X-A: " + b"a" * 100),
         [error(R.HEADERS_TOO_LARGE)], max_request_headers_size=64),
    case("headers-too-large-many-small", response(OK, *(b"X-%d: v" % i for i in range(10))),
         [error(R.HEADERS_TOO_LARGE)], max_request_headers_size=64),
    case("too-many-headers", response(OK, b"A: 1", b"B: 2", b"C: 3", b"D: 4"),
         [error(R.TOO_MANY_HEADERS)], max_request_headers=3),
    case("trailers-too-many", chunked(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
         [CHUNKED_HEAD, error(R.TOO_MANY_HEADERS)], max_request_headers=2),
    case("body-limit-content-length", cl(b"10", b"0123456789"),
         [head(200, b"OK", [(b"content-length", b"10")], content_length=10),
          error(R.BODY_TOO_LARGE)], max_request_body_size=5),
    case("body-limit-chunked", chunked(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"),
         [CHUNKED_HEAD, body(b"abc"), error(R.BODY_TOO_LARGE)], max_request_body_size=5),
    # Until EOF, the bytes up to the limit are delivered, then the error.
    case("body-limit-until-eof", response(OK, content=b"0123456789"),
         [head(200, b"OK", [], keep_alive=False), body(b"01234"), error(R.BODY_TOO_LARGE)],
         max_request_body_size=5),
    # ---- The server closes inside a response.
    case("eof-in-status-line", b"HTTP/1.1 2", [INCOMPLETE], eof=True),
    case("eof-in-headers", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", [INCOMPLETE], eof=True),
    case("eof-before-cl-body", cl(b"5", b""),
         [head(200, b"OK", [F_CL5], content_length=5), INCOMPLETE], eof=True),
    case("eof-in-cl-body", cl(b"5", b"hel"),
         [head(200, b"OK", [F_CL5], content_length=5), body(b"hel"), INCOMPLETE], eof=True),
    case("eof-in-chunk", chunked(b"5\r\nhel"), [CHUNKED_HEAD, body(b"hel"), INCOMPLETE],
         eof=True),
    case("eof-before-last-chunk", chunked(b"5\r\nhello\r\n"),
         [CHUNKED_HEAD, body(b"hello"), INCOMPLETE], eof=True),
    case("eof-in-trailers", chunked(b"0\r\nX-T: 1\r\n"), [CHUNKED_HEAD, INCOMPLETE], eof=True),
    case("eof-after-1xx", CONTINUE, [CONTINUE_HEAD, INCOMPLETE], eof=True),
    case("eof-in-final-after-1xx", CONTINUE + b"HTTP/1.1 200 OK\r\n",
         [CONTINUE_HEAD, INCOMPLETE], eof=True),
]
# fmt: on


# ---- Running the parser.

# A parser that never stops emitting events would hang the suite; no test input comes close.
MAX_EVENTS_PER_DRAIN = 10_000


def drain(parser: HttpResponseParser, events: list[Ev]) -> None:
    """Append normalized events until the parser needs data, pauses or reports CLOSED.

    Events: ("head", status, reason, http_version, headers, keep_alive, content_length,
    chunked), ("body", bytes) with consecutive pieces merged (how body bytes are cut depends
    on how the input was split), ("trailers", fields) before ("end",) when the response had
    trailers, ("paused",), ("closed",), and ("error", reason), after which nothing more is
    fed.
    """
    for _ in range(MAX_EVENTS_PER_DRAIN):
        event = parser.next_event()
        if event is NEED_DATA:
            return
        if event is PAUSED:
            # Still paused after more input is fed: that is one pause, not several.
            if not events or events[-1] != PAUSE:
                events.append(PAUSE)
            return
        if event is CLOSED:
            events.append(CLOSE)
            return
        if isinstance(event, ResponseHead):
            assert parser.head is event
            events.append(
                head(
                    event.status,
                    event.reason,
                    list(event.headers),
                    version=event.http_version,
                    keep_alive=event.keep_alive,
                    content_length=event.content_length,
                    chunked=event.chunked,
                )
            )
        elif isinstance(event, bytes):
            assert event, "an empty body piece"
            last = events[-1] if events else None
            if last is not None and last[0] == "body" and isinstance(last[1], bytes):
                events[-1] = body(last[1] + event)
            else:
                events.append(body(event))
        elif event is END_OF_MESSAGE:
            if parser.trailers:
                events.append(trailers(*parser.trailers))
            events.append(END)
        else:
            raise AssertionError(f"unexpected event {event!r}")
    raise AssertionError("the parser kept producing events without needing data")


def parse_all(
    parser: HttpResponseParser, chunks: Iterable[bytes], *, eof: bool = False
) -> list[Ev]:
    """Feed the chunks one by one, collecting normalized events after each (see drain())."""
    events: list[Ev] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            drain(parser, events)
        if eof:
            parser.feed_eof()
            drain(parser, events)
    except HttpParseError as err:
        # Whatever the reason, a response parser's error is what a gateway answers with 502.
        assert err.status == 502, err
        events.append(error(err.reason))
    return events


def pending_events(parser: HttpResponseParser) -> list[Ev]:
    """Normalized events from the bytes already fed, like parse_all."""
    events: list[Ev] = []
    try:
        drain(parser, events)
    except HttpParseError as err:
        assert err.status == 502, err
        events.append(error(err.reason))
    return events


def pieces(data: bytes, split: list[int]) -> list[bytes]:
    bounds = [0, *split, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def run(case: Case, chunks: Iterable[bytes], *, heads: bool = True) -> list[Ev]:
    parser = HttpResponseParser(heads=heads, **case.limits)
    for is_head in case.expects:
        parser.expect(is_head)
    events = parse_all(parser, chunks, eof=case.eof)
    assert parser.messages_completed == events.count(END)
    return events


def each_split(data: bytes) -> Iterator[tuple[list[int], list[bytes]]]:
    for split in cuts(data):
        yield split, pieces(data, split)


def case_name(case: Case) -> str:
    return case.name


# ---- The tables, at every split point.


@pytest.mark.parametrize("case", VALID, ids=case_name)
def test_valid_at_every_split(case: Case) -> None:
    for split, chunks in each_split(case.raw):
        assert run(case, chunks) == case.events, f"split at {split}"
    assert not any(event[0] == "error" for event in case.events)


@pytest.mark.parametrize("case", INVALID, ids=case_name)
def test_invalid_at_every_split(case: Case) -> None:
    assert case.events[-1][0] == "error"
    for split, chunks in each_split(case.raw):
        assert run(case, chunks) == case.events, f"split at {split}"


def framing_only(events: list[Ev]) -> list[Ev]:
    """The events of a parser made with heads=False: heads without reason or fields."""
    return [(*ev[:2], b"", *ev[3:4], [], *ev[5:]) if ev[0] == "head" else ev for ev in events]


@pytest.mark.parametrize("case", VALID, ids=case_name)
def test_valid_at_every_split_framing_only(case: Case) -> None:
    """heads=False frames every response as the full parser does (a whole head in one
    input takes the one-pass path, a split one the line machinery)."""
    for split, chunks in each_split(case.raw):
        assert run(case, chunks, heads=False) == framing_only(case.events), f"split at {split}"


@pytest.mark.parametrize("case", INVALID, ids=case_name)
def test_invalid_at_every_split_framing_only(case: Case) -> None:
    """heads=False keeps no fields, but refuses each of them as the full parser does, with
    the same reason, wherever the input is cut."""
    for split, chunks in each_split(case.raw):
        assert run(case, chunks, heads=False) == framing_only(case.events), f"split at {split}"


@pytest.mark.parametrize("case", INVALID, ids=case_name)
def test_error_is_final(case: Case) -> None:
    parser = HttpResponseParser(**case.limits)
    for is_head in case.expects:
        parser.expect(is_head)
    events = parse_all(parser, [case.raw], eof=case.eof)
    reason = events[-1][1]
    if not case.eof:
        parser.feed(OK_CL5)
    parser.expect()
    for _ in range(3):
        with pytest.raises(HttpParseError) as excinfo:
            parser.next_event()
        assert (excinfo.value.reason, excinfo.value.status) == (reason, 502)


def test_response_reasons_map_to_502() -> None:
    for reason in (R.INVALID_STATUS_LINE, R.INVALID_STATUS_CODE, R.STATUS_LINE_TOO_LONG):
        assert REJECT_STATUS[reason] == 502
    assert REJECT_STATUS[R.UNEXPECTED_RESPONSE] == 502


def test_error_details_say_why() -> None:
    parser = HttpResponseParser()
    parser.feed(OK_CL5)
    with pytest.raises(HttpParseError, match="no request outstanding"):
        parser.next_event()
    parser = HttpResponseParser(max_request_line_size=16)
    parser.expect()
    parser.feed(b"HTTP/1.1 200 " + b"a" * 20)
    with pytest.raises(HttpParseError, match="longer than max_request_line_size"):
        parser.next_event()
    parser = HttpResponseParser()
    parser.expect()
    parser.feed(b"HTTP/1.1 20 OK\r\n")
    with pytest.raises(HttpParseError, match="502 INVALID_STATUS_CODE: status code is not 3"):
        parser.next_event()


# ---- Scenarios.


def test_outstanding_counts_requests_without_a_final_response() -> None:
    parser = HttpResponseParser()
    assert parser.outstanding == 0
    assert parser.head is None
    parser.expect()
    parser.expect(head_request=True)
    assert parser.outstanding == 2
    parser.feed(CONTINUE)
    assert parser.next_event().status == 100  # type: ignore[union-attr]
    # A 1xx answers nothing yet.
    assert parser.outstanding == 2
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    assert parser.next_event().status == 200  # type: ignore[union-attr]
    # A final response's head takes its request.
    assert parser.outstanding == 1
    assert parser.messages_completed == 0
    assert parser.next_event() == b"hel"
    parser.feed(b"lo" + cl(b"5", b""))
    assert parser.outstanding == 1
    assert pending_events(parser) == [
        body(b"lo"),
        END,
        head(200, b"OK", [F_CL5], content_length=0),
        END,
    ]
    assert parser.outstanding == 0
    assert parser.messages_completed == 2


def test_outstanding_after_close() -> None:
    parser = HttpResponseParser()
    for _ in range(3):
        parser.expect()
    assert parse_all(parser, [OK_CL5], eof=True) == [*OK_CL5_EVENTS, CLOSE]
    # Two requests went unanswered: the client's to retry or count, not a parse error.
    assert parser.outstanding == 2
    assert parser.next_event() is CLOSED


def test_expect_between_responses() -> None:
    # A load generator registers each request as it sends it, after earlier responses began.
    parser = HttpResponseParser()
    parser.expect()
    parser.feed(OK_CL5[:20])
    assert parser.next_event() is NEED_DATA
    parser.expect(True)
    parser.feed(OK_CL5[20:] + cl(b"5", b""))
    assert pending_events(parser) == [
        *OK_CL5_EVENTS,
        head(200, b"OK", [F_CL5], content_length=0),
        END,
    ]


def test_after_101_nothing_is_parsed() -> None:
    parser = HttpResponseParser()
    parser.expect()
    parser.expect()
    raw = response(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket")
    assert [event[0] for event in parse_all(parser, [raw, OK_CL5])] == ["head", "end", "paused"]
    assert parser.outstanding == 1
    assert parser.next_event() is PAUSED
    # The bytes after the 101 are the new protocol's: left unread, so never CLOSED.
    parser.feed_eof()
    assert parser.next_event() is PAUSED


def test_close_delimited_body_ends_only_at_eof() -> None:
    parser = HttpResponseParser()
    parser.expect()
    assert parse_all(parser, [response(OK, content=b"a")]) == [
        head(200, b"OK", [], keep_alive=False),
        body(b"a"),
    ]
    assert parser.messages_completed == 0
    assert parse_all(parser, [b"b" * 100_000]) == [body(b"b" * 100_000)]
    parser.feed_eof()
    assert pending_events(parser) == [END, CLOSE]
    assert parser.messages_completed == 1


def test_body_limit_raised_after_head() -> None:
    parser = HttpResponseParser(max_request_body_size=4)
    parser.expect()
    parser.feed(response(OK, content=b"0123456789"))
    assert isinstance(parser.next_event(), ResponseHead)
    parser.max_request_body_size = 100
    parser.feed_eof()
    assert pending_events(parser) == [body(b"0123456789"), END, CLOSE]


def test_body_limit_lowered_below_what_was_read() -> None:
    parser = HttpResponseParser()
    parser.expect()
    assert parse_all(parser, [response(OK, content=b"0123456789")]) == [
        head(200, b"OK", [], keep_alive=False),
        body(b"0123456789"),
    ]
    parser.max_request_body_size = 4
    assert parse_all(parser, [b"more"]) == [error(R.BODY_TOO_LARGE)]


def test_unlimited_body_by_default() -> None:
    parser = HttpResponseParser()
    assert parser.max_request_body_size == -1
    parser.expect()
    assert parse_all(parser, [cl(b"999999999999999999", b"abc")]) == [
        head(200, b"OK", [(b"content-length", b"999999999999999999")],
             content_length=999999999999999999),
        body(b"abc"),
    ]  # fmt: skip


def test_trailers_belong_to_their_response() -> None:
    parser = HttpResponseParser()
    parser.expect()
    parser.expect()
    events = parse_all(parser, [chunked(b"0\r\nX-T: 1\r\n\r\n") + OK_CL5])
    assert events == [CHUNKED_HEAD, trailers((b"x-t", b"1")), END, *OK_CL5_EVENTS]
    assert parser.trailers == []


def test_reason_phrases_are_shared_or_copied() -> None:
    parser = HttpResponseParser()
    for _ in range(3):
        parser.expect()
    parser.feed(cl(b"0", b"") + cl(b"0", b"", b"HTTP/1.1 200 Fine"))
    parser.feed(cl(b"0", b"", b"HTTP/1.1 200"))
    reasons = []
    for _ in range(3):
        event = parser.next_event()
        assert isinstance(event, ResponseHead)
        reasons.append(event.reason)
        assert parser.next_event() is END_OF_MESSAGE
    assert reasons == [b"OK", b"Fine", b""]


def test_feed_after_eof_is_refused() -> None:
    parser = HttpResponseParser()
    parser.feed_eof()
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        HttpResponseParser(max_request_line_size=8)
    with pytest.raises(ValueError):
        HttpResponseParser(max_request_body_size=-2)


# ---- The queue of requests: any depth, any interleaving.


def numbered_response(index: int, is_head: bool) -> tuple[bytes, list[Ev]]:
    """A keep-alive response whose body says which it is, and its events."""
    content = b"%d" % index
    fields = [(b"content-length", b"%d" % len(content))]
    if is_head:
        return cl(fields[0][1], b""), [head(200, b"OK", fields, content_length=0), END]
    raw = cl(fields[0][1], content)
    return raw, [head(200, b"OK", fields, content_length=len(content)), body(content), END]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.booleans(), min_size=0, max_size=40), st.integers(0, 40)),
        min_size=1,
        max_size=8,
    )
)
def test_expectations_in_any_interleaving(steps: list[tuple[list[bool], int]]) -> None:
    """Steps of (register these requests, then receive up to n responses): the ring of
    "is HEAD" flags wraps and grows at every position, and each response is framed by its
    own request."""
    parser = HttpResponseParser()
    flags: list[bool] = []
    answered = 0
    for new, n in steps:
        for flag in new:
            parser.expect(flag)
        flags += new
        n = min(n, len(flags) - answered)
        raw = b""
        expected: list[Ev] = []
        for index in range(answered, answered + n):
            one, events = numbered_response(index, flags[index])
            raw += one
            expected += events
        answered += n
        assert parse_all(parser, [raw]) == expected
        assert parser.outstanding == len(flags) - answered


# ---- Generated responses, against a model of what they are.

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = st.text(alphabet=TCHARS, min_size=1, max_size=12)
# Field values and reason phrases: HTAB, SP, VCHAR, obs-text; no OWS at either end.
VALUE = st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c <= 126 or c >= 128).strip(b" \t")
)
FRAMING_NAMES = {"content-length", "transfer-encoding", "connection"}
FIELDS = st.lists(
    st.tuples(TOKEN.filter(lambda name: name.lower() not in FRAMING_NAMES), VALUE), max_size=5
).map(lambda fields: [(name.encode(), value) for name, value in fields])


def wire(version: str, status: int, reason: bytes, fields: Fields, content: bytes) -> bytes:
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    return b"HTTP/%s %d %s\r\n%s\r\n%s" % (version.encode(), status, reason, lines, content)


@st.composite
def informational(draw: st.DrawFn) -> tuple[bytes, list[Ev]]:
    """A 1xx (not 101) and its events."""
    status = draw(st.sampled_from([100, 102, 103, 199]))
    reason = draw(VALUE)
    fields = draw(FIELDS)
    lowered = [(name.lower(), value) for name, value in fields]
    return wire("1.1", status, reason, fields, b""), [
        head(status, reason, lowered, content_length=0)
    ]


@st.composite
def exchange(draw: st.DrawFn) -> tuple[bytes, bool, list[Ev], bool]:
    """One request's responses: (raw, is HEAD, events, ends the connection)."""
    raw = b""
    events: list[Ev] = []
    for one, more in draw(st.lists(informational(), max_size=2)):
        raw += one
        events += more
    status = draw(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 599, 999]))
    version = draw(st.sampled_from(["1.0", "1.1"]))
    is_head = draw(st.booleans())
    reason = draw(VALUE)
    fields = draw(FIELDS)
    close = draw(st.booleans())
    if close:
        fields.append((b"Connection", b"close"))
    elif version == "1.0":
        fields.append((b"Connection", b"keep-alive"))
    content = draw(st.binary(max_size=60))
    framing = draw(st.sampled_from(["length", "chunked", "eof"] if version == "1.1"
                                   else ["length", "eof"]))  # fmt: skip
    no_body = is_head or status in (204, 304)
    wire_body = content
    if framing == "length":
        fields.append((b"Content-Length", b"%d" % len(content)))
    elif framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
        bounds = sorted({0, len(content), *draw(st.sets(st.integers(0, len(content)), max_size=4))})
        wire_body = b""
        for a, b in itertools.pairwise(bounds):
            ext = draw(st.sampled_from([b"", b";a", b';a="b c"', b" ; x = y"]))
            wire_body += b"%x%s\r\n%s\r\n" % (b - a, ext, content[a:b])
        trailer = draw(st.sampled_from([b"", b"X-Trailer: t\r\n"]))
        wire_body += b"0\r\n" + trailer + b"\r\n"
    raw += wire(version, status, reason, fields, b"" if no_body else wire_body)
    until_eof = framing == "eof" and not no_body
    events.append(
        head(
            status,
            reason,
            [(name.lower(), value) for name, value in fields],
            version=version,
            keep_alive=not close and not until_eof,
            content_length=0 if no_body else len(content) if framing == "length" else -1,
            chunked=framing == "chunked" and not no_body,
        )
    )
    if content and not no_body:
        events.append(body(content))
    if framing == "chunked" and not no_body and trailer:
        events.append(trailers((b"x-trailer", b"t")))
    events.append(END)
    if close and not until_eof:
        # The head says the connection ends; the parser pauses before EOF is fed.
        events.append(PAUSE)
    return raw, is_head, events, close or until_eof


@pytest.mark.parametrize("heads", [True, False])
@settings(max_examples=300, deadline=None)
@given(st.lists(exchange(), min_size=1, max_size=4), st.data())
def test_generated_responses(
    heads: bool, exchanges: list[tuple[bytes, bool, list[Ev], bool]], data: st.DataObject
) -> None:
    """Pipelined responses (each after any 1xx), cut anywhere, then the server's close;
    with heads=False, the same framing."""
    parser = HttpResponseParser(heads=heads)
    raw = b""
    expected: list[Ev] = []
    for one, is_head, events, ends in exchanges:
        parser.expect(is_head)
        raw += one
        expected += events
        if ends:
            break
    expected.append(CLOSE)
    split = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=6)))
    if not heads:
        expected = framing_only(expected)
    assert parse_all(parser, pieces(raw, split), eof=True) == expected


# Responses of nginx's and kestrel's shape, then bytes to change in them.
SHAPES = [
    response(OK, b"Server: nginx", b"Date: Sun, 06 Dec 2026 02:53:32 GMT",
             b"Content-Type: text/plain", b"Content-Length: 13", b"Connection: keep-alive",
             content=b"Hello, World!"),
    response(b"HTTP/1.0 404 Not Found", b"Connection: keep-alive", b"content-length: 2",
             content=b"no"),
    chunked(b"5\r\nhello\r\n0\r\n\r\n", b"Upgrade: h2c", b"X-A:\tb \t"),
    response(b"HTTP/1.1 204", b"Transfer-Encoding: gzip, chunked"),
]  # fmt: skip
EDIT_BYTES = b"\r\n \t:,;\x00\x7f\x80aZ019-"


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(SHAPES),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(EDIT_BYTES), st.booleans()),
             min_size=1, max_size=3),
    st.integers(0, 2),
    st.booleans(),
)  # fmt: skip
def test_framing_only_agrees_on_edited_responses(
    raw: bytes, edits: list[tuple[int, int, bool]], head_flags: int, eof: bool
) -> None:
    """Any response with a byte changed or inserted (most of them malformed: a bare CR or
    LF, a control byte, a broken name, status line or Content-Length) is framed, accepted
    or refused alike, with the same reason, by heads=False and by the full parser, whole
    and cut in two."""
    data = bytearray(raw)
    for at, byte, insert in edits:
        at %= len(data) + 1
        if insert or at == len(data):
            data.insert(at, byte)
        else:
            data[at] = byte
    edited = bytes(data)
    for split in ([], [len(edited) // 2]):
        results = []
        for heads in (True, False):
            parser = HttpResponseParser(heads=heads)
            parser.expect(head_flags == 1)
            parser.expect(head_flags == 2)
            results.append(parse_all(parser, pieces(edited, split), eof=eof))
        assert results[1] == framing_only(results[0]), (edited, split)


# ---- Differential: h11 as the client, on the valid table.


def h11_events(case: Case) -> list[Ev]:
    """The case's responses as h11 reports them, normalized like drain(): one request per
    `expects` entry, sent when the previous cycle is done (h11 does not pipeline)."""
    conn = h11.Connection(h11.CLIENT)
    requests = list(case.expects)
    events: list[Ev] = []

    def send_next() -> None:
        method = "HEAD" if requests.pop(0) else "GET"
        # h11 takes a 101 as switching protocols only if the request asked for an upgrade.
        asks = b" 101 " in case.raw
        upgrade = [("Connection", "upgrade"), ("Upgrade", "websocket")] if asks else []
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x"), *upgrade]))
        conn.send(h11.EndOfMessage())

    send_next()
    conn.receive_data(case.raw)
    if case.eof:
        conn.receive_data(b"")
    for _ in range(MAX_EVENTS_PER_DRAIN):
        if conn.their_state is h11.MUST_CLOSE and conn.trailing_data[0]:
            # h11 would fail on the bytes after a response that ends the connection; here
            # the parser pauses before them. Either way the response was the last.
            events.append(PAUSE)
            return events
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return events
        if event is h11.PAUSED:
            if conn.their_state is h11.DONE and requests:
                conn.start_next_cycle()
                send_next()
                continue
            events.append(PAUSE)
            return events
        if isinstance(event, h11.ConnectionClosed):
            events.append(CLOSE)
            return events
        if isinstance(event, (h11.Response, h11.InformationalResponse)):
            events.append(
                head(
                    event.status_code,
                    event.reason,
                    list(event.headers),
                    version=event.http_version.decode(),
                    # Filled in at the end of the message, from h11's state.
                    keep_alive=False,
                    content_length=0,
                )
            )
            if event.status_code == 101:
                # h11 switches protocols at a 101's head; here the 101 is a message that ends.
                events.append(END)
        elif isinstance(event, h11.Data):
            last = events[-1]
            if last[0] == "body":
                events[-1] = body(last[1] + event.data)  # type: ignore[operator]
            else:
                events.append(body(bytes(event.data)))
        elif isinstance(event, h11.EndOfMessage):
            if event.headers:
                events.append(trailers(*event.headers))
            events.append(END)
            if conn.their_state is h11.DONE and requests:
                conn.start_next_cycle()
                send_next()
        else:
            raise AssertionError(f"unexpected h11 event {event!r}")
    raise AssertionError("h11 kept producing events")


def comparable(events: list[Ev]) -> list[Ev]:
    """What h11 can be compared on: heads without keep_alive, content_length and chunked
    (h11 reports none of them), body bytes, trailers and ends, pauses and closes; a pause
    after a 101 or a response that ends the connection is h11's PAUSED or NEED_DATA."""
    out: list[Ev] = []
    for event in events:
        if event[0] == "head":
            out.append(event[:5])
        elif event != PAUSE:
            out.append(event)
    return out


H11_CASES = [c for c in VALID if c.h11_differs is None]


@pytest.mark.parametrize("case", H11_CASES, ids=case_name)
def test_same_as_h11(case: Case) -> None:
    assert comparable(h11_events(case)) == comparable(case.events)


def test_every_h11_difference_has_a_rule() -> None:
    rules = {H11_TE, H11_NO_10_KEEP_ALIVE, H11_MINOR, H11_CL_LIST, H11_BWS, H11_UNANSWERED}
    assert {c.h11_differs for c in VALID} - {None} == rules
