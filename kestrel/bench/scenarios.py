"""The scenarios of `kestrel-bench suite`, and how one is measured on one running server.

Load scenarios drive one endpoint of the benchmark app (kestrel/bench/bench_app.py) with the
load generator (kestrel.bench.run), closed loop, after a warm-up; each first sends one request
and checks the answer against the app's contract, so a server that answers something else
gets a failed cell instead of a fast figure.

Heavy scenarios measure something else than a rate (MB/s, memory per connection) with a
function of their own (kestrel/bench/transfer.py, idle.py, slowloris.py), named in HEAVY:

    def measure_X(host: str, port: int, server_pids: Callable[[], list[int]], *,
                  quick: bool, budget: float) -> Cell

``budget`` is the seconds it may take. To add one, add a HeavyScenario line to HEAVY.

A scenario names the endpoints it needs; a server that cannot serve one of them gets an
``unsupported`` cell with the reason its contender gives (kestrel/bench/servers.py).
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kestrel.bench.cell import Cell
from kestrel.bench.idle import measure_idle
from kestrel.bench.run import Options, run
from kestrel.bench.slowloris import measure_slowloris
from kestrel.bench.target import make_target
from kestrel.bench.transfer import measure_transfer

KiB = 1024
MiB = 1024 * KiB
ECHO_BODY = b"e" * (64 * KiB)
EARLY_BODY = b"x" * (8 * MiB)
JSON_HELLO = {"message": "Hello, World!"}


def exchange(
    host: str, port: int, request: bytes, timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` and read one response with a Content-Length, reading while sending.

    Reading while the body is still going out is what an early answer needs: a server may
    answer before reading the body and then close, and a client that insisted on sending
    everything first would see only the broken pipe. Header names come back lowercased.
    """
    deadline = time.monotonic() + timeout
    received = bytearray()
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        selectors.DefaultSelector() as selector,
    ):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        unsent = memoryview(request)
        while True:
            parsed = _parse_response(bytes(received))
            if parsed is not None:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole response within {timeout:g} s")
            for _key, events in selector.select(left):
                if events & selectors.EVENT_READ:
                    data = sock.recv(1 << 20)
                    if not data:
                        raise ConnectionError(f"closed after {len(received)} bytes of response")
                    received += data
                if events & selectors.EVENT_WRITE and unsent:
                    try:
                        unsent = unsent[sock.send(unsent) :]
                    except (BrokenPipeError, ConnectionResetError):
                        unsent = unsent[:0]  # the server stopped reading: its answer decides
                    if not unsent:
                        selector.modify(sock, selectors.EVENT_READ)


