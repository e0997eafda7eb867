# Listeners: accepting connections.
#
# Theory of operation
# -------------------
# A Listener is the epoll handler of one listening socket. When it is readable it accepts
# every pending connection (accept4, non-blocking), sets TCP_NODELAY and the kernel's bound on
# unsent bytes (TCP_NOTSENT_LOWAT: output flow control continues into the kernel), and asks the
# server to open the connection. Out of descriptors, it stops watching the socket for a moment
# rather than spin on a backlog it cannot take (libuv and nginx do the same); at
# --max-connections the server stops watching it until a connection closes.

# How long accepting pauses when the process is out of descriptors (libuv and nginx retry
# on a timer too; nginx's accept_mutex_delay default is 500 ms).
cdef double ACCEPT_RETRY_DELAY_S = 0.1


cdef class Listener(EpollHandler):
    """A listening socket: accepts every pending connection when readable."""

    def __cinit__(self, HttpServer server, sock):
        self.server = server
        self.sock = sock          # keeps the Python socket (and its fd) alive
        self.fd = sock.fileno()
        self.paused = False
        self.short_of_descriptors = False

    cdef void on_events(self, uint32_t events) noexcept:
        cdef int fd, one = 1, unsent = self.server.max_kernel_unsent
        while True:
            fd = accept4(self.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EINTR or errno == ECONNABORTED or errno == EPROTO:
                    continue
                if errno == EAGAIN:
                    # The backlog is drained: a shortage of descriptors, if there was one, is
                    # over (freeing them one by one mid-episode does not end it).
                    self.short_of_descriptors = False
                else:
                    # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
                    # connection stays in the backlog. The listener would stay readable and
                    # spin the loop, so stop watching it for a moment and try again then.
                    if not self.short_of_descriptors:
                        # Once per episode: while it lasts, retries would repeat it every pause.
                        self.short_of_descriptors = True
                        self.server._log_accept_error(errno)
                    self.pause()
                return
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            if unsent > 0:  # 0: the kernel's default (no bound on what it takes unsent)
                setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent, sizeof(unsent))
            try:
                self.server._open_connection(fd)
            except BaseException as exc:
                close(fd)
                _log.exception("could not set up a connection", exc_info=exc)
            if self.server.at_connection_limit:
                return  # the rest wait in the backlog until a connection closes


    cdef void pause(self) noexcept:
        if self.paused:
            return
        self.paused = True
        self.server.accept_pauses += 1
        self.server.selector.modify_handler(self, 0)
        self.server.loop.call_later(ACCEPT_RETRY_DELAY_S, self.resume)

    def resume(self):
        if self.paused and self.fd >= 0:
            self.paused = False
            if not self.server.at_connection_limit:
                self.server.selector.modify_handler(self, EPOLLIN)

