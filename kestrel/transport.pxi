# Transports: what carries one connection's bytes, under the HTTP/1 processor.
#
# Theory of operation
# -------------------
# A transport moves bytes between the peer and its protocol (the processor above it) and knows
# nothing of HTTP. Input: it reads into the shared scratch buffer and hands each read to the
# protocol (data_received), then the end of input (eof_received); pause_reading and
# resume_reading are the input flow control the protocol drives. Output: the protocol
# serializes into the shared OutputBuffer and calls write(out); the transport sends what the
# peer takes now and holds the rest in pooled blocks (held_out), arms writability, and calls
# the protocol's write_ready each time the peer took some of it, so a producer that waits
# refills. send_file sends from a file descriptor. It times how long output has been blocked on
# the peer, which is what the minimum response rate is measured over.
#
# The interface is narrow on purpose: a TLS transport (a memory BIO, or kTLS after the
# handshake) implements the same methods. Transport holds the logic every transport shares
# (holding output, blocking, the write clock); a concrete transport supplies the four
# primitives _send, _sendv, _sendfile and _close_descriptor. SocketTransport is a TCP or Unix
# socket and the epoll handler of its connection: every call, up and down, is a C call.
# MemoryTransport keeps the same contract over memory, so tests drive the processor with no
# socket at all, with the peer's reading and writing under their control.
#
# An error on the socket closes the transport; the protocol learns it from
# connection_lost(errno), which is where the connection's end reason is recorded.


cdef class IoShared:
    """What every transport of one server shares: the selector, the block pool, the scratch
    input buffer (one connection reads at a time: the loop is single-threaded) and the I/O
    counters the server's metrics report."""

    def __cinit__(self, EpollSelector selector):
        self.selector = selector
        self.pool = BufferPool()
        self.scratch = <char*>malloc(SCRATCH_SIZE)
        if self.scratch == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.scratch)


cdef class Protocol:
    """What a transport calls above it (the HTTP/1 processor implements it)."""

    cdef void data_received(self, char* data, Py_ssize_t size):
        pass

    cdef void eof_received(self):
        pass

    cdef void write_ready(self):
        pass

    cdef void connection_lost(self, int error):
        pass


cdef class Transport(EpollHandler):
    """The output and flow-control logic every transport shares (see the theory above)."""

    cdef int write(self, OutputBuffer out) except -1:
        """Send all of `out` (and first whatever is held from before); hold what the peer did
        not take. `out` is empty afterwards."""
        cdef Pipe held = self.held_out
        cdef IoShared io = self.io
        cdef iovec iov[MAX_IOVEC]
        cdef ssize_t sent
        if self.closed:
            out.length = 0
            return 0
        if held is not None and held.size:
            # Order matters: what was held goes first, then the new output behind it.
            if out.length:
                held.write(out.data, out.length)
                out.length = 0
            sent = self._sendv(iov, held.iovecs(iov, MAX_IOVEC))
            if sent < 0:
                return 0  # closed (the protocol knows), or the peer takes nothing now
            held.consume(sent)
        elif out.length:
            sent = self._send(out.data, out.length)
            if self.closed:
                out.length = 0
                return 0
            if sent < 0:
                sent = 0
            if sent < out.length:
                if held is None:
                    held = self.held_out = Pipe(io.pool)
                held.write(out.data + sent, out.length - sent)
            out.length = 0
        if held is not None and held.size:
            self._blocked()
        else:
            self._unblocked()
        return 0

    cdef Py_ssize_t held(self) noexcept:
        """Output accepted from the protocol that the peer has not taken yet."""
        return self.held_out.size if self.held_out is not None else 0

    cdef long long send_file(self, int fd, off_t* offset, long long count) except -2:
        """Send up to `count` bytes of `fd` from *offset (nothing may be held). Returns the bytes
        sent (fewer when the peer stopped taking them: write_ready follows), or -1 if the file
        ended before `count`. An error closes the transport."""
        cdef ssize_t sent
        cdef long long total = 0
        while total < count:
            sent = self._sendfile(fd, offset, <size_t>min(count - total, SENDFILE_MAX))
            if sent < 0:
                if not self.closed:
                    self._blocked()
                return total
            if sent == 0:
                return -1
            total += sent
        self._unblocked()
        return total

    cdef void _counted(self, ssize_t sent) noexcept:
        self.io.bytes_written += sent
        rate_clock_count(&self.write_clock, sent)

    cdef void _blocked(self):
        """The peer took less than offered: wait until it takes more, and start the clock the
        minimum response rate is measured over (only while blocked on the peer)."""
        if not (self.events & EPOLLOUT):
            self.io.write_pauses += 1
            self._set_events(self.events | EPOLLOUT)
        rate_clock_start(&self.write_clock)

    cdef void _unblocked(self):
        if self.events & EPOLLOUT:
            self._set_events(self.events & ~EPOLLOUT)
        rate_clock_stop(&self.write_clock)

    cdef void reset_write_clock(self) noexcept:
        """A new response: its rate is measured from here."""
        rate_clock_reset(&self.write_clock)

    cdef void _flush_held(self):
        """The peer can take more: send what is held, then tell the protocol."""
        cdef Pipe held = self.held_out
        cdef iovec iov[MAX_IOVEC]
        cdef ssize_t sent
        if held is not None and held.size:
            sent = self._sendv(iov, held.iovecs(iov, MAX_IOVEC))
            if self.closed:
                return
            if sent > 0:
                held.consume(sent)
            if held.size:
                self._blocked()
            else:
                self._unblocked()
        else:
            self._unblocked()
        self.protocol.write_ready()

    cdef void pause_reading(self):
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.io.read_pauses += 1
            self._set_events(self.events & ~(EPOLLIN | EPOLLRDHUP))

    cdef void resume_reading(self):
        if self.reading_paused and not self.closed and not self.peer_eof:
            self.reading_paused = False
            self._set_events(self.events | EPOLLIN | EPOLLRDHUP)

    cdef void _set_events(self, uint32_t events):
        self.events = events

    cdef void shutdown_write(self):
        """Send our FIN: the peer reads the end of the response, and may still send."""
        pass

    cdef int kernel_unsent(self) noexcept:
        """Bytes the kernel still holds unsent (0 where there is no kernel queue)."""
        return 0

    cdef object peer_address(self):
        return self.peer

    cdef void close(self):
        """Close at once; what is held is dropped. Idempotent; no callback."""
        if self.closed:
            return
        self.closed = True
        self._close_descriptor()
        if self.held_out is not None:
            self.held_out.clear()

    cdef void abort(self):
        """Close and discard what the peer has not received yet."""
        self.close()

    cdef void _lost(self, int error):
        """An I/O error: close, and tell the protocol why."""
        if not self.closed:
            self.close()
            self.protocol.connection_lost(error)

    # The primitives a concrete transport supplies. _send and _sendv return the bytes taken,
    # or -1 if none could be (the peer is behind, or an error closed the transport: then
    # `closed` is set and the protocol has been told); _sendfile the same, or 0 at the file's
    # end.
    cdef ssize_t _send(self, const char* data, Py_ssize_t size):
        return -1

    cdef ssize_t _sendv(self, iovec* iov, int count):
        return -1

    cdef ssize_t _sendfile(self, int fd, off_t* offset, size_t count):
        return -1

    cdef void _close_descriptor(self):
        pass


