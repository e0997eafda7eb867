# The load generator behind kestrel-bench: HTTP/1.1 client connections on an epoll loop of
# their own, sending pre-built requests and timing each response in C.
#
# Theory of operation
# -------------------
# A LoadGenerator owns `connections` non-blocking TCP sockets to one address, one epoll set,
# one scratch buffer to receive into, and one HttpResponseParser per connection. It is not an
# asyncio loop: nothing else runs on it, and run() returns to Python only at the deadline it is
# given (the caller prints progress between calls) or when a --requests budget is spent.
#
# The request bytes are built once (kestrel/bench/target.py). `pipeline` copies of them sit
# back to back in one block, so sending k requests is one send() of the first k copies; a
# send the socket takes only in part keeps an offset into that block and waits for EPOLLOUT.
#
# Closed loop (no rate): each connection sends `pipeline` requests in one send(), and the
# next `pipeline` once all of them are answered, as wrk's pipelining does (perf/pipeline.lua;
# with pipeline 1 that is keep-alive). Topping the window up after every read instead, as
# this loop did at 770a747, sent about 10 requests per send() against nginx where wrk sends
# 16: the generator spent 6.0 us of CPU per response, against 4.5 us in batches, most of it
# in the kernel, and the server read fewer requests per wakeup (perf/RESULTS.md). A
# request's latency runs from the send() that carried it to the end of its response.
#
# Open loop (rate R): each connection sends at R / connections requests per second on a fixed
# schedule, staggered between connections. A request is stamped with the time it was due, not
# the time it went out, so a server that stalls is charged for every request the schedule
# wanted to send meanwhile: this is wrk2's correction for coordinated omission. A connection
# still waiting for `pipeline` responses sends its late requests as soon as one arrives.
# The connections wait for their next due time in a min-heap (the schedule), so a wake
# costs O(due x log connections): 10,000 connections at 20,000 req/s spend 0.07 s of user
# CPU in 2 s, where a scan of every connection at each wake spent 0.72 s (669d5c9).
#
# Failures are counted by kind, never as successes: a connect that fails, a reset or EOF with
# requests unanswered (read error), a send that fails (write error), no progress for
# `timeout` with requests in flight, and a response the parser refuses (malformed). The
# connection is then closed and opened again (`reconnects`), after a short pause if the
# connect itself failed. A response that asks to close (Connection: close, HTTP/1.0, or a
# body delimited by the close) is counted, then the connection is replaced.
#
# Closed loop, the loop polls epoll for up to SPIN_NS (50 us) before it sleeps. It spends
# less per response than the servers it drives, so it often has nothing to do, and a loop
# that sleeps at once is woken, a context switch, for nearly every response: against kestrel
# keep-alive `perf stat -e sched:sched_switch` counted 8,000-86,000 switches on its core in
# 2.5 s, 1,400 when it polls, 1,100-16,000 for wrk. Polling won all 6 paired keep-alive
# runs against sleeping at once (kestrel and nginx, 3 alternating rounds each, against
# bddda32: e.g. kestrel 130,221 against 119,936 req/s, wrk 115,539) and 5 of 6 pipelined
# (perf/RESULTS.md). Its cost is CPU the generator's core had idle; the open loop, which
# often waits a long time for the next due request, sleeps at once.
#
# Why epoll and not io_uring. Per response the loop makes one recv() and one send() (and
# shares an epoll_wait among ~40 connections); keep-alive, that is about 6 us of kernel time
# per response on this VM (the loopback TCP path, both sides' halves of it, runs on the
# sender's core) against under 1 us of the loop's own. io_uring would batch the two calls'
# entries, not the TCP work: a C client with no parsing at all, 64 connections to nginx
# keep-alive, 3 alternating rounds of 3 s, best of each: epoll 142,500 req/s, io_uring
# (liburing, DEFER_TASKRUN) 148,000 (+4 %; +2-4 % round by round), wrk 131,600, this loop
# 143,600, with nginx's core 91-96 % busy throughout (perf/RESULTS.md). A few percent, near a
# server that is saturated, does not pay for a ring written without liburing (which
# `pip install` cannot assume) and a second I/O path to keep right; and no client can get
# 1.3x wrk's keep-alive rate from a server whose core wrk already keeps 92 % busy.
#
# Every timestamp is CLOCK_MONOTONIC in nanoseconds; latencies go to the LatencyHistogram
# (histogram.pxi) in microseconds, with one C call per response.

