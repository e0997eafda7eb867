# The server: listeners, the connection table, the heartbeat, and the event loop class.
#
# Theory of operation
# -------------------
# HttpServer owns everything the engine keeps per process: the selector it shares with
# asyncio, a scratch input buffer and an output buffer used by one connection at a time (the
# loop is single-threaded), the Date header (formatted once per heartbeat tick, not per
# request), and the counters that metrics will expose. One heartbeat timer drives everything
# periodic; the request contract's deadlines hang off it too.

import collections.abc
import mimetypes
import os
import re

cdef object _mutable_headers(headers):
    """A response's headers as MutableHeaders: built directly when there are none yet (the
    common case, a middleware adding one), through its constructor otherwise."""
    if headers is None:
        result = _type_new(MutableHeaders, _EMPTY_TUPLE)
        result.raw = []
        return result
    return MutableHeaders(headers)


cdef class BaseResponse:
    """What the three kinds of response share: a status, headers and a content type."""

    # Made on first access, so a response nobody adds headers to never builds one.
    @property
    def headers(self):
        """The response's headers as a MutableHeaders: ``response.headers["x"] = "1"``."""
        if type(self._headers) is not MutableHeaders:
            self._headers = _mutable_headers(self._headers)
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = value

    @property
    def status_code(self):
        return self.status


cdef class StreamingResponse(BaseResponse):
    """A response whose body is produced piece by piece (a sync or async iterable).

    It is sent with chunked encoding (or as-is when the headers give a Content-Length), and
    the iteration waits whenever more than max_response_buffer_size bytes are unsent.
    """

    def __init__(self, content, int status=200, headers=None, content_type=None):
        if not (hasattr(content, "__aiter__") or hasattr(content, "__iter__")):
            raise TypeError("StreamingResponse needs an iterable or an async iterable")
        self.content = content
        self.status = status
        self._headers = headers
        self.content_type = content_type


cdef class Response(BaseResponse):
    """What a handler returns: a status, headers and a body, sent as given."""

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        if isinstance(body, str):
            body = (<str>body).encode()
            if content_type is None:
                content_type = "text/plain; charset=utf-8"
        elif not isinstance(body, bytes):
            body = bytes(body)
        self.body = body
        self.status = status
        self._headers = headers
        self.content_type = content_type

    def __repr__(self):
        return f"<Response {self.status} {len(self.body)} bytes>"


cdef class FileResponse(BaseResponse):
    """A file sent with sendfile(2), with single-range requests (RFC 9110 §14) supported.

    The file is opened when the response is sent, not when it is made: a missing file is a
    404. Accept-Ranges, Last-Modified and an ETag are sent; a Range asking for one satisfiable
    range gets 206 with Content-Range, an unsatisfiable one 416, and several ranges the whole
    file (RFC 9110 §14.2 lets a server ignore Range). If-Range that does not match sends the
    whole file. Conditional requests are answered as RFC 9110 §13.2.2 orders them: a failed
    If-Match or If-Unmodified-Since is 412; a matching If-None-Match, or an If-Modified-Since
    the file is not newer than, is 304 for GET and HEAD (a matching If-None-Match is 412 for
    other methods).
    """

    def __init__(self, path, int status=200, headers=None, content_type=None,
                 filename=None):
        self.path = os.fspath(path)
        self.status = status
        self._headers = headers
        if content_type is None:
            content_type = mimetypes.guess_type(self.path)[0] or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
        self.content_type = content_type
        self.filename = filename

    def __repr__(self):
        return f"<FileResponse {self.status} {self.path!r}>"


cdef object _RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")


