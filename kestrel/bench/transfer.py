"""`kestrel-bench suite`'s transfer scenario: one big streamed upload and one big streamed
download, each over a connection of its own, with the server's memory watched throughout.

The upload is ``POST /upload`` with a Content-Length, its body sent from one reusable buffer
(a memoryview sliced, never a copy); the server answers with the decimal count of bytes it
read, which must equal what was sent. The download is ``GET /download?bytes=N``; its
Content-Length must say N and exactly N bytes must arrive. Each rate runs from the request's
first byte to its answer's last, so bytes a kernel buffer took but the server never read do
not count as moved.

A thread reads the RSS of the server's process tree (procfs.memory) every 20 ms during both
transfers and keeps the peak: a server that buffers the body instead of streaming it shows
here. The pids are asked for again every half second, so a worker the server forks
meanwhile is counted too.

The client is plain blocking sockets, ``send`` of memoryview slices and ``recv_into`` one
4 MiB buffer: few enough system calls that on loopback it moves several GB/s against a
trivial server, well above what the servers under test do (the figure is in the issue's
record, #11). Every wait is bounded by the budget; a server too slow to finish in it gets
the rate of what was moved and a note saying so.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kestrel._core import HttpParseError, HttpResponseParser, ResponseHead
from kestrel.bench.cell import Cell
from kestrel.bench.procfs import memory

MiB = 1024 * 1024
FULL_SIZE = 1024 * MiB
QUICK_SIZE = 256 * MiB
BUFFER_SIZE = 4 * MiB  # one send or recv_into: big, so system calls are few
SAMPLE_INTERVAL = 0.02  # seconds between RSS readings
PIDS_REFRESH = 0.5  # seconds between asking for the server's process tree again
RESERVE = 0.2  # seconds of the budget kept for closing and reporting
MAX_HEAD = 64 * 1024  # a response head longer than this is not one


class TransferError(Exception):
    """The server answered wrongly or went away: the message says how."""


@dataclass
class Leg:
    """One direction: what was asked, what was moved, and how long it took."""

    name: str
    size: int
    moved: int = 0
    seconds: float = 0.0
    cut: bool = False  # the budget ran out first
    error: str | None = None

    @property
    def mb_per_s(self) -> float:
        return self.moved / self.seconds / 1e6 if self.seconds > 0 else 0.0


class PeakSampler:
    """Reads the server tree's RSS every SAMPLE_INTERVAL in a thread; keeps the peak."""

    def __init__(self, server_pids: Callable[[], list[int]]) -> None:
        self._server_pids = server_pids
        self.peak_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        pids, asked = self._server_pids(), time.monotonic()
        while True:
            self.peak_rss = max(self.peak_rss, memory(pids).rss)
            self.samples += 1
            if self._stop.wait(SAMPLE_INTERVAL):
                return
            if time.monotonic() - asked >= PIDS_REFRESH:
                pids, asked = self._server_pids(), time.monotonic()

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=_left(deadline))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(
    sock: socket.socket, deadline: float, *, body_limit: int
) -> tuple[ResponseHead, bytes]:
    """One whole response (head and a body of at most ``body_limit`` bytes)."""
    parser = HttpResponseParser(max_request_body_size=body_limit)
    parser.expect()
    head: ResponseHead | None = None
    body: list[bytes] = []
    while True:
        event = parser.next_event()
        if isinstance(event, ResponseHead):
            head = event
        elif isinstance(event, bytes):
            body.append(event)
        elif event.name == "END_OF_MESSAGE":
            assert head is not None
            return head, b"".join(body)
        else:  # NEED_DATA
            sock.settimeout(_left(deadline))
            data = sock.recv(65536)
            if data:
                parser.feed(data)
            else:
                parser.feed_eof()


def _upload(host: str, port: int, size: int, deadline: float) -> Leg:
    leg = Leg("upload", size)
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    ).encode("latin-1")
    chunk = memoryview(bytes(BUFFER_SIZE))
    started = time.monotonic()
    try:
        with _connect(host, port, deadline) as sock:
            started = time.monotonic()
            sock.settimeout(_left(deadline))
            sock.sendall(head)
            try:
                while leg.moved < size:
                    sock.settimeout(_left(deadline))
                    leg.moved += sock.send(chunk[: min(BUFFER_SIZE, size - leg.moved)])
            except (BrokenPipeError, ConnectionResetError) as exc:
                # A server that refuses the body answers first and then closes: say what it said.
                try:
                    soon = min(deadline, time.monotonic() + 1)
                    answer, body = _read_response(sock, soon, body_limit=4096)
                except (OSError, HttpParseError):
                    raise exc from None
                raise TransferError(
                    f"the server answered {answer.status} {body[:60]!r} after "
                    f"{leg.moved} of {size} bytes"
                ) from None
            answer, body = _read_response(sock, deadline, body_limit=4096)
            leg.seconds = time.monotonic() - started
            if answer.status != 200:
                raise TransferError(f"the server answered {answer.status} {body[:60]!r}")
            if body.strip() != str(size).encode():
                raise TransferError(f"the server counted {body[:40]!r} bytes of {size} sent")
    except TimeoutError:
        leg.cut = True
        leg.seconds = time.monotonic() - started
    except (OSError, HttpParseError, TransferError) as exc:
        leg.error = str(exc) or type(exc).__name__
    return leg


