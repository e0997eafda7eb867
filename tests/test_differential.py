"""Differential test: kestrel's parser against h11 and httptools (llhttp) on the same bytes.

Each parser's reading of an input is reduced to one Verdict: accepted or rejected, the
requests it completed (method, target, lowercased header names with their values, decoded
body) and whether the input ended inside a request. Every difference between kestrel and a
peer must be explained by one of the RULES below, each a reason with its source (RFC,
docs/parser.md or the peer's code); anything else fails. Inputs are the two conformance
corpora and hypothesis-generated requests with byte-level mutations.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import h11
import httptools
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_corpora import LLHTTP_CASES, PROBE_CASES, run_kestrel, with_host

from kestrel._core import HttpParser

Header = tuple[bytes, bytes]
# (method, target, headers, body) of one complete request.
Message = tuple[bytes, bytes, tuple[Header, ...], bytes]


@dataclass(frozen=True)
class Verdict:
    """A parser's reading of a whole input.

    accepted: no rejection ("accept" with these messages), or a rejection after them.
    pending: the input ended inside a request, so the parser had not decided on it yet.
    A parser that stops at a closing message or an upgrade (the bytes after it are not
    HTTP) has accepted what it parsed and is not pending.
    """

    accepted: bool
    messages: tuple[Message, ...]
    pending: bool = False
    # The request the input ended in (pending) or that was refused, if its head was accepted,
    # with the body so far (kestrel: without it).
    partial: Message | None = field(default=None, compare=False)
    # Why it rejected (a kestrel RejectReason name or the peer's error): parsers word their
    # reasons differently, so this is for the rules and messages, not for comparison.
    detail: str = field(default="", compare=False)

    def __str__(self) -> str:
        state = "accept" if self.accepted else f"reject ({self.detail})"
        return f"{state}{' pending' if self.pending else ''} {list(self.messages)}"


def kestrel_verdict(data: bytes) -> Verdict:
    run = run_kestrel([data])
    messages = tuple(
        (method.encode("ascii"), target, headers, body)
        for method, target, headers, body in run.messages
    )
    partial = None
    if len(run.heads) > len(run.messages):
        head = run.heads[-1]
        partial = (head.method.encode("ascii"), head.target, tuple(head.headers), b"")
    if run.error is not None:
        return Verdict(False, messages, partial=partial, detail=run.error.reason.name)
    pending = run.end == "need_data" and not run.at_boundary
    return Verdict(True, messages, pending=pending, partial=partial if pending else None)


# Above kestrel's request-line and header-section limits, so that h11's own buffer limit
# (16 KiB by default) does not stand in for them.
H11_MAX_INCOMPLETE_EVENT_SIZE = 64 * 1024


def h11_verdict(data: bytes) -> Verdict:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=H11_MAX_INCOMPLETE_EVENT_SIZE)
    if data:
        # receive_data(b"") would mean end of input.
        conn.receive_data(data)
    messages: list[Message] = []
    partial: Message | None = None  # the request whose body is being read
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            return Verdict(False, tuple(messages), partial=partial, detail=str(error))
        if event is h11.NEED_DATA:
            pending = partial is not None or bool(conn.trailing_data[0])
            return Verdict(True, tuple(messages), pending=pending, partial=partial)
        if isinstance(event, h11.Request):
            headers = tuple((name, value) for name, value in event.headers)
            partial = (event.method, event.target, headers, b"")
        elif isinstance(event, h11.Data):
            assert partial is not None
            partial = (*partial[:3], partial[3] + event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert partial is not None
            messages.append(partial)
            partial = None
            if conn.their_state is not h11.DONE:
                # MUST_CLOSE (Connection: close, HTTP/1.0) or MIGHT_SWITCH_PROTOCOL (CONNECT,
                # Upgrade): no further request is read from this connection.
                return Verdict(True, tuple(messages))
            # h11 reads the next request only once this one is answered.
            conn.send(h11.Response(status_code=204, headers=[]))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        else:
            raise AssertionError(f"unexpected h11 event {event!r}")


class _HttptoolsRecorder:
    """httptools' callbacks, collecting requests as kestrel reports them."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.messages: list[Message] = []
        self.in_message = False
        self.in_head = False
        self.keep_alive = True
        self.url = bytearray()
        self.headers: list[Header] = []
        self.body = bytearray()

    def on_message_begin(self) -> None:
        self.in_message = self.in_head = True
        self.url = bytearray()
        self.headers = []
        self.body = bytearray()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailer fields come through the same callback after the head; kestrel keeps them
        # apart. llhttp leaves trailing OWS in the value, which is not part of it (RFC 9110
        # §5.5).
        if self.in_head:
            self.headers.append((name.lower(), value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def partial(self) -> Message | None:
        """The request whose body is being read, if any."""
        if not self.in_message or self.in_head:
            return None
        method = self.parser.get_method()
        return (method, bytes(self.url), tuple(self.headers), bytes(self.body))

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.messages.append((method, bytes(self.url), tuple(self.headers), bytes(self.body)))
        self.in_message = False


def httptools_verdict(data: bytes) -> Verdict:
    recorder = _HttptoolsRecorder()
    try:
        recorder.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        # CONNECT or an upgrade: the bytes after the request belong to another protocol.
        return Verdict(True, tuple(recorder.messages))
    except httptools.HttpParserCallbackError:
        raise
    except httptools.HttpParserError as error:
        if recorder.messages and not recorder.in_message and not recorder.keep_alive:
            # llhttp calls bytes after a closing message an error; a server has closed the
            # connection by then and never reads them.
            return Verdict(True, tuple(recorder.messages))
        return Verdict(
            False, tuple(recorder.messages), partial=recorder.partial(), detail=str(error)
        )
    messages = tuple(recorder.messages)
    return Verdict(True, messages, pending=recorder.in_message, partial=recorder.partial())


PEERS: dict[str, Callable[[bytes], Verdict]] = {"h11": h11_verdict, "httptools": httptools_verdict}


# ---- Generated requests: valid-ish requests, then byte-level mutations.

# Each list holds the common choices several times over and the odd ones once, so that most
# generated requests are valid and the parsed requests get compared, not only verdicts.
METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"] * 3
METHODS += ["CONNECT", "TRACE", "PROPFIND", "MKCOLA", "get", "M-SEARCH"]
TARGETS = ["/", "/index.html", "/a/b?x=1&y=2", "/%7Euser/", "/a#frag", "/q?a=|", "//x"] * 3
TARGETS += ["http://example.com/p?q", "*", "example.com:443", "a/b"]
VERSIONS = ["HTTP/1.1"] * 12 + ["HTTP/1.0"] * 3 + ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9"]
HOSTS: list[str | None] = ["example.com", "example.com:8080", "[::1]:80", "localhost"] * 3
HOSTS += ["a_b.example", "", None]
FIELDS: list[Header] = [
    (b"Accept", b"*/*"),
    (b"User-Agent", b"hypothesis/1.0 (x11)"),
    (b"X-Custom", b"a b\tc"),
    (b"Cookie", b"a=1; b=2"),
    (b"Connection", b"close"),
    (b"Connection", b"keep-alive"),
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Expect", b"100-continue"),
    (b"Content-Type", b"text/plain; charset=utf-8"),
    (b"X-Empty", b""),
    (b"X-Obs-Text", b"caf\xe9"),
]
# Bytes that matter to an HTTP parser, for the mutations.
ALPHABET = [bytes([byte]) for byte in b"\r\n \t\x00:;,0a\x7f\x80\xff"]


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out = bytearray()
    for piece in pieces:
        if not piece:
            continue
        extension = draw(st.sampled_from([b"", b"", b";a", b";a=b", b';q="x y"', b" ; a = b"]))
        out += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
    trailer = draw(st.sampled_from([b"", b"", b"X-Sum: 1\r\n"]))
    return bytes(out + b"0\r\n" + trailer + b"\r\n")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS)).encode()
    target = draw(st.sampled_from(TARGETS)).encode()
    version = draw(st.sampled_from(VERSIONS)).encode()
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=4))
    host = draw(st.sampled_from(HOSTS))
    if host is not None:
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", host.encode()))
    body = draw(st.binary(max_size=24))
    framing = draw(st.sampled_from(["none", "length", "length", "chunked", "chunked", "odd"]))
    if framing == "length":
        fields.append((b"Content-Length", b"%d" % len(body)))
    elif framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
        body = draw(chunked_body(body))
    elif framing == "odd":
        fields += draw(
            st.sampled_from(
                [
                    [(b"Content-Length", b"%d, %d" % (len(body), len(body)))],
                    [(b"Content-Length", b"%d" % len(body))] * 2,
                    [(b"Content-Length", b"%d" % (len(body) + 1))],
                    [(b"Content-Length", b"%d" % len(body)), (b"Transfer-Encoding", b"chunked")],
                    [(b"Transfer-Encoding", b"gzip, chunked")],
                    [(b"Transfer-Encoding", b"chunked, chunked")],
                    [(b"Transfer-Encoding", b" , Chunked")],
                ]
            )
        )
        if b"chunked" in fields[-1][1].lower():
            body = draw(chunked_body(body))
    else:
        body = b""
    head = b"%s %s %s\r\n" % (method, target, version)
    head += b"".join(b"%s: %s\r\n" % field for field in fields)
    return head + b"\r\n" + body


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(requests(), min_size=1, max_size=2)))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "case"]))
        at = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from(ALPHABET))
        if kind == "insert":
            data = data[:at] + byte + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + 1 :]
        elif kind == "replace":
            data = data[:at] + byte + data[at + 1 :]
        elif kind == "duplicate":
            # Repeat the line that contains offset `at`, CRLF included.
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at) + 1 or len(data)
            data = data[:end] + data[start:end] + data[end:]
        else:
            data = data[:at] + data[at : at + 6].swapcase() + data[at + 6 :]
    return data


