"""`kestrel-bench suite`'s idle scenario: what an idle keep-alive connection costs a server in
memory, and whether the server still answers on every one of them afterwards.

1. Warm-up: a hundred ``GET /`` on one connection, which also checks that the server answers
   200 ``Hello, World!`` at all; then the server tree's memory, once it has settled.
2. Open N connections (10,000; quick 2,000). Each sends one ``GET /`` and reads the answer, so
   it has been through a request as a keep-alive connection has, and then stays idle. At most
   IN_FLIGHT are connecting or waiting for that first answer at once: far fewer than any
   server's listen backlog, so the kernel never has to drop or refuse a connection for want
   of room. A refused or reset connection is still counted, by its errno.
3. The server tree's memory again, once it has settled: the difference over the connections
   opened is the figure, "KiB per idle connection".
4. One more ``GET /`` on every connection; each must be answered 200 ``Hello, World!`` (a
   connection the server dropped while idle is an error). "served" of "of" counts them.

Settled means the last SETTLE_SAMPLES readings, SETTLE_INTERVAL apart, lie within
SETTLE_SPREAD of each other; their median is the reading. A server whose memory does not
settle within the time given gets the median of its last readings and a note saying so.

All the connections are non-blocking sockets on one selector (epoll) in this one thread;
responses are read by kestrel's own response parser (HttpResponseParser). Each phase has a
share of the budget; what a phase has not finished by its end counts as timed out, the cell
says which phase the budget cut, and every socket is closed before returning.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import resource
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kestrel._core import HttpParseError, HttpResponseParser, ResponseHead
from kestrel.bench.cell import Cell
from kestrel.bench.procfs import Memory, memory

FULL_CONNECTIONS = 10_000
QUICK_CONNECTIONS = 2_000
# Connections connecting or awaiting their first answer at once: under every listen backlog
# of the servers compared (nginx's default of 511 is the smallest).
IN_FLIGHT = 128
WARMUP_REQUESTS = 100
HELLO = b"Hello, World!"
SETTLE_SAMPLES = 5
SETTLE_INTERVAL = 0.1  # seconds
SETTLE_SPREAD = 256 * 1024  # bytes, or 1% of the reading if that is more
OPEN_FILES_SPARE = 64  # descriptors this process needs besides the connections
RESERVE = 0.3  # seconds of the budget kept for closing every socket


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):  # not allowed: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


def settled_memory(
    server_pids: Callable[[], list[int]], deadline: float, *, at_least: float = 0.0
) -> tuple[Memory, bool]:
    """The server tree's memory once it has settled (module docstring), and whether it did
    before ``deadline``; sampling goes on for ``at_least`` seconds in any case."""
    start = time.monotonic()
    pids = server_pids()
    readings: list[Memory] = []
    while True:
        readings.append(memory(pids))
        last = readings[-SETTLE_SAMPLES:]
        now = time.monotonic()
        if len(last) == SETTLE_SAMPLES and now - start >= at_least:
            rss = [m.rss for m in last]
            median = Memory(
                int(statistics.median(rss)), int(statistics.median(m.pss for m in last))
            )
            if max(rss) - min(rss) <= max(SETTLE_SPREAD, median.rss // 100):
                return median, True
            if now + SETTLE_INTERVAL > deadline:
                return median, False
        elif now + SETTLE_INTERVAL > deadline:
            return last[-1], False
        time.sleep(SETTLE_INTERVAL)


class _Connection:
    __slots__ = ("body", "head", "parser", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = HttpResponseParser(max_request_body_size=64 * 1024)
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []


def _error_name(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


@dataclass
class IdleRun:
    """What the idle scenario saw; measure_idle makes a Cell of it, perf/rss_probe.py a report."""

    asked: int  # connections asked for
    opened: int = 0  # connected and answered their first request: the idle connections
    served: int = 0  # of those, answered again after the idle wait
    before: Memory = field(default_factory=lambda: Memory(0, 0))
    after: Memory = field(default_factory=lambda: Memory(0, 0))
    settled: bool = True  # both readings settled
    seconds_open: float = 0.0  # how long opening took
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    cut: str = ""  # the phase the budget cut short, if any
    failed: str | None = None  # why there is no figure at all

    @property
    def bytes_per_connection(self) -> float:
        return (self.after.rss - self.before.rss) / self.opened if self.opened else 0.0

    @property
    def pss_bytes_per_connection(self) -> float:
        return (self.after.pss - self.before.pss) / self.opened if self.opened else 0.0


class _Clients:
    """The connections and their one selector; each method runs one phase to its deadline."""

    def __init__(self, sockaddr: tuple[str, int], family: int, host_header: str) -> None:
        self.sockaddr = sockaddr
        self.family = family
        self.request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode("latin-1")
        self.selector = selectors.DefaultSelector()
        self.idle: list[_Connection] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.answered = 0  # correct answers in the phase under way

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        for conn in self.idle:
            conn.sock.close()
        self.idle.clear()
        self.selector.close()

    def _fail(self, conn: _Connection, why: str) -> None:
        self.errors[why] += 1
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def _send_request(self, conn: _Connection) -> bool:
        conn.parser.expect()
        conn.head, conn.body = None, []
        try:
            sent = conn.sock.send(self.request)  # an idle socket's buffer takes it whole
        except OSError as exc:
            self.errors[_error_name(exc)] += 1
            conn.sock.close()
            return False
        if sent != len(self.request):
            self.errors["short write"] += 1
            conn.sock.close()
            return False
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        return True

    def _on_connected(self, conn: _Connection) -> None:
        error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.selector.unregister(conn.sock)
        if error:
            self.errors[errno.errorcode.get(error, str(error))] += 1
            conn.sock.close()
        else:
            self._send_request(conn)

    def _on_readable(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:
            self._fail(conn, _error_name(exc))
            return
        try:
            if data:
                conn.parser.feed(data)
            else:
                conn.parser.feed_eof()
            while True:
                event = conn.parser.next_event()
                if isinstance(event, ResponseHead):
                    conn.head = event
                elif isinstance(event, bytes):
                    conn.body.append(event)
                elif event.name == "NEED_DATA":
                    return
                elif event.name == "END_OF_MESSAGE":
                    break
                else:  # CLOSED: the server closed the connection between responses
                    self._fail(conn, "closed by the server")
                    return
        except HttpParseError as exc:
            self._fail(conn, "closed mid-response" if not data else f"malformed: {exc}")
            return
        assert conn.head is not None
        if conn.head.status != 200:
            self._fail(conn, f"status {conn.head.status}")
        elif b"".join(conn.body) != HELLO:
            self._fail(conn, "wrong body")
        else:
            self.selector.unregister(conn.sock)
            self.idle.append(conn)
            self.answered += 1

    def _pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            conn: _Connection = key.data
            if key.events & selectors.EVENT_WRITE:
                self._on_connected(conn)
            else:
                self._on_readable(conn)

    def _time_out_the_rest(self) -> int:
        late = len(self.selector.get_map())
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.errors["timeout"] += late
        return late

    def open(self, count: int, in_flight: int, deadline: float) -> bool:
        """Open ``count`` connections, each through one request, ``in_flight`` at a time;
        False if cut by the deadline."""
        started = 0
        while started < count or self.selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                self._time_out_the_rest()
                return False
            while started < count and len(self.selector.get_map()) < in_flight:
                started += 1
                try:
                    sock = socket.socket(self.family, socket.SOCK_STREAM)
                except OSError as exc:  # out of descriptors: no point trying the rest
                    self.errors[_error_name(exc)] += count - started + 1
                    started = count
                    break
                sock.setblocking(False)
                result = sock.connect_ex(self.sockaddr)
                conn = _Connection(sock)
                if result == errno.EINPROGRESS:
                    self.selector.register(sock, selectors.EVENT_WRITE, conn)
                elif result == 0:
                    self._send_request(conn)
                else:
                    self.errors[errno.errorcode.get(result, str(result))] += 1
                    sock.close()
            if self.selector.get_map():
                self._pump(min(deadline - now, 0.1))
        return True

    def ask_all(self, deadline: float) -> bool:
        """One more request on every idle connection; False if cut by the deadline."""
        asked, self.idle = self.idle, []
        self.answered = 0
        for conn in asked:
            self._send_request(conn)
        while self.selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                self._time_out_the_rest()
                return False
            self._pump(min(deadline - now, 0.1))
        return True


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _warm_up(sockaddr: tuple[str, int], family: int, request: bytes, deadline: float) -> str:
    """'' once WARMUP_REQUESTS ``GET /`` got 200 ``Hello, World!``, else what went wrong."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)
            parser = HttpResponseParser(max_request_body_size=64 * 1024)
            for _ in range(WARMUP_REQUESTS):
                sock.settimeout(_left(deadline))
                sock.sendall(request)
                parser.expect()
                head, body = None, b""
                while True:
                    event = parser.next_event()
                    if isinstance(event, ResponseHead):
                        head = event
                    elif isinstance(event, bytes):
                        body += event
                    elif event.name == "NEED_DATA":
                        sock.settimeout(_left(deadline))
                        data = sock.recv(65536)
                        if data:
                            parser.feed(data)
                        else:
                            parser.feed_eof()
                    else:
                        break
                if head is None or head.status != 200 or body != HELLO:
                    status = head.status if head is not None else "no answer"
                    return f"GET / answered {status} {body[:40]!r}, not 200 {HELLO!r}"
    except TimeoutError:
        return "GET / was not answered within the budget"
    except (OSError, HttpParseError) as exc:
        return f"GET /: {exc or type(exc).__name__}"
    return ""


