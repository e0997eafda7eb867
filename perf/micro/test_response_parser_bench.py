"""Response parser: kestrel's HttpResponseParser against httptools (llhttp) and h11, as a
client drives each.

Each contender reads the canned responses of ``canned.py`` (all 200s, keep-alive) and keeps,
for each response, what kestrel's ResponseHead holds (status, reason, version, header fields,
keep-alive) and the body bytes:

* kestrel: ``expect()`` once per request the client has sent, ``feed(data)``, then
  ``next_event()`` until NEED_DATA. Its head builds the header list on first use, so
  ``kestrel`` times a client that does not read the fields (kestrel-bench: status and body
  length only) and ``kestrel-headers`` one that reads them all, as the peers' clients do.
  kestrel-bench itself drives the same machine from C (execute()), without next_event()'s
  Python-level events;
* httptools: ``HttpResponseParser`` with a client's callbacks (on_message_begin, on_status,
  on_header with the name lowercased, on_headers_complete reading get_status_code() /
  get_http_version() / should_keep_alive(), on_body, on_message_complete);
* h11: a ``Connection(CLIENT)`` that has sent a GET receives the response
  (``receive_data`` + ``next_event()`` until EndOfMessage). h11 reads one response per
  request it has sent and sends the next request only once the previous exchange is done, so
  each round gets a fresh connection that has just sent its GET (benchmark.pedantic with a
  setup, outside the timing: one call per round, the timer's own cost included), and it
  is not in the pipelined group, which would time its request writer as well.

One parser per contender and kind, reused call after call as on a keep-alive connection; the
responses arrive in one piece (one recv()). test_the_parsers_agree checks, before anything is
timed, that all of them hand the client the same responses; every benchmark then checks the
status and body length of what its last call parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import httptools
import pytest
from canned import RESPONSES, CannedResponses
from pytest_benchmark.fixture import BenchmarkFixture

from kestrel._core import END_OF_MESSAGE, NEED_DATA, HttpResponseParser, ResponseHead

H11_ROUNDS = 20_000


@dataclass(frozen=True)
class Parsed:
    """What the client gets for one response, from any parser."""

    status: int
    reason: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    body: bytes


class KestrelClient:
    """kestrel's response parser and the responses of the last call (head, body)."""

    def __init__(self, canned: CannedResponses, *, read_headers: bool = False) -> None:
        self.canned = canned
        self.read_headers = read_headers
        self.parser = HttpResponseParser()
        self.responses: list[tuple[ResponseHead, bytes]] = []

    def parse(self) -> None:
        """The responses arrive (the timed function): register the requests they answer,
        feed them, drain the events."""
        parser = self.parser
        next_event = parser.next_event
        read_headers = self.read_headers
        for _ in range(self.canned.count):
            parser.expect()
        parser.feed(self.canned.raw)
        responses: list[tuple[ResponseHead, bytes]] = []
        head: ResponseHead | None = None
        body = b""
        while True:
            event = next_event()
            if isinstance(event, ResponseHead):
                head = event
                body = b""
                if read_headers:
                    event.headers  # noqa: B018 -- builds the list, as a reading client does
            elif isinstance(event, bytes):
                body += event
            elif event is END_OF_MESSAGE:
                assert head is not None
                responses.append((head, body))
            elif event is NEED_DATA:
                break
            else:  # PAUSED / CLOSED: not expected on a keep-alive connection
                raise RuntimeError(f"unexpected event {event!r}")
        self.responses = responses

    def parsed(self) -> list[Parsed]:
        return [
            Parsed(h.status, h.reason, h.http_version, list(h.headers), h.keep_alive, body)
            for h, body in self.responses
        ]


