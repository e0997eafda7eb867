# Declarations of the core's cdef classes, so other Cython modules (and the engine in later
# issues) can call their C methods directly.

cimport cython

cdef class RequestHead:
    cdef readonly str method
    cdef readonly bytes target
    cdef readonly str http_version
    # The header fields packed by the parser (see parser.pxi); `headers` builds the list of
    # (name, value) pairs from them on first use and keeps it in _headers.
    cdef bytes _fields
    cdef list _headers
    cdef readonly bint keep_alive
    cdef readonly long long content_length
    cdef readonly bint chunked
    cdef readonly bint upgrade
    cdef readonly bint expect_continue


cdef class HttpMessageParser:
    # The HTTP/1.1 message machinery (message.pxi); a front end derives from it.
    # Limits (see consts.pxi for defaults and their precedents).
    cdef public Py_ssize_t max_request_line_size
    cdef public Py_ssize_t max_request_headers_size
    cdef public Py_ssize_t max_request_headers
    cdef public long long max_request_body_size
    cdef public Py_ssize_t max_chunk_extensions_size

    # Machine state.
    cdef int state
    cdef char* line_buf               # partial line carried between feeds (malloc'ed)
    cdef Py_ssize_t line_len
    cdef Py_ssize_t line_cap

    # Per-message state, reset by _begin_message().
    cdef char* fields_buf             # this head's fields, packed (PyMem; freed at its end)
    cdef Py_ssize_t fields_len
    cdef Py_ssize_t fields_cap
    cdef list _trailers
    cdef Py_ssize_t start_line_bytes  # leading empty lines + start line
    cdef Py_ssize_t field_bytes       # header (or trailer) section bytes so far
    cdef Py_ssize_t field_count
    cdef int http_minor
    cdef long long content_length     # -1: no Content-Length header
    cdef bint has_transfer_encoding
    cdef int te_codings               # non-empty codings seen
    cdef bint te_chunked_seen
    cdef bint te_after_chunked        # a coding followed chunked, or chunked twice
    cdef bint te_unsupported          # a coding other than chunked
    cdef bint te_syntax_error
    cdef bint conn_close
    cdef bint conn_keep_alive
    cdef bint conn_upgrade
    cdef bint has_upgrade_header
    cdef bint no_content              # set by the front end: no body whatever the fields say
    cdef bint keep_alive
    cdef bint upgrade
    cdef long long body_remaining     # bytes left in this Content-Length body or chunk
    cdef long long body_received      # decoded chunked body bytes so far
    cdef Py_ssize_t chunk_ext_bytes

    # Outputs of execute().
    cdef Py_ssize_t consumed
    cdef const char* body_ptr
    cdef Py_ssize_t body_len
    cdef int error_reason
    cdef str error_detail
    cdef readonly long long messages_completed

    # Python-level feed queue.
    cdef list pending
    cdef Py_ssize_t pending_index
    cdef Py_ssize_t pending_offset
    cdef bint eof

    # The machinery's own methods are final: called directly, not through the vtable, so the
    # C compiler may inline them.
    @cython.final
    cdef int execute(self, const char* data, Py_ssize_t length) except -1
    @cython.final
    cdef int _fail(self, int reason, str detail) noexcept
    @cython.final
    cdef Py_ssize_t _line_budget(self, int state) noexcept
    @cython.final
    cdef int _buffer_partial(self, const char* data, Py_ssize_t length) except -1
    @cython.final
    cdef int _early_reason(self, int state, const unsigned char* p, Py_ssize_t n,
                           Py_ssize_t scanned, bint scan_cr) noexcept
    @cython.final
    cdef int _on_line(self, const char* line, Py_ssize_t length, Py_ssize_t scanned) except -1
    @cython.final
    cdef int _dispatch_line(self, const char* line, Py_ssize_t length) except -1
    @cython.final
    cdef int _field_line(self, const char* line, Py_ssize_t length, bint trailer) except -1
    @cython.final
    cdef int _store_field(self, int known, const unsigned char* name, Py_ssize_t name_len,
                          const unsigned char* value, Py_ssize_t value_len) except -1
    @cython.final
    cdef void _release_fields(self) noexcept
    @cython.final
    cdef int _end_of_fields(self) except -1
    @cython.final
    cdef bytes _take_fields(self)
    @cython.final
    cdef int _chunk_size_line(self, const char* line, Py_ssize_t length) except -1
    @cython.final
    cdef int _content_length(self, const unsigned char* value, Py_ssize_t length) noexcept
    @cython.final
    cdef void _transfer_encoding(self, const unsigned char* value, Py_ssize_t length) noexcept
    @cython.final
    cdef void _connection(self, const unsigned char* value, Py_ssize_t length) noexcept
    # What a front end provides (see message.pxi).
    cdef void _begin_message(self) noexcept
    cdef int _start_line_early(self, const unsigned char* p, Py_ssize_t n,
                               Py_ssize_t* first) noexcept
    cdef int _start_line(self, const char* line, Py_ssize_t length) except -1
    cdef int _front_field(self, int known, const unsigned char* value,
                          Py_ssize_t length) except -1
    cdef int _end_of_head(self) except -1
    cdef object _head_event(self)


