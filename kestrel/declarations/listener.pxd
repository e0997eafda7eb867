# Declarations of listeners (listener.pxi).

cdef class Listener(EpollHandler):
    cdef HttpServer server
    cdef object sock
    cdef bint paused
    cdef bint short_of_descriptors
    cdef void pause(self) noexcept