def _parse_response(data: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("the response has no Content-Length")
    length = int(headers["content-length"])
    return (status, headers, body[:length]) if len(body) >= length else None


Check = Callable[[int, dict[str, str], bytes], str | None]


def _expect(
    status: int, content_type: str, body: Callable[[bytes], bool], mw: bool = False
) -> Check:
    def check(got_status: int, headers: dict[str, str], got: bytes) -> str | None:
        ctype = headers.get("content-type", "")
        if got_status != status or not ctype.startswith(content_type):
            return f"answered {got_status} {ctype!r}, not {status} {content_type!r}"
        if not body(got):
            return f"answered with the wrong body {got[:60]!r}"
        if mw and headers.get("x-mw") != "1":
            return "answered without the middleware's x-mw: 1"
        return None

    return check


def _json_equals(expected: object) -> Callable[[bytes], bool]:
    def check(body: bytes) -> bool:
        try:
            return bool(json.loads(body) == expected)
        except ValueError:
            return False

    return check


@dataclass(frozen=True)
class LoadScenario:
    name: str
    title: str
    endpoint: str  # what the server must serve (the keys of Contender.cannot)
    path: str
    check: Check
    method: str = "GET"
    body: bytes = b""
    connections: int = 64
    pipeline: int = 1

    def heading(self, quick: bool) -> str:
        return self.title  # --quick runs it shorter, not smaller

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def check_answer(self, host: str, port: int, timeout: float = 10.0) -> str | None:
        """One request, checked against the contract: None if right, else what was wrong."""
        target = make_target(f"http://{host}:{port}{self.path}", self.method, [], self.body)
        try:
            status, headers, body = exchange(host, port, target.request, timeout)
        except (OSError, ValueError) as exc:
            return f"{self.method} {self.path}: {type(exc).__name__}: {exc}"
        problem = self.check(status, headers, body)
        return f"{self.method} {self.path} {problem}" if problem else None

    def measure(self, host: str, port: int, *, warmup: float, duration: float) -> Cell:
        problem = self.check_answer(host, port)
        if problem:
            return Cell(failed=problem)
        target = make_target(f"http://{host}:{port}{self.path}", self.method, [], self.body)
        options = Options(
            connections=self.connections,
            duration=duration,
            warmup=warmup,
            pipeline=self.pipeline,
            timeout=10.0,
        )
        result = run(target, options)
        counters = result.counters
        cell = Cell(
            rate=result.rate,
            p99_us=float(result.histogram.value_at_percentile(99.0)) if result.requests else None,
            errors=result.errors,
            non_2xx=result.non_2xx,
            figures={
                "p50 us": float(result.histogram.value_at_percentile(50.0)),
                "p99.9 us": float(result.histogram.value_at_percentile(99.9)),
                "reconnects": float(counters["reconnects"]),
            },
        )
        if counters["reconnects"]:
            cell.note = f"{counters['reconnects']:,} reconnects (the server closed connections)"
        if result.requests == 0:
            cell.failed = f"no request was answered ({result.errors:,} errors)"
        return cell


LOAD: tuple[LoadScenario, ...] = (
    LoadScenario(
        "plaintext-keepalive",
        "plaintext, keep-alive",
        "plaintext",
        "/",
        _expect(200, "text/plain", lambda b: b == b"Hello, World!"),
    ),
    LoadScenario(
        "plaintext-pipelined",
        "plaintext, pipelined x16",
        "plaintext",
        "/",
        _expect(200, "text/plain", lambda b: b == b"Hello, World!"),
        pipeline=16,
    ),
    LoadScenario(
        "json",
        "JSON",
        "json",
        "/json",
        _expect(200, "application/json", _json_equals(JSON_HELLO)),
    ),
    LoadScenario(
        "route",
        "route: /users/42?q=hello, one middleware",
        "route",
        "/users/42?q=hello",
        _expect(200, "application/json", _json_equals({"id": 42, "q": "hello"}), mw=True),
    ),
    LoadScenario(
        "echo-64k",
        "POST /echo, 64 KiB",
        "echo",
        "/echo",
        _expect(200, "application/octet-stream", lambda b: b == ECHO_BODY),
        method="POST",
        body=ECHO_BODY,
    ),
    LoadScenario(
        "early-8m",
        "POST /early, 8 MiB unread",
        "early",
        "/early",
        _expect(200, "text/plain", lambda b: b == b"early"),
        method="POST",
        body=EARLY_BODY,
        connections=16,
    ),
)


class Measure(Protocol):
    def __call__(
        self,
        host: str,
        port: int,
        server_pids: Callable[[], list[int]],
        *,
        quick: bool,
        budget: float,
    ) -> Cell: ...


@dataclass(frozen=True)
class HeavyScenario:
    name: str
    title: str
    quick_title: str  # what --quick measures: the same, smaller
    needs: tuple[str, ...]
    measure: Measure
    budget: float  # seconds it may take in the full suite
    quick_budget: float  # and with --quick

    def heading(self, quick: bool) -> str:
        return self.quick_title if quick else self.title


HEAVY: tuple[HeavyScenario, ...] = (
    HeavyScenario(
        "transfer-1g",
        "1 GiB streamed upload and download",
        "256 MiB streamed upload and download",
        ("upload", "download"),
        measure_transfer,
        budget=40.0,
        quick_budget=8.0,
    ),
    HeavyScenario(
        "idle-10k",
        "10k idle connections, then all served",
        "2,000 idle connections, then all served",
        ("plaintext",),
        measure_idle,
        budget=25.0,
        quick_budget=6.0,
    ),
    HeavyScenario(
        "slowloris",
        "fast clients while 1,000 slowloris connections are held",
        "fast clients while 200 slowloris connections are held",
        ("plaintext",),
        measure_slowloris,
        budget=15.0,
        quick_budget=5.0,
    ),
)

Scenario = LoadScenario | HeavyScenario
SCENARIOS: dict[str, Scenario] = {
    **{s.name: s for s in LOAD},
    **{s.name: s for s in HEAVY},
}