cdef class HttpParser(HttpMessageParser):
    # The request front end (parser.pxi).
    cdef readonly RequestHead head
    cdef int host_count
    cdef bint expect_continue
    cdef bint is_connect


# ---- The engine (engine.pxi; the rest of the declarations follow the fragments).

from libc.stdint cimport uint32_t
from kestrel.includes.system cimport epoll_event, iovec
from posix.types cimport off_t


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


cdef class OutputBuffer:
    cdef char* data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity
    cdef int _grow(self, Py_ssize_t needed) except -1
    cdef int append(self, const char* data, Py_ssize_t size) except -1
    cdef int append_bytes(self, bytes data) except -1
    cdef int append_content_length(self, Py_ssize_t value) except -1
    cdef int append_chunk_size(self, Py_ssize_t value) except -1


cdef class ResponseWriter:
    cdef OutputBuffer out
    cdef bytes server_line            # None: no Server header
    cdef bytes date_line              # rebuilt on each heartbeat tick
    cdef bytes common_lines           # date_line + server_line, in one append
    cdef object valid_content_type    # the last bytes content type found valid
    # What the last write_head decided.
    cdef int framing                  # Framing (response_writer.pxi)
    cdef long long length             # the body's length with FRAME_LENGTH, else -1
    cdef bint close                   # the connection closes after this response
    cdef bint send_body               # body bytes go on the wire (not HEAD, 204, 304)
    cdef void tick(self) noexcept
    cdef int write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                        headers, content_type, long long body_length) except -1
    cdef int _write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                         headers, content_type, long long body_length) except -1


cdef class BaseResponse:
    cdef public int status
    cdef object _headers              # as given, or a MutableHeaders once asked for
    cdef public object content_type


cdef class StreamingResponse(BaseResponse):
    cdef public object content


cdef class Response(BaseResponse):
    cdef public bytes body
    cdef Response _set(self, bytes body, int status, content_type)


cdef class FileResponse(BaseResponse):
    cdef public object path
    cdef public object filename


cdef class BufferPool:
    cdef char** slabs
    cdef Py_ssize_t slab_count
    cdef char** free
    cdef Py_ssize_t free_count
    cdef Py_ssize_t total_blocks
    cdef int _add_slab(self) except -1
    cdef char* acquire(self) except NULL
    cdef void release(self, char* block) noexcept


cdef class Pipe:
    cdef BufferPool pool
    cdef char** blocks
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Py_ssize_t head
    cdef Py_ssize_t tail
    cdef readonly Py_ssize_t size
    cdef int write(self, const char* data, Py_ssize_t length) except -1
    cdef int iovecs(self, iovec* iov, int max_count) noexcept
    cdef void take(self, char* out, Py_ssize_t n) noexcept
    cdef const char* front(self, Py_ssize_t* length) noexcept
    cdef void consume(self, Py_ssize_t n) noexcept
    cdef void clear(self) noexcept


# ---- Timeout control (timeouts.pxi).

cdef struct Deadline:
    int kind                          # DeadlineKind (consts.pxi)
    double at                         # when it passes (monotonic seconds)

cdef struct RateClock:
    double started                    # waiting on the peer since (0.0: not waiting)
    double total                      # seconds waited before that
    long long bytes                   # bytes the peer moved while waited on


# ---- Transports (transport.pxi).

cdef class IoShared:
    cdef EpollSelector selector
    cdef readonly BufferPool pool
    cdef char* scratch
    cdef readonly long long bytes_read
    cdef readonly long long bytes_written
    cdef readonly long long read_pauses
    cdef readonly long long write_pauses


cdef class Protocol:
    cdef Transport transport
    cdef void data_received(self, char* data, Py_ssize_t size)
    cdef void eof_received(self)
    cdef void write_ready(self)
    cdef void connection_lost(self, int error)


cdef class Transport(EpollHandler):
    cdef IoShared io
    cdef Protocol protocol
    cdef Pipe held_out                # output the peer has not taken yet
    cdef uint32_t events              # the epoll interest (SocketTransport)
    cdef bint closed
    cdef bint peer_eof
    cdef bint reading_paused
    cdef RateClock write_clock        # while output is blocked: the minimum response rate
    cdef object peer
    cdef int write(self, OutputBuffer out) except -1
    cdef Py_ssize_t held(self) noexcept
    cdef long long send_file(self, int fd, off_t* offset, long long count) except -2
    cdef void _counted(self, ssize_t sent) noexcept
    cdef void _blocked(self)
    cdef void _unblocked(self)
    cdef void reset_write_clock(self) noexcept
    cdef void _flush_held(self)
    cdef void pause_reading(self)
    cdef void resume_reading(self)
    cdef void _set_events(self, uint32_t events)
    cdef void shutdown_write(self)
    cdef int kernel_unsent(self) noexcept
    cdef object peer_address(self)
    cdef void close(self)
    cdef void abort(self)
    cdef void _lost(self, int error)
    cdef ssize_t _send(self, const char* data, Py_ssize_t size)
    cdef ssize_t _sendv(self, iovec* iov, int count)
    cdef ssize_t _sendfile(self, int fd, off_t* offset, size_t count)
    cdef void _close_descriptor(self)


