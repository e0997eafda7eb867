"""The heavy scenarios of `kestrel-bench suite` (kestrel/bench/transfer.py, idle.py and
slowloris.py) against a real kestrel server in a thread of this process, serving the suite's
own app (kestrel/bench/bench_app.py) on a free port; sizes and counts are cut down so the
file runs in seconds.

The server shares this process, so the RSS figures are of both ends together here: the tests
check that they are read (positive, peak at least the reading before), not their size. What
is checked exactly is what the clients count: bytes moved both ways, answers on every idle
connection, slow connections held or closed. Each scenario also gets a budget too small for
it, and must come back within that budget and a second, saying why in ``failed`` or the note.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

import pytest
from scripted_server import Answer, scripted_server

import kestrel
from kestrel import App, Request, Response
from kestrel.bench.bench_app import app
from kestrel.bench.cell import Cell
from kestrel.bench.idle import measure_idle
from kestrel.bench.slowloris import measure_slowloris
from kestrel.bench.transfer import measure_transfer

MiB = 1024 * 1024


def this_process() -> list[int]:
    return [os.getpid()]


@pytest.fixture
def open_files_limit() -> Iterator[None]:
    """The scenarios raise RLIMIT_NOFILE to the hard limit; put it back for the other tests."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with kestrel.serve_in_thread(app, port=0) as server:
        yield server.port


def timed(run: object) -> tuple[Cell, float]:
    assert callable(run)
    started = time.monotonic()
    cell = run()
    assert isinstance(cell, Cell)
    return cell, time.monotonic() - started


# ---- transfer


def test_transfer_moves_every_byte_both_ways(port: int) -> None:
    cell = measure_transfer(
        "127.0.0.1", port, this_process, quick=True, budget=20, size=32 * MiB + 12345
    )
    assert cell.ok, cell
    assert cell.errors == 0
    assert cell.figures["upload MB/s"] > 0
    assert cell.figures["download MB/s"] > 0
    assert cell.figures["RSS before MiB"] > 0
    assert cell.figures["peak RSS MiB"] >= cell.figures["RSS before MiB"] * 0.9


def test_transfer_fails_when_the_server_miscounts_the_upload() -> None:
    miscounting = App()

    @miscounting.post("/upload")
    async def upload(request: Request) -> Response:
        body = await request.body()
        return Response(b"%d" % (len(body) - 1), content_type="text/plain")

    with kestrel.serve_in_thread(miscounting, port=0) as server:
        cell = measure_transfer(
            "127.0.0.1", server.port, this_process, quick=True, budget=10, size=MiB
        )
    assert cell.failed is not None
    assert f"counted b'{MiB - 1}' bytes of {MiB} sent" in cell.failed
    assert cell.errors == 2  # and the download: this app has no /download (404)
    assert "download: the server answered 404" in cell.failed


def test_transfer_fails_when_the_download_is_short() -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
    with scripted_server(lambda n: Answer(short, close=True)) as server:
        cell = measure_transfer(
            "127.0.0.1", server.port, this_process, quick=True, budget=10, size=MiB
        )
    assert cell.failed is not None
    assert f"download: the answer has Content-Length 1000, not Content-Length {MiB}" in (
        cell.failed
    )


def test_transfer_within_a_tiny_budget(port: int) -> None:
    budget = 0.6
    cell, took = timed(
        lambda: measure_transfer("127.0.0.1", port, this_process, quick=False, budget=budget)
    )
    assert took <= budget + 1
    assert "budget" in (cell.failed or "") + cell.note
    for leg in ("upload", "download"):
        if f"{leg} MB/s" in cell.figures:  # what was moved, with the note saying so
            assert f"{leg} cut by the 0.6 s budget" in cell.note


# ---- idle


def test_idle_connections_are_all_served_again(port: int, open_files_limit: None) -> None:
    cell = measure_idle("127.0.0.1", port, this_process, quick=True, budget=20, connections=300)
    assert cell.ok, cell
    assert cell.errors == 0, cell.note
    assert cell.figures["served"] == cell.figures["of"] == 300
    # Both ends' memory here (one process, which earlier tests left with freed heap that the
    # connections may reuse), so the figure says nothing but that it was measured.
    assert cell.figures["KiB per idle connection"] >= 0
    assert "300 opened" in cell.note


def test_idle_counts_connections_that_cannot_be_opened(open_files_limit: None) -> None:
    hello = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"
    # The warm-up's 100 answers, then 20 connections that each get one answer and a close.
    with scripted_server(lambda n: Answer(hello, close=n >= 100)) as server:
        cell = measure_idle(
            "127.0.0.1", server.port, this_process, quick=True, budget=10, connections=20
        )
    assert cell.figures["served"] == 0
    assert cell.figures["of"] == 20
    assert cell.errors == 20
    assert "20 closed by the server" in cell.note


def test_idle_within_a_tiny_budget(port: int, open_files_limit: None) -> None:
    budget = 0.5
    cell, took = timed(
        lambda: measure_idle(
            "127.0.0.1", port, this_process, quick=True, budget=budget, connections=5000
        )
    )
    assert took <= budget + 1
    assert "budget" in (cell.failed or "") + cell.note


# ---- slowloris


def test_slowloris_held_while_the_fast_load_runs(port: int, open_files_limit: None) -> None:
    cell = measure_slowloris(
        "127.0.0.1", port, this_process, quick=True, budget=15, slow_connections=100, seconds=1
    )
    assert cell.ok, cell
    assert cell.errors == 0, cell.note
    assert cell.non_2xx == 0
    assert cell.figures["slowloris held"] == 100
    assert cell.figures["slowloris closed by server"] == 0
    assert cell.rate is not None and cell.rate > 0
    assert cell.figures["fast req/s"] == cell.rate
    assert cell.p99_us is not None and cell.p99_us > 0


def test_slowloris_closed_by_the_headers_timeout(open_files_limit: None) -> None:
    with kestrel.serve_in_thread(app, port=0, request_headers_timeout=0.5) as server:
        cell = measure_slowloris(
            "127.0.0.1", server.port, this_process, quick=True, budget=15,
            slow_connections=50, seconds=1.5,
        )  # fmt: skip
    assert cell.ok, cell
    assert cell.figures["slowloris held"] == 0
    assert cell.figures["slowloris closed by server"] == 50
    assert "50 HTTP/1.1 408 Request Timeout" in cell.note
    assert cell.rate is not None and cell.rate > 0


def test_slowloris_within_a_tiny_budget(port: int, open_files_limit: None) -> None:
    budget = 0.8
    cell, took = timed(
        lambda: measure_slowloris("127.0.0.1", port, this_process, quick=True, budget=budget)
    )
    assert took <= budget + 1
    assert cell.failed == "the 0.8 s budget left no time for the fast load"
