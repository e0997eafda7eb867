# Declarations of transports (transport.pxi).

cdef class IoShared:
    cdef EpollSelector selector
    cdef readonly BufferPool pool
    cdef char* scratch
    cdef readonly long long bytes_read
    cdef readonly long long bytes_written
    cdef readonly long long read_pauses
    cdef readonly long long write_pauses


cdef class Protocol:
    cdef Transport transport
    cdef void data_received(self, char* data, Py_ssize_t size)
    cdef void eof_received(self)
    cdef void write_ready(self)
    cdef void connection_lost(self, int error)


cdef class Transport(EpollHandler):
    cdef IoShared io
    cdef Protocol protocol
    cdef Pipe held_out                # output the peer has not taken yet
    cdef uint32_t events              # the epoll interest (SocketTransport)
    cdef bint closed
    cdef bint peer_eof
    cdef bint reading_paused
    cdef RateClock write_clock        # while output is blocked: the minimum response rate
    cdef object peer
    @cython.final
    cdef int write(self, OutputBuffer out) except -1
    @cython.final
    cdef Py_ssize_t held(self) noexcept
    cdef long long send_file(self, int fd, off_t* offset, long long count) except -2
    @cython.final
    cdef void _counted(self, ssize_t sent) noexcept
    @cython.final
    cdef void _blocked(self)
    @cython.final
    cdef void _unblocked(self)
    @cython.final
    cdef void reset_write_clock(self) noexcept
    @cython.final
    cdef void _flush_held(self)
    @cython.final
    cdef void pause_reading(self)
    @cython.final
    cdef void resume_reading(self)
    cdef void _set_events(self, uint32_t events)
    cdef void shutdown_write(self)
    cdef int kernel_unsent(self) noexcept
    cdef object peer_address(self)
    cdef void close(self)
    cdef void abort(self)
    @cython.final
    cdef void _lost(self, int error)
    cdef ssize_t _send(self, const char* data, Py_ssize_t size)
    cdef ssize_t _sendv(self, iovec* iov, int count)
    cdef ssize_t _sendfile(self, int fd, off_t* offset, size_t count)
    cdef void _close_descriptor(self)


cdef class SocketTransport(Transport):
    pass


cdef class MemoryTransport(Transport):
    cdef bytearray sent
    cdef Py_ssize_t window            # bytes the peer still takes (-1: any)
    cdef list inbox
    cdef bint eof_pending
    cdef bint reset
    cdef bint write_shut
    cdef Py_ssize_t _take(self, const char* data, Py_ssize_t size)