cdef class SocketTransport(Transport):
    """A connected TCP or Unix socket, in the server's epoll set."""

    def __cinit__(self, IoShared io, int fd):
        if KESTREL_DEBUG:
            _debug_count("transport_alloc", 1)
        self.io = io
        self.fd = fd
        self.events = EPOLLIN | EPOLLRDHUP

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("transport_free", 1)

    cdef void on_events(self, uint32_t events) noexcept:
        cdef IoShared io = self.io
        cdef ssize_t n
        if self.closed:
            return
        try:
            if events & EPOLLOUT:
                self._flush_held()
                if self.closed:
                    return
            if events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR):
                n = recv(self.fd, io.scratch, SCRATCH_SIZE, 0)
                if n > 0:
                    io.bytes_read += n
                    self.protocol.data_received(io.scratch, n)
                elif n == 0:
                    self.peer_eof = True
                    self._set_events(self.events & ~(EPOLLIN | EPOLLRDHUP))
                    self.protocol.eof_received()
                elif errno != EAGAIN and errno != EINTR:
                    self._lost(errno)
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()
            self.protocol.connection_lost(0)

    cdef ssize_t _send(self, const char* data, Py_ssize_t size):
        cdef ssize_t sent = send(self.fd, data, size, MSG_NOSIGNAL)
        if sent >= 0:
            self._counted(sent)
        elif errno != EAGAIN and errno != EINTR:
            self._lost(errno)
        return sent

    cdef ssize_t _sendv(self, iovec* iov, int count):
        cdef ssize_t sent = writev(self.fd, iov, count)
        if sent >= 0:
            self._counted(sent)
        elif errno != EAGAIN and errno != EINTR:
            self._lost(errno)
        return sent

    cdef ssize_t _sendfile(self, int fd, off_t* offset, size_t count):
        cdef ssize_t sent
        while True:
            sent = sendfile(self.fd, fd, offset, count)
            if sent >= 0:
                self._counted(sent)
                return sent
            if errno == EINTR:
                continue
            if errno != EAGAIN:
                self._lost(errno)
            return -1

    cdef void _set_events(self, uint32_t events):
        if events != self.events and not self.closed:
            self.events = events
            self.io.selector.modify_handler(self, events)

    cdef void shutdown_write(self):
        if not self.closed:
            shutdown(self.fd, SHUT_WR)

    cdef int kernel_unsent(self) noexcept:
        cdef int unsent = 0
        if self.closed or ioctl(self.fd, SIOCOUTQ, &unsent) != 0:
            return 0
        return unsent

    cdef object peer_address(self):
        """The client's (host, port), looked up on first use: most requests never ask."""
        cdef sockaddr_storage address
        cdef socklen_t size = sizeof(address)
        cdef char text[64]
        if self.peer is None and not self.closed:
            if getpeername(self.fd, <sockaddr*>&address, &size) == 0:
                if address.ss_family == AF_INET:
                    inet_ntop(AF_INET, &(<sockaddr_in*>&address).sin_addr, text, sizeof(text))
                    self.peer = (text.decode(), ntohs((<sockaddr_in*>&address).sin_port))
                elif address.ss_family == AF_INET6:
                    inet_ntop(AF_INET6, &(<sockaddr_in6*>&address).sin6_addr, text,
                              sizeof(text))
                    self.peer = (text.decode(), ntohs((<sockaddr_in6*>&address).sin6_port))
        return self.peer

    cdef void abort(self):
        """Reset: with SO_LINGER 0, close() discards what the kernel still holds unsent and
        sends an RST, so an aborted slow reader pins no kernel memory (a plain close would
        leave it in FIN-WAIT-1, still sending)."""
        cdef linger reset
        if self.closed:
            return
        reset.l_onoff = 1
        reset.l_linger = 0
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset))
        self.close()

    cdef void _close_descriptor(self):
        self.io.selector.remove_handler(self)
        close(self.fd)