from cpython.exc cimport PyErr_CheckSignals

cdef enum ClientState:
    CS_CLOSED = 0
    CS_CONNECTING = 1      # connect() in progress: waiting for EPOLLOUT
    CS_OPEN = 2
    CS_RETRY = 3           # a failed connect: tried again at retry_at

cdef uint64_t RETRY_PAUSE_NS = 10000000      # 10 ms between connect attempts that fail
cdef uint64_t CHECK_INTERVAL_NS = 10000000   # how often timeouts and retries are checked
cdef uint64_t SPIN_NS = 50000                # closed loop: how long to poll before sleeping


cdef inline uint64_t _now_ns() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <uint64_t>now.tv_sec * 1000000000 + <uint64_t>now.tv_nsec


cdef class LoadGenerator:
    """HTTP/1.1 load on `connections` connections to one address (see the header above)."""

    def __cinit__(self):
        self.epfd = -1
        self.conns = NULL
        self.stamps = NULL
        self.scratch = NULL
        self.events = NULL
        self.schedule = NULL

    def __init__(self, int family, bytes address not None, bytes request not None, *,
                 int connections=64, int pipeline=1, bint head_requests=False,
                 double timeout=10.0, double rate=0.0, long long requests=-1,
                 LatencyHistogram histogram=None):
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if not 1 <= pipeline <= MAX_PIPELINE:
            raise ValueError(f"pipeline must be between 1 and {MAX_PIPELINE}")
        if not request:
            raise ValueError("the request is empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if rate < 0:
            raise ValueError("rate must be positive")
        self.family = family
        self.address = address
        self.request_size = PyBytes_GET_SIZE(request)
        self.block = request * pipeline
        self.connections = connections
        self.pipeline = pipeline
        self.head_requests = head_requests
        self.timeout_ns = <uint64_t>(timeout * 1e9)
        self.interval_ns = <uint64_t>(connections * 1e9 / rate) if rate > 0 else 0
        self.request_budget = requests
        self.histogram = histogram if histogram is not None else LatencyHistogram()
        self.scratch_size = 65536
        self.scratch = <char*>malloc(self.scratch_size)
        self.conns = <ClientConnection*>calloc(connections, sizeof(ClientConnection))
        self.stamps = <uint64_t*>calloc(connections * pipeline, sizeof(uint64_t))
        self.events = <epoll_event*>malloc(connections * sizeof(epoll_event))
        self.schedule_len = 0
        self.schedule_cap = connections + 16
        self.schedule = <DueEntry*>malloc(self.schedule_cap * sizeof(DueEntry))
        if (self.scratch == NULL or self.conns == NULL or self.stamps == NULL
                or self.events == NULL or self.schedule == NULL):
            raise MemoryError()
        self.parsers = [None] * connections
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        cdef int i
        for i in range(connections):
            self.conns[i].fd = -1
            self.conns[i].state = CS_CLOSED
        self.reset_counters()

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.connections):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
            free(self.conns)
        free(self.stamps)
        free(self.scratch)
        free(self.events)
        free(self.schedule)
        if self.epfd >= 0:
            close(self.epfd)

    def reset_counters(self):
        """Forget what was counted and timed (after the warm-up); connections stay open."""
        cdef int i
        self.completed = self.bytes_read = self.bytes_written = self.sent = 0
        self.connect_errors = self.read_errors = self.write_errors = 0
        self.timeouts = self.malformed = self.reconnects = self.closed_by_server = 0
        for i in range(6):
            self.status_classes[i] = 0
        self.histogram.reset()

    def counters(self):
        return {
            "requests": self.completed,
            "sent": self.sent,
            "status": {"1xx": self.status_classes[1], "2xx": self.status_classes[2],
                       "3xx": self.status_classes[3], "4xx": self.status_classes[4],
                       "5xx": self.status_classes[5], "other": self.status_classes[0]},
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "errors": {"connect": self.connect_errors, "read": self.read_errors,
                       "write": self.write_errors, "timeout": self.timeouts,
                       "malformed": self.malformed},
            "reconnects": self.reconnects,
            "closed_by_server": self.closed_by_server,
        }

    @property
    def finished(self):
        """A --requests budget is spent and every request sent has been answered or failed."""
        return self._finished()

    cdef bint _finished(self):
        cdef int i
        if self.request_budget != 0:
            return False
        for i in range(self.connections):
            if self.conns[i].in_flight or self.conns[i].queued:
                return False
        return True

    def close(self):
        cdef int i
        for i in range(self.connections):
            self._close(i)

    # ---- The loop.

    def run(self, double seconds):
        """Run for `seconds` (or until a --requests budget is spent and answered)."""
        cdef uint64_t now = _now_ns()
        cdef uint64_t deadline = now + <uint64_t>(seconds * 1e9)
        cdef uint64_t next_check = now
        cdef int i, n, timeout_ms
        cdef uint64_t wake, spin_end
        for i in range(self.connections):
            if self.conns[i].state == CS_CLOSED:
                self._connect(i, now)
        while True:
            now = _now_ns()
            if now >= deadline or self._finished():
                break
            if now >= next_check:
                self._check(now)
                next_check = now + CHECK_INTERVAL_NS
            wake = next_check if next_check < deadline else deadline
            if self.interval_ns:
                wake = self._send_due(now, wake)
            timeout_ms = <int>((wake - now + 999999) // 1000000) if wake > now else 0
            with nogil:
                n = epoll_wait(self.epfd, self.events, self.connections, 0)
                if n == 0 and not self.interval_ns:
                    # Closed loop: poll a little before sleeping (see the header).
                    spin_end = _now_ns() + SPIN_NS
                    while n == 0 and _now_ns() < spin_end:
                        n = epoll_wait(self.epfd, self.events, self.connections, 0)
                if n == 0:
                    n = epoll_wait(self.epfd, self.events, self.connections, timeout_ms)
            if n < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                raise OSError(errno, "epoll_wait failed")
            for i in range(n):
                self._on_events(<int>self.events[i].data.u32, self.events[i].events)

    cdef void _on_events(self, int i, uint32_t events):
        cdef ClientConnection* c = &self.conns[i]
        if c.state == CS_CONNECTING:
            if events & (EPOLLERR | EPOLLHUP) or _socket_error(c.fd):
                self.connect_errors += 1
                self._close(i)
                c.state = CS_RETRY
                c.retry_at = _now_ns() + RETRY_PAUSE_NS
                return
            c.state = CS_OPEN
            c.last_progress = _now_ns()
            self._refill(i, c.last_progress)
            return
        if c.state != CS_OPEN:
            return
        if events & EPOLLIN or events & (EPOLLERR | EPOLLHUP):
            self._read(i)
        if c.state == CS_OPEN and events & EPOLLOUT:
            self._send(i, _now_ns())

    cdef void _read(self, int i):
        cdef ClientConnection* c = &self.conns[i]
        cdef HttpResponseParser parser = <HttpResponseParser>self.parsers[i]
        cdef ssize_t got
        cdef int answered = 0
        cdef uint64_t now
        cdef bint closing = False
        while True:
            got = recv(c.fd, self.scratch, self.scratch_size, 0)
            if got < 0:
                if errno == EAGAIN:
                    break
                if errno == EINTR:
                    continue
                self._fail(i, &self.read_errors)
                return
            now = _now_ns()
            c.last_progress = now
            if got == 0:
                # A body delimited by the close ends here; a request still in flight is lost.
                answered += self._parse(i, parser, NULL, -1, now, &closing)
                if c.state != CS_OPEN:
                    return
                if c.in_flight:
                    self._fail(i, &self.read_errors)
                else:
                    self.closed_by_server += 1
                    self._reopen(i, now)
                return
            self.bytes_read += got
            answered += self._parse(i, parser, self.scratch, got, now, &closing)
            if c.state != CS_OPEN:
                return
            if closing:
                self.closed_by_server += 1
                self._reopen(i, now)
                return
            if got < self.scratch_size:
                break
        if answered:
            self._refill(i, _now_ns())

    cdef int _parse(self, int i, HttpResponseParser parser, char* data, Py_ssize_t size,
                    uint64_t now, bint* closing):
        """Parse what was received (size -1: the server closed); return the number of
        responses it completed."""
        cdef ClientConnection* c = &self.conns[i]
        cdef Py_ssize_t pos = 0
        cdef int event, answered = 0, status
        cdef uint64_t* ring = self.stamps + <Py_ssize_t>i * self.pipeline
        while True:
            if size < 0:
                event = parser.execute_eof()
                if event == EV_PAUSED:
                    return answered  # a close between responses: the caller decides
            else:
                event = parser.execute_response(data + pos, size - pos)
                pos += parser.consumed
            if event == EV_NEED_DATA:
                return answered
            if event == EV_MESSAGE_END:
                # The parser refuses a response nobody asked for (UNEXPECTED_RESPONSE), so
                # one ends only for a request in flight.
                status = parser.status
                self.status_classes[status // 100 if 100 <= status < 600 else 0] += 1
                self.completed += 1
                histogram_record(&self.histogram.hist, <int64_t>((now - ring[c.ring_head]) // 1000))
                c.ring_head = (c.ring_head + 1) % self.pipeline
                c.in_flight -= 1
                answered += 1
                if not parser.keep_alive or size < 0:
                    closing[0] = True
                    return answered
            elif event == EV_ERROR:
                self._fail(i, &self.malformed)
                return answered
            elif event == EV_PAUSED:
                # After 101 Switching Protocols: this client speaks no other protocol.
                self._fail(i, &self.malformed)
                return answered
            # EV_HEADERS (a final head, or a 1xx before one) and EV_BODY: nothing to do.

    cdef void _refill(self, int i, uint64_t now):
        """Closed loop: once the last batch is answered, send the next `pipeline` requests
        (see the header)."""
        cdef ClientConnection* c = &self.conns[i]
        cdef int want
        if self.interval_ns:
            self._send_connection_due(i, now)
            return
        if c.in_flight == 0 and c.queued == 0:
            want = self.pipeline
            if self.request_budget >= 0 and want > self.request_budget:
                want = <int>self.request_budget
            if want > 0:
                self._queue(i, want, now)
        self._send(i, now)

    cdef void _queue(self, int i, int count, uint64_t stamp):
        """Count `count` requests as due, stamped with `stamp` (closed loop: the time they
        are handed to send(), which is when their latency starts)."""
        cdef ClientConnection* c = &self.conns[i]
        cdef uint64_t* ring = self.stamps + <Py_ssize_t>i * self.pipeline
        cdef int k, slot
        for k in range(count):
            slot = (c.ring_head + c.in_flight + c.queued + k) % self.pipeline
            ring[slot] = stamp
        c.queued += count
        if self.request_budget > 0:
            self.request_budget -= count

    cdef void _send(self, int i, uint64_t now):
        """Hand what is pending and what is queued to the socket."""
        cdef ClientConnection* c = &self.conns[i]
        cdef ssize_t sent
        if c.out_end == 0 and c.queued:
            self._start_queued(i)
        while c.out_end:
            sent = send(c.fd, PyBytes_AS_STRING(self.block) + c.out_offset,
                        c.out_end - c.out_offset, MSG_NOSIGNAL)
            if sent < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    self._arm_out(i, True)
                    return
                self._fail(i, &self.write_errors)
                return
            self.bytes_written += sent
            c.last_progress = now
            c.out_offset += sent
            if c.out_offset == c.out_end:
                c.out_offset = c.out_end = 0
                if c.queued:
                    self._start_queued(i)  # they fell due while a send was pending
        self._arm_out(i, False)

    cdef void _start_queued(self, int i):
        """The queued requests become the bytes to send and the responses to wait for (they
        were stamped when they fell due: _queue, or the schedule)."""
        cdef ClientConnection* c = &self.conns[i]
        c.out_offset = 0
        c.out_end = c.queued * self.request_size
        self._expect(i, c.queued)
        c.in_flight += c.queued
        self.sent += c.queued
        c.queued = 0

    cdef void _expect(self, int i, int count):
        """Tell the connection's parser what the next `count` responses answer."""
        cdef HttpResponseParser parser = <HttpResponseParser>self.parsers[i]
        cdef int k
        for k in range(count):
            parser.expect(self.head_requests)

    cdef void _arm_out(self, int i, bint on):
        cdef ClientConnection* c = &self.conns[i]
        cdef epoll_event event
        if c.out_armed == on:
            return
        event.events = EPOLLIN | (EPOLLOUT if on else 0)
        event.data.u64 = 0
        event.data.u32 = i
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &event)
        c.out_armed = on

    # ---- Open loop: the schedule.

    cdef uint64_t _send_due(self, uint64_t now, uint64_t wake):
        """Send every request that is due; return when the next one is (or `wake`).

        The connections whose next request is due come off the schedule, a min-heap by due
        time, so a wake costs O(due x log connections), not a look at every connection: with
        10,000 connections at a rate, most wakes find one or two due. A connection is on the
        schedule while it is open and its next request is in the future; one that is due but
        has `pipeline` requests in flight is not, and goes back on when a response makes room
        (_refill), or when it is connected again."""
        cdef DueEntry entry
        cdef ClientConnection* c
        while self.schedule_len and self.schedule[0].due <= now:
            entry = self._schedule_pop()
            c = &self.conns[entry.conn]
            if entry.epoch != c.epoch or not c.scheduled:
                continue  # left by a connection closed since
            c.scheduled = False
            if c.state == CS_OPEN:
                self._send_connection_due(entry.conn, now)
        if self.schedule_len and self.schedule[0].due < wake:
            wake = self.schedule[0].due
        return wake

    cdef void _send_connection_due(self, int i, uint64_t now):
        cdef ClientConnection* c = &self.conns[i]
        cdef int room = self.pipeline - c.in_flight - c.queued
        cdef int due = 0
        cdef uint64_t* ring = self.stamps + <Py_ssize_t>i * self.pipeline
        while room > 0 and c.next_due <= now and self.request_budget != 0:
            ring[(c.ring_head + c.in_flight + c.queued) % self.pipeline] = c.next_due
            c.queued += 1
            if self.request_budget > 0:
                self.request_budget -= 1
            c.next_due += self.interval_ns
            room -= 1
            due += 1
        if due or c.out_end:
            self._send(i, now)
        if (c.state == CS_OPEN and not c.scheduled and c.next_due > now
                and self.request_budget != 0):
            self._schedule_push(i)

    cdef void _schedule_push(self, int i):
        cdef ClientConnection* c = &self.conns[i]
        cdef Py_ssize_t at, parent
        cdef DueEntry* grown
        cdef DueEntry entry
        if self.schedule_len == self.schedule_cap:
            # Entries of closed connections wait to be popped, so there may be more entries
            # than connections for a while.
            grown = <DueEntry*>realloc(self.schedule, 2 * self.schedule_cap * sizeof(DueEntry))
            if grown == NULL:
                return  # not scheduled: its next response or reconnect tries again
            self.schedule = grown
            self.schedule_cap *= 2
        entry.due = c.next_due
        entry.conn = i
        entry.epoch = c.epoch
        at = self.schedule_len
        self.schedule_len += 1
        while at > 0:
            parent = (at - 1) // 2
            if self.schedule[parent].due <= entry.due:
                break
            self.schedule[at] = self.schedule[parent]
            at = parent
        self.schedule[at] = entry
        c.scheduled = True

    cdef DueEntry _schedule_pop(self):
        cdef DueEntry top = self.schedule[0]
        cdef DueEntry last
        cdef Py_ssize_t at = 0, child
        self.schedule_len -= 1
        last = self.schedule[self.schedule_len]
        while True:
            child = 2 * at + 1
            if child >= self.schedule_len:
                break
            if (child + 1 < self.schedule_len
                    and self.schedule[child + 1].due < self.schedule[child].due):
                child += 1
            if last.due <= self.schedule[child].due:
                break
            self.schedule[at] = self.schedule[child]
            at = child
        if self.schedule_len:
            self.schedule[at] = last
        return top

    # ---- Connections.

    cdef void _connect(self, int i, uint64_t now):
        cdef ClientConnection* c = &self.conns[i]
        cdef int fd
        cdef epoll_event event
        cdef int one = 1
        fd = socket(self.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            self.connect_errors += 1
            c.state = CS_RETRY
            c.retry_at = now + RETRY_PAUSE_NS
            return
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        if (connect(fd, <sockaddr*>PyBytes_AS_STRING(self.address),
                    <socklen_t>PyBytes_GET_SIZE(self.address)) < 0 and errno != EINPROGRESS):
            close(fd)
            self.connect_errors += 1
            c.state = CS_RETRY
            c.retry_at = now + RETRY_PAUSE_NS
            return
        c.fd = fd
        c.state = CS_CONNECTING
        c.epoch += 1
        c.in_flight = c.queued = 0
        c.out_offset = c.out_end = 0
        c.ring_head = 0
        c.last_progress = now
        if self.interval_ns and c.next_due == 0:
            # Staggered, so the connections' schedules add up to an even rate.
            c.next_due = now + <uint64_t>i * (self.interval_ns // <uint64_t>self.connections)
        # A new connection, a new parser: nothing of the last one's exchange carries over.
        self.parsers[i] = HttpResponseParser(heads=False)
        event.events = EPOLLIN | EPOLLOUT
        event.data.u64 = 0
        event.data.u32 = i
        c.out_armed = True
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &event) < 0:
            self._close(i)
            self.connect_errors += 1
            c.state = CS_RETRY
            c.retry_at = now + RETRY_PAUSE_NS

    cdef void _close(self, int i):
        cdef ClientConnection* c = &self.conns[i]
        if c.fd >= 0:
            close(c.fd)  # leaves the epoll set with it
            c.fd = -1
        c.state = CS_CLOSED
        c.out_armed = False
        c.scheduled = False

    cdef void _fail(self, int i, long long* counter):
        """A connection that failed: its unanswered requests are lost; a new one replaces it."""
        counter[0] += 1
        self._reopen(i, _now_ns())

    cdef void _reopen(self, int i, uint64_t now):
        cdef ClientConnection* c = &self.conns[i]
        # Requests that went unanswered are not sent again: a --requests budget counts sends.
        self._close(i)
        self.reconnects += 1
        self._connect(i, now)

    cdef void _check(self, uint64_t now):
        """Timeouts (no progress with requests in flight) and connects to try again."""
        cdef int i
        cdef ClientConnection* c
        for i in range(self.connections):
            c = &self.conns[i]
            if c.state == CS_RETRY:
                if now >= c.retry_at:
                    self._connect(i, now)
            elif (c.state == CS_CONNECTING or c.in_flight) and (
                    now - c.last_progress > self.timeout_ns):
                if c.state == CS_CONNECTING:
                    self.connect_errors += 1
                else:
                    self.timeouts += 1
                self._reopen(i, now)


cdef bint _socket_error(int fd) noexcept:
    cdef int error = 0
    cdef socklen_t size = sizeof(error)
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0:
        return True
    return error != 0
