# Declarations of the server (server.pxi).

cdef class HttpServer(ServiceContext):
    cdef EpollSelector selector
    cdef int max_kernel_unsent        # TCP_NOTSENT_LOWAT per accepted socket; 0: none
    cdef double heartbeat_interval
    cdef object heartbeat
    cdef list listeners
    cdef Py_ssize_t max_connections   # 0: no limit
    cdef bint at_connection_limit     # listeners unwatched: --max-connections reached
    cdef readonly long long accept_pauses
    cdef Http1Processor _open_connection(self, int fd)
    cdef void _check_accepting(self)
    cdef void _log_accept_error(self, int error) noexcept
