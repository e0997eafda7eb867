"""Flow control, proved with numbers: bytes held by the server stay bounded.

Input: a handler that reads its body slowly while the client sends as fast as it can. The
server must stop reading (read pauses are counted) and the process must not grow by the
size of the upload. Output: a streamed response to a client that does not read. The writer
must wait, and the blocks the connection holds must stay near max_response_buffer_size.
"""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from processes import logged_server, send_queues

from kestrel import StreamingResponse, serve_in_thread
from kestrel._core import Request

MIB = 1 << 20


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_slow_reader_pauses_the_socket_and_bounds_memory() -> None:
    upload = 24 * MIB  # under the 30,000,000-byte default body limit
    received: list[int] = []

    async def slow_reader(request: Request) -> str:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            await asyncio.sleep(0.002)  # far slower than loopback
        received.append(total)
        return "done"

    with serve_in_thread(slow_reader) as server:
        payload = b"x" * MIB
        peak = before = rss_bytes()
        most_blocks = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % upload)
            for _ in range(upload // MIB):
                sock.sendall(payload)
                peak = max(peak, rss_bytes())
                most_blocks = max(most_blocks, server.metrics()["pool_blocks_in_use"])
            response = sock.recv(4096)
        metrics = server.metrics()
    assert response.startswith(b"HTTP/1.1 200")
    assert received == [upload]
    assert metrics["read_pauses"] >= 1
    # Every byte the server holds is a pooled 4 KiB block: at most the 1 MiB watermark plus
    # one 64 KiB read, whatever the size of the upload.
    assert most_blocks <= (MIB + 64 * 1024) // 4096 + 2, most_blocks
    assert metrics["pool_blocks_in_use"] == 0
    # 1 MiB watermark + one 64 KiB read + chunk objects in flight: far below the upload.
    assert peak - before < 16 * MIB, f"RSS grew {(peak - before) / MIB:.1f} MiB"


def test_client_that_does_not_read_makes_the_writer_wait() -> None:
    chunk = b"y" * (64 * 1024)
    total_chunks = 512  # 32 MiB
    produced: list[int] = []

    async def big_stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for i in range(total_chunks):
                produced.append(i)
                yield chunk

        return StreamingResponse(body(), content_type="application/octet-stream")

    with (
        serve_in_thread(big_stream) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)  # the client reads nothing for a while
        stalled_at = len(produced)
        time.sleep(0.3)
        assert len(produced) == stalled_at, "the writer kept producing while blocked"
        metrics = server.metrics()
        assert metrics["write_pauses"] >= 1
        # Held output: at most max_response_buffer_size (64 KiB) plus the chunk that
        # crossed it, in 4 KiB blocks.
        assert metrics["pool_blocks_in_use"] <= (64 + 64) // 4 + 2
        assert stalled_at < total_chunks // 4  # kernel buffers took only a little
        received = 0
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            received += len(data)
    assert len(produced) == total_chunks
    assert received > total_chunks * len(chunk)  # the body plus chunk framing and head


def test_reading_resumes_below_the_low_watermark() -> None:
    """A handler that stops reading for a while, then reads everything, gets it all."""
    go = threading.Event()
    sizes: list[int] = []

    async def handler(request: Request) -> str:
        total = 0
        stream = request.stream()
        async for chunk in stream:
            total += len(chunk)
            if not go.is_set():
                while not go.is_set():
                    await asyncio.sleep(0.01)
        sizes.append(total)
        return "ok"

    upload = 8 * MIB
    with (
        serve_in_thread(handler) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % upload)
        sender = threading.Thread(target=sock.sendall, args=(b"z" * upload,))
        sender.start()
        time.sleep(0.4)
        paused = server.metrics()["read_pauses"]
        go.set()
        sender.join(timeout=20)
        response = sock.recv(4096)
    assert paused >= 1
    assert response.startswith(b"HTTP/1.1 200")
    assert sizes == [upload]


def test_body_over_the_limit_while_reading_is_a_413() -> None:
    """A chunked body that passes the limit mid-read: the client gets 413, not a 500."""

    async def reader(request: Request) -> str:
        await request.body()
        return "unreachable"

    with (
        serve_in_thread(reader) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (MIB, b"q" * MIB)
        try:
            for _ in range(40):  # 40 MiB > 30,000,000 bytes
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what matters is what it answered
        response = sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") or (
        response.startswith(b"HTTP/1.1 413 ")
    )
    assert b"connection: close\r\n" in response


# ---- Stalled downloads against a real server process: its RSS is its own.

STALL_CLIENTS = 16
STALL_PIECES = 1024  # 64 KiB each: 64 MiB per client
STALL_RCVBUF = 16 * 1024
STALL_GROWTH_LIMIT = 24 * MIB
STALL_SEND_Q_LIMIT = 256 * 1024
STALL_TIMEOUT = 30.0  # for every connection's Send-Q to stop growing; bytes, not time, decide

STALL_APP = """
from kestrel import App, Response, StreamingResponse

PIECE = b"x" * 65536
app = App()


@app.get("/")
async def hello(request):
    return Response(b"hello", content_type="text/plain")


@app.get("/stream")
async def stream(request):
    pieces = int(request.query.get("pieces", "{pieces}"))

    async def body():
        for _ in range(pieces):
            yield PIECE

    return StreamingResponse(body(), content_type="application/octet-stream")
""".replace("{pieces}", str(STALL_PIECES))


def process_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def settled_rss(pid: int, samples: int = 5, interval: float = 0.1) -> int:
    """Median of a few samples, so that one allocation in flight does not decide."""
    got = []
    for _ in range(samples):
        got.append(process_rss(pid))
        time.sleep(interval)
    return int(statistics.median(got))


def established_send_queues(port: int) -> list[int]:
    """Send-Q of every established TCP socket on the server's side of `port`."""
    return [queued for state, queued in send_queues(port) if state == "ESTAB"]


def http_get(port: int, target: str) -> bytes:
    """The whole answer to GET `target` with Connection: close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target.encode())
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    return data


def prometheus_value(port: int, name: str) -> float:
    data = http_get(port, "/metrics")
    match = re.search(rb"^" + re.escape(name.encode()) + rb" ([0-9.e+]+)$", data, re.MULTILINE)
    assert match is not None, data[:2000]
    return float(match.group(1))


@contextmanager
def stall_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m kestrel` serving STALL_APP, with its metrics at /metrics."""
    with logged_server(STALL_APP, "stall_app", "--metrics-path", "/metrics", tmp_path=tmp_path) as (
        process,
        port,
    ):
        yield process, port


def wait_until_send_queues_settle(port: int, count: int) -> list[int]:
    """Poll `ss` until `count` connections are established and none of their Send-Q changed
    over 5 polls 0.2 s apart (the server's output is blocked for all); their Send-Q then."""
    deadline = time.monotonic() + STALL_TIMEOUT
    last: list[int] = []
    same = 0
    while time.monotonic() < deadline:
        queues = sorted(established_send_queues(port))
        if len(queues) == count and queues == last and min(queues) > 0:
            same += 1
            if same >= 5:
                return queues
        else:
            same = 0
        last = queues
        time.sleep(0.2)
    raise AssertionError(f"Send-Q still moving after {STALL_TIMEOUT:g} s: {last}")


@pytest.mark.slow
def test_sixteen_stalled_downloads_bound_server_rss_and_kernel_queues(tmp_path: Path) -> None:
    """16 clients each ask for 64 MiB streamed, then read nothing: the server process grows by
    at most 24 MiB and the kernel holds at most 256 KiB unsent-or-unacked per connection
    (TCP_NOTSENT_LOWAT 128 KiB + what the client's small window took), not megabytes."""
    with stall_server(tmp_path) as (process, port):
        # Warm up every code path the stalled clients will take, then take the idle figure.
        assert http_get(port, "/").startswith(b"HTTP/1.1 200 ")
        warm = http_get(port, "/stream?pieces=64")
        assert warm.startswith(b"HTTP/1.1 200 ") and len(warm) > 64 * 65536
        time.sleep(0.3)
        idle = settled_rss(process.pid)
        clients: list[socket.socket] = []
        try:
            for _ in range(STALL_CLIENTS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                clients.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
                sock.settimeout(10)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            queues = wait_until_send_queues_settle(port, STALL_CLIENTS)
            stalled = settled_rss(process.pid)
            # Still blocked: nothing moved while RSS was sampled.
            assert sorted(established_send_queues(port)) == queues
            growth = stalled - idle
            print(
                f"\n{STALL_CLIENTS} stalled downloads of {STALL_PIECES * 64 // 1024} MiB: "
                f"server VmRSS idle {idle / MIB:.1f} MiB -> stalled {stalled / MIB:.1f} MiB, "
                f"growth {growth / MIB:.2f} MiB ({growth / STALL_CLIENTS / 1024:.0f} KiB per "
                f"connection); Send-Q max {max(queues) / 1024:.1f} KiB, "
                f"mean {statistics.mean(queues) / 1024:.1f} KiB, "
                f"min {min(queues) / 1024:.1f} KiB"
            )
            assert max(queues) <= STALL_SEND_Q_LIMIT, queues
            assert growth <= STALL_GROWTH_LIMIT, f"RSS grew {growth / MIB:.1f} MiB"
        finally:
            for sock in clients:
                sock.close()  # unread data in its receive queue: the close is a reset
        deadline = time.monotonic() + 10
        while established_send_queues(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert established_send_queues(port) == []
        # The /metrics request's own connection is the one left open.
        assert prometheus_value(port, "kestrel_connections_active") == 1
        assert prometheus_value(port, 'kestrel_pool_blocks{state="in_use"}') == 0
        after = settled_rss(process.pid)
        print(
            f"after the clients left: VmRSS {after / MIB:.1f} MiB "
            f"({(after - idle) / MIB:+.2f} MiB over idle)"
        )
        assert after - idle <= STALL_GROWTH_LIMIT
        assert http_get(port, "/").startswith(b"HTTP/1.1 200 ")