cdef class SocketTransport(Transport):
    pass


cdef class MemoryTransport(Transport):
    cdef bytearray sent
    cdef Py_ssize_t window            # bytes the peer still takes (-1: any)
    cdef list inbox
    cdef bint eof_pending
    cdef bint reset
    cdef bint write_shut
    cdef Py_ssize_t _take(self, const char* data, Py_ssize_t size)


# ---- Requests (request.pxi).

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


# ---- File responses (file_response.pxi).

cdef class FileHead:
    cdef public int status
    cdef public list headers
    cdef public bytes body            # a small body of its own (404, 412), or None
    cdef public object content_type
    cdef public int fd                # the file, when a body follows; -1: none
    cdef public long long offset
    cdef public long long length


# ---- The service context (service_context.pxi) and the server (server.pxi).

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
    cdef HttpParser _new_parser(self)
    cdef object _start_handler(self, coro)
    cdef object _start_task(self, coro)
    cdef void connection_closed(self, Http1Processor processor) noexcept


cdef class HttpServer(ServiceContext):
    cdef EpollSelector selector
    cdef double heartbeat_interval
    cdef object heartbeat
    cdef list listeners
    cdef Py_ssize_t max_connections   # 0: no limit
    cdef bint at_connection_limit     # listeners unwatched: --max-connections reached
    cdef readonly long long accept_pauses
    cdef Http1Processor _open_connection(self, int fd)
    cdef void _check_accepting(self)
    cdef void _log_accept_error(self, int error) noexcept


cdef class Listener(EpollHandler):
    cdef HttpServer server
    cdef object sock
    cdef bint paused
    cdef bint short_of_descriptors
    cdef void pause(self) noexcept


# ---- The HTTP/1 processor (http1.pxi).

cdef class Http1Processor(RequestOwner):
    cdef ServiceContext context
    cdef HttpParser parser
    cdef Pipe held_in                 # input not parsed yet (pipelined requests)
    cdef Request current              # the request in flight (READING, HANDLING), or None
    cdef object task                  # the handler's or the stream's Task, if it suspended
    cdef object drain_waiter          # a stream producer waiting for output to drain
    cdef object upgraded              # the protocol that took over (UPGRADED)
    cdef object drain_route           # names the request whose body is being drained
    cdef int state                    # ProcessorState (consts.pxi): see _enter
    cdef bint closing                 # no further request: close once the response is out
    cdef bint continue_sent           # "100 Continue" already sent for this request
    cdef int end_reason               # End, once decided; -1 until then
    cdef Deadline deadline            # its kind is derived from the state
    cdef int last_unsent              # the kernel's unsent bytes at the last idle deadline
    cdef long long drain_left         # bytes a drain may still discard (-1: no drain)
    cdef int file_fd                  # a FileResponse being sent, or -1
    cdef off_t file_offset
    cdef long long file_remaining
    cdef bint parsing                 # inside _process_ptr (a response may finish there)
    cdef void _enter(self, int state)
    cdef int _deadline_kind(self)
    cdef void _update_deadline(self)
    cdef void _end(self, int reason)
    cdef void _process_held(self)
    cdef void _process(self, char* data, Py_ssize_t size)
    cdef Py_ssize_t _input_held(self) noexcept
    cdef void _check_input_watermark(self)
    cdef Py_ssize_t _process_ptr(self, char* data, Py_ssize_t size)
    cdef Py_ssize_t _parse_ptr(self, char* data, Py_ssize_t size)
    cdef void _start_request(self, RequestHead head)
    cdef void _task_result(self, task)
    cdef void _after_response(self)
    cdef void _handler_done(self, result, exc)
    cdef void _write_error(self, Request request, exc)
    cdef Response _app_error_response(self, Request request, exc)
    cdef int _write_response(self, Request request, int status, headers, bytes body,
                             content_type, long long length=*) except -1
    cdef void _response_finished(self, Request request)
    cdef void _start_stream(self, Request request, StreamingResponse response)
    cdef bint _start_file(self, Request request, FileResponse response) except -1
    cdef void _send_file(self)
    cdef void _close_file(self) noexcept
    cdef void _flush(self)
    cdef void _output_progress(self)
    cdef void _reject(self, int reason)
    cdef void _close_silently(self)
    cdef void _close_if_done(self)
    cdef void _input_idle(self)
    cdef void _start_drain(self, Request request)
    cdef void _linger(self)
    cdef void check_deadlines(self, double now)
    cdef void _upgraded_input(self, bytes data)
    cdef void close(self)
    cdef void abort(self)

# ---- The watchdog's thread (watchdog.pxi).

from kestrel.includes.system cimport pthread_t, timespec
from cpython.ref cimport PyObject


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
