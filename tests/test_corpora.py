"""The parser against two conformance corpora: llhttp's request tests and Http11Probe.

Both corpora live in tests/corpora (its README.md names their sources and licences and says
what the fields mean). They are data from other projects' test suites, so each case is turned
into a statement about kestrel's parser here:

- llhttp (the parser inside Node.js): every strict-mode request case must get the decision
  llhttp gives it (accept, reject, or stop after N complete messages), fed whole and cut at
  every split point, except the deliberate differences listed in LLHTTP_EXCEPTIONS.
- Http11Probe: every case is scored, at parser level, the way the suite scores a live server
  (status of the first response, whether the connection closed, or a timeout). The few cases
  whose outcome is decided by the server or the application rather than the parser are in
  SERVER_LAYER with what the parser must deliver for the server to get them right.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from kestrel._core import (
    CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    HttpParseError,
    HttpParser,
    RejectReason,
    RequestHead,
)

CORPORA = Path(__file__).resolve().parent / "corpora"


def load_corpus(name: str) -> Any:
    path = CORPORA / name
    if not path.is_file():
        # A missing corpus must fail the run: skipping would turn the conformance suite green
        # on a checkout that does not have it.
        raise FileNotFoundError(
            f"{path} not found: the conformance corpora are part of the repository, in {CORPORA}"
        )
    return json.loads(path.read_text(encoding="utf-8"))


# ---- Running kestrel's parser over an input.

# (method, target, headers, body) of one complete request.
Message = tuple[str, bytes, tuple[tuple[bytes, bytes], ...], bytes]


@dataclass(frozen=True)
class KestrelRun:
    """What the parser made of an input: the complete requests and how it stopped."""

    messages: tuple[Message, ...]
    heads: tuple[RequestHead, ...]  # heads of all requests started, complete or not
    end: Literal["need_data", "paused", "rejected"]
    error: HttpParseError | None
    # After "need_data": True if the input ended between requests, False inside one.
    at_boundary: bool


def run_kestrel(pieces: Sequence[bytes]) -> KestrelRun:
    """Feed the pieces one by one, draining events after each, as a server would."""
    parser = HttpParser()
    messages: list[Message] = []
    heads: list[RequestHead] = []
    body = bytearray()

    def finish(end: Literal["paused", "rejected"], error: HttpParseError | None) -> KestrelRun:
        return KestrelRun(tuple(messages), tuple(heads), end, error, False)

    for piece in pieces:
        parser.feed(piece)
        while True:
            try:
                event = parser.next_event()
            except HttpParseError as error:
                return finish("rejected", error)
            if event is NEED_DATA:
                break
            if event is PAUSED:
                return finish("paused", None)
            if isinstance(event, RequestHead):
                heads.append(event)
                body = bytearray()
            elif isinstance(event, bytes):
                body += event
            elif event is END_OF_MESSAGE:
                head = heads[-1]
                messages.append((head.method, head.target, tuple(head.headers), bytes(body)))
            else:
                raise AssertionError(f"unexpected event {event!r}")
    # End of input: the parser says whether that would be a clean close or a cut request.
    parser.feed_eof()
    try:
        at_boundary = parser.next_event() is CLOSED
    except HttpParseError as error:
        assert error.reason is RejectReason.INCOMPLETE_MESSAGE, error
        at_boundary = False
    return KestrelRun(tuple(messages), tuple(heads), "need_data", None, at_boundary)


def cuts(data: bytes) -> list[list[bytes]]:
    """The input cut in two at every split point."""
    return [[data[:i], data[i:]] for i in range(1, len(data))]


# ---- llhttp's request corpus.


@dataclass(frozen=True)
class LlhttpCase:
    src: str
    name: str
    kind: str
    raw: bytes
    error: tuple[int, str] | None
    messages_complete: int

    @property
    def key(self) -> str:
        """File and line of the case in llhttp's test/request/, e.g. "invalid.md:356"."""
        return self.src.rsplit("/", 1)[-1]


