# Declarations of the request and its body (request.pxi).

cdef class RequestOwner(Protocol):
    cdef long long body_limit         # a new body's limit (a route may change it)
    cdef object peer_address(self)
    cdef int send_continue(self) except -1
    cdef void body_consumed(self)
    cdef Pipe new_pipe(self)


cdef class RequestBody:
    cdef Pipe pipe
    cdef long long received
    cdef long long limit              # -1: unlimited
    # Time reads spent waiting on the client: what the minimum body rate is measured over.
    cdef RateClock read_clock
    cdef RequestOwner owner
    cdef bint complete
    cdef object waiter
    cdef object error
    cdef bint read_all
    cdef int feed(self, const char* data, Py_ssize_t length) except -1
    cdef Py_ssize_t queued(self) noexcept
    cdef void discard(self) noexcept
    cdef void finish(self) noexcept
    cdef void fail(self, object error) noexcept
    cdef void _wake(self) noexcept


cdef class Request:
    cdef readonly RequestHead head
    cdef RequestOwner connection
    cdef RequestBody body_stream
    cdef bytes body_bytes
    # The target split and decoded on first use (Request.raw_path, .query_string, .path).
    cdef bytes _raw_path
    cdef bytes _query_string
    cdef str _path
    # Set by the framework's router. Fields rather than a __dict__ or Python-level slots: a
    # C field starts as None, so reading one never raises (and formats) an AttributeError.
    cdef public object app
    cdef public object route
    cdef public object path_params
    # Caches of the framework's lazily computed properties (kestrel/request.py).
    cdef public object _query
    cdef public object _headers
    cdef public object _cookies
    cdef public object _state
    cdef public object _form
    cdef int _split_target(self) except -1
    cdef int _start_reading(self) except -1
    cdef RequestBody _body(self)
    cdef void _fail_body(self, error)

    cdef inline bint _body_complete(self):
        """No body, or all of it received."""
        return self.body_stream is None or self.body_stream.complete