def _download(host: str, port: int, size: int, deadline: float) -> Leg:
    leg = Leg("download", size)
    request = f"GET /download?bytes={size} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    started = time.monotonic()
    try:
        with _connect(host, port, deadline) as sock:
            started = time.monotonic()
            sock.settimeout(_left(deadline))
            sock.sendall(request.encode("latin-1"))
            filled = 0
            while (end := buffer.find(b"\r\n\r\n", 0, filled)) < 0:
                if filled >= MAX_HEAD:
                    raise TransferError(f"no end of the response head in {MAX_HEAD} bytes")
                sock.settimeout(_left(deadline))
                got = sock.recv_into(view[filled:])
                if not got:
                    raise TransferError(f"the server closed after {filled} bytes of the head")
                filled += got
            parser = HttpResponseParser()
            parser.expect()
            parser.feed(bytes(view[: end + 4]))
            answer = parser.next_event()
            assert isinstance(answer, ResponseHead)
            if answer.status != 200:
                raise TransferError(f"the server answered {answer.status}")
            if answer.content_length != size:
                framing = "chunked" if answer.chunked else f"Content-Length {answer.content_length}"
                raise TransferError(f"the answer has {framing}, not Content-Length {size}")
            leg.moved = filled - (end + 4)
            if leg.moved > size:
                raise TransferError(f"{leg.moved - size} bytes more than Content-Length {size}")
            while leg.moved < size:
                sock.settimeout(_left(deadline))
                got = sock.recv_into(view, min(BUFFER_SIZE, size - leg.moved))
                if not got:
                    raise TransferError(f"the server closed after {leg.moved} of {size} bytes")
                leg.moved += got
            leg.seconds = time.monotonic() - started
    except TimeoutError:
        leg.cut = True
        leg.seconds = time.monotonic() - started
    except (OSError, HttpParseError, TransferError) as exc:
        leg.seconds = time.monotonic() - started
        leg.error = str(exc) or type(exc).__name__
    return leg


def measure_transfer(
    host: str,
    port: int,
    server_pids: Callable[[], list[int]],
    *,
    quick: bool,
    budget: float,
    size: int | None = None,
) -> Cell:
    """Upload then download ``size`` bytes (1 GiB, quick 256 MiB) within ``budget`` seconds.

    The upload may take half the budget; the download takes what is left.
    """
    size = size if size is not None else (QUICK_SIZE if quick else FULL_SIZE)
    start = time.monotonic()
    end = start + budget - RESERVE
    before = memory(server_pids()).rss
    with PeakSampler(server_pids) as sampler:
        upload = _upload(host, port, size, start + (budget - RESERVE) / 2)
        download = _download(host, port, size, end)
    cell = Cell(figures={"RSS before MiB": before / MiB})
    if sampler.peak_rss:
        cell.figures["peak RSS MiB"] = sampler.peak_rss / MiB
    notes, failures = [], []
    for leg in (upload, download):
        if leg.error is not None:
            cell.errors += 1
            failures.append(f"{leg.name}: {leg.error}")
            continue
        if leg.moved and leg.seconds > 0:
            cell.figures[f"{leg.name} MB/s"] = leg.mb_per_s
        if leg.cut:
            notes.append(
                f"{leg.name} cut by the {budget:g} s budget after {leg.moved / MiB:.0f} of "
                f"{leg.size / MiB:.0f} MiB: its MB/s is for what was moved"
            )
    if size != (QUICK_SIZE if quick else FULL_SIZE):
        notes.append(f"{size / MiB:g} MiB each way")
    cell.note = "; ".join(notes)
    if failures:
        cell.failed = "; ".join(failures)
    elif not any(key.endswith("MB/s") for key in cell.figures):
        cell.failed = f"nothing moved within the {budget:g} s budget"
    return cell
