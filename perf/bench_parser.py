"""Request-parser benchmark: kestrel._core.HttpParser against httptools (llhttp).

Both parsers are driven the way a server drives them, on canned requests, in the same run:

* httptools with the callbacks uvicorn registers (on_message_begin, on_url, on_header with the
  name lowercased, on_headers_complete reading get_method() / get_http_version() /
  should_keep_alive(), on_body, on_message_complete), collecting each request into a Python
  object that holds what kestrel's RequestHead holds, plus the body bytes;
* kestrel with feed(data) and next_event() until NEED_DATA, keeping the RequestHead and the
  body bytes.

One parser instance per parser and request kind is reused for every request, as on a keep-alive
connection; each request arrives in one piece (one recv()). Rounds alternate which parser runs
first, and the table reports the best round of each parser and their ratio, all from this run.

Run pinned to one core:  taskset -c 1 python perf/bench_parser.py
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httptools  # noqa: E402

import kestrel._core  # noqa: E402
from kestrel._core import (  # noqa: E402
    END_OF_MESSAGE,
    NEED_DATA,
    HttpParser,
    RequestHead,
)

# --------------------------------------------------------------------------------------------
# Canned requests


def _chunked(body: bytes, size: int) -> bytes:
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


SMALL_GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

# What Chrome 124 on Linux sends for a navigation, trimmed to 12 header fields.
BROWSER_GET = (
    b"GET /articles/42?ref=home HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: sessionid=8f2k1q9xv0c3; theme=dark\r\n"
    b"\r\n"
)

_POST_BODY = (
    b'{"items": ['
    + b",".join(b'{"id": %4d, "name": "item-%04d", "qty": %3d}' % (i, i, i % 7) for i in range(22))
    + b"]}"
)
CHUNKED_POST = (
    b"POST /api/v1/orders HTTP/1.1\r\n"
    b"Host: localhost:8000\r\n"
    b"User-Agent: python-httpx/0.27.0\r\n"
    b"Accept: */*\r\n"
    b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n" + _chunked(_POST_BODY, 256)
)

REQUESTS: dict[str, bytes] = {
    "small GET": SMALL_GET,
    "browser GET": BROWSER_GET,
    "chunked POST": CHUNKED_POST,
}

# kestrel / httptools targets from the issue.
TARGETS: dict[str, float] = {"small GET": 1.0, "browser GET": 1.5, "chunked POST": 1.0}


# --------------------------------------------------------------------------------------------
# The two consumers. The timed loops are the same code the sanity check runs.


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


class HttptoolsProtocol:
    """httptools callbacks as uvicorn's HttpToolsProtocol registers them."""

    def __init__(self) -> None:
        self.parser: Any = httptools.HttpRequestParser(self)
        self.request = _HttptoolsRequest()
        self.completed: _HttptoolsRequest | None = None

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


def run_httptools(proto: HttptoolsProtocol, data: bytes, n: int) -> float:
    """Feed `data` n times to one httptools parser; return the elapsed seconds."""
    feed_data = proto.parser.feed_data
    t0 = time.perf_counter()
    for _ in repeat(None, n):
        feed_data(data)
    return time.perf_counter() - t0


class KestrelConsumer:
    """Holds kestrel's parser and the last complete request (head, body)."""

    def __init__(self) -> None:
        self.parser = HttpParser()
        self.completed: tuple[RequestHead, bytes] | None = None


def run_kestrel(consumer: KestrelConsumer, data: bytes, n: int) -> float:
    """Feed `data` n times to one kestrel parser, draining events; return elapsed seconds."""
    feed = consumer.parser.feed
    next_event = consumer.parser.next_event
    head: RequestHead | None = None
    body = b""
    completed: tuple[RequestHead, bytes] | None = None
    t0 = time.perf_counter()
    for _ in repeat(None, n):
        feed(data)
        while True:
            event = next_event()
            if isinstance(event, RequestHead):
                head = event
                body = b""
            elif isinstance(event, bytes):
                body += event
            elif event is END_OF_MESSAGE:
                assert head is not None
                completed = (head, body)
            elif event is NEED_DATA:
                break
            else:  # PAUSED / CLOSED: not expected on a keep-alive connection
                raise RuntimeError(f"unexpected event {event!r}")
    elapsed = time.perf_counter() - t0
    consumer.completed = completed
    return elapsed


def parsed_httptools(proto: HttptoolsProtocol) -> Parsed:
    r = proto.completed
    assert r is not None, "httptools: no complete message"
    return Parsed(r.method, r.target, r.http_version, r.headers, r.keep_alive, r.body)


def parsed_kestrel(consumer: KestrelConsumer) -> Parsed:
    assert consumer.completed is not None, "kestrel: no complete message"
    h, body = consumer.completed
    return Parsed(h.method, h.target, h.http_version, list(h.headers), h.keep_alive, body)


def sanity_check() -> None:
    """Both parsers, reused for two requests, must hand the server the same request."""
    for kind, data in REQUESTS.items():
        proto = HttptoolsProtocol()
        consumer = KestrelConsumer()
        for _ in range(2):
            proto.completed = None
            consumer.completed = None
            run_httptools(proto, data, 1)
            run_kestrel(consumer, data, 1)
            a, b = parsed_kestrel(consumer), parsed_httptools(proto)
            if a != b:
                raise SystemExit(f"{kind}: parsers disagree\n  kestrel:   {a}\n  httptools: {b}")
        if not a.keep_alive or (kind == "chunked POST" and len(a.body) < 900):
            raise SystemExit(f"{kind}: unexpected parse {a}")


# --------------------------------------------------------------------------------------------
# Measurement


PARSERS = ("kestrel", "httptools")


