# Declarations of the watchdog's thread (watchdog.pxi).

cdef struct WatchState:
    # What the thread reads and writes without the GIL.
    int stop_fd                       # an eventfd: stop() writes to it, the thread polls it
    const double* busy_since          # the selector's field
    double threshold
    timespec interval                 # threshold / 4
    double reported                   # busy_since of the last pass reported (thread only)
    long long passes                  # times the thread has looked
    PyObject* owner                   # the LoopWatch, for the callback (under the GIL)


cdef class LoopWatch:
    cdef WatchState state
    cdef EpollSelector selector       # keeps state.busy_since valid
    cdef object callback
    cdef pthread_t thread
    cdef bint started
    cdef bint joined
    cdef readonly long long callbacks  # times the thread took the GIL to call back
