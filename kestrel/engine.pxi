# The engine: the epoll loop under asyncio, and the server's sockets on it.
#
# Theory of operation
# -------------------
# asyncio's own loop (SelectorEventLoop) runs on EpollSelector, a selector written here. Its
# epoll set holds two kinds of file descriptors:
#   - asyncio's (the self-pipe, sockets opened by handlers with open_connection, ...): they
#     are reported back to asyncio from select() exactly as selectors.EpollSelector would;
#   - the server's listening sockets and HTTP connections: their events are handled inside
#     select() itself, in C, and asyncio never sees them.
# So every asyncio feature works inside a handler, and an HTTP request costs no Python-level
# transport, protocol or callback.
#
# A request's handler starts as an *eager* asyncio Task: its first step runs at once, inside
# select(). A handler that returns without suspending is done when the Task is created; it is
# never scheduled and its response is written in the same pass. Only a handler that awaits
# something is resumed by the loop later. The Task is real (current_task(), asyncio.timeout
# and cancellation behave as anywhere else); on Python 3.12+ it is asyncio's eager_start, and
# on 3.11 KestrelEventLoop.call_soon runs the first step in place (see _EAGER_LOOP below).
#
# Invariants
# - One handler at a time per connection; pipelined requests wait, unparsed, in the
#   connection's held input until the current response is written (strictly in order).
# - Input is read into one scratch buffer shared by all connections; a connection keeps bytes
#   (held_in, pooled blocks) only while it has unparsed input it cannot process yet, so an
#   idle keep-alive connection holds no buffer. Held input plus unread body is bounded by the
#   read-pause watermarks (pool.pxi, http1.pxi).
# - Output is sent at once; only what the socket did not take is kept (held_out, pooled
#   blocks, sent with writev), and EPOLLOUT is armed only while it is non-empty.
# - A handler object is referenced by the selector's handlers dict while registered;
#   a connection closed in the middle of an epoll batch is released after the batch.

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free, realloc
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from kestrel.includes.system cimport *

import asyncio
import email.utils
import logging
import selectors
import stat
import urllib.parse
import sys

cdef uint64_t ASYNCIO_TAG = (<uint64_t>1) << 63
# selectors.EVENT_READ / EVENT_WRITE, as C constants for select()'s loop (asserted below).
cdef int EVENT_READ = 1
cdef int EVENT_WRITE = 2
assert selectors.EVENT_READ == EVENT_READ and selectors.EVENT_WRITE == EVENT_WRITE
cdef int MAX_EVENTS = 512
cdef Py_ssize_t SCRATCH_SIZE = 65536

_log = logging.getLogger("kestrel.error")
_access_log = logging.getLogger("kestrel.access")


class ClientDisconnect(Exception):
    """The client closed the connection before the request body was complete."""


class BadRequest(ValueError):
    """The request is malformed in a way only the framework sees (answered with 400)."""


class BodyConsumedError(RuntimeError):
    """The request body was already read in full; it cannot be read a second time."""


@cython.linetrace(False)
@cython.profile(False)
cdef int _wait(int epfd, epoll_event* events, int timeout_ms) noexcept:
    # Untraced: line tracing cannot run without the GIL, and the wait must release it so
    # that threads (the executor behind plain-def handlers) run while the loop sleeps.
    cdef int n
    with nogil:
        n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms)
    return n


# Relaxed atomic loads and stores (plain moves on x86-64) for the fields the watchdog's
# thread shares with the loop without the GIL (watchdog.pxi).
cdef extern from *:
    """
    static inline double kestrel_load_double(const double* p) {
        double v; __atomic_load(p, &v, __ATOMIC_RELAXED); return v;
    }
    static inline void kestrel_store_double(double* p, double v) {
        __atomic_store(p, &v, __ATOMIC_RELAXED);
    }
    static inline long long kestrel_load_ll(const long long* p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void kestrel_store_ll(long long* p, long long v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    """
    double kestrel_load_double(const double* p) noexcept nogil
    void kestrel_store_double(double* p, double v) noexcept nogil
    long long kestrel_load_ll(const long long* p) noexcept nogil
    void kestrel_store_ll(long long* p, long long v) noexcept nogil


@cython.linetrace(False)
@cython.profile(False)
cdef double _monotonic() noexcept nogil:
    # The clock time.monotonic() reads. Untraced: the watchdog's thread calls it without
    # the GIL.
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef class EpollHandler:
    """Something the engine owns in the epoll set: a listener or a connection."""

    cdef void on_events(self, uint32_t events) noexcept:
        pass


