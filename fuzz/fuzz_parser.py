"""Atheris fuzz harness for kestrel._core.HttpParser (the sans-IO request parser).

Run:  python fuzz/fuzz_parser.py fuzz/corpus fuzz/seeds -max_total_time=600
See fuzz/README.md for what it checks and how fuzzer inputs are laid out.

Layout of one fuzzer input (libFuzzer / atheris FuzzedDataProvider conventions: integers are
taken from the END of the input, bytes from the front):

    payload bytes ... | control bytes, read backwards

Control, in the order it is consumed (each integer is one byte unless noted):
    flags           bit0: feed_eof() after the last piece
                    bit1: resume() after PAUSED when the paused message was an Upgrade (not
                          CONNECT) that keeps the connection (the server declining it)
                    bit2: small limits: five more bytes follow (see _decode_limits)
                    bit3: after every RequestHead, set max_request_body_size to one more byte's
                          value (the server's per-route limit)
    [limits]        5 bytes, only with bit2
    [body limit]    1 byte, only with bit3 (-1..254)
    n_cuts          0..15 split points
    cuts            n_cuts 2-byte integers, each taken modulo len(payload) + 1
    payload         all remaining bytes

An input shorter than its control decodes with every missing integer at its minimum, so a raw
HTTP request is still a valid (whole-feed, default-limit) input apart from its last bytes.

This module imports without atheris: `check_case`, `decode_case` and `PyDataProvider` are used
by tests/test_fuzz_seeds.py to replay fuzz/seeds/ in CI.
"""

from __future__ import annotations

import itertools
import sys
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Run as a script (python fuzz/fuzz_parser.py) the repository root is not on sys.path.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kestrel._core import (  # noqa: E402
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

ALLOWED_STATUSES = frozenset({400, 413, 414, 431, 501, 505})
MAX_CUTS = 15

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TCHAR_STR = frozenset(chr(c) for c in TCHAR)
LOWER_TCHAR = frozenset(c for c in TCHAR if not (0x41 <= c <= 0x5A))
# field-value bytes that may appear in a reported value: VCHAR, obs-text, SP, HTAB.
VALUE_BYTES = frozenset([0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)])
TARGET_BYTES = frozenset(range(0x21, 0x7F))
HOST_BYTES = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+;=:[]"
)

Feedback = Callable[[Hashable], None]


class InvariantViolation(AssertionError):
    """The parser broke one of the properties this harness checks."""


# --------------------------------------------------------------------------------------------
# Decoding a fuzzer input


class DataProvider(Protocol):
    """The part of atheris.FuzzedDataProvider that decode_case uses."""

    def ConsumeIntInRange(self, lo: int, hi: int) -> int: ...
    def ConsumeBytes(self, count: int) -> bytes: ...
    def remaining_bytes(self) -> int: ...


