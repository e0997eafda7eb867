"""Table-driven tests of the request parser against the rules in docs/parser.md.

Modeled on h11's tests: every case is parsed from the whole input, from the input split at
every byte offset into two pieces, one byte at a time, and followed by a pipelined second
request. Splitting must never change what the parser reports, so all those runs are compared
with the same expectation. Events are normalized by parse_all() below.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel._core import (
    CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    REJECT_STATUS,
    HttpParseError,
    HttpParser,
    RejectReason,
    RequestHead,
)

R = RejectReason

# A normalized event (see parse_all).
Ev = tuple[object, ...]
Fields = list[tuple[bytes, bytes]]


def head(
    method: str,
    target: bytes,
    headers: Fields,
    *,
    version: str = "1.1",
    keep_alive: bool = True,
    content_length: int = -1,
    chunked: bool = False,
    upgrade: bool = False,
    expect_continue: bool = False,
) -> Ev:
    return (
        "head",
        method,
        target,
        version,
        headers,
        keep_alive,
        content_length,
        chunked,
        upgrade,
        expect_continue,
    )


def body(data: bytes) -> Ev:
    return ("body", data)


def trailers(*fields: tuple[bytes, bytes]) -> Ev:
    return ("trailers", list(fields))


def error(reason: RejectReason, status: int) -> Ev:
    return ("error", reason, status)


END: Ev = ("end",)
PAUSE: Ev = ("paused",)
CLOSE: Ev = ("closed",)


def request(start_line: bytes, *field_lines: bytes, content: bytes = b"") -> bytes:
    """Raw request bytes: the lines joined with CRLF, the empty line, then the content."""
    return b"".join(line + b"\r\n" for line in (start_line, *field_lines)) + b"\r\n" + content


GET = b"GET / HTTP/1.1"
POST = b"POST / HTTP/1.1"
H_X = (b"host", b"x")
TE_CHUNKED = (b"transfer-encoding", b"chunked")
GET_X = head("GET", b"/", [H_X])
CHUNKED_POST = head("POST", b"/", [H_X, TE_CHUNKED], chunked=True)


def chunked(content: bytes) -> bytes:
    """A chunked POST whose body bytes (chunks and trailers) are `content`."""
    return request(POST, b"Host: x", b"Transfer-Encoding: chunked", content=content)


def cl_post(value: bytes, content: bytes) -> bytes:
    return request(POST, b"Host: x", b"Content-Length: " + value, content=content)


def cl_head(value: bytes, length: int) -> Ev:
    return head("POST", b"/", [H_X, (b"content-length", value)], content_length=length)


NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
NEXT_EVENTS = [head("GET", b"/next", [H_X]), END]

BROWSER_FIELDS = [
    (b"Host", b"www.example.com"),
    (b"Connection", b"keep-alive"),
    (b"Cache-Control", b"max-age=0"),
    (b"sec-ch-ua", b'"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'),
    (b"sec-ch-ua-mobile", b"?0"),
    (b"sec-ch-ua-platform", b'"Linux"'),
    # Not an upgrade request, whatever the name suggests.
    (b"Upgrade-Insecure-Requests", b"1"),
    (
        b"User-Agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        b"Accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    (b"Sec-Fetch-Site", b"none"),
    (b"Sec-Fetch-Mode", b"navigate"),
    (b"Sec-Fetch-User", b"?1"),
    (b"Sec-Fetch-Dest", b"document"),
    (b"Accept-Encoding", b"gzip, deflate, br, zstd"),
    (b"Accept-Language", b"en-US,en;q=0.9"),
    (b"Cookie", b"session=abc123; theme=dark"),
]
BROWSER_GET = request(b"GET /index.html?q=1 HTTP/1.1", *(n + b": " + v for n, v in BROWSER_FIELDS))
BROWSER_HEAD = head("GET", b"/index.html?q=1", [(n.lower(), v) for n, v in BROWSER_FIELDS])

# The size limit on the request line does not count its CRLF.
LONG_LINE = b"GET /" + b"a" * 50 + b" HTTP/1.1"
PRINTABLE_ASCII = bytes(range(0x21, 0x7F))
# A request-target has no fragment, so no "#" (RFC 9112 §3.2).
TARGET_BYTES = PRINTABLE_ASCII.replace(b"#", b"")
# The start of a TLS 1.2/1.3 ClientHello record: handshake (0x16), TLS 1.0 record version,
# length, ClientHello (0x01), its length and client_version 3.3 (RFC 8446 §5.1, §4.1.2).
TLS_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n"
TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Accept:
    name: str
    raw: bytes
    events: list[Ev]
    limits: dict[str, int] = field(default_factory=dict)


def accept(name: str, raw: bytes, events: list[Ev], **limits: int) -> Accept:
    return Accept(name, raw, events, limits)


# fmt: off
ACCEPT = [
    # ---- Request line.
    accept("simple-get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", [GET_X, END]),
    accept("browser-get", BROWSER_GET, [BROWSER_HEAD, END]),
    accept("head", b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("HEAD", b"/index.html", [H_X]), END]),
    accept("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("OPTIONS", b"*", [H_X]), END]),
    accept("options-origin-form", b"OPTIONS /a HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("OPTIONS", b"/a", [H_X]), END]),
    accept("absolute-form",
           b"GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n",
           [head("GET", b"http://example.com/a?b=c", [(b"host", b"example.com")]), END]),
    accept("absolute-form-https-port",
           b"GET https://example.com:8443/ HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
           [head("GET", b"https://example.com:8443/", [(b"host", b"example.com:8443")]), END]),
    accept("connect-authority-form",
           b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
           [head("CONNECT", b"example.com:443", [(b"host", b"example.com:443")], upgrade=True),
            END, PAUSE]),
    accept("connect-ipv6", b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
           [head("CONNECT", b"[::1]:8080", [(b"host", b"[::1]:8080")], upgrade=True),
            END, PAUSE]),
    # Methods are case-sensitive tokens: "get" is an unknown method, for the server to refuse.
    accept("method-lowercase", b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("get", b"/", [H_X]), END]),
    accept("method-extension", b"PROPFIND /d HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("PROPFIND", b"/d", [H_X]), END]),
    accept("method-all-tchars", TCHARS + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
           [head(TCHARS.decode(), b"/", [H_X]), END]),
    accept("target-all-printable-ascii-but-hash",
           b"GET /" + TARGET_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("GET", b"/" + TARGET_BYTES, [H_X]), END]),
    accept("target-percent-encoded-hash", b"GET /a%23b?c=%23 HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("GET", b"/a%23b?c=%23", [H_X]), END]),
    accept("http-1.2-served-as-1.1", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", [GET_X, END]),
    accept("http-1.9-served-as-1.1", b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", [GET_X, END]),
    accept("leading-crlf", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", [GET_X, END]),
    accept("leading-crlfs", b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", [GET_X, END]),
    accept("two-requests-in-one-input",
           b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + cl_post(b"3", b"abc"),
           [head("GET", b"/a", [H_X]), END, cl_head(b"3", 3), body(b"abc"), END]),
    # ---- Header fields.
    accept("header-names-lowercased", request(GET, b"HoSt: x", b"X-MiXeD-CaSe: VaLuE"),
           [head("GET", b"/", [H_X, (b"x-mixed-case", b"VaLuE")]), END]),
    accept("header-name-all-tchars", request(GET, b"Host: x", TCHARS + b": v"),
           [head("GET", b"/", [H_X, (TCHARS.lower(), b"v")]), END]),
    accept("repeated-headers-kept-in-order",
           request(GET, b"Accept: a", b"Host: x", b"X-A: 1", b"Accept: b", b"x-a: 2"),
           [head("GET", b"/", [(b"accept", b"a"), H_X, (b"x-a", b"1"), (b"accept", b"b"),
                               (b"x-a", b"2")]), END]),
    accept("empty-header-value", request(GET, b"Host: x", b"X-Empty:"),
           [head("GET", b"/", [H_X, (b"x-empty", b"")]), END]),
    accept("ows-only-header-value", request(GET, b"Host: x", b"X-Empty: \t "),
           [head("GET", b"/", [H_X, (b"x-empty", b"")]), END]),
    accept("ows-stripped-sp", request(GET, b"Host: x", b"X-A:   v   "),
           [head("GET", b"/", [H_X, (b"x-a", b"v")]), END]),
    accept("ows-stripped-htab", request(GET, b"Host: x", b"X-A:\t\tv\t\t"),
           [head("GET", b"/", [H_X, (b"x-a", b"v")]), END]),
    accept("no-ows", request(GET, b"Host:x", b"X-A:v"),
           [head("GET", b"/", [H_X, (b"x-a", b"v")]), END]),
    accept("inner-whitespace-kept", request(GET, b"Host: x", b"X-A: a \t b"),
           [head("GET", b"/", [H_X, (b"x-a", b"a \t b")]), END]),
    accept("obs-text-in-value", request(GET, b"Host: x", b"X-A: caf\xc3\xa9 \x80\xff"),
           [head("GET", b"/", [H_X, (b"x-a", b"caf\xc3\xa9 \x80\xff")]), END]),
    accept("all-vchars-in-value", request(GET, b"Host: x", b"X-A: " + PRINTABLE_ASCII),
           [head("GET", b"/", [H_X, (b"x-a", PRINTABLE_ASCII)]), END]),
    accept("header-count-at-limit", request(GET, b"Host: x", b"X-A: 1", b"X-B: 2"),
           [head("GET", b"/", [H_X, (b"x-a", b"1"), (b"x-b", b"2")]), END],
           max_request_headers=3),
    # "the header section (all field lines with their CRLFs) at most max_request_headers_size"
    accept("header-section-at-size-limit", request(GET, b"Host: x", b"X-A: 123"),
           [head("GET", b"/", [H_X, (b"x-a", b"123")]), END],
           max_request_headers_size=len(b"Host: x\r\nX-A: 123\r\n")),
    accept("request-line-at-limit", request(LONG_LINE, b"Host: x"),
           [head("GET", LONG_LINE[4:-9], [H_X]), END], max_request_line_size=len(LONG_LINE)),
    accept("request-line-under-limit-with-leading-crlfs",
           b"\r\n" * 10 + b"GET /abc HTTP/1.1\r\nHost: x\r\n\r\n",
           [head("GET", b"/abc", [H_X]), END], max_request_line_size=64),
    # ---- Host.
    accept("host-with-port", request(GET, b"Host: example.com:8080"),
           [head("GET", b"/", [(b"host", b"example.com:8080")]), END]),
    accept("host-ipv6", request(GET, b"Host: [2001:db8::1]:80"),
           [head("GET", b"/", [(b"host", b"[2001:db8::1]:80")]), END]),
    accept("host-allowed-punctuation", request(GET, b"Host: a-b.c_d~e%41!$&'()*+;=:1"),
           [head("GET", b"/", [(b"host", b"a-b.c_d~e%41!$&'()*+;=:1")]), END]),
    accept("host-ows-stripped", request(GET, b"Host: \tx \t"), [GET_X, END]),
    # ---- Content-Length.
    accept("post-content-length", cl_post(b"5", b"hello"), [cl_head(b"5", 5), body(b"hello"), END]),
    accept("get-with-body", request(GET, b"Host: x", b"Content-Length: 2", content=b"hi"),
           [head("GET", b"/", [H_X, (b"content-length", b"2")], content_length=2), body(b"hi"),
            END]),
    accept("cl-zero", cl_post(b"0", b""), [cl_head(b"0", 0), END]),
    accept("cl-leading-zeros", cl_post(b"005", b"hello"),
           [cl_head(b"005", 5), body(b"hello"), END]),
    accept("cl-18-digits-of-leading-zeros", cl_post(b"000000000000000005", b"hello"),
           [cl_head(b"000000000000000005", 5), body(b"hello"), END]),
    accept("cl-list-identical", cl_post(b"5, 5", b"hello"),
           [cl_head(b"5, 5", 5), body(b"hello"), END]),
    accept("cl-list-identical-no-space", cl_post(b"5,5", b"hello"),
           [cl_head(b"5,5", 5), body(b"hello"), END]),
    accept("cl-repeated-identical-header",
           request(POST, b"Host: x", b"Content-Length: 5", b"Content-Length: 5", content=b"hello"),
           [head("POST", b"/", [H_X, (b"content-length", b"5"), (b"content-length", b"5")],
                 content_length=5), body(b"hello"), END]),
    accept("cl-ows", cl_post(b"\t5 \t", b"hello"), [cl_head(b"5", 5), body(b"hello"), END]),
    accept("cl-binary-body", cl_post(b"6", b"\x00\r\n\xff\n\r"),
           [cl_head(b"6", 6), body(b"\x00\r\n\xff\n\r"), END]),
    # The body is data, however much it looks like a request.
    accept("cl-body-looks-like-request", cl_post(b"18", b"GET / HTTP/1.1\r\n\r\n"),
           [cl_head(b"18", 18), body(b"GET / HTTP/1.1\r\n\r\n"), END]),
    accept("cl-body-at-limit", cl_post(b"5", b"hello"), [cl_head(b"5", 5), body(b"hello"), END],
           max_request_body_size=5),
    # ---- Chunked.
    accept("chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n"), [CHUNKED_POST, body(b"hello"), END]),
    accept("chunked-empty-body", chunked(b"0\r\n\r\n"), [CHUNKED_POST, END]),
    accept("chunked-multiple-chunks", chunked(b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello world"), END]),
    accept("chunk-size-uppercase-hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"0123456789"), END]),
    accept("chunk-size-lowercase-hex", chunked(b"a\r\n0123456789\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"0123456789"), END]),
    accept("chunk-size-mixed-case-hex", chunked(b"1a\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"z" * 26), END]),
    accept("chunk-size-leading-zeros", chunked(b"0005\r\nhello\r\n000\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-size-16-digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-data-with-crlf", chunked(b"4\r\n\r\n\r\n\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"\r\n\r\n"), END]),
    accept("chunk-ext-token", chunked(b"5;foo\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-token-value", chunked(b"5;foo=bar\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-several", chunked(b"5;a=b;c;d=e\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-quoted", chunked(b'5;a="b c;d=e,f"\r\nhello\r\n0\r\n\r\n'),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-quoted-escapes", chunked(b'5;a="x\\"y\\\\z\\q"\r\nhello\r\n0\r\n\r\n'),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-quoted-empty", chunked(b'5;a=""\r\nhello\r\n0\r\n\r\n'),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-quoted-obs-text", chunked(b'5;a="\xc3\xa9"\r\nhello\r\n0\r\n\r\n'),
           [CHUNKED_POST, body(b"hello"), END]),
    # chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), RFC 9112 §7.1.1.
    accept("chunk-ext-bws-after-semicolon", chunked(b"5; name; param=value\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-bws-before-semicolon", chunked(b"5 ;name\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-bws-around-equals", chunked(b"5;a = b ;c= d;e =f\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-bws-htab-and-runs",
           chunked(b'5\t ;\t a \t=\t "q" \t;b\r\nhello\r\n0 ; last\r\n\r\n'),
           [CHUNKED_POST, body(b"hello"), END]),
    # BWS counts towards the extension limit like any other extension byte.
    accept("chunk-ext-bws-at-limit", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END], max_chunk_extensions_size=8),
    accept("chunk-ext-on-last-chunk", chunked(b"5\r\nhello\r\n0;done=1\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END]),
    accept("chunk-ext-under-limit", chunked(b"5;a=b\r\nhello\r\n5;c=d\r\nworld\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"helloworld"), END], max_chunk_extensions_size=64),
    accept("chunked-trailers",
           chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\t v \t\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), trailers((b"x-checksum", b"abc"), (b"x-other", b"v")),
            END]),
    accept("chunked-trailers-repeated", chunked(b"0\r\nX-T: 1\r\nx-t: 2\r\n\r\n"),
           [CHUNKED_POST, trailers((b"x-t", b"1"), (b"x-t", b"2")), END]),
    accept("chunked-body-at-limit", chunked(b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"),
           [CHUNKED_POST, body(b"hello"), END], max_request_body_size=5),
    accept("te-uppercase", request(POST, b"Host: x", b"Transfer-Encoding: CHUNKED",
                                   content=b"0\r\n\r\n"),
           [head("POST", b"/", [H_X, (b"transfer-encoding", b"CHUNKED")], chunked=True), END]),
    accept("te-ows", request(POST, b"Host: x", b"Transfer-Encoding: \tchunked \t",
                             content=b"0\r\n\r\n"),
           [CHUNKED_POST, END]),
    accept("te-empty-list-elements", request(POST, b"Host: x", b"Transfer-Encoding: , chunked ,",
                                             content=b"0\r\n\r\n"),
           [head("POST", b"/", [H_X, (b"transfer-encoding", b", chunked ,")], chunked=True), END]),
    # ---- HTTP/1.0 and connection state.
    accept("http10-closes", b"GET / HTTP/1.0\r\n\r\n",
           [head("GET", b"/", [], version="1.0", keep_alive=False), END, PAUSE]),
    accept("http10-with-host", b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
           [head("GET", b"/", [H_X], version="1.0", keep_alive=False), END, PAUSE]),
    accept("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
           [head("GET", b"/", [(b"connection", b"keep-alive")], version="1.0"), END]),
    accept("http10-keep-alive-mixed-case", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
           [head("GET", b"/", [(b"connection", b"Keep-Alive")], version="1.0"), END]),
    accept("http10-body-then-close", b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
           [head("POST", b"/", [(b"content-length", b"3")], version="1.0", keep_alive=False,
                 content_length=3), body(b"abc"), END, PAUSE]),
    accept("connection-keep-alive-http11", request(GET, b"Host: x", b"Connection: keep-alive"),
           [head("GET", b"/", [H_X, (b"connection", b"keep-alive")]), END]),
    accept("connection-close", request(GET, b"Host: x", b"Connection: close"),
           [head("GET", b"/", [H_X, (b"connection", b"close")], keep_alive=False), END, PAUSE]),
    accept("connection-close-mixed-case", request(GET, b"Host: x", b"Connection: Close"),
           [head("GET", b"/", [H_X, (b"connection", b"Close")], keep_alive=False), END, PAUSE]),
    accept("connection-list-with-close", request(GET, b"Host: x", b"Connection: foo, close"),
           [head("GET", b"/", [H_X, (b"connection", b"foo, close")], keep_alive=False), END,
            PAUSE]),
    accept("connection-close-after-body",
           request(POST, b"Host: x", b"Connection: close", b"Content-Length: 2", content=b"ab"),
           [head("POST", b"/", [H_X, (b"connection", b"close"), (b"content-length", b"2")],
                 keep_alive=False, content_length=2), body(b"ab"), END, PAUSE]),
    accept("upgrade-websocket",
           request(b"GET /chat HTTP/1.1", b"Host: x", b"Connection: Upgrade",
                   b"Upgrade: websocket"),
           [head("GET", b"/chat", [H_X, (b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
                 upgrade=True), END, PAUSE]),
    accept("upgrade-connection-list",
           request(GET, b"Host: x", b"Connection: keep-alive, upgrade", b"Upgrade: foo/2"),
           [head("GET", b"/", [H_X, (b"connection", b"keep-alive, upgrade"),
                               (b"upgrade", b"foo/2")], upgrade=True), END, PAUSE]),
    accept("upgrade-h2c-after-body",
           request(POST, b"Host: x", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                   b"HTTP2-Settings: AAMAAABkAAQAAP__", b"Content-Length: 3", content=b"abc"),
           [head("POST", b"/", [H_X, (b"connection", b"Upgrade, HTTP2-Settings"),
                                (b"upgrade", b"h2c"), (b"http2-settings", b"AAMAAABkAAQAAP__"),
                                (b"content-length", b"3")], content_length=3, upgrade=True),
            body(b"abc"), END, PAUSE]),
    accept("upgrade-header-without-connection-upgrade",
           request(GET, b"Host: x", b"Upgrade: websocket"),
           [head("GET", b"/", [H_X, (b"upgrade", b"websocket")]), END]),
    accept("connection-upgrade-without-upgrade-header",
           request(GET, b"Host: x", b"Connection: upgrade"),
           [head("GET", b"/", [H_X, (b"connection", b"upgrade")]), END]),
    accept("expect-100-continue",
           request(POST, b"Host: x", b"Expect: 100-continue", b"Content-Length: 2", content=b"ok"),
           [head("POST", b"/", [H_X, (b"expect", b"100-continue"), (b"content-length", b"2")],
                 content_length=2, expect_continue=True), body(b"ok"), END]),
    # RFC 9110 §10.1.1: the Expect field value is case-insensitive.
    accept("expect-100-continue-mixed-case", request(GET, b"Host: x", b"Expect: 100-Continue"),
           [head("GET", b"/", [H_X, (b"expect", b"100-Continue")], expect_continue=True), END]),
    accept("expect-other-left-to-server", request(GET, b"Host: x", b"Expect: teapot"),
           [head("GET", b"/", [H_X, (b"expect", b"teapot")]), END]),
]
# fmt: on


@dataclass(frozen=True)
class Reject:
    name: str
    raw: bytes
    reason: RejectReason
    status: int
    # The error comes after the head was returned (body framing, body size, trailers).
    after_head: bool
    limits: dict[str, int] = field(default_factory=dict)


def reject(name: str, raw: bytes, reason: RejectReason, status: int, **limits: int) -> Reject:
    return Reject(name, raw, reason, status, False, limits)


def reject_body(name: str, raw: bytes, reason: RejectReason, status: int, **limits: int) -> Reject:
    return Reject(name, raw, reason, status, True, limits)


# fmt: off
REJECT = [
    # ---- Bare LF, in every kind of line.
    reject("lf-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", R.INVALID_LINE_ENDING, 400),
    reject("lf-empty-line-before-request", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject("lf-header-line", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject("lf-last-header-line", b"GET / HTTP/1.1\r\nHost: x\n\r\n", R.INVALID_LINE_ENDING, 400),
    reject("lf-end-of-headers", b"GET / HTTP/1.1\r\nHost: x\r\n\n", R.INVALID_LINE_ENDING, 400),
    reject("lf-only-line-endings", b"GET / HTTP/1.1\nHost: x\n\n", R.INVALID_LINE_ENDING, 400),
    reject_body("lf-chunk-size-line", chunked(b"5\nhello\r\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("lf-chunk-ext-line", chunked(b"5;a=b\nhello\r\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("lf-after-chunk-data", chunked(b"5\r\nhello\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("lf-last-chunk-line", chunked(b"5\r\nhello\r\n0\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("lf-trailer-line", chunked(b"0\r\nX-T: v\nX-U: w\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("lf-end-of-trailers", chunked(b"0\r\nX-T: v\r\n\n"), R.INVALID_LINE_ENDING, 400),
    reject_body("lf-end-of-empty-trailers", chunked(b"0\r\n\n"), R.INVALID_LINE_ENDING, 400),
    # ---- Bare CR: INVALID_LINE_ENDING wherever it is, ahead of other errors in its line.
    reject("cr-request-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", R.INVALID_LINE_ENDING, 400),
    reject("cr-empty-line-before-request", b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject("cr-in-target", b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_LINE_ENDING, 400),
    reject("cr-cr-lf-request-line", b"GET / HTTP/1.1\r\r\nHost: x\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject("cr-in-header-value", request(GET, b"Host: x", b"X-A: a\rb"),
           R.INVALID_LINE_ENDING, 400),
    reject("cr-in-header-name", request(GET, b"Host: x", b"X\rA: b"), R.INVALID_LINE_ENDING, 400),
    reject("cr-end-of-headers", b"GET / HTTP/1.1\r\nHost: x\r\n\rX\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject("cr-after-invalid-name", request(GET, b"Host: x", b"X(A): b\rc"),
           R.INVALID_LINE_ENDING, 400),
    reject("cr-after-nul-in-value", request(GET, b"Host: x", b"X-A: \x00b\rc"),
           R.INVALID_LINE_ENDING, 400),
    reject("cr-after-invalid-target", b"GET /\x01 HTTP/1.1\rX\r\nHost: x\r\n\r\n",
           R.INVALID_LINE_ENDING, 400),
    reject_body("cr-chunk-size-line", chunked(b"5\rhello\r\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("cr-after-invalid-chunk-size", chunked(b"5g\rX\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    reject_body("cr-in-trailer-value", chunked(b"0\r\nX-T: a\rb\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    # ---- Request line.
    reject("double-sp-after-method", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("double-sp-after-target", b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("htab-after-method", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("htab-after-target", b"GET /\tHTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("leading-sp", b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    # A request line starts with a tchar; a byte that cannot is refused as it arrives (see
    # test_first_byte_of_a_request_line), before the rest of the line can change the reason.
    reject("tls-client-hello", TLS_CLIENT_HELLO, R.INVALID_REQUEST_LINE, 400),
    reject("leading-htab", b"\tGET / HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    reject("leading-nul", b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    reject("leading-sp-then-bare-cr", b" GET /\rb HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("non-token-after-empty-line", b"\r\n\x16\x03\x01\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    reject("whitespace-only-line", b"   \r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    # The HTTP/2 preface starts with a token, so it is judged when its line ends: 505, as
    # for any HTTP/2.0 request line (kestrel does not speak h2c).
    reject("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", R.UNSUPPORTED_HTTP_VERSION, 505),
    reject("method-non-token", b"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    reject("method-non-ascii", b"G\xc9T / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_LINE, 400),
    reject("method-only", b"GET\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    # HTTP/0.9: "no version at all" is 400. Which reason is not pinned by docs/parser.md;
    # this follows the parser (the line lacks its third part).
    reject("http09-no-version", b"GET /\r\n\r\n", R.INVALID_REQUEST_LINE, 400),
    reject("version-lowercase", b"GET / http/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_HTTP_VERSION, 400),
    reject("version-no-minor", b"GET / HTTP/1\r\nHost: x\r\n\r\n", R.INVALID_HTTP_VERSION, 400),
    reject("version-leading-zeros", b"GET / HTTP/01.01\r\nHost: x\r\n\r\n",
           R.INVALID_HTTP_VERSION, 400),
    reject("version-two-digit-minor", b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
           R.INVALID_HTTP_VERSION, 400),
    reject("version-sp-after-slash", b"GET / HTTP/ 1.1\r\nHost: x\r\n\r\n",
           R.INVALID_HTTP_VERSION, 400),
    reject("version-not-a-digit", b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
           R.INVALID_HTTP_VERSION, 400),
    reject("version-rtsp", b"GET / RTSP/1.0\r\nHost: x\r\n\r\n", R.INVALID_HTTP_VERSION, 400),
    reject("http-2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", R.UNSUPPORTED_HTTP_VERSION, 505),
    reject("http-3.0", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", R.UNSUPPORTED_HTTP_VERSION, 505),
    reject("http-0.9", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", R.UNSUPPORTED_HTTP_VERSION, 505),
    reject("http-9.9", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", R.UNSUPPORTED_HTTP_VERSION, 505),
    reject("target-non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-nul", b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_TARGET, 400),
    reject("target-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_TARGET, 400),
    reject("target-del", b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_TARGET, 400),
    reject("target-space", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_TARGET, 400),
    # A fragment is not part of any request-target form (RFC 9112 §3.2, RFC 3986 §3.5):
    # Http11Probe's RFC9112-3.2-FRAGMENT-IN-TARGET.
    reject("target-fragment", b"GET /path#frag HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-empty-fragment", b"GET /path# HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-fragment-after-query", b"GET /a?b=c#d HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-only-fragment", b"GET #a HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("absolute-form-fragment", b"GET http://x/a#b HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("absolute-form-fragment-after-authority",
           b"GET http://x#b HTTP/1.1\r\nHost: x\r\n\r\n", R.INVALID_REQUEST_TARGET, 400),
    reject("asterisk-form-fragment", b"OPTIONS *#a HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("asterisk-with-get", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("connect-origin-form", b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("connect-without-port", b"CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-relative-path", b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-query-only", b"GET ?a=b HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    reject("target-bare-host", b"GET www.example.com HTTP/1.1\r\nHost: x\r\n\r\n",
           R.INVALID_REQUEST_TARGET, 400),
    # ---- Header fields.
    reject("obs-fold-sp", request(GET, b"Host: x", b"X-A: a", b" b"),
           R.OBSOLETE_LINE_FOLDING, 400),
    reject("obs-fold-htab", request(GET, b"Host: x", b"X-A: a", b"\tb"),
           R.OBSOLETE_LINE_FOLDING, 400),
    reject("sp-line-before-first-header", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
           R.OBSOLETE_LINE_FOLDING, 400),
    reject("htab-line-before-first-header", b"GET / HTTP/1.1\r\n\tHost: x\r\n\r\n",
           R.OBSOLETE_LINE_FOLDING, 400),
    # Whitespace at the start of a field line is refused as soon as it arrives, so no later
    # byte of that line can change the reason.
    reject("obs-fold-then-cr", request(GET, b"Host: x", b"X-A: a", b" b\rc"),
           R.OBSOLETE_LINE_FOLDING, 400),
    reject("obs-fold-line-over-size-limit", request(GET, b"Host: x", b" " + b"a" * 100),
           R.OBSOLETE_LINE_FOLDING, 400, max_request_headers_size=64),
    reject("sp-before-colon", request(GET, b"Host: x", b"X-A : b"), R.INVALID_HEADER_NAME, 400),
    reject("htab-before-colon", request(GET, b"Host: x", b"X-A\t: b"), R.INVALID_HEADER_NAME, 400),
    reject("host-sp-before-colon", request(GET, b"Host : x"), R.INVALID_HEADER_NAME, 400),
    reject("empty-name", request(GET, b"Host: x", b": b"), R.INVALID_HEADER_NAME, 400),
    reject("name-paren", request(GET, b"Host: x", b"X(A): b"), R.INVALID_HEADER_NAME, 400),
    reject("name-slash", request(GET, b"Host: x", b"X/A: b"), R.INVALID_HEADER_NAME, 400),
    reject("name-at", request(GET, b"Host: x", b"X@A: b"), R.INVALID_HEADER_NAME, 400),
    reject("name-quote", request(GET, b"Host: x", b'X"A: b'), R.INVALID_HEADER_NAME, 400),
    reject("name-obs-text", request(GET, b"Host: x", b"X-\xe9: b"), R.INVALID_HEADER_NAME, 400),
    reject("name-nul", request(GET, b"Host: x", b"X\x00A: b"), R.INVALID_HEADER_NAME, 400),
    reject("no-colon", request(GET, b"Host: x", b"X-A b"), R.INVALID_HEADER_NAME, 400),
    reject("no-colon-name-only", request(GET, b"Host: x", b"X-A"), R.INVALID_HEADER_NAME, 400),
    reject("value-nul", request(GET, b"Host: x", b"X-A: a\x00b"), R.INVALID_HEADER_VALUE, 400),
    reject("value-ctl", request(GET, b"Host: x", b"X-A: a\x01b"), R.INVALID_HEADER_VALUE, 400),
    reject("value-esc", request(GET, b"Host: x", b"X-A: a\x1bb"), R.INVALID_HEADER_VALUE, 400),
    reject("value-vt", request(GET, b"Host: x", b"X-A: a\x0bb"), R.INVALID_HEADER_VALUE, 400),
    reject("value-del", request(GET, b"Host: x", b"X-A: a\x7fb"), R.INVALID_HEADER_VALUE, 400),
    reject("value-trailing-nul", request(GET, b"Host: x", b"X-A: a\x00"),
           R.INVALID_HEADER_VALUE, 400),
    # ---- Host.
    reject("missing-host", b"GET / HTTP/1.1\r\n\r\n", R.MISSING_HOST, 400),
    reject("missing-host-other-headers", request(GET, b"X-Host: x"), R.MISSING_HOST, 400),
    reject("host-twice-different", request(GET, b"Host: a", b"Host: b"), R.MULTIPLE_HOST, 400),
    reject("host-twice-identical", request(GET, b"Host: x", b"Host: x"), R.MULTIPLE_HOST, 400),
    reject("host-twice-any-case", request(GET, b"Host: x", b"HOST: x"), R.MULTIPLE_HOST, 400),
    reject("host-twice-http10", request(b"GET / HTTP/1.0", b"Host: x", b"Host: x"),
           R.MULTIPLE_HOST, 400),
    reject("host-empty", request(GET, b"Host:"), R.INVALID_HOST, 400),
    reject("host-only-ows", request(GET, b"Host: \t "), R.INVALID_HOST, 400),
    reject("host-userinfo", request(GET, b"Host: user@x"), R.INVALID_HOST, 400),
    reject("host-path", request(GET, b"Host: x/y"), R.INVALID_HOST, 400),
    reject("host-comma", request(GET, b"Host: a,b"), R.INVALID_HOST, 400),
    reject("host-space", request(GET, b"Host: a b"), R.INVALID_HOST, 400),
    reject("host-htab", request(GET, b"Host: a\tb"), R.INVALID_HOST, 400),
    reject("host-obs-text", request(GET, b"Host: caf\xc3\xa9"), R.INVALID_HOST, 400),
    reject("host-angle-brackets", request(GET, b"Host: <x>"), R.INVALID_HOST, 400),
    reject("host-backslash", request(GET, b"Host: a\\b"), R.INVALID_HOST, 400),
    reject("host-invalid-http10", request(b"GET / HTTP/1.0", b"Host: a@b"), R.INVALID_HOST, 400),
    # ---- Content-Length.
    reject("cl-plus", cl_post(b"+5", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-minus", cl_post(b"-5", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-hex", cl_post(b"0x5", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-underscore", cl_post(b"1_0", b"helloworld"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-internal-space", cl_post(b"1 0", b"helloworld"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-decimal-point", cl_post(b"5.0", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-letters", cl_post(b"five", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-empty", cl_post(b"", b""), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-only-ows", cl_post(b" \t", b""), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-19-digits", cl_post(b"0000000000000000005", b"hello"),
           R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-20-digits", cl_post(b"99999999999999999999", b""), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-list-with-non-number", cl_post(b"5, x", b"hello"), R.INVALID_CONTENT_LENGTH, 400),
    reject("cl-list-differing", cl_post(b"5, 10", b"helloworld"),
           R.CONFLICTING_CONTENT_LENGTH, 400),
    reject("cl-headers-differing",
           request(POST, b"Host: x", b"Content-Length: 5", b"Content-Length: 10",
                   content=b"helloworld"),
           R.CONFLICTING_CONTENT_LENGTH, 400),
    reject("cl-and-te",
           request(POST, b"Host: x", b"Content-Length: 5", b"Transfer-Encoding: chunked",
                   content=b"0\r\n\r\n"),
           R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, 400),
    reject("te-and-cl",
           request(POST, b"Host: x", b"Transfer-Encoding: chunked", b"Content-Length: 5",
                   content=b"0\r\n\r\n"),
           R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, 400),
    reject("cl-and-te-gzip",
           request(POST, b"Host: x", b"Content-Length: 5", b"Transfer-Encoding: gzip",
                   content=b"hello"),
           R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, 400),
    # ---- Transfer-Encoding.
    reject("te-http10",
           request(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-empty", request(POST, b"Host: x", b"Transfer-Encoding:", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-only-commas",
           request(POST, b"Host: x", b"Transfer-Encoding: , ,", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-chunked-twice",
           request(POST, b"Host: x", b"Transfer-Encoding: chunked, chunked",
                   content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-chunked-twice-two-lines",
           request(POST, b"Host: x", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                   content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-chunked-not-last",
           request(POST, b"Host: x", b"Transfer-Encoding: chunked, gzip", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-parameters",
           request(POST, b"Host: x", b"Transfer-Encoding: chunked;a=b", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-quoted",
           request(POST, b"Host: x", b'Transfer-Encoding: "chunked"', content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-space-inside-token",
           request(POST, b"Host: x", b"Transfer-Encoding: chun ked", content=b"0\r\n\r\n"),
           R.INVALID_TRANSFER_ENCODING, 400),
    reject("te-gzip", request(POST, b"Host: x", b"Transfer-Encoding: gzip", content=b"x"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    reject("te-pigeons", request(POST, b"Host: x", b"Transfer-Encoding: pigeons", content=b"x"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    reject("te-identity", request(POST, b"Host: x", b"Transfer-Encoding: identity", content=b"x"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    reject("te-chunkedchunked",
           request(POST, b"Host: x", b"Transfer-Encoding: chunkedchunked", content=b"0\r\n\r\n"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    reject("te-gzip-chunked",
           request(POST, b"Host: x", b"Transfer-Encoding: gzip, chunked", content=b"0\r\n\r\n"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    reject("te-gzip-chunked-two-lines",
           request(POST, b"Host: x", b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked",
                   content=b"0\r\n\r\n"),
           R.UNSUPPORTED_TRANSFER_ENCODING, 501),
    # ---- Chunk size.
    reject_body("chunk-size-leading-sp", chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-trailing-sp", chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-trailing-htab", chunked(b"5\t\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-minus", chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-underscore", chunked(b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-not-hex", chunked(b"g\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-17-digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-overflow", chunked(b"FFFFFFFFFFFFFFFF0\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-2-pow-62", chunked(b"4000000000000000\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    # 16 digits that do not fit in a signed 64-bit accumulator.
    reject_body("chunk-size-2-pow-63", chunked(b"8000000000000000\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-size-2-pow-64-minus-1", chunked(b"FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    # ---- Chunk extensions.
    reject_body("chunk-ext-bare-semicolon", chunked(b"5;\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-double-semicolon", chunked(b"5;;a\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-empty-name", chunked(b"5;=a\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-empty-value", chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    # BWS is allowed only where a ";" or "=" follows it (RFC 9112 §7.1.1).
    reject_body("chunk-ext-trailing-sp", chunked(b"5;a=b \r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-trailing-sp-after-name", chunked(b"5;a \r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-trailing-sp-after-quoted", chunked(b'5;a="b" \r\nhello\r\n0\r\n\r\n'),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-bws-then-no-name", chunked(b"5 ; \r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-bws-then-no-value", chunked(b"5;a = \r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-sp-between-names", chunked(b"5;a b\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-size-sp-then-not-semicolon", chunked(b"5 a\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_SIZE, 400),
    reject_body("chunk-ext-bws-over-limit", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"),
                R.CHUNK_EXTENSIONS_TOO_LARGE, 400, max_chunk_extensions_size=7),
    # Whitespace after the size could still begin an extension, so the limit names that.
    reject_body("chunk-ext-only-bws-over-limit", chunked(b"5" + b" " * 40 + b"\r\nhello\r\n"),
                R.CHUNK_EXTENSIONS_TOO_LARGE, 400, max_chunk_extensions_size=16),
    reject_body("chunk-ext-non-token-value", chunked(b"5;a=b@c\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-nul", chunked(b"5;a=b\x00\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-nul-in-name", chunked(b"5;a\x00b\r\nhello\r\n0\r\n\r\n"),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-nul-in-quotes", chunked(b'5;a="b\x00"\r\nhello\r\n0\r\n\r\n'),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-ctl-in-quotes", chunked(b'5;a="b\x01"\r\nhello\r\n0\r\n\r\n'),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-unterminated-quote", chunked(b'5;a="bc\r\nhello\r\n0\r\n\r\n'),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-escaped-closing-quote", chunked(b'5;a="bc\\"\r\nhello\r\n0\r\n\r\n'),
                R.INVALID_CHUNK_EXTENSION, 400),
    reject_body("chunk-ext-too-large", chunked(b"5;" + b"a" * 40 + b"\r\nhello\r\n0\r\n\r\n"),
                R.CHUNK_EXTENSIONS_TOO_LARGE, 400, max_chunk_extensions_size=16),
    # The limit is per message, not per chunk.
    reject_body("chunk-ext-too-large-summed",
                chunked(b"1;a=0123456789\r\na\r\n1;b=0123456789\r\nb\r\n1;c=0123456789\r\nc\r\n"
                        b"0\r\n\r\n"),
                R.CHUNK_EXTENSIONS_TOO_LARGE, 400, max_chunk_extensions_size=24),
    # ---- Chunk data terminator.
    reject_body("chunk-data-longer-than-size", chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"),
                R.MISSING_CHUNK_DATA_TERMINATOR, 400),
    reject_body("chunk-data-one-byte-longer", chunked(b"5\r\nhelloX\r\n0\r\n\r\n"),
                R.MISSING_CHUNK_DATA_TERMINATOR, 400),
    reject_body("chunk-data-then-next-size", chunked(b"5\r\nhello0\r\n\r\n"),
                R.MISSING_CHUNK_DATA_TERMINATOR, 400),
    # Declared 5, sent 4: the CR is taken as data and the LF that follows is no terminator.
    # The 5th data byte is the CR, so an LF stands where the CR of the terminator belongs:
    # to the parser that is the same bare LF as in "hello\n0".
    reject_body("chunk-data-shorter-than-size", chunked(b"5\r\nhell\r\n0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    # A CR not followed by LF is a bare CR, wherever it is (docs/parser.md, line endings).
    reject_body("cr-after-chunk-data", chunked(b"5\r\nhello\rX0\r\n\r\n"),
                R.INVALID_LINE_ENDING, 400),
    # ---- Trailers: the header-field rules apply.
    reject_body("trailer-obs-fold", chunked(b"0\r\nX-T: a\r\n b\r\n\r\n"),
                R.OBSOLETE_LINE_FOLDING, 400),
    reject_body("trailer-sp-line-first", chunked(b"0\r\n X-T: a\r\n\r\n"),
                R.OBSOLETE_LINE_FOLDING, 400),
    reject_body("trailer-no-colon", chunked(b"0\r\nX-T\r\n\r\n"), R.INVALID_HEADER_NAME, 400),
    reject_body("trailer-sp-before-colon", chunked(b"0\r\nX-T : a\r\n\r\n"),
                R.INVALID_HEADER_NAME, 400),
    reject_body("trailer-value-nul", chunked(b"0\r\nX-T: a\x00b\r\n\r\n"),
                R.INVALID_HEADER_VALUE, 400),
    reject_body("trailer-section-too-large", chunked(b"0\r\nX-T: " + b"a" * 100 + b"\r\n\r\n"),
                R.HEADERS_TOO_LARGE, 431, max_request_headers_size=64),
    reject_body("trailer-too-many", chunked(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
                R.TOO_MANY_HEADERS, 431, max_request_headers=3),
    # ---- Body size (413 comes after the head, so a per-route limit can still apply).
    reject_body("cl-over-limit", cl_post(b"11", b"hello world"), R.BODY_TOO_LARGE, 413,
                max_request_body_size=10),
    reject_body("cl-over-default-limit", cl_post(b"30000001", b""), R.BODY_TOO_LARGE, 413),
    reject_body("cl-18-digits-over-default-limit", cl_post(b"999999999999999999", b""),
                R.BODY_TOO_LARGE, 413),
    reject_body("chunked-body-over-limit",
                chunked(b"5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\n0\r\n\r\n"),
                R.BODY_TOO_LARGE, 413, max_request_body_size=10),
    reject_body("chunked-single-chunk-over-limit", chunked(b"b\r\nhello world\r\n0\r\n\r\n"),
                R.BODY_TOO_LARGE, 413, max_request_body_size=10),
    # ---- Request line and header section limits.
    reject("request-line-too-long", b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
           R.REQUEST_LINE_TOO_LONG, 414, max_request_line_size=64),
    reject("request-line-one-over-limit", request(LONG_LINE, b"Host: x"),
           R.REQUEST_LINE_TOO_LONG, 414, max_request_line_size=len(LONG_LINE) - 1),
    reject("leading-crlfs-count-against-line-limit",
           b"\r\n" * 40 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
           R.REQUEST_LINE_TOO_LONG, 414, max_request_line_size=64),
    reject("header-section-one-over-limit", request(GET, b"Host: x", b"X-A: 1234"),
           R.HEADERS_TOO_LARGE, 431, max_request_headers_size=len(b"Host: x\r\nX-A: 123\r\n")),
    reject("header-value-too-large", request(GET, b"Host: x", b"X-A: " + b"a" * 100),
           R.HEADERS_TOO_LARGE, 431, max_request_headers_size=64),
    reject("header-section-too-large-many-small",
           request(GET, b"Host: x", *(b"X-%d: v" % i for i in range(10))),
           R.HEADERS_TOO_LARGE, 431, max_request_headers_size=64),
    reject("too-many-headers", request(GET, b"Host: x", b"A: 1", b"B: 2", b"C: 3"),
           R.TOO_MANY_HEADERS, 431, max_request_headers=3),
    reject("too-many-headers-default",
           request(GET, b"Host: x", *(b"X: %d" % i for i in range(100))),
           R.TOO_MANY_HEADERS, 431),
]
# fmt: on


@dataclass(frozen=True)
class Eof:
    name: str
    raw: bytes
    events: list[Ev]  # ending in CLOSE or an error


INCOMPLETE = error(R.INCOMPLETE_MESSAGE, 400)

# fmt: off
EOF = [
    Eof("no-input", b"", [CLOSE]),
    Eof("after-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", [GET_X, END, CLOSE]),
    Eof("after-two-requests", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2,
        [GET_X, END, GET_X, END, CLOSE]),
    Eof("after-cl-body", cl_post(b"5", b"hello"), [cl_head(b"5", 5), body(b"hello"), END, CLOSE]),
    Eof("after-chunked-body", chunked(b"5\r\nhello\r\n0\r\n\r\n"),
        [CHUNKED_POST, body(b"hello"), END, CLOSE]),
    Eof("in-request-line", b"GET / HT", [INCOMPLETE]),
    Eof("after-request-line", b"GET / HTTP/1.1\r\n", [INCOMPLETE]),
    Eof("in-header-line", b"GET / HTTP/1.1\r\nHost: x", [INCOMPLETE]),
    Eof("before-end-of-headers", b"GET / HTTP/1.1\r\nHost: x\r\n", [INCOMPLETE]),
    Eof("before-cl-body", cl_post(b"5", b""), [cl_head(b"5", 5), INCOMPLETE]),
    Eof("in-cl-body", cl_post(b"5", b"he"), [cl_head(b"5", 5), body(b"he"), INCOMPLETE]),
    Eof("in-chunk-size-line", chunked(b"5"), [CHUNKED_POST, INCOMPLETE]),
    Eof("in-chunk-data", chunked(b"5\r\nhel"), [CHUNKED_POST, body(b"hel"), INCOMPLETE]),
    Eof("before-chunk-terminator", chunked(b"5\r\nhello"),
        [CHUNKED_POST, body(b"hello"), INCOMPLETE]),
    Eof("before-last-chunk", chunked(b"5\r\nhello\r\n"),
        [CHUNKED_POST, body(b"hello"), INCOMPLETE]),
    Eof("before-end-of-trailers", chunked(b"5\r\nhello\r\n0\r\n"),
        [CHUNKED_POST, body(b"hello"), INCOMPLETE]),
    Eof("in-trailers", chunked(b"0\r\nX-T: v\r\n"), [CHUNKED_POST, INCOMPLETE]),
    Eof("in-second-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /", [GET_X, END, INCOMPLETE]),
]
# fmt: on


# ---- Running the parser.

# A parser that never stops emitting events would hang the suite; no test input comes close.
MAX_EVENTS_PER_DRAIN = 10_000


def drain(parser: HttpParser, events: list[Ev]) -> None:
    """Append normalized events until the parser needs data, pauses or reports CLOSED."""
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
        if isinstance(event, RequestHead):
            events.append(
                head(
                    event.method,
                    event.target,
                    list(event.headers),
                    version=event.http_version,
                    keep_alive=event.keep_alive,
                    content_length=event.content_length,
                    chunked=event.chunked,
                    upgrade=event.upgrade,
                    expect_continue=event.expect_continue,
                )
            )
        elif isinstance(event, bytes):
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


def parse_all(parser: HttpParser, chunks: Iterable[bytes], *, eof: bool = False) -> list[Ev]:
    """Feed the chunks one by one, collecting normalized events after each.

    Events: ("head", method, target, http_version, headers, keep_alive, content_length,
    chunked, upgrade, expect_continue), ("body", bytes) with consecutive pieces merged (how
    body bytes are cut depends on how the input was split), ("trailers", fields) before
    ("end",) when the message had trailers, ("paused",), ("closed",), and
    ("error", reason, status), after which nothing more is fed.
    """
    events: list[Ev] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            drain(parser, events)
        if eof:
            parser.feed_eof()
            drain(parser, events)
    except HttpParseError as err:
        events.append(error(err.reason, err.status))
    return events


def pending_events(parser: HttpParser) -> list[Ev]:
    """Normalized events from the bytes already fed, like parse_all."""
    events: list[Ev] = []
    try:
        drain(parser, events)
    except HttpParseError as err:
        events.append(error(err.reason, err.status))
    return events


def two_pieces(raw: bytes) -> Iterator[tuple[int, list[bytes]]]:
    for offset in range(1, len(raw)):
        yield offset, [raw[:offset], raw[offset:]]


def byte_by_byte(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def run(limits: dict[str, int], chunks: Iterable[bytes], *, eof: bool = False) -> list[Ev]:
    parser = HttpParser(**limits)
    events = parse_all(parser, chunks, eof=eof)
    assert parser.messages_completed == events.count(END)
    return events


def case_name(case: Accept | Reject | Eof) -> str:
    return case.name


# ---- Accepted requests.


@pytest.mark.parametrize("case", ACCEPT, ids=case_name)
def test_accept_whole(case: Accept) -> None:
    assert run(case.limits, [case.raw]) == case.events


@pytest.mark.parametrize("case", ACCEPT, ids=case_name)
def test_accept_split(case: Accept) -> None:
    for offset, chunks in two_pieces(case.raw):
        assert run(case.limits, chunks) == case.events, f"split at {offset}"


@pytest.mark.parametrize("case", ACCEPT, ids=case_name)
def test_accept_byte_by_byte(case: Accept) -> None:
    assert run(case.limits, byte_by_byte(case.raw)) == case.events


@pytest.mark.parametrize("case", ACCEPT, ids=case_name)
def test_accept_then_pipelined_request(case: Accept) -> None:
    raw = case.raw + NEXT_REQUEST
    paused = case.events[-1] == PAUSE
    # After a close or an upgrade the following bytes are not a request: nothing more is parsed.
    expected = case.events if paused else case.events + NEXT_EVENTS
    for offset, chunks in [(len(raw), [raw]), *two_pieces(raw)]:
        parser = HttpParser(**case.limits)
        assert parse_all(parser, chunks) == expected, f"split at {offset}"
        assert parser.messages_completed == expected.count(END)
        if paused:
            assert parser.next_event() is PAUSED


# ---- Rejected requests.


def check_rejected(case: Reject, events: list[Ev], where: str) -> None:
    kinds = [event[0] for event in events if event[0] != "body"]
    assert kinds == (["head", "error"] if case.after_head else ["error"]), where
    assert events[-1] == error(case.reason, case.status), where
    assert REJECT_STATUS[case.reason] == case.status


@pytest.mark.parametrize("case", REJECT, ids=case_name)
def test_reject_whole(case: Reject) -> None:
    check_rejected(case, run(case.limits, [case.raw]), "whole")


@pytest.mark.parametrize("case", REJECT, ids=case_name)
def test_reject_split(case: Reject) -> None:
    for offset, chunks in two_pieces(case.raw):
        check_rejected(case, run(case.limits, chunks), f"split at {offset}")


@pytest.mark.parametrize("case", REJECT, ids=case_name)
def test_reject_byte_by_byte(case: Reject) -> None:
    check_rejected(case, run(case.limits, byte_by_byte(case.raw)), "byte by byte")


@pytest.mark.parametrize("case", REJECT, ids=case_name)
def test_reject_then_pipelined_request(case: Reject) -> None:
    check_rejected(case, run(case.limits, [case.raw + NEXT_REQUEST]), "whole")


# ---- End of input.


@pytest.mark.parametrize("case", EOF, ids=case_name)
def test_eof_whole(case: Eof) -> None:
    assert run({}, [case.raw], eof=True) == case.events


@pytest.mark.parametrize("case", EOF, ids=case_name)
def test_eof_split(case: Eof) -> None:
    for offset, chunks in two_pieces(case.raw):
        assert run({}, chunks, eof=True) == case.events, f"split at {offset}"


@pytest.mark.parametrize("case", EOF, ids=case_name)
def test_eof_byte_by_byte(case: Eof) -> None:
    assert run({}, byte_by_byte(case.raw), eof=True) == case.events


# ---- Limits are enforced while bytes arrive, not after buffering them.


@dataclass(frozen=True)
class Endless:
    name: str
    first: bytes  # sent once
    piece: bytes  # then sent again and again
    limits: dict[str, int]
    reason: RejectReason
    status: int
    bound: int  # the error must come before more than this many bytes were fed


KIB = 1024
A_KIB = b"a" * KIB
HEADER_LINES_KIB = b"X-A: b\r\n" * 128
REQUEST_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"

# fmt: off
ENDLESS = [
    Endless("request-line", b"GET /", A_KIB, {"max_request_line_size": 4 * KIB},
            R.REQUEST_LINE_TOO_LONG, 414, 6 * KIB),
    Endless("empty-lines-before-request", b"", b"\r\n" * 512, {"max_request_line_size": 4 * KIB},
            R.REQUEST_LINE_TOO_LONG, 414, 6 * KIB),
    Endless("header-value", REQUEST_HEAD + b"X-Big: ", A_KIB,
            {"max_request_headers_size": 4 * KIB}, R.HEADERS_TOO_LARGE, 431, 6 * KIB),
    Endless("header-name", REQUEST_HEAD, A_KIB, {"max_request_headers_size": 4 * KIB},
            R.HEADERS_TOO_LARGE, 431, 6 * KIB),
    Endless("header-lines-size", REQUEST_HEAD, HEADER_LINES_KIB,
            {"max_request_headers_size": 4 * KIB, "max_request_headers": 10_000},
            R.HEADERS_TOO_LARGE, 431, 6 * KIB),
    Endless("header-lines-count", REQUEST_HEAD, HEADER_LINES_KIB, {"max_request_headers": 100},
            R.TOO_MANY_HEADERS, 431, 2 * KIB),
    Endless("trailer-value", chunked(b"0\r\nX-T: "), A_KIB, {"max_request_headers_size": 4 * KIB},
            R.HEADERS_TOO_LARGE, 431, 6 * KIB),
    Endless("trailer-lines-count", chunked(b"0\r\n"), HEADER_LINES_KIB,
            {"max_request_headers": 100}, R.TOO_MANY_HEADERS, 431, 2 * KIB),
    Endless("chunk-ext-value", chunked(b"5;a="), A_KIB, {"max_chunk_extensions_size": 4 * KIB},
            R.CHUNK_EXTENSIONS_TOO_LARGE, 400, 6 * KIB),
    Endless("chunk-ext-many", chunked(b"5"), b";a=b" * 256, {"max_chunk_extensions_size": 4 * KIB},
            R.CHUNK_EXTENSIONS_TOO_LARGE, 400, 6 * KIB),
    # A chunk-size line holds at most 16 digits plus extensions, so its buffer is bounded too.
    Endless("chunk-size-digits", chunked(b""), b"0" * KIB, {"max_chunk_extensions_size": 4 * KIB},
            R.INVALID_CHUNK_SIZE, 400, 6 * KIB),
    # Default limits, fed the way a socket delivers a flood: 64 KiB at a time.
    Endless("10mb-header-value-default-limits", REQUEST_HEAD + b"X-Big: ", b"a" * (64 * KIB), {},
            R.HEADERS_TOO_LARGE, 431, 32 * KIB + 64 * KIB + len(REQUEST_HEAD) + 7),
    Endless("request-line-default-limits", b"GET /", b"a" * (64 * KIB), {},
            R.REQUEST_LINE_TOO_LONG, 414, 8 * KIB + 64 * KIB + 5),
    Endless("chunk-ext-default-limits", chunked(b"5;a="), b"a" * (64 * KIB), {},
            R.CHUNK_EXTENSIONS_TOO_LARGE, 400, 16 * KIB + 64 * KIB + len(chunked(b"5;a="))),
]
# fmt: on

GIVE_UP_AFTER = 10 * KIB * KIB


@pytest.mark.parametrize("case", ENDLESS, ids=lambda case: case.name)
def test_endless_input_rejected_early(case: Endless) -> None:
    parser = HttpParser(**case.limits)
    fed = 0
    data = case.first
    while fed < GIVE_UP_AFTER:
        fed += len(data)
        try:
            parser.feed(data)
            # Read events after each piece, as the server does.
            event = parser.next_event()
            while isinstance(event, RequestHead | bytes):
                event = parser.next_event()
        except HttpParseError as err:
            assert (err.reason, err.status) == (case.reason, case.status)
            assert fed <= case.bound
            return
        assert event is NEED_DATA
        data = case.piece
    pytest.fail(f"no error after {fed} bytes")


def test_bare_cr_and_obs_fold_refused_before_line_end() -> None:
    # docs/parser.md: refused as soon as they arrive, before the rest of their line.
    for raw, reason in [
        (b"GET /a\rb", R.INVALID_LINE_ENDING),
        (REQUEST_HEAD + b"X-A: a\rb", R.INVALID_LINE_ENDING),
        (REQUEST_HEAD + b" ", R.OBSOLETE_LINE_FOLDING),
        (REQUEST_HEAD + b"X-A: a\r\n\t", R.OBSOLETE_LINE_FOLDING),
        (chunked(b"5\rx"), R.INVALID_LINE_ENDING),
        (chunked(b"0\r\nX-T: a\rb"), R.INVALID_LINE_ENDING),
        (chunked(b"0\r\n "), R.OBSOLETE_LINE_FOLDING),
    ]:
        assert run({}, [raw])[-1] == error(reason, 400), raw


def test_first_byte_of_a_request_line() -> None:
    # Only a tchar (a method's first byte) or the CR of an empty line (RFC 9112 §2.2) can
    # begin a request line; any other byte is refused the moment it arrives, alone.
    for byte in range(256):
        first = bytes([byte])
        for before in [b"", b"\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]:
            events = run({}, [before, first])
            last = events[-1] if events else None
            if byte in TCHARS or first == b"\r":
                assert last is None or last[0] != "error", (before, first)
            elif first == b"\n":
                # A bare LF ending an empty line.
                assert last == error(R.INVALID_LINE_ENDING, 400), (before, first)
            else:
                assert last == error(R.INVALID_REQUEST_LINE, 400), (before, first)


def test_h2_preface_waits_for_its_line() -> None:
    # "P" can begin a method, so nothing is decided before the line ends (as before).
    assert run({}, [b"PRI * HTTP/2.0"]) == []
    assert run({}, [b"PRI * HTTP/2.0\r\n"]) == [error(R.UNSUPPORTED_HTTP_VERSION, 505)]


# ---- Scenarios.

# The statuses documented in kestrel/_core.pyi and docs/parser.md.
DOCUMENTED_STATUS = {
    R.INVALID_REQUEST_LINE: 400,
    R.INVALID_REQUEST_TARGET: 400,
    R.INVALID_HTTP_VERSION: 400,
    R.UNSUPPORTED_HTTP_VERSION: 505,
    R.REQUEST_LINE_TOO_LONG: 414,
    R.INVALID_LINE_ENDING: 400,
    R.INVALID_HEADER_NAME: 400,
    R.INVALID_HEADER_VALUE: 400,
    R.OBSOLETE_LINE_FOLDING: 400,
    R.HEADERS_TOO_LARGE: 431,
    R.TOO_MANY_HEADERS: 431,
    R.MISSING_HOST: 400,
    R.MULTIPLE_HOST: 400,
    R.INVALID_HOST: 400,
    R.INVALID_CONTENT_LENGTH: 400,
    R.CONFLICTING_CONTENT_LENGTH: 400,
    R.CONTENT_LENGTH_WITH_TRANSFER_ENCODING: 400,
    R.INVALID_TRANSFER_ENCODING: 400,
    R.UNSUPPORTED_TRANSFER_ENCODING: 501,
    R.INVALID_CHUNK_SIZE: 400,
    R.INVALID_CHUNK_EXTENSION: 400,
    R.CHUNK_EXTENSIONS_TOO_LARGE: 400,
    R.MISSING_CHUNK_DATA_TERMINATOR: 400,
    R.BODY_TOO_LARGE: 413,
    R.INCOMPLETE_MESSAGE: 400,
    # Not the parser's: the engine's request contract (its headers and body-rate deadlines)
    # answers these.
    R.REQUEST_HEADERS_TIMEOUT: 408,
    R.REQUEST_BODY_TIMEOUT: 408,
    # Only the response parser (tests/test_response_parser.py) finds these: what a gateway
    # answers an invalid response with.
    R.INVALID_STATUS_LINE: 502,
    R.INVALID_STATUS_CODE: 502,
    R.STATUS_LINE_TOO_LONG: 502,
    R.UNEXPECTED_RESPONSE: 502,
}


def test_reject_status_matches_docs() -> None:
    assert set(DOCUMENTED_STATUS) == set(RejectReason)
    assert REJECT_STATUS == DOCUMENTED_STATUS
    for reason, status in DOCUMENTED_STATUS.items():
        err = HttpParseError(reason, "detail")
        assert (err.reason, err.status) == (reason, status)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        request(GET, b"Host: x", b"Host: x"),
        chunked(b"5\r\nhelloXX"),
    ],
    ids=["request-line", "header-section", "chunked-body"],
)
def test_error_is_final(raw: bytes) -> None:
    parser = HttpParser()
    events = parse_all(parser, [raw])
    last = events[-1]
    assert last[0] == "error"
    for _ in range(3):
        with pytest.raises(HttpParseError) as excinfo:
            parser.next_event()
        assert excinfo.value.reason == last[1]


def test_content_length_body_delivered_as_it_arrives() -> None:
    parser = HttpParser()
    # The first half is reported without waiting for the second.
    assert parse_all(parser, [cl_post(b"10", b"hello")]) == [cl_head(b"10", 10), body(b"hello")]
    assert parse_all(parser, [b"world"]) == [body(b"world"), END]


def test_chunked_body_delivered_as_it_arrives() -> None:
    parser = HttpParser()
    assert parse_all(parser, [chunked(b"a\r\nhello")]) == [CHUNKED_POST, body(b"hello")]
    assert parse_all(parser, [b"world\r\n0\r\n\r\n"]) == [body(b"world"), END]


def test_messages_completed_counts_ends() -> None:
    parser = HttpParser()
    assert parser.messages_completed == 0
    parser.feed(cl_post(b"5", b"hel"))
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == b"hel"
    # A message counts once its end is reported, not at its head.
    assert parser.messages_completed == 0
    parse_all(parser, [b"lo" + NEXT_REQUEST + NEXT_REQUEST])
    assert parser.messages_completed == 3


UPGRADES = [
    pytest.param(
        request(GET, b"Host: x", b"Connection: upgrade", b"Upgrade: websocket"),
        head("GET", b"/", [H_X, (b"connection", b"upgrade"), (b"upgrade", b"websocket")],
             upgrade=True),
        id="websocket",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "expected_head"), UPGRADES)
def test_resume_after_declined_upgrade(raw: bytes, expected_head: Ev) -> None:
    parser = HttpParser()
    assert parse_all(parser, [raw + NEXT_REQUEST]) == [expected_head, END, PAUSE]
    parser.resume()
    assert pending_events(parser) == NEXT_EVENTS
    assert parser.messages_completed == 2


@pytest.mark.parametrize(("raw", "expected_head"), UPGRADES)
def test_resume_before_next_request_arrives(raw: bytes, expected_head: Ev) -> None:
    parser = HttpParser()
    assert parse_all(parser, [raw]) == [expected_head, END, PAUSE]
    parser.resume()
    assert pending_events(parser) == []
    assert parse_all(parser, [NEXT_REQUEST[:7], NEXT_REQUEST[7:]]) == NEXT_EVENTS


def test_no_resume_after_connect() -> None:
    # CONNECT has no content (RFC 9110 §9.3.6), so whatever follows it, even with a
    # Content-Length, must never be parsed as a request: a declined tunnel is closed.
    smuggled = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 32\r\n\r\n" + smuggled
    parser = HttpParser()
    events = parse_all(parser, [raw])
    assert events[1:] == [END, PAUSE]
    with pytest.raises(RuntimeError):
        parser.resume()
    assert pending_events(parser) == [PAUSE]
    assert parser.messages_completed == 1


def test_content_length_over_limit_rejected_before_any_body_byte() -> None:
    parser = HttpParser(max_request_body_size=10)
    parser.feed(cl_post(b"11", b""))
    assert isinstance(parser.next_event(), RequestHead)
    # No body byte has been fed: the 413 must not wait for one.
    with pytest.raises(HttpParseError) as excinfo:
        parser.next_event()
    assert (excinfo.value.reason, excinfo.value.status) == (R.BODY_TOO_LARGE, 413)


def test_body_limit_raised_after_head() -> None:
    parser = HttpParser(max_request_body_size=10)
    parser.feed(cl_post(b"20", b""))
    assert isinstance(parser.next_event(), RequestHead)
    # A route that takes uploads raises the limit before the body is read.
    parser.max_request_body_size = 100
    assert parse_all(parser, [b"x" * 20]) == [body(b"x" * 20), END]


def test_body_limit_lowered_after_head() -> None:
    parser = HttpParser()
    parser.feed(cl_post(b"20", b"x" * 20))
    assert isinstance(parser.next_event(), RequestHead)
    parser.max_request_body_size = 10
    assert pending_events(parser) == [error(R.BODY_TOO_LARGE, 413)]


def test_chunked_body_limit_lowered_after_head() -> None:
    parser = HttpParser()
    parser.feed(chunked(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"))
    assert isinstance(parser.next_event(), RequestHead)
    parser.max_request_body_size = 8
    events = pending_events(parser)
    assert events[-1] == error(R.BODY_TOO_LARGE, 413)
    assert END not in events


def test_unlimited_body_size() -> None:
    parser = HttpParser(max_request_body_size=-1)
    assert parse_all(parser, [cl_post(b"999999999999999999", b"abc")]) == [
        cl_head(b"999999999999999999", 999999999999999999),
        body(b"abc"),
    ]


def test_empty_feeds_change_nothing() -> None:
    raw = cl_post(b"5", b"hello")
    chunks = [b"", raw[:10], b"", raw[10:-2], b"", raw[-2:], b""]
    assert run({}, chunks) == [cl_head(b"5", 5), body(b"hello"), END]


def test_trailers_belong_to_their_message() -> None:
    parser = HttpParser()
    raw = chunked(b"0\r\nX-T: 1\r\n\r\n")
    events = parse_all(parser, [raw + NEXT_REQUEST])
    assert events == [CHUNKED_POST, trailers((b"x-t", b"1")), END, *NEXT_EVENTS]
    assert parser.trailers == []


# ---- Field values: the 8-bytes-at-a-time skip agrees with the byte table.

_FIELD_VALUE_BYTES = {9, *range(32, 127), *range(128, 256)}  # RFC 9110 §5.5 (+ HTAB, SP)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(33, 126), st.sampled_from([9, 32, 0x7F, 0x80, 0xFF, 0, 8, 31])),
        min_size=1,
        max_size=40,
    )
)
def test_field_values_are_accepted_exactly_when_every_byte_is_allowed(codes: list[int]) -> None:
    value = bytes(codes).strip(b" \t") or b"x"
    parser = HttpParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Value: " + value + b"\r\n\r\n")
    if all(byte in _FIELD_VALUE_BYTES for byte in value):
        head = parser.next_event()
        assert isinstance(head, RequestHead)
        assert head.headers == [(b"host", b"a"), (b"x-value", value)]
    else:
        with pytest.raises(HttpParseError, match="INVALID_HEADER_VALUE"):
            parser.next_event()