def _llhttp_cases() -> list[LlhttpCase]:
    cases = []
    for entry in load_corpus("llhttp_request_cases.json"):
        error = entry["llhttp_error"]
        cases.append(
            LlhttpCase(
                src=entry["src"],
                name=entry["name"],
                kind=entry["llhttp_type"],
                raw=entry["raw_latin1"].encode("latin-1"),
                error=None if error is None else (int(error[0]), error[1]),
                messages_complete=entry["messages_complete"],
            )
        )
    return cases


LLHTTP_CASES = _llhttp_cases()
# The lenient cases test llhttp's opt-in leniencies; kestrel has none.
LLHTTP_STRICT = [case for case in LLHTTP_CASES if case.kind == "request"]

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_HTTP11_REQUEST_LINE = re.compile(rb"(?:^|(?<=\n))" + _TCHAR + rb"+ [\x21-\x7e]+ HTTP/1\.1\r\n")
_HOST_FIELD = re.compile(rb"\nhost:", re.IGNORECASE)


def with_host(data: bytes) -> bytes:
    """Give every HTTP/1.1 request in an llhttp input the Host field kestrel requires.

    llhttp does not require Host, so most of its cases lack one, while kestrel rejects an
    HTTP/1.1 request without it (RFC 9112 §3.2). "Host: x\\r\\n" goes right after each
    well-formed HTTP/1.1 request line (at the start of the input or of a line, ending in
    CRLF) whose header section has no Host field. Nothing else is touched, so:

    - HTTP/1.0 requests (Host is optional there), request lines that are malformed (bare
      LF or CR, no version, other protocols) and request lines cut off by the end of the
      input are left alone: the case is about them.
    - A header section that starts with SP or HTAB is left alone: the case tests whitespace
      right after the start line, which an inserted field would turn into an obs-fold.
    - A request line inside a body gets a Host too if what would be its header section has
      none. Of the strict cases only content-length.md:444 has such a line, and it is
      listed in LLHTTP_EXCEPTIONS for another reason.
    """
    out = bytearray()
    done = 0
    for match in _HTTP11_REQUEST_LINE.finditer(data):
        start = match.end()
        # The header section runs to the blank line (which may follow the request line).
        blank = data.find(b"\r\n\r\n", start - 2)
        section = data[start : len(data) if blank < 0 else blank + 2]
        if _HOST_FIELD.search(b"\n" + section) or section[:1] in (b" ", b"\t"):
            continue
        out += data[done:start] + b"Host: x\r\n"
        done = start
    out += data[done:]
    return bytes(out)


# llhttp reports these errors for a parser that stopped, not for a bad request:
# HPE_CLOSED_CONNECTION (5, "Data after `Connection: close`"), HPE_PAUSED (21),
# HPE_PAUSED_UPGRADE (22, CONNECT/Upgrade) and HPE_PAUSED_H2_UPGRADE (23, PRI).
LLHTTP_PAUSE_ERRORS = {5, 21, 22, 23}

Decision = tuple[Literal["accept", "paused", "reject"], int]


def llhttp_decision(case: LlhttpCase) -> Decision:
    if case.error is None:
        return ("accept", case.messages_complete)
    if case.error[0] in LLHTTP_PAUSE_ERRORS:
        return ("paused", case.messages_complete)
    return ("reject", case.messages_complete)


def kestrel_decision(run: KestrelRun) -> Decision:
    if run.end == "rejected":
        return ("reject", len(run.messages))
    if run.end == "paused":
        return ("paused", len(run.messages))
    return ("accept", len(run.messages))


def agrees(llhttp: Decision, kestrel: Decision) -> bool:
    # llhttp reports the stop after a closing message only when bytes other than CRLF
    # follow it; kestrel stops right after the message. Both complete the same messages.
    return kestrel == llhttp or (llhttp[0] == "accept" and kestrel == ("paused", llhttp[1]))


