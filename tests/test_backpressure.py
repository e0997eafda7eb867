"""Flow control, proved with numbers: bytes held by the server stay bounded.

Input: a handler that reads its body slowly while the client sends as fast as it can. The
server must stop reading (read pauses are counted) and the process must not grow by the
size of the upload. Output: a streamed response to a client that does not read. The writer
must wait, and the blocks the connection holds must stay near max_response_buffer_size.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

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