cdef frozenset _CONDITIONAL_FIELDS = frozenset(
    (b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"))


cdef bint _etag_listed(str field, str etag, bint weak):
    """Does an If-Match / If-None-Match field value list `etag` (or say "*")? Weak comparison
    ignores a W/ prefix on either side; strong comparison never matches a weak tag (RFC 9110
    §8.8.3.2)."""
    for candidate in field.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if weak:
            if candidate.startswith("W/"):
                candidate = candidate[2:]
        elif candidate.startswith("W/"):
            continue
        if candidate == etag:
            return True
    return False


cdef object _http_date(str value):
    """An HTTP-date as a POSIX timestamp, or None if it is not one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


cdef int _file_precondition(Request request, str etag, long long modified):
    """The status the conditional headers of a file request ask for instead of sending it:
    304 (not modified), 412 (precondition failed), or 0 to go on. RFC 9110 §13.2.2's order:
    If-Match, else If-Unmodified-Since; then If-None-Match, else If-Modified-Since (GET and
    HEAD only). `modified` is the file's mtime in whole seconds, an HTTP-date's precision."""
    cdef dict fields = {}
    for name, value in request.head.headers:
        if name in _CONDITIONAL_FIELDS:
            text = value.decode("latin-1")
            if name not in fields:
                fields[name] = text
            elif name.endswith(b"match"):
                fields[name] += "," + text  # repeated list fields combine (RFC 9110 §5.3)
    if not fields:
        return 0
    cdef bint safe = request.head.method is M_GET or request.head.method is M_HEAD
    if b"if-match" in fields:
        if not _etag_listed(fields[b"if-match"], etag, False):
            return 412
    elif b"if-unmodified-since" in fields:
        limit = _http_date(fields[b"if-unmodified-since"])
        if limit is not None and modified > limit:
            return 412
    if b"if-none-match" in fields:
        if _etag_listed(fields[b"if-none-match"], etag, True):
            return 304 if safe else 412
    elif safe and b"if-modified-since" in fields:
        since = _http_date(fields[b"if-modified-since"])
        if since is not None and modified <= since:
            return 304
    return 0


cdef object _file_range(Request request, long long size, str etag, str last_modified):
    """(first, last) byte of the range to send, None for the whole file, or -1 if unsatisfiable."""
    cdef list ranges = [v for n, v in request.head.headers if n == b"range"]
    if len(ranges) != 1 or request.head.method not in ("GET", "HEAD"):
        return None
    for name, value in request.head.headers:
        if name == b"if-range":
            validator = value.decode("latin-1").strip()
            if validator != etag and validator != last_modified:
                return None
    spec = (<bytes>ranges[0]).decode("latin-1").replace(" ", "")
    if "," in spec:
        return None  # several ranges: the whole file, in one ordinary response
    match = _RANGE.match(spec)
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # not a byte range we understand: ignored, as RFC 9110 §14.2 allows
    if not match.group(1):
        suffix = int(match.group(2))
        if suffix == 0 or size == 0:
            return -1
        return (max(size - suffix, 0), size - 1)
    first = int(match.group(1))
    if match.group(2) and first > int(match.group(2)):
        return None  # an invalid range-spec is ignored (§14.1.1)
    if first >= size:
        return -1  # starts past the end: unsatisfiable (§14.1.1), 416
    last = int(match.group(2)) if match.group(2) else size - 1
    return (first, min(last, size - 1))


EAGER_TASKS_NATIVE = sys.version_info >= (3, 12)
TASK_NAME = "kestrel-request"


# ---- A handler's Task, paid for only if the handler suspends.
#
# Measured on this engine (perf/bench_dispatch.py, GET / pipelined 16 deep, one core): an
# eager asyncio Task per request costs 0.6 us on 3.12/3.13 and 0.75 us on 3.11 (2.9 -> 2.2
# us per request without it), most of it in Task.__init__ (argument parsing, the Future's
# get_debug() call, registration, scheduling) and in reading the result back.
#
# So the first step of a handler runs without initializing a Task: the engine allocates a
# RequestTask (tp_new only), makes it the loop's current task, and sends into the coroutine
# itself, in a copy of the context as a Task would. A handler that finishes there (most do)
# never initializes it. One that suspends gets that same object initialized (Task.__init__)
# around a continuation that resumes the coroutine where it stopped, so every reference taken
# during the first step (asyncio.timeout, TaskGroup, anyio's cancel scopes key on it) is the
# Task that runs the rest. current_task(), cancellation and asyncio.timeout behave as in any
# Task. Until it outlives its step, the RequestTask answers get_coro() and get_context() from
# one record of the running step, and a RequestTask that nothing kept (no reference, weak
# reference or attribute: the handler finished and let it go) is used again for the next
# request, so a handler that never suspends costs no Task allocation, GC tracking or
# finalizer call either.
#
# A Task that was never initialized crashes CPython in get_coro() (3.11, 3.12) and
# get_context() (3.12, 3.13), and refuses get_loop() and repr(); RequestTask answers those
# itself until it is initialized. Verified on 3.11, 3.12 and 3.13 (tests/test_engine.py);
# other versions use an ordinary eager Task.
FIRST_STEP_WITHOUT_TASK = (3, 11) <= sys.version_info[:2] <= (3, 13)

cdef extern from "Python.h":
    int PyIter_Send(object iter, object arg, PyObject** presult) except? -1
    object PyContext_CopyCurrent()
    int PyContext_Enter(object context) except -1
    int PyContext_Exit(object context) except -1
    void Py_DECREF(object o)
    Py_ssize_t Py_REFCNT(object o)
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    int PyDict_DelItem(object d, object key) except -1

cdef extern from *:
    """
    /* True if nothing but references can reach `o`: no weak reference and no instance
       __dict__ (a Task's attributes live there), so an unreferenced one can be reused.
       The weak reference list is at tp_weaklistoffset, which is negative (before the
       object) for 3.13's managed weak references; _PyObject_GetDictPtr finds a managed
       dict too (RequestTask has no inline values, so it does not create one). */
    static int kestrel_task_is_bare(PyObject *o) {
        PyTypeObject *type = Py_TYPE(o);
        PyObject **dict;
        if (type->tp_weaklistoffset != 0
                && *(PyObject **)((char *)o + type->tp_weaklistoffset) != NULL)
            return 0;
        dict = _PyObject_GetDictPtr(o);
        return dict == NULL || *dict == NULL;
    }
    """
    bint _task_is_bare "kestrel_task_is_bare" (object o)

# The dict asyncio's C current_task(), _enter_task() and _leave_task() use on 3.11-3.13 (the
# only versions that run a first step without a Task): set and cleared here directly, which
# spares two calls through the argument parser per request.
cdef dict _current_tasks = asyncio.tasks._current_tasks

cdef object _task_init = asyncio.Task.__init__
cdef object _task_loop = asyncio.Task._loop.__get__

# The first step running now, which a RequestTask with no coroutine of its own answers for.
# First steps never nest (one that starts inside another task's step gets a real Task), so
# one record is enough; a RequestTask takes its own copy when it outlives its step.
cdef object _step_task = None
cdef object _step_coro = None
cdef object _step_context = None
cdef bint _step_cancelled = False


class RequestTask(asyncio.Task):
    """The Task a request handler runs as (see above: initialized only if it suspends)."""

    __slots__ = ("kestrel_coro", "kestrel_context", "kestrel_cancel")

    def get_coro(self):
        if self is _step_task:
            return _step_coro
        return self.kestrel_coro  # the handler's coroutine, not the continuation around it

    def get_context(self):
        if self is _step_task:
            return _step_context
        return self.kestrel_context

    def get_name(self):
        if _task_loop(self) is None:
            return TASK_NAME
        return asyncio.Task.get_name(self)

    def get_loop(self):
        if _task_loop(self) is None:
            return asyncio.get_running_loop()
        return asyncio.Task.get_loop(self)

    def cancel(self, msg=None):
        if _task_loop(self) is None:
            # Cancelled during its own first step: delivered once it is a running Task (if
            # the handler finishes in that step instead, there is nothing left to cancel).
            global _step_cancelled
            if self is _step_task:
                # Read by _start_handler for this step only: a reused RequestTask may still
                # hold an earlier request's kestrel_cancel.
                _step_cancelled = True
            self.kestrel_cancel = (msg,)
            return True
        return asyncio.Task.cancel(self, msg)

    def __repr__(self):
        if _task_loop(self) is None:
            return f"<RequestTask {TASK_NAME} running its first step coro={self.get_coro()!r}>"
        return asyncio.Task.__repr__(self)


cdef object _NOTHING = object()


cdef class _Continuation:
    """The coroutine a RequestTask runs once its handler suspended in the first step.

    The handler's coroutine is already started, so a Task cannot take it directly (its first
    send would resume it too early). This object is the coroutine the Task drives instead: the
    first send hands the Task what the handler yielded; after that every send, and every
    throw (cancellation, even before that first send), goes straight into the handler.
    """

    cdef object coro
    cdef object pending

    def __cinit__(self, coro, yielded):
        self.coro = coro
        self.pending = yielded

    def send(self, value):
        pending = self.pending
        if pending is not _NOTHING:
            self.pending = _NOTHING
            return pending
        return self.coro.send(value)

    def throw(self, exc, *args):
        self.pending = _NOTHING
        return self.coro.throw(exc, *args)

    def close(self):
        self.pending = _NOTHING
        self.coro.close()

    def __next__(self):
        return self.send(None)

    def __iter__(self):
        return self

    def __await__(self):
        return self


collections.abc.Coroutine.register(_Continuation)


# Set by HttpServer._start_task just around creating a Task on Python 3.11 (see below). A
# C global rather than a loop attribute: it is written twice per request. The loop is
# single-threaded, so one flag serves every loop in the process at a time.
cdef bint _eager_step = False


class KestrelEventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop on the engine's epoll selector."""

    def __init__(self):
        super().__init__(selector=EpollSelector())

    if not EAGER_TASKS_NATIVE:
        # Python 3.11 has no eager tasks. A Task schedules its first step with call_soon
        # from its constructor; when the engine asks for it, that step runs right here
        # instead, which is exactly what 3.12's eager_start does.
        def call_soon(self, callback, *args, context=None):
            global _eager_step
            if _eager_step:
                _eager_step = False
                if context is None:
                    callback(*args)
                else:
                    context.run(callback, *args)
                return None
            return super().call_soon(callback, *args, context=context)


cdef object _limit(limits, str name, default):
    return default if limits is None else getattr(limits, name)


cdef class HttpServer:
    """The engine for one process: serves `app` on the sockets given to listen()."""

    def __cinit__(self, app, *, loop, limits=None, bint access_log=False,
                  server_header="kestrel", long long max_parser_body_size=-2,
                  request_class=None, heartbeat_interval=None, metrics_path=None,
                  metrics_renderer=None, error_response=None, bint accepts_connect=False):
        """`limits` is a kestrel.Limits (the request contract: sizes, timeouts, rates);
        None takes its defaults, which are the ones consts.pxi names."""
        cdef Py_ssize_t max_request_line_size = _limit(
            limits, "max_request_line_size", DEFAULT_MAX_REQUEST_LINE_SIZE)
        cdef Py_ssize_t max_request_headers_size = _limit(
            limits, "max_request_headers_size", DEFAULT_MAX_REQUEST_HEADERS_SIZE)
        cdef Py_ssize_t max_request_headers = _limit(
            limits, "max_request_headers", DEFAULT_MAX_REQUEST_HEADERS)
        cdef long long max_request_body_size = _limit(
            limits, "max_request_body_size", DEFAULT_MAX_REQUEST_BODY_SIZE)
        cdef Py_ssize_t max_request_buffer_size = _limit(
            limits, "max_request_buffer_size", DEFAULT_MAX_REQUEST_BUFFER_SIZE)
        cdef Py_ssize_t max_response_buffer_size = _limit(
            limits, "max_response_buffer_size", DEFAULT_MAX_RESPONSE_BUFFER_SIZE)
        cdef double keep_alive_timeout = _limit(
            limits, "keep_alive_timeout", DEFAULT_KEEP_ALIVE_TIMEOUT)
        cdef double request_headers_timeout = _limit(
            limits, "request_headers_timeout", DEFAULT_REQUEST_HEADERS_TIMEOUT)
        cdef double min_request_body_rate = _limit(
            limits, "min_request_body_rate", DEFAULT_MIN_REQUEST_BODY_RATE)
        cdef double min_response_rate = _limit(
            limits, "min_response_rate", DEFAULT_MIN_RESPONSE_RATE)
        cdef double min_rate_grace = _limit(limits, "min_rate_grace", DEFAULT_MIN_RATE_GRACE)
        cdef double drain_timeout = _limit(limits, "drain_timeout", DEFAULT_DRAIN_TIMEOUT)
        cdef long long max_drain_size = _limit(limits, "max_drain_size", DEFAULT_MAX_DRAIN_SIZE)
        cdef Py_ssize_t max_connections = _limit(limits, "max_connections", 0)
        cdef double linger_time = DEFAULT_LINGER_TIME
        if not isinstance(loop, KestrelEventLoop):
            raise TypeError("HttpServer needs a KestrelEventLoop (kestrel.new_event_loop())")
        self.app = app
        self.loop = loop
        self.selector = <EpollSelector>loop._selector
        self.access_log = access_log
        self.scratch = <char*>malloc(SCRATCH_SIZE)
        if self.scratch == NULL:
            raise MemoryError()
        self.out = OutputBuffer()
        self.writer = ResponseWriter(self.out, b"server: " + server_header.encode("latin-1")
                                     + b"\r\n" if server_header else None)
        self.pool = BufferPool()
        # Read pause watermarks, Kestrel's MaxRequestBufferSize (1 MiB) and half of it.
        self.max_request_buffer_size = max_request_buffer_size
        self.min_request_buffer_size = max_request_buffer_size // 2
        self.max_response_buffer_size = max_response_buffer_size
        self.listeners = []
        self.connections = set()
        self.rejections = {}
        self.max_request_line_size = max_request_line_size
        self.max_request_headers_size = max_request_headers_size
        self.max_request_headers = max_request_headers
        # Each request starts with max_request_body_size as its limit, which an app may change
        # per route; the parser refuses only what no route could take (by default the same).
        self.max_request_body_size = max_request_body_size
        self.max_parser_body_size = (max_request_body_size if max_parser_body_size == -2
                                     else max_parser_body_size)
        if request_class is None:
            request_class = Request
        elif not (isinstance(request_class, type) and issubclass(request_class, Request)):
            raise TypeError("request_class must be kestrel._core.Request or a subclass")
        self.request_class = request_class
        self.task_class = asyncio.Task
        self.keep_alive_timeout = keep_alive_timeout
        self.request_headers_timeout = request_headers_timeout
        self.min_request_body_rate = min_request_body_rate
        self.min_response_rate = min_response_rate
        self.min_rate_grace = min_rate_grace
        self.drain_timeout = drain_timeout
        self.max_drain_size = max_drain_size
        self.max_connections = max_connections
        self.linger_time = linger_time
        if heartbeat_interval is None:
            # One tick a second, as Kestrel's heartbeat; finer when a timeout is shorter, so
            # that no deadline is overshot by more than a quarter of itself.
            shortest = min(t for t in (keep_alive_timeout, request_headers_timeout,
                                       min_rate_grace, drain_timeout, linger_time, 4.0) if t > 0)
            heartbeat_interval = max(0.01, min(1.0, shortest / 4))
        self.heartbeat_interval = heartbeat_interval
        self.shutting_down = False
        self.at_connection_limit = False
        cdef int i
        for i in range(<int>END_COUNT):
            self.end_counts[i] = 0
        self.drained_bodies = 0
        self.connections_rejected = 0
        self.metrics_target = metrics_path.encode("latin-1") if metrics_path else None
        self.metrics_renderer = metrics_renderer
        # What the app answers for an exception that escaped it (the App: an HTTPException a
        # middleware raised); asked only when one does, so a request that succeeds pays nothing.
        self.error_response = error_response
        self.accepts_connect = accepts_connect
        self.heartbeat = None
        self._tick()

    def __dealloc__(self):
        free(self.scratch)

    def listen(self, sock):
        """Serve on an already bound, listening socket (set non-blocking here)."""
        sock.setblocking(False)
        listener = Listener(self, sock)
        self.selector.add_handler(listener, EPOLLIN)
        self.listeners.append(listener)

    def _tick(self):
        """The heartbeat: refresh the Date header, and hold every connection to the request
        contract (one timer for all of them, as Kestrel's heartbeat; no timer per
        connection)."""
        cdef Connection connection
        cdef double now = _monotonic()
        self.writer.tick()
        for connection in list(self.connections):
            try:
                connection._check_contract(now)
            except BaseException as exc:
                _log.exception("connection failed", exc_info=exc)
                connection.abort()
        self.heartbeat = self.loop.call_later(self.heartbeat_interval, self._tick)

    async def shutdown(self, double timeout=DEFAULT_GRACEFUL_TIMEOUT):
        """Graceful shutdown: stop accepting, close idle connections at once, let requests in
        flight finish (their responses say Connection: close) for up to `timeout` seconds,
        then close whatever is left."""
        cdef Connection connection
        self.shutting_down = True
        self._close_listeners()
        for connection in list(self.connections):
            connection._end(END_SHUTDOWN)
            connection.close_after_write = True
            if (connection.current is None and connection.file_fd < 0
                    and (connection.held_out is None or connection.held_out.size == 0)):
                connection.close()
        deadline = _monotonic() + timeout
        # A lingering connection has delivered its response: only requests in flight count.
        while (any(not (<Connection>c).lingering for c in self.connections)
               and _monotonic() < deadline):
            await asyncio.sleep(min(0.02, max(0.0, deadline - _monotonic())))
        if any(not (<Connection>c).lingering for c in self.connections):
            _log.warning("graceful shutdown: %d connection(s) still busy after %gs; closing "
                         "them", len(self.connections), timeout)
        self.close()

    def _close_listeners(self):
        for listener in self.listeners:
            self.selector.remove_handler(listener)
            (<Listener>listener).sock.close()
            # A retry scheduled by pause() must not touch whatever reuses the number.
            (<Listener>listener).fd = -1
        self.listeners.clear()

    def metrics(self):
        """A snapshot of the server's counters (what --metrics-path serves)."""
        cdef int i
        ends = {END_REASONS[i]: self.end_counts[i] for i in range(<int>END_COUNT)}
        return {
            "connections_active": len(self.connections),
            "connections_total": self.connections_total,
            "connections_rejected": self.connections_rejected,
            "connection_ends": ends,
            "requests_total": self.requests_total,
            "requests_active": sum(1 for c in self.connections
                                   if (<Connection>c).current is not None),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "read_pauses": self.read_pauses,
            "write_pauses": self.write_pauses,
            "drained_bodies": self.drained_bodies,
            "drain_closes": ends["drain_timeout"] + ends["drain_limit"],
            "headers_timeouts": ends["headers_timeout"],
            "body_rate_aborts": ends["body_rate"],
            "response_rate_aborts": ends["response_rate"],
            "keep_alive_timeouts": ends["keep_alive_timeout"],
            "rejections": {RejectReason(k).name: v for k, v in self.rejections.items()},
            "pool_blocks_in_use": self.pool.blocks_in_use,
            "pool_blocks_free": self.pool.blocks_free,
        }

    def close(self):
        """Stop accepting and close every connection."""
        self._close_listeners()
        for connection in list(self.connections):
            task = (<Connection>connection).task
            if task is not None:
                task.cancel()
            (<Connection>connection)._end(END_SHUTDOWN)
            (<Connection>connection).close()
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    cdef HttpParser _new_parser(self):
        return HttpParser(max_request_line_size=self.max_request_line_size,
                          max_request_headers_size=self.max_request_headers_size,
                          max_request_headers=self.max_request_headers,
                          max_request_body_size=self.max_parser_body_size)

    cdef Connection _open_connection(self, int fd):
        connection = Connection(self, fd)
        self.selector.add_handler(connection, EPOLLIN | EPOLLRDHUP)
        self.connections.add(connection)
        self.connections_total += 1
        if self.max_connections:
            self._check_accepting()
        return connection

    cdef void _check_accepting(self):
        """--max-connections: at the limit, stop accepting (new connections wait in the
        listen backlog, where the kernel refuses them once it is full); resume below it."""
        cdef bint at_limit = len(self.connections) >= self.max_connections
        if at_limit == self.at_connection_limit:
            return
        self.at_connection_limit = at_limit
        for listener in self.listeners:
            if not (<Listener>listener).paused:
                self.selector.modify_handler(<Listener>listener, 0 if at_limit else EPOLLIN)

    def adopt(self, sock, peer=None):
        """Serve one already connected stream socket (a socketpair end, for the TestClient).

        The socket's descriptor is taken over: the engine closes it with the connection.
        `peer` is what request.client reports when the socket has no IP peer address.
        """
        sock.setblocking(False)
        cdef int fd = sock.detach()
        cdef Connection connection
        try:
            connection = self._open_connection(fd)
        except BaseException:
            close(fd)
            raise
        if peer is not None:
            connection.peer = tuple(peer)

    cdef void _connection_closed(self, Connection connection) noexcept:
        self.connections.discard(connection)
        if self.max_connections:
            try:
                self._check_accepting()
            except BaseException:
                pass

    cdef object _start_handler(self, coro):
        """Run a handler's first step. None if it finished there (its result is in
        step_result); otherwise the Task now running it."""
        global _step_task, _step_coro, _step_context, _step_cancelled
        cdef PyObject* sent = NULL
        cdef int how
        cdef bint cancelled, unkept
        if not FIRST_STEP_WITHOUT_TASK:
            return self._start_task(coro)
        loop = self.loop
        task = self.spare_task
        if task is None:
            task = _type_new(RequestTask, _EMPTY_TUPLE)
        else:
            self.spare_task = None
        context = PyContext_CopyCurrent()
        if PyDict_SetDefault(_current_tasks, loop, task) != <PyObject*>task:
            # Called from inside another task's step: asyncio allows one current task, so
            # this handler gets a Task of its own from the start. (So first steps never
            # nest, and one record of the running step is enough.)
            self.spare_task = task
            return self._start_task(coro)
        _step_task, _step_coro, _step_context, _step_cancelled = task, coro, context, False
        PyContext_Enter(context)
        try:
            how = PyIter_Send(coro, None, &sent)
        finally:
            PyContext_Exit(context)
            cancelled = _step_cancelled
            _step_task = _step_coro = _step_context = None
            if PyDict_GetItemWithError(_current_tasks, loop) == <PyObject*>task:
                PyDict_DelItem(_current_tasks, loop)
            # Nothing kept this Task (no reference, weak reference or attribute)?
            unkept = Py_REFCNT(task) == 1 and _task_is_bare(task)
            if not unkept:
                # It outlives its step (whether the step returned, raised or suspended): it
                # answers for itself now.
                task.kestrel_coro = coro
                task.kestrel_context = context
        value = <object>sent
        Py_DECREF(value)
        if how == 0:
            self.step_result = value
            if unkept:
                # The next request's first step can use the same object, unallocated anew.
                self.spare_task = task
            return None
        # Suspended on `value`: the Task takes it from here, in the same context.
        if unkept:
            task.kestrel_coro = coro
            task.kestrel_context = context
        _task_init(task, _Continuation(coro, value), loop=loop, context=context,
                   name=TASK_NAME)
        if cancelled:
            asyncio.Task.cancel(task, task.kestrel_cancel[0])
        return task

    cdef object _start_task(self, coro):
        global _eager_step
        if EAGER_TASKS_NATIVE:
            return self.task_class(coro, loop=self.loop, eager_start=True, name=TASK_NAME)
        _eager_step = True
        try:
            # A name given up front spares 3.11 formatting "Task-N" for every request.
            return self.task_class(coro, loop=self.loop, name=TASK_NAME)
        finally:
            _eager_step = False

    cdef void _log_accept_error(self, int error) noexcept:
        _log.warning("accept() failed (%s); retrying every %.0f ms until it succeeds",
                     os.strerror(error), ACCEPT_RETRY_DELAY_S * 1000)