# Where kestrel decides differently from llhttp on purpose, keyed by the case's file:line in
# llhttp's test/request/. Each entry must still disagree (see test_llhttp_case), so the list
# cannot outlive the difference it documents.
LLHTTP_EXCEPTIONS = {
    # Methods / HTTP protocol and ANNOUNCE method
    "invalid.md:66": "a method is any token (RFC 9110 §9.1); llhttp only knows its own table "
    "and rejects ANNOUNCE over HTTP. kestrel parses it and hands it to the app (an App answers "
    "405 with Allow when other methods exist for the path, 404 otherwise).",
    # Invalid requests / Invalid method
    "invalid.md:356": "a method is any token (RFC 9110 §9.1; docs/parser.md 'Request line'); "
    "llhttp rejects MKCOLA because it is not in its method table.",
    # Methods / M-SEARCH request
    "method.md:135": "asterisk-form is only for OPTIONS (RFC 9112 §3.2.4; docs/parser.md "
    "'Request line'); kestrel rejects SSDP's M-SEARCH *, llhttp accepts it.",
    # Methods / SOURCE request with ICE
    "method.md:372": "ICE/1.0 is not HTTP-version grammar (RFC 9112 §2.3; docs/parser.md "
    "'Request line': anything else is 400); llhttp also speaks Icecast.",
    # Methods / OPTIONS request with RTSP
    "method.md:400": "RTSP/1.0 is not HTTP (RFC 9112 §2.3; docs/parser.md 'Request line' "
    "names RTSP/1.0 as 400); llhttp also speaks RTSP.",
    # Methods / ANNOUNCE request with RTSP
    "method.md:430": "RTSP/1.0 is not HTTP (RFC 9112 §2.3; docs/parser.md 'Request line' "
    "names RTSP/1.0 as 400); llhttp also speaks RTSP.",
    # Methods / PRI request HTTP2
    "method.md:458": "the HTTP/2 preface is not an HTTP/1.1 request: kestrel does not speak "
    "h2c and rejects PRI * (asterisk-form is only for OPTIONS, RFC 9112 §3.2.4); llhttp "
    "pauses so that its caller can switch to HTTP/2.",
    # Quotes in URI / Fragment in URI
    "uri.md:165": "no request-target form has a fragment (RFC 9112 §3.2; a '#' in it is "
    "refused, docs/parser.md 'Request line'; Http11Probe's RFC9112-3.2-FRAGMENT-IN-TARGET "
    "accepts 400); llhttp parses the fragment as part of the URL.",
    # Sample requests / No HTTP version
    "sample.md:314": "a request line without a version is HTTP/0.9, which kestrel does not "
    "serve (docs/parser.md 'Request line': 400); llhttp accepts it.",
    # Transfer-Encoding header / POST with `chunked` as last transfer-encoding
    "transfer-encoding.md:751": "the target ends in a fragment (#hey), which no "
    "request-target form has (RFC 9112 §3.2): 400 before the framing is looked at. Without "
    "it kestrel would still refuse: it does not decode deflate, so `deflate, chunked` gets "
    "501 (RFC 9112 §6.1 'SHOULD respond with 501'; docs/parser.md 'Message framing'); "
    "llhttp only frames the body and leaves deflate to its caller.",
    # Transfer-Encoding header / ... (multiple headers)
    "transfer-encoding.md:793": "the target ends in a fragment (#hey): 400 (RFC 9112 "
    "§3.2). Without it kestrel would still refuse: it does not decode deflate, so `deflate` "
    "then `chunked` gets 501 (RFC 9112 §6.1; docs/parser.md 'Message framing'); llhttp only "
    "frames the body.",
    # Content-Length header / Content-Length reset when no body is received
    "content-length.md:444": "not a statement about HTTP: the case's meta sets skipBody, so "
    "llhttp's test harness returns 1 from on_headers_complete and the 123-byte body is "
    "skipped, as for a response to HEAD. A request with Content-Length: 123 has a body.",
    # Invalid requests / Invalid HTTP version
    "invalid.md:490": "the input ends inside the request line: kestrel judges the version "
    "when the line's LF arrives (message.pxi, theory of operation) and answers HTTP/5.6 "
    "with 505 then; llhttp rejects at the version digits. Only the moment differs.",
}