def run_idle(
    host: str,
    port: int,
    server_pids: Callable[[], list[int]],
    *,
    connections: int,
    budget: float,
    idle_seconds: float = 0.0,
    in_flight: int = IN_FLIGHT,
) -> IdleRun:
    """The scenario (module docstring) with ``connections``, in ``budget`` seconds; the
    reading after opening waits ``idle_seconds`` at least."""
    start = time.monotonic()
    end = start + budget - RESERVE
    run = IdleRun(connections)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sockaddr = (str(address[0]), int(address[1]))
    clients = _Clients(sockaddr, family, f"{host}:{port}")
    problem = _warm_up(sockaddr, family, clients.request, start + budget * 0.1)
    if problem:
        run.failed = problem
        return run
    # Shares of the budget: a tenth for the warm-up, up to 15 % for each memory reading, 60 %
    # of what is left after the first reading for opening, the rest for the last requests.
    run.before, settled_before = settled_memory(server_pids, start + budget * 0.25)
    try:
        opening = time.monotonic()
        if not clients.open(connections, in_flight, opening + (end - opening) * 0.6):
            run.cut = "opening"
        run.opened = len(clients.idle)
        run.seconds_open = time.monotonic() - opening
        reading_end = min(end, time.monotonic() + budget * 0.15 + idle_seconds)
        run.after, settled_after = settled_memory(server_pids, reading_end, at_least=idle_seconds)
        run.settled = settled_before and settled_after
        if not clients.ask_all(end) and not run.cut:
            run.cut = "the last requests"
        run.served = clients.answered
    finally:
        clients.close()
    run.errors = clients.errors
    return run