# ---- Where two verdicts part, and the rules that explain it.

StepKind = Literal["message", "reject", "pending", "end"]


@dataclass(frozen=True)
class Step:
    """What a parser did after the requests both parsers completed identically."""

    kind: StepKind  # completed a (different) request, rejected, waits inside one, or stopped
    # The request completed, or for "pending" and "reject" the one whose head was accepted.
    message: Message | None
    detail: str


def _step(verdict: Verdict, index: int) -> Step:
    if index < len(verdict.messages):
        return Step("message", verdict.messages[index], "")
    if not verdict.accepted:
        return Step("reject", verdict.partial, verdict.detail)
    if verdict.pending:
        return Step("pending", verdict.partial, "")
    return Step("end", None, "")


@dataclass(frozen=True)
class Divergence:
    data: bytes
    peer: str
    index: int  # requests completed identically by both
    previous: Message | None  # the last of those
    kestrel: Step
    other: Step


def diverge(data: bytes, peer: str, kestrel: Verdict, other: Verdict) -> Divergence | None:
    if kestrel == other:
        return None
    index = 0
    for mine, theirs in zip(kestrel.messages, other.messages, strict=False):
        if mine != theirs:
            break
        index += 1
    previous = kestrel.messages[index - 1] if index else None
    return Divergence(data, peer, index, previous, _step(kestrel, index), _step(other, index))