# The exceptions above that are only about when the input ends: completing the line must
# turn kestrel's wait into a rejection.
LLHTTP_PENDING_LINE = ["invalid.md:490"]


def test_llhttp_corpus_is_the_expected_one() -> None:
    # The exception keys and the strict/lenient split depend on this snapshot.
    assert len(LLHTTP_CASES) == 166
    assert len(LLHTTP_STRICT) == 134
    assert len({case.key for case in LLHTTP_CASES}) == len(LLHTTP_CASES)
    strict_keys = {case.key for case in LLHTTP_STRICT}
    assert set(LLHTTP_EXCEPTIONS) <= strict_keys
    assert set(LLHTTP_PENDING_LINE) <= set(LLHTTP_EXCEPTIONS)


@pytest.mark.parametrize("case", LLHTTP_STRICT, ids=lambda case: case.key)
def test_llhttp_case(case: LlhttpCase) -> None:
    data = with_host(case.raw)
    whole = run_kestrel([data])
    for pieces in cuts(data):
        cut = run_kestrel(pieces)
        where = f"split at {len(pieces[0])}"
        assert kestrel_decision(cut) == kestrel_decision(whole), where
        assert cut.messages == whole.messages, where
        assert (cut.error and cut.error.reason) == (whole.error and whole.error.reason), where

    expected = llhttp_decision(case)
    actual = kestrel_decision(whole)
    detail = f"{case.name}: llhttp {expected} {case.error}, kestrel {actual} {whole.error}"
    if case.key in LLHTTP_EXCEPTIONS:
        assert not agrees(expected, actual), f"listed exception no longer differs: {detail}"
    else:
        assert agrees(expected, actual), detail


@pytest.mark.parametrize("key", LLHTTP_PENDING_LINE)
def test_llhttp_pending_line_is_rejected_once_complete(key: str) -> None:
    (case,) = [case for case in LLHTTP_STRICT if case.key == key]
    run = run_kestrel([with_host(case.raw) + b"\r\n"])
    assert run.end == "rejected"
    assert run.messages == ()


def test_with_host_inserts_only_where_documented() -> None:
    pipelined = (
        b"GET / HTTP/1.1\r\n\r\nPUT /a HTTP/1.1\r\nhOsT: y\r\n\r\nGET /b HTTP/1.1\r\nA: b\r\n"
    )
    assert with_host(pipelined) == (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"PUT /a HTTP/1.1\r\nhOsT: y\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\nA: b\r\n"
    )
    untouched = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\nA: b\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: foo",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1",
    ]
    for data in untouched:
        assert with_host(data) == data


# ---- Http11Probe.


@dataclass(frozen=True)
class ProbeCase:
    id: str
    description: str
    expected: str
    raw: bytes


def _probe_cases() -> list[ProbeCase]:
    cases = []
    for entry in load_corpus("http11probe_cases.json")["cases"]:
        # The report the corpus was taken from cut long requests at 8192 bytes and wrote
        # bytes >= 0x80 as '?'; such an entry is not the request the suite sends, and cannot
        # be scored until it is rebuilt from the suite's source (corpus README and note).
        damaged = entry["raw_truncated_at_8192"] or entry["lossy_non_ascii"]
        if damaged and not entry.get("regenerated_from_description"):
            raise ValueError(f"{entry['id']}: raw_request is not the bytes the suite sends")
        cases.append(
            ProbeCase(
                id=entry["id"],
                description=entry["description"],
                expected=entry["expected"],
                raw=entry["raw_request"].encode("latin-1"),
            )
        )
    return cases


PROBE_CASES = _probe_cases()