def measure_idle(
    host: str,
    port: int,
    server_pids: Callable[[], list[int]],
    *,
    quick: bool,
    budget: float,
    connections: int | None = None,
) -> Cell:
    """Open 10,000 idle keep-alive connections (quick 2,000) within ``budget`` seconds: the
    server's memory per connection, and how many it still serves afterwards."""
    asked = (
        connections
        if connections is not None
        else (QUICK_CONNECTIONS if quick else FULL_CONNECTIONS)
    )
    notes = []
    limit = raise_open_files_limit()
    count = min(asked, limit - OPEN_FILES_SPARE)
    if count < asked:
        notes.append(f"RLIMIT_NOFILE {limit} allows {count} of {asked} connections")
    run = run_idle(host, port, server_pids, connections=count, budget=budget)
    if run.failed is not None:
        return Cell(failed=run.failed)
    cell = Cell(
        figures={
            "KiB per idle connection": run.bytes_per_connection / 1024,
            "served": run.served,
            "of": asked,
        },
        errors=run.errors.total(),
    )
    notes.append(f"{run.opened} opened in {run.seconds_open:.1f} s")
    if run.errors:
        kinds = ", ".join(f"{n} {why}" for why, n in run.errors.most_common())
        notes.append(f"errors: {kinds}")
    if not run.settled:
        notes.append("server memory had not settled when read")
    if run.cut:
        notes.append(f"the {budget:g} s budget cut {run.cut}")
    cell.note = "; ".join(notes)
    if run.opened == 0:
        cell.failed = "no connection was opened"
    return cell