def _accepted(step: Step) -> Message | None:
    """The request whose head the parser accepted at this step, if any."""
    if step.kind == "message" or step.kind == "pending":
        return step.message
    return None


def _field_values(message: Message, name: bytes) -> list[bytes]:
    return [value for field_name, value in message[2] if field_name == name]


def _tokens(message: Message, name: bytes) -> set[bytes]:
    values = b",".join(_field_values(message, name))
    return {token.strip(b" \t").lower() for token in values.split(b",")} - {b""}


def _kestrel_rejects(*reasons: str) -> Callable[[Divergence], bool]:
    """Kestrel refused the request whose head the peer accepted."""

    def applies(d: Divergence) -> bool:
        return (
            d.kestrel.kind == "reject"
            and d.kestrel.detail in reasons
            and _accepted(d.other) is not None
        )

    return applies


def _peer_rejects(
    pattern: str, check: Callable[[Message], bool] = lambda _: True
) -> Callable[[Divergence], bool]:
    """The peer refused (with an error matching pattern) a request kestrel accepted."""

    def applies(d: Divergence) -> bool:
        message = _accepted(d.kestrel)
        return (
            d.other.kind == "reject"
            and re.search(pattern, d.other.detail) is not None
            and message is not None
            and check(message)
        )

    return applies


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'


def _chunk_line(bws: bytes) -> re.Pattern[bytes]:
    """chunk-size [ chunk-ext ] (RFC 9112 §7.1.1) with BWS as given."""
    value = rb"(?:%s|%s)" % (_TOKEN, _QUOTED)
    extension = rb"%s;%s%s(?:%s=%s%s)?" % (bws, bws, _TOKEN, bws, bws, value)
    return re.compile(rb"[0-9A-Fa-f]+(?:%s)*" % extension)