cdef class MemoryTransport(Transport):
    """The transport contract over memory: the peer is the test.

    feed() and feed_eof() are what the peer sends; they reach the protocol at once unless
    reading is paused, and then when the test calls pump() after a resume. read() is the peer
    reading: it returns what was sent and, with a `window`, takes only that many more bytes,
    the rest staying held as on a socket whose peer is behind.
    """

    def __cinit__(self, IoShared io, peer=("127.0.0.1", 50000), window=None):
        self.io = io
        self.fd = -1
        self.events = EPOLLIN | EPOLLRDHUP
        self.peer = peer
        self.sent = bytearray()
        self.window = -1 if window is None else window
        self.inbox = []
        self.eof_pending = False
        self.reset = False
        self.write_shut = False

    def feed(self, data):
        """The peer sends `data`."""
        if self.peer_eof or self.eof_pending:
            raise RuntimeError("the peer already closed its side")
        self.inbox.append(bytes(data))
        self.pump()

    def feed_eof(self):
        """The peer closes its side (it may still read)."""
        self.eof_pending = True
        self.pump()

    def pump(self):
        """Deliver what the peer sent while reading is not paused."""
        cdef bytes data
        while self.inbox and not self.reading_paused and not self.closed:
            data = self.inbox.pop(0)
            self.io.bytes_read += len(data)
            self.protocol.data_received(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        if self.eof_pending and not self.inbox and not self.reading_paused and not self.closed:
            self.eof_pending = False
            self.peer_eof = True
            self.protocol.eof_received()

    def read(self, window=None):
        """The peer reads: everything sent so far. `window` limits what it takes from now on
        (None: no limit); a transport holding output sends it on."""
        self.window = -1 if window is None else window
        if self.held() and not self.closed:
            self._flush_held()
        data = bytes(self.sent)
        del self.sent[:]
        return data

    @property
    def is_closed(self):
        return self.closed

    @property
    def was_reset(self):
        return self.reset

    @property
    def fin_sent(self):
        return self.write_shut

    @property
    def paused(self):
        return self.reading_paused

    @property
    def held_bytes(self):
        return self.held()

    @property
    def processor(self):
        """The protocol above this transport (the Http1Processor of its connection), which
        tests reach its Python-level methods through: upgrade() and send_raw()."""
        return self.protocol

    cdef Py_ssize_t _take(self, const char* data, Py_ssize_t size):
        if self.window >= 0:
            size = min(size, self.window)
            self.window -= size
        if size:
            self.sent += PyBytes_FromStringAndSize(data, size)
            self._counted(size)
        return size

    cdef ssize_t _send(self, const char* data, Py_ssize_t size):
        if self.closed or self.write_shut:
            raise RuntimeError("write after the transport was closed")
        return self._take(data, size) or -1

    cdef ssize_t _sendv(self, iovec* iov, int count):
        cdef Py_ssize_t total = 0, taken
        cdef int i
        for i in range(count):
            taken = self._take(<const char*>iov[i].iov_base, iov[i].iov_len)
            total += taken
            if taken < <Py_ssize_t>iov[i].iov_len:
                break
        return total or -1

    cdef ssize_t _sendfile(self, int fd, off_t* offset, size_t count):
        cdef Py_ssize_t size = count
        if self.window >= 0:
            size = min(size, self.window)
        if size == 0:
            return -1
        data = os.pread(fd, size, offset[0])
        if not data:
            return 0
        self._take(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        offset[0] += PyBytes_GET_SIZE(data)
        return PyBytes_GET_SIZE(data)

    cdef void shutdown_write(self):
        self.write_shut = True

    cdef void abort(self):
        if not self.closed:
            self.reset = True
        self.close()
