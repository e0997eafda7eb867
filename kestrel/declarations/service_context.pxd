# Declarations of the service context (service_context.pxi).

cdef class ServiceContext:
    cdef object app
    cdef object loop
    # The request contract; times in seconds, rates in bytes per second.
    cdef double keep_alive_timeout
    cdef double request_headers_timeout
    cdef double min_request_body_rate
    cdef double min_response_rate
    cdef double min_rate_grace
    cdef double drain_timeout
    cdef long long max_drain_size
    cdef double linger_time
    cdef double timeouts[5]           # by DeadlineKind: how long each deadline runs
    cdef Py_ssize_t max_request_buffer_size
    cdef Py_ssize_t min_request_buffer_size
    cdef Py_ssize_t max_response_buffer_size
    cdef Py_ssize_t max_request_line_size
    cdef Py_ssize_t max_request_headers_size
    cdef Py_ssize_t max_request_headers
    cdef long long max_request_body_size
    cdef long long max_parser_body_size
    cdef bint shutting_down
    cdef readonly IoShared io
    cdef OutputBuffer out
    cdef ResponseWriter writer
    cdef bint access_log
    cdef object metrics_target        # the request-target served as metrics, or None
    cdef object metrics_renderer
    cdef object error_response        # (request, exc) -> Response or None, for escaped errors
    cdef bint accepts_connect         # CONNECT goes to the app (else 501)
    cdef object task_class
    cdef object request_class
    cdef set connections              # the processors of open connections
    # Counters.
    cdef long long end_counts[16]     # by End (consts.pxi), END_COUNT <= 16
    cdef dict rejections
    cdef readonly long long drained_bodies
    cdef readonly long long connections_rejected
    cdef readonly long long connections_total
    cdef readonly long long requests_total
    cdef readonly long long responses_total
    # A handler's first step (handler_step.pxi).
    cdef object step_result
    cdef object spare_task            # a first step's RequestTask nothing kept (reused)
    # Parsers not in use: a connection holds one only while a message is in progress (a head
    # or body partly in); an idle keep-alive connection holds none (http1.pxi, _park_parser).
    cdef PyObject* spare_parsers[64]  # MAX_SPARE_PARSERS, each holding a reference
    cdef int spare_count
    cdef HttpParser _new_parser(self)
    cdef HttpParser _take_parser(self)
    cdef void _give_parser(self, HttpParser parser)
    cdef object _start_handler(self, coro)
    cdef object _start_task(self, coro)
    cdef void connection_closed(self, Protocol processor) noexcept