@dataclass
class Series:
    kind: str
    size: int
    n: dict[str, int] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARSERS})

    def best(self, parser: str) -> float:
        return max(self.rates[parser])

    def ratio(self) -> float:
        return self.best("kestrel") / self.best("httptools")

    def round_ratios(self) -> list[float]:
        return [k / h for k, h in zip(self.rates["kestrel"], self.rates["httptools"], strict=True)]


def _calibrate(run: Callable[[int], float], seconds: float) -> int:
    n = 1000
    while True:
        elapsed = run(n)
        if elapsed >= 0.05:
            return max(1000, int(n * seconds / elapsed))
        n *= 4


def measure(rounds: int, seconds: float, progress: bool) -> list[Series]:
    results: list[Series] = []
    runners: dict[str, dict[str, Callable[[int], float]]] = {}
    for kind, data in REQUESTS.items():
        proto = HttptoolsProtocol()
        consumer = KestrelConsumer()
        runners[kind] = {
            "kestrel": partial(run_kestrel, consumer, data),
            "httptools": partial(run_httptools, proto, data),
        }
        series = Series(kind, len(data))
        for parser, run in runners[kind].items():
            series.n[parser] = _calibrate(run, seconds)
        results.append(series)

    for r in range(rounds):
        for series in results:
            order = PARSERS if r % 2 == 0 else PARSERS[::-1]
            for parser in order:
                n = series.n[parser]
                gc.collect()
                elapsed = runners[series.kind][parser](n)
                series.rates[parser].append(n / elapsed)
        if progress:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------------------------
# Environment and report


def _run(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    # rstrip only: `git status --porcelain` lines start with a meaningful space.
    return out.stdout.rstrip()


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = _run("git", "rev-parse", "--short", "HEAD") or "unknown"
    # Untracked files count: an uncommitted parser source is exactly what must not go unnoticed.
    dirty = [line[3:] for line in _run("git", "status", "--porcelain").splitlines()]
    if dirty:
        commit += "+dirty"
    return {
        "cpu": cpu,
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "httptools": httptools.__version__,
        # DEBUG_BUILD is not in the stub: a debug (line-traced) build makes the numbers void.
        "kestrel_build": "debug" if getattr(kestrel._core, "DEBUG_BUILD", False) else "release",
        "commit": commit,
        "dirty_paths": dirty,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": " ".join(["python", *sys.argv]),
    }


def _shorten(paths: list[str], limit: int = 4) -> str:
    shown = ", ".join(paths[:limit])
    return f"changed: {shown}" + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def to_json(env: dict[str, Any], results: list[Series], rounds: int, seconds: float) -> str:
    doc: dict[str, Any] = {
        "benchmark": "parser",
        "environment": env,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "results": [
            {
                "request": s.kind,
                "bytes": s.size,
                "requests_per_round": s.n,
                "rates": s.rates,
                "best": {p: s.best(p) for p in PARSERS},
                "ratio_best": s.ratio(),
                "ratio_median_of_rounds": statistics.median(s.round_ratios()),
                "target": TARGETS[s.kind],
                "target_met": s.ratio() >= TARGETS[s.kind],
            }
            for s in results
        ],
    }
    return json.dumps(doc, indent=2)


def table(env: dict[str, Any], results: list[Series], rounds: int, seconds: float) -> str:
    lines = [
        f"CPU:       {env['cpu']} (affinity {env['cpus_allowed']})",
        f"Python:    {env['python_implementation']} {env['python']}",
        f"httptools: {env['httptools']}",
        f"kestrel:   {env['kestrel_build']} build of kestrel._core"
        + (
            "  ** DEBUG BUILD: NUMBERS ARE MEANINGLESS **"
            if env["kestrel_build"] == "debug"
            else ""
        ),
        f"commit:    {env['commit']}"
        + (f" ({_shorten(env['dirty_paths'])})" if env["dirty_paths"] else ""),
        f"date:      {env['date']}",
        f"rounds:    {rounds} x ~{seconds:g} s per parser and request, best round shown",
        "",
        "| request      | bytes | kestrel req/s | httptools req/s | kestrel/httptools "
        "| per-round ratio: median (min-max) | target |",
        "|--------------|------:|--------------:|----------------:|------------------:"
        "|-----------------------------------|--------|",
    ]
    for s in results:
        rr = s.round_ratios()
        target = TARGETS[s.kind]
        spread = f"{statistics.median(rr):.2f}x ({min(rr):.2f}-{max(rr):.2f})"
        verdict = f">= {target:g}x {'met' if s.ratio() >= target else 'MISSED'}"
        lines.append(
            f"| {s.kind:<12} | {s.size:>5} | {s.best('kestrel'):>13,.0f} "
            f"| {s.best('httptools'):>15,.0f} | {s.ratio():>16.2f}x "
            f"| {spread:<33} | {verdict} |"
        )
    lines.append("")
    lines.append("ns per request (best round), kestrel vs httptools:")
    for s in results:
        k_ns, h_ns = 1e9 / s.best("kestrel"), 1e9 / s.best("httptools")
        lines.append(f"  {s.kind:<12} {k_ns:7.0f} ns vs {h_ns:7.0f} ns")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=7, help="measurement rounds (default 7)")
    ap.add_argument(
        "--seconds-per-round",
        type=float,
        default=0.5,
        help="target duration of one parser's batch for one request kind (default 0.5)",
    )
    ap.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds_per_round <= 0:
        ap.error("--rounds must be >= 1 and --seconds-per-round > 0")

    sanity_check()
    env = environment()
    results = measure(args.rounds, args.seconds_per_round, progress=not args.json)
    if args.json:
        print(to_json(env, results, args.rounds, args.seconds_per_round))
    else:
        print(table(env, results, args.rounds, args.seconds_per_round))
    return 0


if __name__ == "__main__":
    sys.exit(main())