_CHUNK_LINE_BWS = _chunk_line(rb"[ \t]*")
_CHUNK_LINE_NO_BWS = _chunk_line(b"")


def _has_chunk_ext_bws(data: bytes) -> bool:
    """A line of data is a chunk-size line that is valid only with its BWS."""
    return any(
        _CHUNK_LINE_BWS.fullmatch(line) and not _CHUNK_LINE_NO_BWS.fullmatch(line)
        for line in data.split(b"\r\n")
    )


def _h11_normalized(headers: tuple[Header, ...]) -> tuple[Header, ...]:
    """kestrel's headers as h11 rewrites them (h11/_headers.py normalize_and_validate)."""
    out: list[Header] = []
    seen_length = False
    for name, value in headers:
        if name == b"content-length":
            if seen_length:
                continue
            seen_length = True
            value = value.split(b",")[0].strip()
        elif name == b"transfer-encoding":
            value = value.lower()
        out.append((name, value))
    return tuple(out)


def _same_head(d: Divergence, mine: Message | None, theirs: Message | None) -> bool:
    """Same method, target and fields, allowing for h11's rewrite of the framing fields."""
    if mine is None or theirs is None:
        return False
    headers = _h11_normalized(mine[2]) if d.peer == "h11" else mine[2]
    return mine[:2] == theirs[:2] and headers == theirs[2]


@dataclass(frozen=True)
class Rule:
    name: str
    why: str
    peers: frozenset[str]
    applies: Callable[[Divergence], bool]
    # kestrel accepts (or reads further) what the peer rejects. Such a rule may be all that
    # stands between a smuggling bug and a green test, so its reason must be an RFC's.
    kestrel_accepts: bool = False


MAX_REQUEST_LINE_SIZE = HttpParser().max_request_line_size

# Rejections that can only come from a field line: in a body, from the trailer section.
FIELD_LINE_REASONS = {
    "INVALID_HEADER_NAME",
    "INVALID_HEADER_VALUE",
    "OBSOLETE_LINE_FOLDING",
    "INVALID_LINE_ENDING",
    "HEADERS_TOO_LARGE",
    "TOO_MANY_HEADERS",
}
BOTH = frozenset(PEERS)
H11 = frozenset({"h11"})
HTTPTOOLS = frozenset({"httptools"})

