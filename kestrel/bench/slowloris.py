"""`kestrel-bench suite`'s slowloris scenario: a fast closed-loop load while many slow clients
each hold a connection with a request head that never ends.

Each slow connection sends ``GET / HTTP/1.1``, a Host and the start of one more header,
then one more byte of that header's value every DRIP_INTERVAL, and never the blank line. Once
all of them are open (1,000; quick 200), kestrel-bench's own load (kestrel.bench.run, one loop
on this process's core, which the suite pins) sends ``GET /`` on 32 connections for 5 s
(quick 2 s). The figures: the fast load's rate and p99, how many slow connections the
server still held open at the end, and how many it closed meanwhile. A server that cuts slow
heads (kestrel: its request headers timeout, docs/contract.md) closes them only once that
timeout has passed, 30 s by default, so within this scenario it holds them all; what is
measured is whether holding them costs the fast clients anything.

The slow clients live in one thread of this process, on one selector, so they must cost
little of the load generator's core: their drips go out from a timer wheel of SLOTS slots,
each connection in one slot, and one tick every DRIP_INTERVAL / SLOTS sends the drips of one
slot together. Between ticks the thread sleeps in the selector, which also reports every
connection the server closes (end of file, a 408, or a reset). A thousand connections cost
about a thousand one-byte sends a second, and the GIL is free while the load generator
waits in epoll.

Opening the slow connections takes at most 40 % of the budget; what is not open by then is
counted as timed out, and the fast load runs anyway, shortened if the budget requires it. A
cell whose budget left no time for the fast load says so in ``failed``.
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import threading
import time
from collections.abc import Callable

from kestrel.bench.cell import Cell
from kestrel.bench.idle import IN_FLIGHT, OPEN_FILES_SPARE, raise_open_files_limit
from kestrel.bench.run import Options, Result, run
from kestrel.bench.target import TargetError, check_reachable, make_target

FULL_SLOW = 1_000
QUICK_SLOW = 200
FULL_SECONDS = 5.0
QUICK_SECONDS = 2.0
FAST_CONNECTIONS = 32
DRIP_INTERVAL = 1.0  # seconds between two bytes on one slow connection
SLOTS = 20  # of the timer wheel: a tick every 50 ms
RAMP_SHARE = 0.4  # of the budget, for opening the slow connections
MIN_FAST_SECONDS = 0.5  # a shorter load says nothing
RESERVE = 0.5  # seconds of the budget kept for stopping the thread and closing


class _Slow:
    __slots__ = ("slot", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.slot = -1  # its place on the wheel, once connected


def _error_name(code: int | None) -> str:
    return errno.errorcode.get(code, str(code)) if code is not None else "error"


class SlowClients:
    """The slow connections and the thread that drips into them.

    ``ready`` is set once all are open (or the opening deadline passed); ``stop`` ends the
    thread, which looks once more for connections the server closed, then closes the rest
    and fills in ``held`` and ``closed_by_server``.
    """

    def __init__(
        self, sockaddr: tuple[str, int], family: int, host_header: str, count: int
    ) -> None:
        self.sockaddr = sockaddr
        self.family = family
        self.head = (
            f"GET / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kestrel-bench\r\nX-Slow: "
        ).encode("latin-1")
        self.count = count
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.opened = 0
        self.held = 0  # open at the end
        self.closed_by_server = 0
        self.how_closed: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()  # failed to open
        self.drips = 0
        self.failure: BaseException | None = None
        self.cpu_seconds = 0.0
        self._selector = selectors.DefaultSelector()
        self._wheel: list[set[_Slow]] = [set() for _ in range(SLOTS)]
        self._open: set[_Slow] = set()  # connected and dripping
        self._thread: threading.Thread | None = None

    # ---- the thread

    def _start_connect(self) -> None:
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            self.errors[_error_name(exc.errno)] += 1
            return
        sock.setblocking(False)
        result = sock.connect_ex(self.sockaddr)
        if result not in (0, errno.EINPROGRESS):
            self.errors[_error_name(result)] += 1
            sock.close()
            return
        self._selector.register(sock, selectors.EVENT_WRITE, _Slow(sock))

    def _on_connected(self, slow: _Slow, tick: int) -> None:
        error = slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.errors[_error_name(error)] += 1
            self._selector.unregister(slow.sock)
            slow.sock.close()
            return
        try:
            slow.sock.send(self.head)  # a fresh socket's buffer takes it whole
        except OSError as exc:
            self.errors[_error_name(exc.errno)] += 1
            self._selector.unregister(slow.sock)
            slow.sock.close()
            return
        self._selector.modify(slow.sock, selectors.EVENT_READ, slow)
        slow.slot = (tick - 1) % SLOTS  # its first drip a whole interval from now
        self._wheel[slow.slot].add(slow)
        self._open.add(slow)
        self.opened += 1

    def _closed(self, slow: _Slow, how: str) -> None:
        self.closed_by_server += 1
        self.how_closed[how] += 1
        self._wheel[slow.slot].discard(slow)
        self._open.discard(slow)
        self._selector.unregister(slow.sock)
        slow.sock.close()

    def _on_readable(self, slow: _Slow) -> None:
        try:
            data = slow.sock.recv(4096)
        except OSError as exc:
            self._closed(slow, _error_name(exc.errno))
            return
        if not data:
            self._closed(slow, "end of file")
        else:  # an answer to a head that never ended: a 408 or a 400, then a close
            self._closed(slow, data.split(b"\r\n", 1)[0].decode("latin-1")[:40])

    def _drip(self, slot: int) -> None:
        for slow in list(self._wheel[slot]):
            try:
                slow.sock.send(b"a")
                self.drips += 1
            except BlockingIOError:
                pass  # its buffer is full: the server reads nothing, and this byte can wait
            except OSError as exc:
                self._closed(slow, _error_name(exc.errno))

    def _pump(self, timeout: float, tick: int) -> None:
        for key, _ in self._selector.select(timeout):
            slow: _Slow = key.data
            if key.events & selectors.EVENT_WRITE:
                self._on_connected(slow, tick)
            else:
                self._on_readable(slow)

    def _connecting(self) -> int:
        return len(self._selector.get_map()) - len(self._open)

    def _run(self, ramp_deadline: float) -> None:
        tick_seconds = DRIP_INTERVAL / SLOTS
        tick = 0
        next_tick = time.monotonic() + tick_seconds
        started = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if not self.ready.is_set():
                if now >= ramp_deadline:
                    self._give_up_connecting()
                else:
                    while started < self.count and self._connecting() < IN_FLIGHT:
                        started += 1
                        self._start_connect()
                    if started >= self.count and self._connecting() == 0:
                        self.ready.set()
            if now >= next_tick:
                self._drip(tick % SLOTS)
                tick += 1
                next_tick += tick_seconds
                if next_tick < now:  # this thread was held up: skip ticks, never burst
                    next_tick = now + tick_seconds
            self._pump(max(0.0, min(next_tick - time.monotonic(), 0.05)), tick)
        self._pump(0.0, tick)  # the closes that arrived last

    def _give_up_connecting(self) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data not in self._open:
                self._selector.unregister(key.fileobj)
                key.data.sock.close()
                self.errors["timeout"] += 1
        self.ready.set()

    def _thread_main(self, ramp_deadline: float) -> None:
        try:
            self._run(ramp_deadline)
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
        finally:
            self.held = len(self._open)
            for key in list(self._selector.get_map().values()):
                key.data.sock.close()
            self._selector.close()
            self.cpu_seconds = time.thread_time()

    # ---- the caller's side

    def start(self, ramp_deadline: float) -> None:
        self._thread = threading.Thread(
            target=self._thread_main, args=(ramp_deadline,), name="slowloris", daemon=True
        )
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Stop the thread; False if it did not end within ``timeout`` seconds."""
        assert self._thread is not None
        self.stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def measure_slowloris(
    host: str,
    port: int,
    server_pids: Callable[[], list[int]],
    *,
    quick: bool,
    budget: float,
    slow_connections: int | None = None,
    seconds: float | None = None,
) -> Cell:
    """Hold 1,000 slowloris connections (quick 200) while a fast load runs 5 s (quick 2 s).

    ``server_pids`` is part of every scenario's signature; this one reads nothing from the
    server's processes, only what its clients see.
    """
    start = time.monotonic()
    end = start + budget - RESERVE
    count = (
        slow_connections if slow_connections is not None else (QUICK_SLOW if quick else FULL_SLOW)
    )
    nominal = seconds if seconds is not None else (QUICK_SECONDS if quick else FULL_SECONDS)
    notes = []
    limit = raise_open_files_limit()
    room = limit - FAST_CONNECTIONS - OPEN_FILES_SPARE
    if room < count:
        notes.append(f"RLIMIT_NOFILE {limit} allows {max(room, 0)} of {count} slow connections")
        count = max(room, 0)
    try:
        target = make_target(_url(host, port))
        check_reachable(target, max(0.01, min(2.0, budget / 4)))
    except TargetError as exc:
        return Cell(failed=str(exc))
    slow = SlowClients((target.host, target.port), target.family, f"{host}:{port}", count)
    slow.start(start + budget * RAMP_SHARE)
    result: Result | None = None
    try:
        slow.ready.wait(max(0.0, start + budget * RAMP_SHARE + 1 - time.monotonic()))
        if slow.failure is not None:
            return Cell(failed=f"the slow clients failed: {slow.failure!r}")
        ramp = time.monotonic() - start
        duration = min(nominal, end - time.monotonic())
        if duration >= MIN_FAST_SECONDS:
            if duration < nominal:
                notes.append(f"the {budget:g} s budget left {duration:.1f} s of {nominal:g} s")
            options = Options(connections=FAST_CONNECTIONS, duration=duration, timeout=2.0)
            result = run(target, options)
    finally:
        stopped = slow.finish(max(0.1, start + budget - time.monotonic()))
    cell = Cell(
        figures={
            "slowloris held": slow.held,
            "slowloris closed by server": slow.closed_by_server,
        },
        errors=slow.errors.total(),
    )
    notes.insert(0, f"{slow.opened} of {count} slow connections opened in {ramp:.1f} s")
    if slow.errors:
        kinds = ", ".join(f"{n} {why}" for why, n in slow.errors.most_common())
        notes.append(f"slow connections not opened: {kinds}")
    if slow.how_closed:
        kinds = ", ".join(f"{n} {how}" for how, n in slow.how_closed.most_common())
        notes.append(f"closed by the server: {kinds}")
    notes.append(f"slow clients' CPU {slow.cpu_seconds:.2f} s")
    if result is not None:
        cell.rate = result.rate
        cell.p99_us = float(result.histogram.value_at_percentile(99.0))
        cell.figures["fast req/s"] = result.rate
        cell.errors += result.errors
        cell.non_2xx = result.non_2xx
        if result.errors:
            kinds = ", ".join(f"{n} {k}" for k, n in result.counters["errors"].items() if n)
            notes.append(f"fast load errors: {kinds}")
    else:
        cell.failed = f"the {budget:g} s budget left no time for the fast load"
    if count and not slow.opened:
        cell.failed = "no slow connection could be opened"
    if not stopped:
        notes.append("the slow clients' thread did not stop in time")
    if slow.failure is not None:
        cell.failed = f"the slow clients failed: {slow.failure!r}"
    cell.note = "; ".join(notes)
    return cell