class PyDataProvider:
    """Pure-Python stand-in for atheris.FuzzedDataProvider (the three methods used here).

    Same semantics as libFuzzer's FuzzedDataProvider::ConsumeIntegralInRange: integers are
    read from the end of the data, most significant byte first, reduced modulo the range.
    tests/test_fuzz_seeds.py checks that it agrees with atheris when atheris is installed.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._start = 0
        self._end = len(data)

    def remaining_bytes(self) -> int:
        return self._end - self._start

    def ConsumeIntInRange(self, lo: int, hi: int) -> int:
        if lo > hi:
            raise ValueError("lo > hi")
        span = hi - lo
        result = 0
        offset = 0
        while offset < 64 and (span >> offset) > 0 and self._end > self._start:
            self._end -= 1
            result = (result << 8) | self._data[self._end]
            offset += 8
        if span != (1 << 64) - 1:
            result %= span + 1
        return lo + result

    def ConsumeBytes(self, count: int) -> bytes:
        count = max(0, min(count, self.remaining_bytes()))
        chunk = self._data[self._start : self._start + count]
        self._start += count
        return chunk


@dataclass(frozen=True)
class FuzzCase:
    """One decoded fuzzer input: what to feed and how."""

    payload: bytes
    cuts: tuple[int, ...] = ()  # sorted, distinct split offsets strictly inside the payload
    feed_eof: bool = True
    resume_upgrades: bool = False
    limits: dict[str, int] | None = None  # HttpParser keyword arguments; None: defaults
    body_limit_after_head: int | None = None

    def pieces(self) -> list[bytes]:
        bounds = [0, *self.cuts, len(self.payload)]
        return [self.payload[a:b] for a, b in itertools.pairwise(bounds)]


FLAG_EOF = 1
FLAG_RESUME = 2
FLAG_SMALL_LIMITS = 4
FLAG_BODY_LIMIT = 8


# Small limits: (lowest, highest) for each HttpParser keyword, one control byte each.
# HttpParser refuses a max_request_line_size below 16.
SMALL_LIMITS = {
    "max_request_line_size": (16, 271),
    "max_request_headers_size": (0, 255),
    "max_request_headers": (0, 15),
    "max_request_body_size": (-1, 254),
    "max_chunk_extensions_size": (0, 63),
}


def _decode_limits(fdp: DataProvider) -> dict[str, int]:
    return {key: fdp.ConsumeIntInRange(lo, hi) for key, (lo, hi) in SMALL_LIMITS.items()}


def decode_case(fdp: DataProvider) -> FuzzCase:
    """Turn fuzzer bytes into a FuzzCase (see the module docstring for the layout)."""
    flags = fdp.ConsumeIntInRange(0, 255)
    limits = _decode_limits(fdp) if flags & FLAG_SMALL_LIMITS else None
    body_limit = fdp.ConsumeIntInRange(-1, 254) if flags & FLAG_BODY_LIMIT else None
    n_cuts = fdp.ConsumeIntInRange(0, MAX_CUTS)
    raw_cuts = [fdp.ConsumeIntInRange(0, 65535) for _ in range(n_cuts)]
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    n = len(payload)
    cuts = tuple(sorted({c % (n + 1) for c in raw_cuts} - {0, n}))
    return FuzzCase(
        payload=payload,
        cuts=cuts,
        feed_eof=bool(flags & FLAG_EOF),
        resume_upgrades=bool(flags & FLAG_RESUME),
        limits=limits,
        body_limit_after_head=body_limit,
    )


def encode_case(case: FuzzCase) -> bytes:
    """Inverse of decode_case: the fuzzer input that decodes to `case` (used by make_seeds)."""
    consumed: list[int] = []  # control bytes in the order decode_case reads them
    flags = (
        (FLAG_EOF if case.feed_eof else 0)
        | (FLAG_RESUME if case.resume_upgrades else 0)
        | (FLAG_SMALL_LIMITS if case.limits is not None else 0)
        | (FLAG_BODY_LIMIT if case.body_limit_after_head is not None else 0)
    )
    consumed.append(flags)
    if case.limits is not None:
        for key, (lo, _) in SMALL_LIMITS.items():
            consumed.append(case.limits[key] - lo)
    if case.body_limit_after_head is not None:
        consumed.append(case.body_limit_after_head + 1)
    if len(case.cuts) > MAX_CUTS:
        raise ValueError("too many cuts")
    consumed.append(len(case.cuts))
    for cut in case.cuts:
        consumed += [cut >> 8, cut & 0xFF]  # most significant byte is read first
    if not all(0 <= b <= 255 for b in consumed):
        raise ValueError(f"control value out of range: {consumed}")
    return case.payload + bytes(reversed(consumed))


# --------------------------------------------------------------------------------------------
# Driving the parser and checking invariants


def _token_list(values: Sequence[bytes]) -> set[bytes]:
    out: set[bytes] = set()
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t").lower()
            if item:
                out.add(item)
    return out


def _check_fields(fields: object, what: str) -> list[tuple[bytes, bytes]]:
    if not isinstance(fields, list):
        raise InvariantViolation(f"{what} is {type(fields).__name__}, not list")
    for item in fields:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise InvariantViolation(f"{what} item {item!r} is not a (name, value) pair")
        name, value = item
        if not (isinstance(name, bytes) and isinstance(value, bytes)):
            raise InvariantViolation(f"{what} item {item!r} is not a pair of bytes")
        if not name or not set(name) <= LOWER_TCHAR:
            raise InvariantViolation(f"{what} name {name!r} is not a lowercase token")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise InvariantViolation(f"{what} value {value!r} holds CR, LF or NUL")
        if not set(value) <= VALUE_BYTES:
            raise InvariantViolation(f"{what} value {value!r} holds a control character")
        if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
            raise InvariantViolation(f"{what} value {value!r} keeps leading/trailing OWS")
    return fields


def _check_head(head: RequestHead) -> tuple[object, ...]:
    """Check one RequestHead; return a comparable snapshot of it."""
    method, target, version = head.method, head.target, head.http_version
    if not isinstance(method, str) or not method or not set(method) <= TCHAR_STR:
        raise InvariantViolation(f"method {method!r} is not a token")
    if not isinstance(target, bytes) or not target or not set(target) <= TARGET_BYTES:
        raise InvariantViolation(f"target {target!r} is not printable ASCII")
    if version not in ("1.0", "1.1"):
        raise InvariantViolation(f"http_version {version!r}")
    headers = _check_fields(head.headers, "header")
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name, []).append(value)

    hosts = by_name.get(b"host", [])
    if len(hosts) > 1 or (version == "1.1" and not hosts):
        raise InvariantViolation(f"HTTP/{version} request accepted with {len(hosts)} Host")
    for host in hosts:
        if not host or not set(host) <= HOST_BYTES:
            raise InvariantViolation(f"invalid Host {host!r} accepted")

    cl, chunked = head.content_length, head.chunked
    has_te = b"transfer-encoding" in by_name
    cl_values = by_name.get(b"content-length", [])
    if has_te and cl_values:
        raise InvariantViolation("request with both Content-Length and Transfer-Encoding")
    if has_te and version == "1.0":
        raise InvariantViolation("Transfer-Encoding accepted on HTTP/1.0")
    declared = -1
    if cl_values:
        parts = {part.strip(b" \t") for value in cl_values for part in value.split(b",")}
        if not all(part.isdigit() for part in parts) or len({int(p) for p in parts}) != 1:
            raise InvariantViolation(f"Content-Length {cl_values!r} accepted")
        declared = int(parts.pop())
    # A CONNECT request has no content whatever its headers say (RFC 9110 §9.3.6).
    expected = (-1, False) if method == "CONNECT" else (declared, has_te)
    if (cl, chunked) != expected:
        raise InvariantViolation(
            f"{method} with Content-Length {cl_values!r}, Transfer-Encoding present={has_te}: "
            f"content_length={cl}, chunked={chunked}, expected {expected}"
        )

    connection = _token_list(by_name.get(b"connection", []))
    if head.keep_alive and b"close" in connection:
        raise InvariantViolation("keep_alive with Connection: close")
    if head.keep_alive and version == "1.0" and b"keep-alive" not in connection:
        raise InvariantViolation("keep_alive on HTTP/1.0 without Connection: keep-alive")
    if head.upgrade and method != "CONNECT" and b"upgrade" not in by_name:
        raise InvariantViolation("upgrade set without CONNECT or an Upgrade header")
    if head.expect_continue and not any(
        v.lower() == b"100-continue" for v in by_name.get(b"expect", [])
    ):
        raise InvariantViolation("expect_continue without Expect: 100-continue")
    return (
        "head",
        method,
        target,
        version,
        tuple(headers),
        bool(head.keep_alive),
        cl,
        bool(chunked),
        bool(head.upgrade),
        bool(head.expect_continue),
    )


KNOWN_NAMES = frozenset(
    [b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"]
)


def _target_form(target: bytes) -> str:
    if target.startswith(b"/"):
        return "origin"
    if target == b"*":
        return "asterisk"
    return "absolute" if b"://" in target else "authority"


def _bucket(n: int) -> int:
    return n if n < 4 else 4 + n.bit_length()


def _no_feedback(signature: Hashable) -> None:
    pass


@dataclass
class Run:
    """One drive of a parser over a list of pieces: the events it produced, normalized."""

    case: FuzzCase
    feedback: Feedback
    events: list[tuple[object, ...]] = field(default_factory=list)
    final: tuple[object, ...] = ("need_data",)
    parser: HttpParser | None = None
    head: RequestHead | None = None  # message in progress (None between messages)
    last_head: RequestHead | None = None
    body_bytes: int = 0
    body_events: int = 0
    completed: int = 0
    must_pause: bool = False  # the last message ended the connection
    prev_kind: str = "start"
    calls: int = 0
    call_budget: int = 0

    def _body_limit(self) -> int:
        assert self.parser is not None
        return int(self.parser.max_request_body_size)

    def _event(self, kind: str) -> None:
        self.feedback(("ev", self.prev_kind, kind, self.head is not None))
        self.prev_kind = kind

    def on_head(self, head: RequestHead) -> None:
        self._event("head")
        if self.head is not None:
            raise InvariantViolation("RequestHead before END_OF_MESSAGE of the previous one")
        if self.must_pause:
            raise InvariantViolation("a request was parsed after a connection-ending message")
        snapshot = _check_head(head)
        self.events.append(snapshot)
        self.head = self.last_head = head
        self.body_bytes = 0
        self.body_events = 0
        self.feedback(
            (
                "head",
                head.http_version,
                head.chunked,
                _bucket(head.content_length + 1),
                head.keep_alive,
                head.upgrade,
                head.expect_continue,
                _bucket(len(head.headers)),
                _target_form(head.target),
            )
        )
        for name, _ in head.headers:
            self.feedback(("hdr", name if name in KNOWN_NAMES else b"other"))
        if self.case.body_limit_after_head is not None:
            assert self.parser is not None
            self.parser.max_request_body_size = self.case.body_limit_after_head

    def on_body(self, data: bytes) -> None:
        self._event("body")
        head = self.head
        if head is None:
            raise InvariantViolation(f"body bytes {data[:40]!r} outside a message")
        if not data:
            raise InvariantViolation("empty body event")
        self.body_bytes += len(data)
        self.body_events += 1
        if not head.chunked and self.body_bytes > head.content_length:
            raise InvariantViolation(
                f"{self.body_bytes} body bytes for content_length={head.content_length}"
            )
        limit = self._body_limit()
        if limit >= 0 and self.body_bytes > limit:
            raise InvariantViolation(f"{self.body_bytes} body bytes past the limit {limit}")
        if self.events and self.events[-1][0] == "body":
            previous = self.events.pop()[1]
            assert isinstance(previous, bytes)
            data = previous + data
        self.events.append(("body", data))

    def on_end(self) -> None:
        self._event("eom")
        head = self.head
        if head is None:
            raise InvariantViolation("END_OF_MESSAGE outside a message")
        if not head.chunked and self.body_bytes != max(head.content_length, 0):
            raise InvariantViolation(
                f"END_OF_MESSAGE after {self.body_bytes} body bytes, "
                f"content_length={head.content_length}"
            )
        assert self.parser is not None
        trailers = _check_fields(self.parser.trailers, "trailer")
        if trailers and not head.chunked:
            raise InvariantViolation(f"trailers {trailers!r} on a message that is not chunked")
        self.completed += 1
        if self.parser.messages_completed != self.completed:
            raise InvariantViolation(
                f"messages_completed={self.parser.messages_completed}, "
                f"{self.completed} END_OF_MESSAGE seen"
            )
        self.feedback(("end", head.chunked, _bucket(self.body_events), _bucket(len(trailers))))
        self.events.append(("end", tuple(trailers)))
        self.must_pause = not head.keep_alive or bool(head.upgrade)
        self.head = None

    def next_event(self) -> object:
        assert self.parser is not None
        self.calls += 1
        if self.calls > self.call_budget:
            raise InvariantViolation(f"no terminal event after {self.call_budget} next_event()")
        return self.parser.next_event()

    def reject(self, exc: HttpParseError) -> None:
        reason, status = exc.reason, exc.status
        if not isinstance(reason, RejectReason):
            raise InvariantViolation(f"HttpParseError.reason {reason!r} is not a RejectReason")
        if status not in ALLOWED_STATUSES or REJECT_STATUS.get(reason) != status:
            raise InvariantViolation(
                f"{reason!r} with status {status!r}, REJECT_STATUS says "
                f"{REJECT_STATUS.get(reason)!r}"
            )
        if self.must_pause:
            raise InvariantViolation(f"{reason.name} after a connection-ending message")
        phase = "idle" if self.head is None else ("chunked" if self.head.chunked else "body")
        self.feedback(
            ("reject", reason, phase, self.case.limits is not None, _bucket(self.completed))
        )
        self._event("reject")
        self.final = ("reject", reason.name, status)
        # The parser stays failed.
        assert self.parser is not None
        try:
            again = self.parser.next_event()
        except HttpParseError as exc2:
            if exc2.reason != reason:
                raise InvariantViolation(
                    f"failed with {reason.name}, then with {exc2.reason!r}"
                ) from None
        else:
            raise InvariantViolation(f"after {reason.name}, next_event() returned {again!r}")

    def drive(self) -> bool:
        """Pull events until the parser needs data; True when the run is over."""
        assert self.parser is not None
        while True:
            try:
                event = self.next_event()
            except HttpParseError as exc:
                self.reject(exc)
                return True
            if event is NEED_DATA:
                if self.must_pause:
                    raise InvariantViolation("NEED_DATA after a connection-ending message")
                return False
            if event is PAUSED:
                self._event("paused")
                if not self.must_pause:
                    raise InvariantViolation("PAUSED without a connection-ending message")
                last = self.last_head
                if (
                    self.case.resume_upgrades
                    and last is not None
                    and last.upgrade
                    and last.keep_alive
                    and last.method != "CONNECT"  # a declined CONNECT closes instead
                ):
                    self.parser.resume()
                    self.events.append(("resume",))
                    self.must_pause = False
                    continue
                self.final = ("paused",)
                return True
            if event is CLOSED:
                self._event("closed")
                if self.head is not None:
                    raise InvariantViolation("CLOSED inside a message")
                if self.must_pause:
                    raise InvariantViolation("CLOSED instead of PAUSED")
                self.final = ("closed",)
                return True
            if event is END_OF_MESSAGE:
                self.on_end()
            elif isinstance(event, RequestHead):
                self.on_head(event)
            elif type(event) is bytes:
                self.on_body(event)
            else:
                raise InvariantViolation(f"unexpected event {event!r}")

    def run(self, pieces: Sequence[bytes]) -> Run:
        case = self.case
        self.call_budget = 3 * len(case.payload) + 16 * len(pieces) + 64
        try:
            self.parser = HttpParser(**case.limits) if case.limits else HttpParser()
        except (ValueError, OverflowError) as exc:
            raise InvariantViolation(f"HttpParser({case.limits}) refused: {exc!r}") from None
        for piece in pieces:
            try:
                self.parser.feed(piece)
            except HttpParseError as exc:
                self.reject(exc)
                return self
            if self.drive():
                return self
        if case.feed_eof:
            try:
                self.parser.feed_eof()
            except HttpParseError as exc:
                self.reject(exc)
                return self
            if self.drive():
                return self
            raise InvariantViolation("NEED_DATA after feed_eof()")
        self.final = ("need_data",)
        return self


def _same_decision(whole: Run, split: Run) -> bool:
    if whole.final != split.final:
        return False
    if whole.events == split.events:
        return True
    if whole.final[0] != "reject":
        return False
    # Rejected in both: the body bytes streamed out of the message that was being rejected may
    # be cut short at a different place (the error is noticed when its bytes arrive); every
    # event before that must agree.
    a, b = list(whole.events), list(split.events)
    x = a.pop()[1] if a and a[-1][0] == "body" else b""
    y = b.pop()[1] if b and b[-1][0] == "body" else b""
    assert isinstance(x, bytes) and isinstance(y, bytes)
    return a == b and (x.startswith(y) or y.startswith(x))


def check_case(case: FuzzCase, feedback: Feedback = _no_feedback) -> Run:
    """Run `case` fed whole and fed in its pieces; raise InvariantViolation on any problem.

    Any exception other than InvariantViolation escaping from here is a parser crash.
    """
    whole = Run(case, feedback).run([case.payload])
    pieces = case.pieces()
    if len(pieces) > 1:
        split = Run(case, _no_feedback).run(pieces)
        if not _same_decision(whole, split):
            raise InvariantViolation(
                "fed whole and fed in pieces disagree:\n"
                f"  pieces: {[len(p) for p in pieces]}\n"
                f"  whole: {whole.final} {_short(whole.events)}\n"
                f"  split: {split.final} {_short(split.events)}"
            )
    feedback(("final", whole.final[:2], case.feed_eof, _bucket(whole.completed)))
    return whole


def _short(events: list[tuple[object, ...]]) -> str:
    text = repr(events)
    return text if len(text) < 2000 else text[:2000] + "..."


def check_input(data: bytes, feedback: Feedback = _no_feedback) -> Run:
    """The fuzz target's body, without atheris: decode `data` and check it."""
    return check_case(decode_case(PyDataProvider(data)), feedback)


# --------------------------------------------------------------------------------------------
# atheris entry point


def main(argv: list[str]) -> None:
    import atheris

    # Coverage: atheris instruments Python bytecode only. The parser is a Cython extension
    # module, so its branches are invisible to libFuzzer; kestrel has no Python code on this
    # path for instrument_imports() to instrument. The harness's own functions are instrumented
    # (they branch on event kinds and reasons), and `feedback` lights one of a pool of atheris
    # counters for each distinct parser behaviour (event transition, head shape, rejection
    # reason per phase, ...), which is what steers the fuzzer through the parser's states.
    pool = [atheris._reserve_counter() for _ in range(16384)]

    def feedback(signature: Hashable) -> None:
        atheris._trace_branch(pool[zlib.crc32(repr(signature).encode()) % len(pool)])

    for func in (check_case, _check_head, _check_fields, _same_decision, decode_case):
        atheris.instrument_func(func)
    for cls_func in (Run.drive, Run.run, Run.on_head, Run.on_body, Run.on_end, Run.reject):
        atheris.instrument_func(cls_func)

    def test_one_input(data: bytes) -> None:
        check_case(decode_case(atheris.FuzzedDataProvider(data)), feedback)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
