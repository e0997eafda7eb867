# Declarations of the HTTP/1 processor (http1.pxi).

cdef class Http1Processor(RequestOwner):
    cdef ServiceContext context
    cdef HttpParser parser            # None while no message is in progress (_park_parser)
    cdef Pipe held_in                 # input not parsed yet (pipelined requests)
    cdef Request current              # the request in flight (READING, HANDLING), or None
    cdef object task                  # the handler's or the stream's Task, if it suspended
    cdef object drain_waiter          # a stream producer waiting for output to drain
    cdef object upgraded              # the protocol that took over (UPGRADED)
    cdef object drain_route           # names the request whose body is being drained
    cdef int state                    # ProcessorState (consts.pxi): see _enter
    cdef bint closing                 # no further request: close once the response is out
    cdef bint continue_sent           # "100 Continue" already sent for this request
    cdef bint responded               # this request's response head is written
    cdef bint upgrade_fed             # UPGRADED: the input held before it was handed over
    cdef int end_reason               # End, once decided; -1 until then
    cdef Deadline deadline            # its kind is derived from the state
    cdef int last_unsent              # the kernel's unsent bytes at the last idle deadline
    cdef long long drain_left         # bytes a drain may still discard (-1: no drain)
    cdef int file_fd                  # a FileResponse being sent, or -1
    cdef off_t file_offset
    cdef long long file_remaining
    cdef bint going_on                # a caller up the stack goes on with held input
    @cython.final
    cdef void _enter(self, int state)
    @cython.final
    cdef int _deadline_kind(self) noexcept
    @cython.final
    cdef void _update_deadline(self) noexcept
    @cython.final
    cdef void _end(self, int reason)
    @cython.final
    cdef void _process_held(self)
    @cython.final
    cdef void _feed_upgraded(self)
    @cython.final
    cdef void _process(self, char* data, Py_ssize_t size)
    @cython.final
    cdef Py_ssize_t _input_held(self) noexcept
    @cython.final
    cdef void _check_input_watermark(self)
    @cython.final
    cdef Py_ssize_t _process_ptr(self, char* data, Py_ssize_t size)
    @cython.final
    cdef Py_ssize_t _parse_ptr(self, char* data, Py_ssize_t size)
    @cython.final
    cdef void _park_parser(self)
    @cython.final
    cdef void _start_request(self, RequestHead head)
    @cython.final
    cdef void _task_result(self, task)
    @cython.final
    cdef void _after_response(self)
    @cython.final
    cdef void _handler_done(self, result, exc)
    @cython.final
    cdef void _write_error(self, Request request, exc)
    @cython.final
    cdef Response _app_error_response(self, Request request, exc)
    @cython.final
    cdef int _write_response(self, Request request, int status, headers, bytes body,
                             content_type, long long length=*) except -1
    @cython.final
    cdef void _response_finished(self, Request request)
    @cython.final
    cdef void _start_stream(self, Request request, StreamingResponse response)
    @cython.final
    cdef bint _start_file(self, Request request, FileResponse response) except -1
    @cython.final
    cdef void _send_file(self)
    @cython.final
    cdef void _close_file(self) noexcept
    @cython.final
    cdef void _flush(self)
    @cython.final
    cdef void _output_progress(self)
    @cython.final
    cdef void _reject(self, int reason)
    @cython.final
    cdef void _close_silently(self)
    @cython.final
    cdef void _close_if_done(self)
    @cython.final
    cdef void _input_idle(self)
    @cython.final
    cdef void _start_drain(self, Request request)
    @cython.final
    cdef void _linger(self)
    @cython.final
    cdef void check_deadlines(self, double now)
    @cython.final
    cdef void _upgraded_input(self, bytes data)
    @cython.final
    cdef void close(self)
    @cython.final
    cdef void abort(self)
