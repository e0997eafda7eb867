"""Leak checks for the parser.

A debug build (KESTREL_DEBUG=1) counts every parser, RequestHead, ResponseHead, line buffer
and response parser's ring of requests it allocates and frees, and every watchdog thread it
starts and joins; the first test builds one in a scratch copy of the tree and asserts the
counts balance after a workload that touches every path (split lines, bodies, chunked
trailers, errors, EOF). The second checks the release build in this process with
tracemalloc: parsing the same requests and responses many times must not grow memory.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from kestrel._core import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    HttpParseError,
    HttpParser,
    HttpResponseParser,
    LatencyHistogram,
)

ROOT = Path(__file__).resolve().parents[1]

WORKLOAD = [
    b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nX-Custom-Header: y\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;ext="q"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n',
    b"GET / HTTP/1.1\r\nHost: a\r\nX: bad\x00value\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe",
]


OK_5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
# (one "is HEAD" flag per request, the responses), for HttpResponseParser.
RESPONSE_WORKLOAD = [
    ((False,) * 20, OK_5 * 20),  # the ring of requests grows past 16
    (
        (True, False),
        b"HTTP/1.1 100 Continue\r\n\r\n" + OK_5[:-5] + b"HTTP/1.1 200 OK\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: t\r\n\r\n",
    ),
    ((False,), b"HTTP/1.1 200 Fine\r\nX: y\r\n\r\nuntil the close"),
    ((False,), b"HTTP/1.1 200 OK\r\nX: bad\x00value\r\n\r\n"),
    ((), OK_5),  # no request outstanding
]


def drain(parser: HttpParser | HttpResponseParser) -> int:
    events = 0
    try:
        while True:
            event = parser.next_event()
            events += 1
            if event is NEED_DATA or event is PAUSED or event is CLOSED:
                return events
    except HttpParseError:
        return events + 1


def run_workload(rounds: int) -> int:
    """Parse every request and response whole and split in two, `rounds` times; return
    events seen."""
    events = 0
    for _ in range(rounds):
        for raw in WORKLOAD:
            for cut in (len(raw), len(raw) // 2, 7):
                parser = HttpParser()
                parser.feed(raw[:cut])
                parser.feed(raw[cut:])
                parser.feed_eof()
                events += drain(parser)
        for (expects, raw), heads in itertools.product(RESPONSE_WORKLOAD, (True, False)):
            for cut in (len(raw), len(raw) // 2, 7):
                response_parser = HttpResponseParser(heads=heads)
                for is_head in expects:
                    response_parser.expect(is_head)
                response_parser.feed(raw[:cut])
                response_parser.feed(raw[cut:])
                response_parser.feed_eof()
                events += drain(response_parser)
    return events


def serve_workload() -> int:
    """Drive a real server through every engine path; return the responses received."""
    import asyncio
    import http.client

    from kestrel import StreamingResponse, serve_in_thread
    from kestrel._core import Request

    async def app(request: Request) -> object:
        if request.target == b"/echo":
            return await request.body()
        if request.target == b"/stream":
            return StreamingResponse([b"a" * 5000, b"b" * 5000])
        if request.target == b"/fail":
            raise RuntimeError("expected by the leak test")
        if request.target == b"/slow":
            await asyncio.sleep(0.001)
        return "ok"

    responses = 0
    with serve_in_thread(app) as server:
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            for path in ("/", "/slow", "/stream", "/fail"):
                conn.request("GET", path)
                conn.getresponse().read()
                responses += 1
            conn.request("POST", "/echo", body=b"x" * 20000)
            conn.getresponse().read()
            responses += 1
            conn.close()
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                while sock.recv(65536):
                    pass
                responses += 4
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                # A client that leaves in the middle of its body, and a malformed request.
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\nab")
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\nHost: t\r\n\r\n")
                while sock.recv(65536):
                    pass
    return responses


def histogram_workload() -> int:
    """Histograms made every way, merged, half iterated, refused; return how many were made."""
    made = 0
    for round_ in range(10):
        histogram = LatencyHistogram()
        histogram.record(round_ * 1000)
        copy = LatencyHistogram.from_dict(histogram.to_dict())
        copy.merge(histogram)
        buckets = copy.buckets()
        next(buckets)  # a generator left unfinished holds its histogram until it goes
        del buckets
        with pytest.raises(ValueError):
            LatencyHistogram(significant_digits=9)  # refused before its counters exist
        made += 2
    return made


@pytest.mark.interpreter_neutral  # a second build of the C core, counted in C
def test_debug_build_counters_balance(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copytree(
        ROOT / "kestrel",
        tree / "kestrel",
        ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"),
    )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copy(Path(__file__), tree / "leak_workload.py")
    env = dict(os.environ, KESTREL_DEBUG="1")
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"debug build failed:\n{build.stderr[-3000:]}"

    assert (tree / "kestrel" / "_core.html").exists(), "debug build writes the annotation"
    script = textwrap.dedent(
        """
        import gc, json
        import kestrel._core as core
        from leak_workload import run_workload
        assert core.DEBUG_BUILD
        from leak_workload import histogram_workload, serve_workload
        events = run_workload(20)
        responses = serve_workload()
        histograms = histogram_workload()
        gc.collect()
        print(json.dumps({"events": events, "responses": responses, "histograms": histograms,
                          "counters": core.debug_counters()}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tree,
        env=dict(env, PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    counters = report["counters"]
    assert report["events"] > 1000
    assert report["responses"] == 20 * 9
    # Every object the core manages was freed: parsers (the table workload's and one per
    # connection), request and response heads, line and header-field buffers, response
    # parsers' rings of requests, connections, requests, bodies and pipes.
    for name in (
        "parser",
        "request_head",
        "response_head",
        "expected_ring",
        "line_buffer",
        "fields_buffer",
        "connection",
        "request",
        "request_body",
        "pipe",
    ):
        assert counters[f"{name}_alloc"] == counters[f"{name}_free"] > 0, (name, counters)
    assert counters["parser_alloc"] > 20 * len(WORKLOAD) * 3
    # Every histogram's counters were freed, and only those that were allocated.
    assert counters["histogram_alloc"] == counters["histogram_free"] == report["histograms"]
    # The server's watchdog thread (a native thread) was started and joined.
    assert counters["watchdog_thread_started"] == counters["watchdog_thread_joined"] == 1


def test_release_build_does_not_grow() -> None:
    run_workload(50)  # warm caches and freelists
    gc.collect()
    tracemalloc.start()
    try:
        run_workload(50)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        run_workload(500)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 500 rounds are 16,500 parsers and ~60,000 objects; a leak of even one object per parse
    # would show as hundreds of KiB.
    assert after - before < 16 * 1024, f"memory grew by {after - before} bytes"