@dataclass(frozen=True)
class Outcome:
    """What the prober sees: the first response's status (None: none) and a close."""

    status: int | None
    closed: bool

    def __str__(self) -> str:
        if self.status is None:
            return "close" if self.closed else "timeout"
        return f"{self.status}{' + close' if self.closed else ''}"


def predicted_outcome(run: KestrelRun) -> Outcome | None:
    """The server's answer to the probe, as far as the parser decides it.

    A rejection is answered with its status and the connection is closed. A complete request
    gets 2xx: the suite's app answers every request it receives (GET / with 200, POST /
    echoes the body). The connection then closes if the parser paused (Connection: close,
    HTTP/1.0) or a later request was rejected. Input that ends inside a request gets
    nothing: the prober times out. None: the parser paused for an upgrade or CONNECT, and
    the response is the server's decision.
    """
    if run.messages:
        if run.end == "paused" and run.heads[len(run.messages) - 1].upgrade:
            return None
        return Outcome(200, run.end != "need_data")
    if run.end == "rejected":
        assert run.error is not None
        return Outcome(run.error.status, True)
    return Outcome(None, False)


def expectation_admits(expected: str, outcome: Outcome) -> bool:
    """Whether Http11Probe scores the outcome as not failing `expected`.

    The strings name the outcomes the suite's validators pass (Http11Probe
    src/Http11Probe/TestCases/ExpectedBehavior.cs and the CustomValidator of each case in
    Suites/*.cs): a status ("400"), a class ("2xx"), "close" and "timeout" for no response
    with the connection closed or left open, "S + close" for both, "!101" for any answer but
    101. "close" never covers a response: a 413 where the suite says "400 or close" fails.
    In "A (pass), B (warn)" only A counts.
    """
    expected = expected.split(" (pass)")[0]
    alternatives = re.split(r" or |/", expected)
    for alternative in alternatives:
        required_close = alternative.endswith(" + close")
        status = alternative.removesuffix(" + close")
        if required_close and not outcome.closed:
            continue
        if status == "close":
            matched = outcome.status is None and outcome.closed
        elif status == "timeout":
            matched = outcome.status is None and not outcome.closed
        elif status == "!101":
            matched = outcome.status != 101 and (outcome.status is not None or outcome.closed)
        elif re.fullmatch(r"[1-5]xx", status):
            matched = outcome.status is not None and outcome.status // 100 == int(status[0])
        elif re.fullmatch(r"[1-5][0-9][0-9]", status):
            matched = outcome.status == int(status)
        else:
            raise ValueError(f"unknown expectation {alternative!r} in {expected!r}")
        if matched:
            return True
    return False


@dataclass(frozen=True)
class ServerLayer:
    """A probe case whose final status is decided above the parser."""

    why: str
    # What the parser must deliver for the server to answer the case as the suite expects.
    upgrade: bool | None = None
    expect_continue: bool | None = None
    paused: bool = False
    max_request_body_size: int | None = None


