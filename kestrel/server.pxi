# The server: listeners, the connection table, the heartbeat, and the event loop class.
#
# Theory of operation
# -------------------
# HttpServer owns everything the engine keeps per process: the selector it shares with
# asyncio, the I/O state its transports share (a scratch input buffer and the block pool:
# IoShared), an output buffer used by one connection at a time (the loop is single-threaded),
# the Date header (formatted once per heartbeat tick, not per request), the connection table
# and the counters metrics() reports. One heartbeat timer drives everything periodic; the
# request contract's deadlines hang off it too (timeouts.pxi).
#
# A connection is two composed objects: a SocketTransport (the epoll handler) under an
# Http1Processor (the protocol), made in _open_connection. The connection table holds the
# processors; the selector holds the transports.


cdef object _limit(limits, str name, default):
    return default if limits is None else getattr(limits, name)


cdef class HttpServer(ServiceContext):
    """The engine for one process: serves `app` on the sockets given to listen()."""

    def __cinit__(self, app, *, loop, limits=None, bint access_log=False,
                  server_header="kestrel", long long max_parser_body_size=-2,
                  request_class=None, heartbeat_interval=None, metrics_path=None,
                  metrics_renderer=None, error_response=None, bint accepts_connect=False):
        """`limits` is a kestrel.Limits (the request contract: sizes, timeouts, rates);
        None takes its defaults, which are the ones consts.pxi names."""
        cdef Py_ssize_t max_request_line_size = _limit(
            limits, "max_request_line_size", DEFAULT_MAX_REQUEST_LINE_SIZE)
        cdef Py_ssize_t max_request_headers_size = _limit(
            limits, "max_request_headers_size", DEFAULT_MAX_REQUEST_HEADERS_SIZE)
        cdef Py_ssize_t max_request_headers = _limit(
            limits, "max_request_headers", DEFAULT_MAX_REQUEST_HEADERS)
        cdef long long max_request_body_size = _limit(
            limits, "max_request_body_size", DEFAULT_MAX_REQUEST_BODY_SIZE)
        cdef Py_ssize_t max_request_buffer_size = _limit(
            limits, "max_request_buffer_size", DEFAULT_MAX_REQUEST_BUFFER_SIZE)
        cdef Py_ssize_t max_response_buffer_size = _limit(
            limits, "max_response_buffer_size", DEFAULT_MAX_RESPONSE_BUFFER_SIZE)
        cdef int max_kernel_unsent = _limit(limits, "max_kernel_unsent", DEFAULT_MAX_KERNEL_UNSENT)
        cdef double keep_alive_timeout = _limit(
            limits, "keep_alive_timeout", DEFAULT_KEEP_ALIVE_TIMEOUT)
        cdef double request_headers_timeout = _limit(
            limits, "request_headers_timeout", DEFAULT_REQUEST_HEADERS_TIMEOUT)
        cdef double min_request_body_rate = _limit(
            limits, "min_request_body_rate", DEFAULT_MIN_REQUEST_BODY_RATE)
        cdef double min_response_rate = _limit(
            limits, "min_response_rate", DEFAULT_MIN_RESPONSE_RATE)
        cdef double min_rate_grace = _limit(limits, "min_rate_grace", DEFAULT_MIN_RATE_GRACE)
        cdef double drain_timeout = _limit(limits, "drain_timeout", DEFAULT_DRAIN_TIMEOUT)
        cdef long long max_drain_size = _limit(limits, "max_drain_size", DEFAULT_MAX_DRAIN_SIZE)
        cdef Py_ssize_t max_connections = _limit(limits, "max_connections", 0)
        cdef double linger_time = DEFAULT_LINGER_TIME
        if not isinstance(loop, KestrelEventLoop):
            raise TypeError("HttpServer needs a KestrelEventLoop (kestrel.new_event_loop())")
        self.app = app
        self.loop = loop
        self.selector = <EpollSelector>loop._selector
        self.io = IoShared(self.selector)
        self.access_log = access_log
        self.out = OutputBuffer()
        self.writer = ResponseWriter(self.out, b"server: " + server_header.encode("latin-1")
                                     + b"\r\n" if server_header else None)
        # Read pause watermarks, Kestrel's MaxRequestBufferSize (1 MiB) and half of it.
        self.max_request_buffer_size = max_request_buffer_size
        self.min_request_buffer_size = max_request_buffer_size // 2
        self.max_response_buffer_size = max_response_buffer_size
        self.max_kernel_unsent = max_kernel_unsent  # TCP_NOTSENT_LOWAT per socket; 0: none
        self.listeners = []
        self.connections = set()
        self.rejections = {}
        self.max_request_line_size = max_request_line_size
        self.max_request_headers_size = max_request_headers_size
        self.max_request_headers = max_request_headers
        # Each request starts with max_request_body_size as its limit, which an app may change
        # per route; the parser refuses only what no route could take (by default the same).
        self.max_request_body_size = max_request_body_size
        self.max_parser_body_size = (max_request_body_size if max_parser_body_size == -2
                                     else max_parser_body_size)
        if request_class is None:
            request_class = Request
        elif not (isinstance(request_class, type) and issubclass(request_class, Request)):
            raise TypeError("request_class must be kestrel._core.Request or a subclass")
        self.request_class = request_class
        self.task_class = asyncio.Task
        self.keep_alive_timeout = keep_alive_timeout
        self.request_headers_timeout = request_headers_timeout
        self.min_request_body_rate = min_request_body_rate
        self.min_response_rate = min_response_rate
        self.min_rate_grace = min_rate_grace
        self.drain_timeout = drain_timeout
        self.max_drain_size = max_drain_size
        self.max_connections = max_connections
        self.linger_time = linger_time
        self.timeouts[<int>DL_NONE] = 0.0
        self.timeouts[<int>DL_KEEP_ALIVE] = keep_alive_timeout
        self.timeouts[<int>DL_HEADERS] = request_headers_timeout
        self.timeouts[<int>DL_DRAIN] = drain_timeout
        self.timeouts[<int>DL_LINGER] = linger_time
        if heartbeat_interval is None:
            # One tick a second, as Kestrel's heartbeat; finer when a timeout is shorter, so
            # that no deadline is overshot by more than a quarter of itself.
            shortest = min(t for t in (keep_alive_timeout, request_headers_timeout,
                                       min_rate_grace, drain_timeout, linger_time, 4.0) if t > 0)
            heartbeat_interval = max(0.01, min(1.0, shortest / 4))
        self.heartbeat_interval = heartbeat_interval
        self.shutting_down = False
        self.at_connection_limit = False
        cdef int i
        for i in range(<int>END_COUNT):
            self.end_counts[i] = 0
        self.drained_bodies = 0
        self.connections_rejected = 0
        self.metrics_target = metrics_path.encode("latin-1") if metrics_path else None
        self.metrics_renderer = metrics_renderer
        # What the app answers for an exception that escaped it (the App: an HTTPException a
        # middleware raised); asked only when one does, so a request that succeeds pays nothing.
        self.error_response = error_response
        self.accepts_connect = accepts_connect
        self.heartbeat = None
        self._tick()

    def listen(self, sock):
        """Serve on an already bound, listening socket (set non-blocking here)."""
        sock.setblocking(False)
        listener = Listener(self, sock)
        self.selector.add_handler(listener, EPOLLIN)
        self.listeners.append(listener)

    def _tick(self):
        """The heartbeat: refresh the Date header, and hold every connection to the request
        contract (one timer for all of them, as Kestrel's heartbeat; no timer per
        connection)."""
        cdef Http1Processor connection
        cdef double now = _monotonic()
        self.writer.tick()
        for connection in list(self.connections):
            try:
                connection.check_deadlines(now)
            except BaseException as exc:
                _log.exception("connection failed", exc_info=exc)
                connection.abort()
        self.heartbeat = self.loop.call_later(self.heartbeat_interval, self._tick)

    async def shutdown(self, double timeout=DEFAULT_GRACEFUL_TIMEOUT):
        """Graceful shutdown: stop accepting, close idle connections at once, let requests in
        flight finish (their responses say Connection: close) for up to `timeout` seconds,
        then close whatever is left."""
        cdef Http1Processor connection
        self.shutting_down = True
        self._close_listeners()
        for connection in list(self.connections):
            connection._end(END_SHUTDOWN)
            connection.closing = True
            if (connection.current is None and connection.file_fd < 0
                    and connection.transport.held() == 0):
                connection.close()
        deadline = _monotonic() + timeout
        # A lingering connection has delivered its response: only requests in flight count.
        while self._busy_connections() and _monotonic() < deadline:
            await asyncio.sleep(min(0.02, max(0.0, deadline - _monotonic())))
        if self._busy_connections():
            _log.warning("graceful shutdown: %d connection(s) still busy after %gs; closing "
                         "them", len(self.connections), timeout)
        self.close()

    def _busy_connections(self):
        return any((<Http1Processor>c).state != PS_LINGERING for c in self.connections)

    def _close_listeners(self):
        for listener in self.listeners:
            self.selector.remove_handler(listener)
            (<Listener>listener).sock.close()
            # A retry scheduled by pause() must not touch whatever reuses the number.
            (<Listener>listener).fd = -1
        self.listeners.clear()

    def metrics(self):
        """A snapshot of the server's counters (what --metrics-path serves)."""
        cdef int i
        ends = {END_REASONS[i]: self.end_counts[i] for i in range(<int>END_COUNT)}
        return {
            "connections_active": len(self.connections),
            "connections_total": self.connections_total,
            "connections_rejected": self.connections_rejected,
            "connection_ends": ends,
            "requests_total": self.requests_total,
            "requests_active": sum(1 for c in self.connections
                                   if (<Http1Processor>c).current is not None),
            "responses_total": self.responses_total,
            "bytes_read": self.io.bytes_read,
            "bytes_written": self.io.bytes_written,
            "read_pauses": self.io.read_pauses,
            "write_pauses": self.io.write_pauses,
            "accept_pauses": self.accept_pauses,
            "drained_bodies": self.drained_bodies,
            "drain_closes": ends["drain_timeout"] + ends["drain_limit"],
            "headers_timeouts": ends["headers_timeout"],
            "body_rate_aborts": ends["body_rate"],
            "response_rate_aborts": ends["response_rate"],
            "keep_alive_timeouts": ends["keep_alive_timeout"],
            "rejections": {RejectReason(k).name: v for k, v in self.rejections.items()},
            "pool_blocks_in_use": self.io.pool.blocks_in_use,
            "pool_blocks_free": self.io.pool.blocks_free,
        }

    def close(self):
        """Stop accepting and close every connection."""
        self._close_listeners()
        for connection in list(self.connections):
            task = (<Http1Processor>connection).task
            if task is not None:
                task.cancel()
            (<Http1Processor>connection)._end(END_SHUTDOWN)
            (<Http1Processor>connection).close()
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    cdef Http1Processor _open_connection(self, int fd):
        cdef SocketTransport transport = SocketTransport(self.io, fd)
        cdef Http1Processor connection = Http1Processor(self, transport)
        self.selector.add_handler(transport, EPOLLIN | EPOLLRDHUP)
        self.connections.add(connection)
        self.connections_total += 1
        if self.max_connections:
            self._check_accepting()
        return connection

    cdef void _check_accepting(self):
        """--max-connections: at the limit, stop accepting (new connections wait in the
        listen backlog, where the kernel refuses them once it is full); resume below it."""
        cdef bint at_limit = len(self.connections) >= self.max_connections
        if at_limit == self.at_connection_limit:
            return
        self.at_connection_limit = at_limit
        for listener in self.listeners:
            if not (<Listener>listener).paused:
                self.selector.modify_handler(<Listener>listener, 0 if at_limit else EPOLLIN)

    def adopt(self, sock, peer=None):
        """Serve one already connected stream socket (a socketpair end, for the TestClient).

        The socket's descriptor is taken over: the engine closes it with the connection.
        `peer` is what request.client reports when the socket has no IP peer address.
        """
        sock.setblocking(False)
        cdef int fd = sock.detach()
        cdef Http1Processor connection
        try:
            connection = self._open_connection(fd)
        except BaseException:
            close(fd)
            raise
        if peer is not None:
            connection.transport.peer = tuple(peer)

    def open_in_memory(self, peer=("127.0.0.1", 50000)):
        """A connection over a MemoryTransport, for tests that drive the HTTP/1 processor with
        no socket: returns the transport (feed(), read(), feed_eof(); see transport.pxi)."""
        cdef MemoryTransport transport = MemoryTransport(self.io, peer)
        connection = Http1Processor(self, transport)
        self.connections.add(connection)
        self.connections_total += 1
        return transport

    def check_deadlines(self, double now):
        """Run the heartbeat's look at every connection as of `now` (monotonic seconds)."""
        for connection in list(self.connections):
            (<Http1Processor>connection).check_deadlines(now)

    cdef void connection_closed(self, Protocol connection) noexcept:
        self.connections.discard(connection)
        if self.max_connections:
            try:
                self._check_accepting()
            except BaseException:
                pass

    cdef void _log_accept_error(self, int error) noexcept:
        _log.warning("accept() failed (%s); retrying every %.0f ms until it succeeds",
                     os.strerror(error), ACCEPT_RETRY_DELAY_S * 1000)
