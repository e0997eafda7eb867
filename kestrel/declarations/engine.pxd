# Declarations of the epoll selector (engine.pxi).

cdef class EpollHandler:
    cdef int fd
    cdef void on_events(self, uint32_t events) noexcept


cdef class EpollSelector:
    cdef int epfd
    cdef epoll_event* events
    cdef dict _keys
    cdef dict handlers
    cdef list _released
    # When the loop last came back from epoll_wait (time.monotonic()), 0.0 while it waits:
    # the watchdog's native thread reads it without the GIL (watchdog.pxi), so it is written
    # with an atomic store.
    cdef readonly double busy_since
    cdef int _ctl(self, int op, int fd, int events) except -1
    cdef int add_handler(self, EpollHandler handler, uint32_t events) except -1
    cdef int modify_handler(self, EpollHandler handler, uint32_t events) noexcept
    cdef void remove_handler(self, EpollHandler handler) noexcept