class _HttptoolsResponse:
    """The per-response state a client builds from httptools callbacks."""

    __slots__ = ("body", "headers", "http_version", "keep_alive", "reason", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.http_version = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.body = b""


class HttptoolsClient:
    """httptools' response parser with a client's callbacks."""

    def __init__(self, canned: CannedResponses) -> None:
        self.canned = canned
        self.parser: Any = httptools.HttpResponseParser(self)
        self.response = _HttptoolsResponse()
        self.responses: list[_HttptoolsResponse] = []

    def parse(self) -> None:
        """The responses arrive (the timed function)."""
        self.responses = []
        self.parser.feed_data(self.canned.raw)

    def on_message_begin(self) -> None:
        self.response = _HttptoolsResponse()

    def on_status(self, reason: bytes) -> None:
        self.response.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        response = self.response
        response.status = parser.get_status_code()
        response.http_version = parser.get_http_version()
        response.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.response.body += body

    def on_message_complete(self) -> None:
        self.responses.append(self.response)

    def parsed(self) -> list[Parsed]:
        return [
            Parsed(r.status, r.reason, r.http_version, r.headers, r.keep_alive, r.body)
            for r in self.responses
        ]


class H11Client:
    """h11 as a client: a connection that has sent a GET reads its response."""

    def __init__(self, canned: CannedResponses) -> None:
        if canned.count != 1:
            raise ValueError("h11 reads one response per exchange")
        self.canned = canned
        self.responses: list[Parsed] = []

    @staticmethod
    def connection() -> tuple[tuple[h11.Connection], dict[str, Any]]:
        """pedantic's setup: a client connection that has sent a GET, awaiting the answer."""
        connection = h11.Connection(h11.CLIENT)
        connection.send(h11.Request(method="GET", target="/", headers=[("Host", "bench")]))
        connection.send(h11.EndOfMessage())
        return (connection,), {}

    def parse(self, connection: h11.Connection) -> None:
        """The response arrives (the timed function)."""
        connection.receive_data(self.canned.raw)
        head: h11.Response | None = None
        body = b""
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # NEED_DATA, ConnectionClosed...: the canned response is whole
                raise RuntimeError(f"unexpected event {event!r}")
        assert head is not None
        keep_alive = connection.their_state is h11.DONE
        version = head.http_version.decode()
        headers = list(head.headers)
        self.responses = [Parsed(head.status_code, head.reason, version, headers, keep_alive, body)]

    def parsed(self) -> list[Parsed]:
        return self.responses


CONTENDERS = ["kestrel", "kestrel-headers", "httptools", "h11"]


def client(contender: str, kind: str) -> KestrelClient | HttptoolsClient | H11Client:
    canned = RESPONSES[kind]
    if contender == "httptools":
        return HttptoolsClient(canned)
    if contender == "h11":
        return H11Client(canned)
    return KestrelClient(canned, read_headers=contender == "kestrel-headers")


def check(kind: str, parsed: list[Parsed]) -> None:
    """What the last call parsed is what was sent."""
    canned = RESPONSES[kind]
    assert len(parsed) == canned.count
    assert all(r.status == canned.status for r in parsed)
    assert all(len(r.body) == canned.body_length for r in parsed)


KINDS = pytest.mark.parametrize("kind", RESPONSES, ids=lambda kind: kind.replace(" ", "-"))


@KINDS
def test_the_parsers_agree(kind: str) -> None:
    """kestrel and httptools, reused for two calls, and h11 where it fits, hand the client
    the same responses."""
    kestrel = KestrelClient(RESPONSES[kind])
    peer = HttptoolsClient(RESPONSES[kind])
    for _ in range(2):
        kestrel.parse()
        peer.parse()
        assert kestrel.parsed() == peer.parsed()
        check(kind, kestrel.parsed())
        assert all(r.keep_alive for r in kestrel.parsed())
    if RESPONSES[kind].count == 1:
        h11_client = H11Client(RESPONSES[kind])
        (connection,), _ = H11Client.connection()
        h11_client.parse(connection)
        assert h11_client.parsed() == kestrel.parsed()


PARAMETRIZE = [
    pytest.param(contender, kind, id=f"{contender}-{kind.replace(' ', '-')}")
    for kind, canned in RESPONSES.items()
    for contender in CONTENDERS
    if contender != "h11" or canned.count == 1
]


@pytest.mark.parametrize(("contender", "kind"), PARAMETRIZE)
def test_parse_response(benchmark: BenchmarkFixture, contender: str, kind: str) -> None:
    benchmark.group = f"parse response: {kind}"
    parser = client(contender, kind)
    if isinstance(parser, H11Client):
        pedantic: Callable[..., Any] = benchmark.pedantic  # untyped in pytest-benchmark
        pedantic(parser.parse, setup=H11Client.connection, rounds=H11_ROUNDS, warmup_rounds=100)
    else:
        benchmark(parser.parse)
    check(kind, parser.parsed())
