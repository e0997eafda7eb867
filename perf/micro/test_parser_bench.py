"""Request parser: kestrel's HttpParser against httptools (llhttp), as a server drives each.

* httptools with the callbacks uvicorn registers (on_message_begin, on_url, on_header with the
  name lowercased, on_headers_complete reading get_method() / get_http_version() /
  should_keep_alive(), on_body, on_message_complete), collecting each request into an object
  that holds what kestrel's RequestHead holds, plus the body bytes;
* kestrel with feed(data) and next_event() until NEED_DATA, keeping the RequestHead and the
  body bytes.

One parser per contender and request, reused for every request as on a keep-alive
connection; each request arrives in one piece (one recv()). test_the_parsers_agree checks,
before anything is timed, that both hand the server the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import pytest
from canned import REQUESTS
from pytest_benchmark.fixture import BenchmarkFixture

from kestrel._core import END_OF_MESSAGE, NEED_DATA, HttpParser, RequestHead


@dataclass(frozen=True)
class Parsed:
    """What the server gets for one request, from either parser."""

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    body: bytes


class _HttptoolsRequest:
    """The per-request state uvicorn builds from httptools callbacks (its scope + body)."""

    __slots__ = (
        "body",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "target",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.http_version = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.expect_continue = False
        self.body = b""


class HttptoolsConsumer:
    """httptools callbacks as uvicorn's HttpToolsProtocol registers them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parser: Any = httptools.HttpRequestParser(self)
        self.request = _HttptoolsRequest()
        self.completed: _HttptoolsRequest | None = None

    def parse_one(self) -> None:
        """One request arrives (the timed function)."""
        self.parser.feed_data(self.data)

    def on_message_begin(self) -> None:
        self.request = _HttptoolsRequest()

    def on_url(self, url: bytes) -> None:
        self.request.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.request.expect_continue = True
        self.request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        request = self.request
        request.http_version = parser.get_http_version()
        request.method = parser.get_method().decode("ascii")
        request.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.request.body += body

    def on_message_complete(self) -> None:
        self.completed = self.request

    def parsed(self) -> Parsed:
        r = self.completed
        assert r is not None, "httptools: no complete message"
        return Parsed(r.method, r.target, r.http_version, r.headers, r.keep_alive, r.body)


class KestrelConsumer:
    """kestrel's parser and the last complete request (head, body)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parser = HttpParser()
        self.completed: tuple[RequestHead, bytes] | None = None

    def parse_one(self) -> None:
        """One request arrives (the timed function): feed it, drain the events."""
        parser = self.parser
        next_event = parser.next_event
        parser.feed(self.data)
        head: RequestHead | None = None
        body = b""
        while True:
            event = next_event()
            if isinstance(event, RequestHead):
                head = event
                body = b""
            elif isinstance(event, bytes):
                body += event
            elif event is END_OF_MESSAGE:
                assert head is not None
                self.completed = (head, body)
            elif event is NEED_DATA:
                break
            else:  # PAUSED / CLOSED: not expected on a keep-alive connection
                raise RuntimeError(f"unexpected event {event!r}")

    def parsed(self) -> Parsed:
        assert self.completed is not None, "kestrel: no complete message"
        h, body = self.completed
        return Parsed(h.method, h.target, h.http_version, list(h.headers), h.keep_alive, body)


CONSUMERS: dict[str, Callable[[bytes], KestrelConsumer | HttptoolsConsumer]] = {
    "kestrel": KestrelConsumer,
    "httptools": HttptoolsConsumer,
}
KINDS = pytest.mark.parametrize("kind", REQUESTS, ids=lambda kind: kind.replace(" ", "-"))


@KINDS
def test_the_parsers_agree(kind: str) -> None:
    """Both parsers, reused for two requests, hand the server the same request."""
    kestrel = KestrelConsumer(REQUESTS[kind])
    peer = HttptoolsConsumer(REQUESTS[kind])
    for _ in range(2):
        kestrel.parse_one()
        peer.parse_one()
        assert kestrel.parsed() == peer.parsed()
    assert kestrel.parsed().keep_alive
    assert kind != "chunked POST" or len(kestrel.parsed().body) > 900


@KINDS
@pytest.mark.parametrize("contender", CONSUMERS)
def test_parse_request(benchmark: BenchmarkFixture, contender: str, kind: str) -> None:
    benchmark.group = f"parse request: {kind}"
    consumer = CONSUMERS[contender](REQUESTS[kind])
    benchmark(consumer.parse_one)
    assert consumer.completed is not None
