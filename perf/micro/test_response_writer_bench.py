"""Response heads: kestrel's ResponseWriter against h11's, for a few typical responses.

Each builds the head of one response from the status, the app's header list and what the
server knows (the body's length, or -1 for a stream), and decides its framing; both validate
every header name and value on the way.

* kestrel: ``ResponseWriter.format_head`` (the engine calls the same ``write_head`` from C;
  format_head adds a copy of the head into a bytes object and the decision tuple).
* h11: ``Connection(SERVER).send(Response(...))``, the event built inside the timed call
  since that is where h11 validates the headers. The server passes Date, Server and the
  Content-Length itself, as an h11 server does (kestrel's writer adds them), so both heads
  hold the same fields (test_the_heads_agree). An h11 connection sends one response per
  request it has received, so each round gets a connection that has just received a GET
  (benchmark.pedantic with a setup, outside the timing): one call per round, the timer's own
  cost (well under 1 % of h11's time) included.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

import h11
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from kestrel._core import new_response_writer

Fields = list[tuple[bytes, bytes]]

_APP_FIELDS: Fields = [
    (b"cache-control", b"no-store"),
    (b"set-cookie", b"session=8f2k1q9xv0c3; Path=/; HttpOnly; SameSite=Lax"),
    (b"x-request-id", b"5b0f6a1e-3c1d-4f7e-9a51-0c6f3b2d7e44"),
    (b"vary", b"Accept-Encoding"),
]
# case -> (status, the app's fields, content type, body length; -1: a stream)
CASES: dict[str, tuple[int, Fields, bytes, int]] = {
    "plaintext": (200, [], b"text/plain", 13),
    "JSON, 4 app fields": (200, _APP_FIELDS, b"application/json", 512),
    "stream, chunked": (200, [], b"text/event-stream", -1),
}
H11_ROUNDS = 20_000
_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def kestrel_head(case: str) -> Callable[[], Any]:
    status, fields, content_type, length = CASES[case]
    format_head = new_response_writer().format_head

    def write() -> Any:
        return format_head(status, headers=fields, content_type=content_type, body_length=length)

    return write


def h11_fields(case: str) -> Fields:
    """What an h11 server hands h11 for this response (kestrel's writer adds the last ones)."""
    _, fields, content_type, length = CASES[case]
    server = [
        (b"content-type", content_type),
        (b"date", email.utils.formatdate(usegmt=True).encode()),
        (b"server", b"kestrel"),
    ]
    return fields + server + ([(b"content-length", b"%d" % length)] if length >= 0 else [])


def h11_connection() -> tuple[tuple[h11.Connection], dict[str, Any]]:
    """pedantic's setup: a server connection that has received a GET, ready to answer."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(_REQUEST)
    while connection.next_event() is not h11.NEED_DATA:
        pass
    return (connection,), {}


def h11_head(case: str) -> Callable[[h11.Connection], bytes | None]:
    status = CASES[case][0]
    fields = h11_fields(case)
    response = h11.Response
    reason = b"OK"

    def write(connection: h11.Connection) -> bytes | None:
        return connection.send(response(status_code=status, headers=fields, reason=reason))

    return write


PARAMETRIZE_CASES = pytest.mark.parametrize("case", CASES, ids=lambda c: c.split(",")[0])


def _lines(head: bytes) -> list[bytes]:
    return sorted(head.lower().split(b"\r\n"))


@PARAMETRIZE_CASES
def test_the_heads_agree(case: str) -> None:
    kestrel = kestrel_head(case)()[0]
    (connection,), _ = h11_connection()
    peer = h11_head(case)(connection)
    assert peer is not None
    # The Date lines may straddle a second.
    assert [line for line in _lines(kestrel) if not line.startswith(b"date:")] == [
        line for line in _lines(peer) if not line.startswith(b"date:")
    ]


@PARAMETRIZE_CASES
@pytest.mark.parametrize("contender", ["kestrel", "h11"])
def test_write_head(benchmark: BenchmarkFixture, contender: str, case: str) -> None:
    benchmark.group = f"response head: {case}"
    if contender == "kestrel":
        benchmark(kestrel_head(case))
    else:
        pedantic: Callable[..., Any] = benchmark.pedantic  # untyped in pytest-benchmark
        pedantic(h11_head(case), setup=h11_connection, rounds=H11_ROUNDS, warmup_rounds=100)