RULES = [
    # ---- kestrel refuses what a peer takes.
    Rule(
        "http-version",
        "kestrel answers 505 to an HTTP major version other than 1 (docs/parser.md 'Request "
        "line'; RFC 9110 §15.6.6); h11 takes any HTTP/d.d (h11/_abnf.py http_version) and "
        "llhttp takes HTTP/0.9 and HTTP/2.0 request lines",
        BOTH,
        _kestrel_rejects("UNSUPPORTED_HTTP_VERSION"),
    ),
    Rule(
        "request-target-form",
        "kestrel ties the request-target form to the method: asterisk-form only for OPTIONS, "
        "authority-form only for CONNECT, otherwise origin- or absolute-form, none with a "
        "fragment (RFC 9112 §3.2; docs/parser.md 'Request line'); h11 only checks the "
        "target's bytes, llhttp takes asterisk-form with any method and a '#fragment'",
        BOTH,
        lambda d: (
            _kestrel_rejects("INVALID_REQUEST_TARGET")(d)
            and re.fullmatch(rb"[\x21-\x7e]+", (_accepted(d.other) or (b"", b""))[1]) is not None
        ),
    ),
    Rule(
        "other-protocols",
        "kestrel only speaks HTTP: RTSP/1.0 and ICE/1.0 are not HTTP-version (RFC 9112 §2.3; "
        "docs/parser.md 'Request line'); llhttp also parses RTSP and Icecast request lines",
        HTTPTOOLS,
        _kestrel_rejects("INVALID_HTTP_VERSION"),
    ),
    Rule(
        "request-line-spaces",
        "kestrel wants exactly one SP between method, target and version, and a version "
        "(RFC 9112 §3; docs/parser.md 'Request line'); llhttp takes runs of SP and HTTP/0.9 "
        "request lines without a version",
        HTTPTOOLS,
        _kestrel_rejects("INVALID_REQUEST_LINE"),
    ),
    Rule(
        "host-syntax",
        "kestrel answers 400 to a Host field that is not uri-host[:port] (RFC 9112 §3.2: "
        "'an invalid field value'; docs/parser.md 'Host'); h11 and llhttp take any value",
        BOTH,
        _kestrel_rejects("INVALID_HOST"),
    ),
    Rule(
        "host-missing",
        "kestrel requires Host on HTTP/1.1, and on 1.2 and above, which it serves as 1.1 "
        "(RFC 9112 §3.2, RFC 9110 §2.5); llhttp never requires Host, h11 only on exactly "
        "HTTP/1.1 (h11/_events.py Request)",
        BOTH,
        _kestrel_rejects("MISSING_HOST"),
    ),
    Rule(
        "host-repeated",
        "kestrel answers 400 to more than one Host field (RFC 9112 §3.2); llhttp does not "
        "look at Host",
        HTTPTOOLS,
        _kestrel_rejects("MULTIPLE_HOST"),
    ),
    Rule(
        "transfer-encoding-rules",
        "kestrel refuses Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1: 'MUST treat ... as "
        "if the framing is faulty'), chunked applied twice or not last, and codings that are "
        "not tokens (docs/parser.md 'Message framing'); h11 and llhttp take chunked on 1.0",
        BOTH,
        _kestrel_rejects("INVALID_TRANSFER_ENCODING"),
    ),
    Rule(
        "unsupported-transfer-coding",
        "kestrel decodes only chunked and answers 501 to any other coding (RFC 9112 §6.1 "
        "'SHOULD respond with 501'; docs/parser.md 'Message framing'); llhttp frames the body "
        "by the final chunked and leaves the other codings to its caller",
        HTTPTOOLS,
        _kestrel_rejects("UNSUPPORTED_TRANSFER_ENCODING"),
    ),
    Rule(
        "content-length-with-transfer-encoding",
        "kestrel refuses Content-Length together with Transfer-Encoding, the classic "
        "smuggling pair (RFC 9112 §6.1, §6.3; docs/parser.md 'Message framing'); h11 lets "
        "Transfer-Encoding win (h11/_connection.py _body_framing)",
        H11,
        _kestrel_rejects("CONTENT_LENGTH_WITH_TRANSFER_ENCODING"),
    ),
    Rule(
        "line-endings",
        "kestrel ends every line with CRLF and refuses a bare LF or CR (docs/parser.md 'Line "
        "endings'; RFC 9112 §2.2 lets a recipient refuse them); h11 splits lines on LF "
        "(h11/_receivebuffer.py) and llhttp skips any CR or LF before or between requests",
        BOTH,
        lambda d: (
            d.kestrel.kind == "reject"
            and d.kestrel.detail == "INVALID_LINE_ENDING"
            # The peer accepted the line, or skipped it as noise between requests.
            and (d.other.kind == "end" or _accepted(d.other) is not None)
        ),
    ),
    Rule(
        "obs-fold",
        "kestrel refuses obs-fold with 400 (RFC 9112 §5.2; docs/parser.md 'Header fields'); "
        "h11 unfolds it (h11/_readers.py _obsolete_line_fold)",
        H11,
        _kestrel_rejects("OBSOLETE_LINE_FOLDING"),
    ),
    Rule(
        "field-value-controls",
        "kestrel refuses control characters in field values (RFC 9110 §5.5; docs/parser.md "
        "'Header fields'); h11 only refuses NUL and whitespace controls (h11/_abnf.py "
        "vchar_or_obs_text)",
        H11,
        _kestrel_rejects("INVALID_HEADER_VALUE"),
    ),
    Rule(
        "chunk-line-syntax",
        "kestrel holds chunk-size lines to RFC 9112 §7.1 and §7.1.1 (hex digits, then "
        "';'-separated token[=token/quoted-string], whitespace only before ';' and around "
        "'='); h11 takes trailing OWS and any text after ';' (h11/_abnf.py chunk_header), "
        "llhttp an empty extension name",
        BOTH,
        _kestrel_rejects("INVALID_CHUNK_SIZE", "INVALID_CHUNK_EXTENSION"),
    ),
    Rule(
        "content-length-digits",
        "kestrel takes at most 18 Content-Length digits (docs/parser.md 'Message framing'); "
        "h11 takes 20",
        H11,
        lambda d: (
            _kestrel_rejects("INVALID_CONTENT_LENGTH")(d)
            and any(
                len(value.strip()) > 18
                for value in _field_values(
                    _accepted(d.other) or (b"", b"", (), b""), b"content-length"
                )
            )
        ),
    ),
    Rule(
        "kestrel-limits",
        "kestrel's limits on request line, header section, field count, chunk extensions and "
        "body size (docs/parser.md; precedents in consts.pxi) are below the peers'. A method "
        "longer than the request-line limit is a 400, not a 414: the target is not too long",
        BOTH,
        lambda d: (
            _kestrel_rejects(
                "REQUEST_LINE_TOO_LONG",
                "HEADERS_TOO_LARGE",
                "TOO_MANY_HEADERS",
                "CHUNK_EXTENSIONS_TOO_LARGE",
                "BODY_TOO_LARGE",
            )(d)
            or (
                _kestrel_rejects("INVALID_REQUEST_LINE")(d)
                and len((_accepted(d.other) or (b"",))[0]) > MAX_REQUEST_LINE_SIZE
            )
        ),
    ),
    Rule(
        "peer-undecided",
        "the input ends inside a head or trailer section that kestrel has already refused: "
        "kestrel judges each line when its LF arrives (bare CR and leading whitespace "
        "sooner), h11 only once the whole section is there (h11/_receivebuffer.py "
        "maybe_extract_lines)",
        BOTH,
        lambda d: (
            d.kestrel.kind == "reject"
            and d.other.kind == "pending"
            and (
                d.other.message is None
                or (
                    d.kestrel.detail in FIELD_LINE_REASONS
                    and _same_head(d, d.kestrel.message, d.other.message)
                )
            )
        ),
    ),
    # ---- A peer refuses what kestrel takes.
    Rule(
        "method-token",
        "a method is any token (RFC 9110 §9.1); llhttp refuses methods outside its table "
        "(and RTSP/ICE methods over HTTP), kestrel leaves them to the server's 405/501",
        HTTPTOOLS,
        _peer_rejects(r"Invalid method|Expected space after method"),
        kestrel_accepts=True,
    ),
    Rule(
        "http-1x-minor",
        "an HTTP/1.x minor above 1 is served as HTTP/1.1 (RFC 9110 §2.5; docs/parser.md "
        "'Request line'); llhttp refuses it",
        HTTPTOOLS,
        _peer_rejects(r"^Invalid HTTP version$"),
        kestrel_accepts=True,
    ),
    Rule(
        "content-length-repeated",
        "a Content-Length list or repeat of one identical value may be taken as that value "
        "(RFC 9110 §8.6); llhttp refuses any second Content-Length and any comma",
        HTTPTOOLS,
        _peer_rejects(
            r"Duplicate Content-Length|Invalid character in Content-Length",
            lambda m: (
                len({v.strip() for v in b",".join(_field_values(m, b"content-length")).split(b",")})
                == 1
            ),
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "trailer-fields",
        "trailer fields are not header fields: they cannot frame the message and are kept "
        "apart (RFC 9110 §6.5.1, RFC 9112 §7.1.2; docs/parser.md 'Chunked bodies'); llhttp "
        "applies its Content-Length/Transfer-Encoding checks to trailers",
        HTTPTOOLS,
        _peer_rejects(
            r"Content-Length|Transfer-Encoding",
            lambda m: (
                _tokens(m, b"transfer-encoding") == {b"chunked"}
                and not _field_values(m, b"content-length")
            ),
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "chunk-ext-bws",
        "chunk-ext allows BWS before ';' and around '=' (RFC 9112 §7.1.1: chunk-ext = *( BWS "
        "';' BWS chunk-ext-name [ BWS '=' BWS chunk-ext-val ] )), which a recipient parses "
        "and drops (RFC 9110 §5.6.3); llhttp refuses any whitespace there in strict mode, "
        "h11 any before ';' (h11/_abnf.py chunk_header)",
        BOTH,
        lambda d: (
            d.other.kind == "reject"
            and "chunk" in d.other.detail
            and _accepted(d.kestrel) is not None
            and _has_chunk_ext_bws(d.data)
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "empty-line-before-request",
        "a server SHOULD ignore at least one empty line (CRLF) before a request line "
        "(RFC 9112 §2.2); h11 refuses any",
        H11,
        lambda d: (
            d.other.kind == "reject"
            and d.other.detail == "no request line received"
            and d.kestrel.kind in ("message", "pending", "end")
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "transfer-coding-list",
        "Transfer-Encoding is a list: case-insensitive codings, OWS around commas, empty "
        "elements ignored, over all field lines (RFC 9110 §5.6.1, RFC 9112 §6.1); h11 only "
        "takes a single field whose whole value is 'chunked' (h11/_headers.py)",
        H11,
        _peer_rejects(
            r"Transfer-Encoding",
            lambda m: _tokens(m, b"transfer-encoding") == {b"chunked"},
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "input-ends-in-crlf",
        "the input ends after the CR of what may be an empty line between requests: kestrel "
        "waits for its LF (RFC 9112 §2.2), llhttp skips the CR",
        HTTPTOOLS,
        lambda d: (
            d.kestrel.kind == "pending"
            and d.kestrel.message is None
            and d.other.kind == "end"
            and d.data.endswith(b"\r")
        ),
    ),
    Rule(
        "kestrel-undecided",
        "the input ends inside a line that the peer has already refused byte by byte "
        "(llhttp) or by its first byte (h11's is_next_line_obviously_invalid_request_line); "
        "kestrel judges the line when its LF arrives",
        BOTH,
        lambda d: (
            d.kestrel.kind == "pending" and d.kestrel.message is None and d.other.kind == "reject"
        ),
    ),
    # ---- Both take the request but read it differently.
    Rule(
        "h11-rewrites-framing-fields",
        "h11 rewrites Content-Length to a single value and lowercases Transfer-Encoding "
        "(h11/_headers.py normalize_and_validate); the request is the same",
        H11,
        lambda d: (
            d.kestrel.kind == d.other.kind == "message"
            and d.kestrel.message is not None
            and d.other.message is not None
            and d.kestrel.message[:2] == d.other.message[:2]
            and d.kestrel.message[3] == d.other.message[3]
            and _h11_normalized(d.kestrel.message[2]) == d.other.message[2]
        ),
    ),
    Rule(
        "connect-has-no-content",
        "a CONNECT request has no content: what follows its head is tunnel data (RFC 9110 "
        "§9.3.6); h11 reads a body by Content-Length or Transfer-Encoding first",
        H11,
        lambda d: (
            d.kestrel.kind == "message"
            and d.kestrel.message is not None
            and d.kestrel.message[0] == b"CONNECT"
            and d.kestrel.message[3] == b""
            # The peer went on to read (or refuse, or wait for) a body for the same head.
            and _same_head(d, d.kestrel.message, d.other.message)
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "upgrade-body-skipped",
        "httptools skips the body of an upgrade request (its on_headers_complete callback "
        "returns 1 when llhttp flags an upgrade, parser.pyx cb_on_headers_complete); kestrel "
        "reads it, and may refuse it, as the request's content (RFC 9110 §7.8: the switch "
        "happens after the message)",
        HTTPTOOLS,
        lambda d: (
            d.other.kind == "message"
            and d.other.message is not None
            and d.other.message[3] == b""
            and b"upgrade" in _tokens(d.other.message, b"connection")
            and bool(_field_values(d.other.message, b"upgrade"))
            # kestrel read (or is reading, or refused) the body of the same request.
            and d.kestrel.message is not None
            and d.kestrel.message[:3] == d.other.message[:3]
        ),
    ),
    # ---- One stops reading the connection where the other goes on.
    Rule(
        "h11-closes-http10",
        "h11 never keeps an HTTP/1.0 connection open (h11/_connection.py _keep_alive); "
        "kestrel honours Connection: keep-alive on HTTP/1.0 (RFC 9112 §9.3)",
        H11,
        lambda d: (
            d.other.kind == "end"
            and d.previous is not None
            and b"keep-alive" in _tokens(d.previous, b"connection")
        ),
        kestrel_accepts=True,
    ),
    Rule(
        "connection-close-wins",
        "the close connection option means the connection closes after this response (RFC "
        "9112 §9.6), whatever else Connection lists; llhttp keeps an HTTP/1.0 connection "
        "open when keep-alive is listed too (llhttp_should_keep_alive ignores close there)",
        HTTPTOOLS,
        lambda d: (
            d.kestrel.kind == "end"
            and d.previous is not None
            and {b"close", b"keep-alive"} <= _tokens(d.previous, b"connection")
        ),
    ),
    Rule(
        "h11-upgrade-without-connection",
        "h11 takes any Upgrade field as a protocol switch proposal (h11/_connection.py); an "
        "upgrade needs the 'upgrade' connection option too (RFC 9110 §7.8), so kestrel reads "
        "the next request",
        H11,
        lambda d: (
            d.other.kind == "end"
            and d.previous is not None
            and bool(_field_values(d.previous, b"upgrade"))
            and b"upgrade" not in _tokens(d.previous, b"connection")
        ),
        kestrel_accepts=True,
    ),
]


def classify(d: Divergence) -> Rule | None:
    for rule in RULES:
        if d.peer in rule.peers and rule.applies(d):
            return rule
    return None


# ---- The tests.


@dataclass
class Tally:
    """Counts for the summary printed at the end of the module."""

    inputs: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    kestrel_alone: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def summary(self) -> str:
        lines = ["differential inputs: " + ", ".join(f"{n} {s}" for s, n in self.inputs.items())]
        for rule in RULES:
            counts = ", ".join(
                f"{peer} {self.rules[peer, rule.name]}"
                for peer in PEERS
                if self.rules[peer, rule.name]
            )
            lines.append(f"  {rule.name}: {counts or 'unused'}")
        for names, count in self.kestrel_alone.items():
            lines.append(f"  kestrel alone accepts ({' + '.join(names)}): {count}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    counts = Tally()
    yield counts
    print("\n" + counts.summary())


def unexplained(data: bytes, tally: Tally) -> list[str]:
    """Compare kestrel with each peer on data; describe every difference no rule explains."""
    kestrel = kestrel_verdict(data)
    problems = []
    explained: list[tuple[Divergence, Rule]] = []
    for peer, verdict_of in PEERS.items():
        divergence = diverge(data, peer, kestrel, verdict_of(data))
        if divergence is None:
            continue
        rule = classify(divergence)
        if rule is None:
            problems.append(f"{data!r}\n  kestrel {kestrel}\n  {peer}: {divergence}")
            continue
        tally.rules[peer, rule.name] += 1
        explained.append((divergence, rule))
    if len(explained) == len(PEERS) and all(
        d.other.kind == "reject"
        and (d.kestrel.kind == "end" or _accepted(d.kestrel) is not None)
        and d.index == explained[0][0].index
        for d, _ in explained
    ):
        # Both peers refuse what kestrel takes: only rules grounded in an RFC may allow that.
        names = tuple(rule.name for _, rule in explained)
        tally.kestrel_alone[names] += 1
        if not all(rule.kestrel_accepts for _, rule in explained):
            problems.append(f"{data!r}: kestrel alone accepts it ({', '.join(names)})")
    return problems


def corpus_inputs() -> list[bytes]:
    return [with_host(case.raw) for case in LLHTTP_CASES] + [case.raw for case in PROBE_CASES]


def test_corpus_inputs_agree_or_differ_by_rule(tally: Tally) -> None:
    inputs = corpus_inputs()
    tally.inputs["corpus"] += len(inputs)
    problems = [problem for data in inputs for problem in unexplained(data, tally)]
    assert not problems, "\n".join(problems)


# Inputs that exercise the rules the corpora do not reach; they run with the generated ones.
EXAMPLES = [
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PUT example.com:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r",
    b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n:\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ; a = b\r\nx\r\n0\r\n\r\n",
    # The corpus's deflate cases also have a fragment in the target, refused first.
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
]


@pytest.mark.slow
@settings(
    derandomize=True,
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=mutated_requests())
def test_generated_requests_agree_or_differ_by_rule(tally: Tally, data: bytes) -> None:
    tally.inputs["generated"] += 1
    problems = unexplained(data, tally)
    assert not problems, "\n".join(problems)


for _example in EXAMPLES:
    test_generated_requests_agree_or_differ_by_rule = example(data=_example)(
        test_generated_requests_agree_or_differ_by_rule
    )


def test_every_rule_is_needed() -> None:
    # A rule that explains nothing in the corpora and EXAMPLES is stale: the difference it
    # documents is gone, or the rule no longer matches it.
    counts = Tally()
    for data in corpus_inputs() + EXAMPLES:
        unexplained(data, counts)
    used = {name for _, name in counts.rules}
    assert [rule.name for rule in RULES if rule.name not in used] == []
