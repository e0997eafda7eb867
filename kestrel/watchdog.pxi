# The watchdog's thread: a native thread that watches the loop without taking the GIL.
#
# Theory of operation
# -------------------
# The selector stores in a C double, busy_since, the monotonic time the loop came back from
# epoll_wait (0.0 while it waits). LoopWatch starts one pthread that sleeps threshold/4 in
# ppoll() on an eventfd (stop() writes to it, so stopping is immediate), reads busy_since
# through a pointer into the selector, and compares it with the clock. As long as no pass of
# the loop has run longer than the threshold, that is all it does: one ppoll() per pass, and
# no GIL, so a healthy loop pays no GIL hand-off, no futex and no context switch for being
# watched. (A Python thread waking as often takes the GIL every time, and the loop then waits
# on a futex for it when it comes back from epoll_wait.)
#
# When a pass has run longer than the threshold and has not been reported yet (each pass is
# reported once: the thread remembers the busy_since it reported), the thread takes the GIL
# (PyGILState_Ensure, through a `with gil` function) and calls the callback with how long the
# loop has been held; kestrel/watchdog.py's Watchdog names the route and the line from the
# loop thread's stack. The GIL is held by the stuck loop at that moment, so the callback runs
# when the interpreter next switches threads (within sys.getswitchinterval(), 5 ms), or when
# the loop lets go.
#
# Invariants
# - The thread touches no Python object except inside the callback, under the GIL.
# - While the thread runs it owns a reference to the LoopWatch (taken by start(), dropped by
#   stop() after the join), and the LoopWatch owns the selector, so the state and the
#   busy_since pointer it reads stay valid.
# - stop() writes to the eventfd and joins the thread with the GIL released (the thread may be
#   waiting for the GIL to make a report); it returns once the thread is gone. stop() from
#   the callback itself (the watchdog thread) is refused: a thread cannot join itself.
# - busy_since and the pass counter are shared without the GIL: they are read and written
#   with relaxed atomic loads and stores (plain moves on x86-64: no torn doubles, no fences).
# - The thread blocks every signal: signals go to the interpreter's threads, as before.

from cpython.ref cimport Py_INCREF, Py_DECREF


@cython.linetrace(False)
@cython.profile(False)
cdef void* _watch_loop(void* arg) noexcept nogil:
    # The thread's body. Untraced: a debug build's line tracing would take the GIL.
    cdef WatchState* state = <WatchState*>arg
    cdef pollfd stop
    cdef int n
    cdef double since, now
    stop.fd = state.stop_fd
    stop.events = POLLIN
    while True:
        n = ppoll(&stop, 1, &state.interval, NULL)
        if n != 0:
            if n < 0 and errno == EINTR:
                continue
            return NULL  # stop() wrote to the eventfd (or ppoll failed: stop watching)
        kestrel_store_ll(&state.passes, state.passes + 1)  # only this thread writes it
        since = kestrel_load_double(state.busy_since)
        now = _monotonic()
        if since != 0.0 and since != state.reported and now - since > state.threshold:
            state.reported = since
            _watch_report(state.owner, now - since)


cdef void _watch_report(PyObject* owner, double held) noexcept with gil:
    # The only place the thread takes the GIL. An exception is printed as unraisable.
    cdef LoopWatch watch = <LoopWatch>owner
    watch.callbacks += 1
    watch.callback(held)


cdef class LoopWatch:
    """A native thread calling callback(held_seconds) once for every pass of the loop that
    holds it longer than threshold seconds; it takes the GIL for nothing else."""

    def __cinit__(self, EpollSelector selector not None, double threshold, callback):
        self.state.stop_fd = -1
        if not threshold > 0:
            raise ValueError("the blocking threshold must be more than 0 seconds")
        cdef long long interval_ns = max(<long long>(threshold / 4 * 1e9), 1)
        self.selector = selector
        self.callback = callback
        self.state.busy_since = &selector.busy_since
        self.state.threshold = threshold
        self.state.interval.tv_sec = interval_ns // 1000000000
        self.state.interval.tv_nsec = interval_ns % 1000000000
        self.state.owner = <PyObject*>self
        self.state.stop_fd = eventfd(0, EFD_CLOEXEC)
        if self.state.stop_fd < 0:
            raise OSError(errno, "eventfd failed")

    def __dealloc__(self):
        # A running thread owns a reference, so none is running here.
        if self.state.stop_fd >= 0:
            close(self.state.stop_fd)

    @property
    def passes(self):
        """How many times the thread has woken up and looked at the loop."""
        return kestrel_load_ll(&self.state.passes)

    @property
    def running(self):
        return self.started and not self.joined

    def start(self):
        if self.started:
            raise RuntimeError("a LoopWatch can be started only once")
        cdef sigset_t all_signals, previous
        cdef int error
        sigfillset(&all_signals)
        pthread_sigmask(SIG_SETMASK, &all_signals, &previous)  # the new thread inherits it
        error = pthread_create(&self.thread, NULL, _watch_loop, &self.state)
        pthread_sigmask(SIG_SETMASK, &previous, NULL)
        if error != 0:
            raise OSError(error, "cannot start the watchdog thread")
        Py_INCREF(self)  # the thread's reference, dropped by stop() after the join
        self.started = True
        if KESTREL_DEBUG:
            _debug_count("watchdog_thread_started", 1)

    def stop(self):
        """Stop the thread and wait for it to end: it is woken at once, not waited for."""
        if not self.started or self.joined:
            return
        if pthread_equal(pthread_self(), self.thread):
            raise RuntimeError("the watchdog cannot be stopped from its own callback")
        cdef int error = 0
        with nogil:  # the thread may be waiting for the GIL to report a stall
            if eventfd_write(self.state.stop_fd, 1) < 0:
                error = errno
            else:
                pthread_join(self.thread, NULL)
        if error:
            raise OSError(error, "cannot wake the watchdog thread")
        self.joined = True
        if KESTREL_DEBUG:
            _debug_count("watchdog_thread_joined", 1)
        Py_DECREF(self)