cdef class EpollSelector:
    """A selectors.BaseSelector for asyncio whose epoll set also holds the server's sockets."""

    def __cinit__(self):
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.events = <epoll_event*>malloc(MAX_EVENTS * sizeof(epoll_event))
        if self.events == NULL:
            raise MemoryError()
        self._keys = {}
        self.handlers = {}
        self._released = []
        self.busy_since = 0.0

    def __dealloc__(self):
        if self.events != NULL:
            free(self.events)
        if self.epfd >= 0:
            close(self.epfd)

    # ---- the selectors API, for asyncio's own file descriptors

    def register(self, fileobj, events, data=None):
        fd = selectors._fileobj_to_fd(fileobj)
        if fd in self._keys or fd in self.handlers:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._ctl(EPOLL_CTL_ADD, fd, events)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)
        key = self._keys.pop(fd)
        cdef epoll_event ev
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)  # may fail if fd was closed already
        return key

    def modify(self, fileobj, events, data=None):
        fd = selectors._fileobj_to_fd(fileobj)
        key = self._keys[fd]
        if events != key.events:
            self._ctl(EPOLL_CTL_MOD, fd, events)
        key = key._replace(events=events, data=data)
        self._keys[fd] = key
        return key

    def get_key(self, fileobj):
        return self._keys[selectors._fileobj_to_fd(fileobj)]

    def get_map(self):
        return dict(self._keys)

    def close(self):
        self._keys.clear()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    cdef int _ctl(self, int op, int fd, int events) except -1:
        cdef epoll_event ev
        ev.events = 0
        if events & EVENT_READ:
            ev.events |= EPOLLIN
        if events & EVENT_WRITE:
            ev.events |= EPOLLOUT
        ev.data.u64 = ASYNCIO_TAG | <uint64_t>fd
        if epoll_ctl(self.epfd, op, fd, &ev) < 0:
            raise OSError(errno, f"epoll_ctl failed for fd {fd}")
        return 0

    def select(self, timeout=None):
        cdef int timeout_ms, n, i, fd, mask
        cdef uint32_t ev
        cdef uint64_t tag
        cdef EpollHandler handler
        if timeout is None:
            timeout_ms = -1
        elif timeout <= 0:
            timeout_ms = 0
        else:
            # Round up, as selectors does: a timer must not fire early.
            timeout_ms = <int>(timeout * 1000.0)
            if timeout_ms < timeout * 1000.0:
                timeout_ms += 1
        kestrel_store_double(&self.busy_since, 0.0)  # read by the watchdog (watchdog.pxi)
        n = _wait(self.epfd, self.events, timeout_ms)
        kestrel_store_double(&self.busy_since, _monotonic())
        if n < 0:
            if errno == EINTR:
                return []
            raise OSError(errno, "epoll_wait failed")
        ready = []
        for i in range(n):
            tag = self.events[i].data.u64
            ev = self.events[i].events
            if tag & ASYNCIO_TAG:
                fd = <int>(tag & 0xFFFFFFFF)
                key = self._keys.get(fd)
                if key is None:
                    continue
                mask = 0
                if ev & ~(<uint32_t>EPOLLIN):
                    mask |= EVENT_WRITE
                if ev & ~(<uint32_t>EPOLLOUT):
                    mask |= EVENT_READ
                ready.append((key, mask & key.events))
            else:
                handler = <EpollHandler><void*>tag
                handler.on_events(ev)
        if self._released:
            self._released.clear()
        return ready

    # ---- the server's own file descriptors

    cdef int add_handler(self, EpollHandler handler, uint32_t events) except -1:
        cdef epoll_event ev
        ev.events = events
        ev.data.ptr = <void*>handler
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, handler.fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl(ADD) failed")
        self.handlers[handler.fd] = handler
        return 0

    cdef int modify_handler(self, EpollHandler handler, uint32_t events) noexcept:
        cdef epoll_event ev
        ev.events = events
        ev.data.ptr = <void*>handler
        return epoll_ctl(self.epfd, EPOLL_CTL_MOD, handler.fd, &ev)

    cdef void remove_handler(self, EpollHandler handler) noexcept:
        cdef epoll_event ev
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, handler.fd, &ev)
        # Keep the object alive until the current epoll batch is over: a later event in
        # the same batch may still point at it.
        self._released.append(handler)
        self.handlers.pop(handler.fd, None)