SERVER_LAYER = {
    "COMP-METHOD-CONNECT": ServerLayer(
        "an origin server answers CONNECT with 405/501 (RFC 9110 §9.3.6); the parser "
        "delivers the request as an upgrade and stops, so no byte after it is read as HTTP",
        upgrade=True,
        paused=True,
    ),
    "COMP-UPGRADE-POST": ServerLayer(
        "whether to switch protocols (101) is the server's; the parser flags the upgrade and "
        "pauses so the server can decline it and resume()",
        upgrade=True,
        paused=True,
    ),
    "COMP-UPGRADE-UNKNOWN": ServerLayer(
        "the server must not switch to an unknown protocol; the parser flags the upgrade "
        "and pauses so the server can decline it and resume()",
        upgrade=True,
        paused=True,
    ),
    "COMP-UPGRADE-INVALID-VER": ServerLayer(
        "426 for an unsupported WebSocket version is the server's answer (RFC 6455 §4.4); "
        "the parser flags the upgrade and pauses",
        upgrade=True,
        paused=True,
    ),
    "COMP-EXPECT-UNKNOWN": ServerLayer(
        "417 for an unknown expectation is the server's answer (RFC 9110 §10.1.1); the "
        "parser must not mistake it for 100-continue",
        upgrade=False,
        expect_continue=False,
    ),
    "COMP-METHOD-TRACE": ServerLayer(
        "whether TRACE is served (2xx) or refused (405/501) is the application's choice",
        upgrade=False,
    ),
    "COMP-TRACE-WITH-BODY": ServerLayer(
        "whether TRACE is served or refused (400/405) is the application's choice; the "
        "parser frames the body by its Content-Length",
        upgrade=False,
    ),
    "MAL-RANGE-OVERLAPPING": ServerLayer(
        "Range handling (200/206/416) is the application's; the parser only has to pass a "
        "3 KB header field through",
        upgrade=False,
    ),
    "MAL-POST-CL-HUGE-NO-BODY": ServerLayer(
        "the body limit is per route: the parser checks Content-Length against it only "
        "after delivering the head, so the server can change it (docs/parser.md 'Message "
        "framing'). With the 30 MB default the answer is 413, which the suite scores as a "
        "failure (it accepts 400, close or timeout); with the limit lifted the parser waits "
        "for the body and the prober times out",
        upgrade=False,
        max_request_body_size=-1,
    ),
}

# The suite's EchoValidator cases: the app echoes the body of POST /, so the decoded body is
# what the prober checks (Http11Probe Suites/ComplianceSuite.cs, EchoValidator(...)).
PROBE_ECHO = {
    "COMP-POST-CL-BODY": b"hello",
    "COMP-CHUNKED-BODY": b"hello",
    "COMP-CHUNKED-MULTI": b"hello world",
    "COMP-CHUNKED-TRAILER-VALID": b"hello",
    "COMP-CHUNKED-HEX-UPPERCASE": b"helloworld",
}


def test_probe_corpus_is_the_expected_one() -> None:
    ids = {case.id for case in PROBE_CASES}
    assert len(PROBE_CASES) == len(ids) == 143
    assert set(SERVER_LAYER) <= ids
    assert set(PROBE_ECHO) <= ids


@pytest.mark.parametrize("case", PROBE_CASES, ids=lambda case: case.id)
def test_probe_case(case: ProbeCase) -> None:
    run = run_kestrel([case.raw])
    layer = SERVER_LAYER.get(case.id)
    if layer is None:
        outcome = predicted_outcome(run)
        assert outcome is not None, f"{case.id}: unexpected upgrade {run.heads[-1]!r}"
        assert expectation_admits(case.expected, outcome), (
            f"{case.id} ({case.description}): suite expects {case.expected!r}, the parser "
            f"gives {outcome} ({run.error or run.end})"
        )
        if case.id in PROBE_ECHO:
            assert run.messages[0][3] == PROBE_ECHO[case.id]
        return

    assert run.heads, f"{case.id}: no request head: {run}"
    head = run.heads[0]
    if layer.upgrade is not None:
        assert head.upgrade is layer.upgrade
    if layer.expect_continue is not None:
        assert head.expect_continue is layer.expect_continue
    if layer.max_request_body_size is None:
        assert run.error is None, f"{case.id}: the parser rejected what the server decides"
        assert run.messages, f"{case.id}: the request is incomplete"
        assert (run.end == "paused") is layer.paused
    else:
        assert (run.error and run.error.reason) is RejectReason.BODY_TOO_LARGE
        assert run_with_body_limit(case.raw, layer.max_request_body_size) is NEED_DATA


def run_with_body_limit(data: bytes, max_request_body_size: int) -> object:
    """The event after the head when the server sets the route's body limit in between."""
    parser = HttpParser()
    parser.feed(data)
    assert isinstance(parser.next_event(), RequestHead)
    parser.max_request_body_size = max_request_body_size
    return parser.next_event()
