# Listeners, connections, requests and their bodies.
#
# Theory of operation
# -------------------
# A Connection reads into the server's scratch buffer and runs the parser over it. A
# RequestHead starts the handler at once (the body, if any, streams in behind it). While a
# handler runs, body bytes go to its RequestBody; once the message is complete, parsing stops
# and whatever follows (pipelined requests) is kept in held_in until the response is out.
# Responses are serialized into the server's output buffer by the response writer
# (response_writer.pxi, which alone decides framing) and sent directly; a connection keeps only
# what the socket did not accept (held_out). Once a request has had its response, nothing
# found in the rest of its body is ever answered: a framing error there closes the connection
# silently (`responded`). An abort resets the connection (SO_LINGER 0), so the kernel lets go
# of what it still held for the client; TCP_NOTSENT_LOWAT caps what it takes in the first
# place, so output flow control holds from the writer down into the kernel.
#
# Input flow control: once held input plus body bytes the handler has not read reach
# max_request_buffer_size (1 MiB), EPOLLIN is dropped and the socket is not read; the
# handler reading its body below half of that re-arms it. TCP's window then holds the client
# back, so a fast client and a slow handler never make the server buffer without bound.
#
# Per request, the Python API is used only for what a handler is handed and runs on: the
# RequestHead and header tuples (parser.pxi), the Request and RequestBody objects, the call to
# the app, its first step (server.pxi: a Task only if it suspends), and the result's type
# checks.
# Reading, parsing, serializing the response and sending are C. In `cython -a` the other
# yellow lines of this file are exception handlers and logging, which run only on errors.
#
# A body the handler did not read is drained after the response was written: the response
# always goes out first, and the unread bytes are parsed as body, never as a request. The
# deadlines, rates, drains and lingering closes of the request contract are at the end of
# Connection.

# How long accepting pauses when the process is out of descriptors (libuv and nginx retry
# on a timer too; nginx's accept_mutex_delay default is 500 ms).
cdef double ACCEPT_RETRY_DELAY_S = 0.1

cdef enum:
    # Output buffer growth step; responses larger than this are sent with writev.
    OUT_INITIAL = 16384
    # The most one body read hands the handler at once.
    MAX_BODY_READ = 65536
    # The most one sendfile call is asked for (the kernel caps it near 2 GiB anyway).
    SENDFILE_MAX = 1 << 30


cdef tuple _EMPTY_TUPLE = ()

END_REASONS = ("client_closed", "connection_close", "keep_alive_timeout", "headers_timeout",
               "body_rate", "response_rate", "drain_timeout", "drain_limit", "rejected",
               "shutdown", "error")


cdef object _route_of(Request request):
    """How a log line names the request: the framework's route template, else the path."""
    if request is None:
        return "-"
    route = request.route
    if route is None:
        route = request.head.target.decode("latin-1")
    return f"{request.head.method} {route}"


def _contract_warning(Connection connection, str message, *args):
    """One line per violation of the request contract, naming the route and the client."""
    try:
        peer = connection.peer_address()
        route = (_route_of(connection.current) if connection.current is not None
                 else connection.drain_route or "-")
        _log.warning("%s from %s: " + message, route,
                     f"{peer[0]}:{peer[1]}" if peer else "-", *args)
    except Exception:
        pass  # a log line must never take the connection down


cdef bint _unread_body_closes(Connection connection, Request request):
    """Must the connection close rather than drain what the handler left unread?"""
    cdef HttpServer server = connection.server
    if server.max_drain_size <= 0 or server.drain_timeout <= 0:
        return True
    if _awaits_continue(connection, request):
        # The client waits for a 100 that never came: it may send the body or not, so
        # nobody could tell where the next request would start.
        return True
    # From the request, not the parser: a handler that answers in its first step does so
    # before the parser has started on the body.
    return (request.head.content_length >= 0
            and request.head.content_length - request._body().received
            > server.max_drain_size)


cdef bint _awaits_continue(Connection connection, Request request):
    return (request.head.expect_continue and not connection.continue_sent
            and request.head.http_version is V_11)


cdef str _unread_description(Connection connection, Request request):
    if _awaits_continue(connection, request):
        return "a body it never asked for (Expect: 100-continue)"
    if request.head.content_length >= 0:
        return f"{request.head.content_length - request._body().received} bytes of the body"
    return "the rest of a chunked body"


cdef str _decode_path(bytes raw):
    """Percent-decode a request path (RFC 3986 §2.1) and read it as UTF-8.

    The parser admits only visible ASCII in a request-target, so a path without "%" is
    already its own decoding. A "%" not followed by two hex digits, or bytes that are not
    UTF-8 once decoded, raise BadRequest (a 400, never a 500).
    """
    cdef const unsigned char* data = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(raw), i = 0, n = 0
    cdef bytearray decoded
    cdef unsigned char* out
    if memchr(data, b"%", size) == NULL:
        return PyUnicode_DecodeASCII(<const char*>data, size, NULL)
    decoded = bytearray(size)
    out = <unsigned char*>PyByteArray_AS_STRING(decoded)
    while i < size:
        if data[i] == b"%":
            if i + 2 >= size or HEX_VALUE[data[i + 1]] < 0 or HEX_VALUE[data[i + 2]] < 0:
                raise BadRequest("malformed percent-encoding in the request path")
            out[n] = <unsigned char>(HEX_VALUE[data[i + 1]] * 16 + HEX_VALUE[data[i + 2]])
            i += 3
        else:
            out[n] = data[i]
            i += 1
        n += 1
    try:
        return PyUnicode_DecodeUTF8(<const char*>out, n, NULL)
    except UnicodeDecodeError:
        raise BadRequest("the request path is not UTF-8 after percent-decoding") from None


cdef extern from "Python.h":
    object PyUnicode_DecodeLatin1(const char* data, Py_ssize_t size, const char* errors)
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL


def split_query(bytes query):
    """A query string as QueryParams, split here in C when it holds no "%" or "+" (so no
    decoding beyond Latin-1, as kestrel.datastructures.parse_query does it); None when it
    does, for parse_query to decode. The request.query of most requests."""
    cdef const char* data = PyBytes_AS_STRING(query)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(query), start = 0, end
    cdef const char* mark
    cdef const char* equals
    cdef list items = []
    if memchr(data, b"%", size) != NULL or memchr(data, b"+", size) != NULL:
        return None
    params = _type_new(QueryParams, _EMPTY_TUPLE)
    while start < size:
        mark = <const char*>memchr(data + start, b"&", size - start)
        end = mark - data if mark != NULL else size
        if end > start:
            equals = <const char*>memchr(data + start, b"=", end - start)
            if equals == NULL:
                name = PyUnicode_DecodeLatin1(data + start, end - start, NULL)
                value = ""
            else:
                name = PyUnicode_DecodeLatin1(data + start, equals - data - start, NULL)
                value = PyUnicode_DecodeLatin1(equals + 1, end - (equals - data) - 1, NULL)
            items.append((name, value))
            PyDict_SetDefault(params, name, value)  # the first of a repeated name is kept
        start = end + 1
    params._items = items
    return params


cdef bytes _content_disposition(str filename):
    """attachment; filename=..., with RFC 6266's filename* for names that are not ASCII."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    try:
        return f'attachment; filename="{quoted}"'.encode("ascii")
    except UnicodeEncodeError:
        return ("attachment; filename*=utf-8''" + urllib.parse.quote(filename)).encode("ascii")

cdef extern from *:
    """
    static PyObject* kestrel_type_new(PyObject* type, PyObject* args) {
        return ((PyTypeObject*)type)->tp_new((PyTypeObject*)type, args, NULL);
    }
    """
    object _type_new "kestrel_type_new" (object type, object args)


cdef class Listener(EpollHandler):
    """A listening socket: accepts every pending connection when readable."""

    def __cinit__(self, HttpServer server, sock):
        self.server = server
        self.sock = sock          # keeps the Python socket (and its fd) alive
        self.fd = sock.fileno()
        self.paused = False
        self.short_of_descriptors = False

    cdef void on_events(self, uint32_t events) noexcept:
        cdef int fd, one = 1, unsent = DEFAULT_MAX_KERNEL_UNSENT
        while True:
            fd = accept4(self.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EINTR or errno == ECONNABORTED or errno == EPROTO:
                    continue
                if errno == EAGAIN:
                    # The backlog is drained: a shortage of descriptors, if there was one, is
                    # over (freeing them one by one mid-episode does not end it).
                    self.short_of_descriptors = False
                else:
                    # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
                    # connection stays in the backlog. The listener would stay readable and
                    # spin the loop, so stop watching it for a moment and try again then.
                    if not self.short_of_descriptors:
                        # Once per episode: while it lasts, retries would repeat it every pause.
                        self.short_of_descriptors = True
                        self.server._log_accept_error(errno)
                    self.pause()
                return
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent, sizeof(unsent))
            try:
                self.server._open_connection(fd)
            except BaseException as exc:
                close(fd)
                _log.exception("could not set up a connection", exc_info=exc)
            if self.server.at_connection_limit:
                return  # the rest wait in the backlog until a connection closes


    cdef void pause(self) noexcept:
        if self.paused:
            return
        self.paused = True
        self.server.accept_pauses += 1
        self.server.selector.modify_handler(self, 0)
        self.server.loop.call_later(ACCEPT_RETRY_DELAY_S, self.resume)

    def resume(self):
        if self.paused and self.fd >= 0:
            self.paused = False
            if not self.server.at_connection_limit:
                self.server.selector.modify_handler(self, EPOLLIN)


@cython.freelist(256)
cdef class RequestBody:
    """The request body as a stream the handler pulls from.

    Body bytes wait in pooled blocks (a Pipe) until the handler reads them; a read hands out
    up to MAX_BODY_READ bytes at a time as one bytes object.
    """

    def __cinit__(self):
        if KESTREL_DEBUG:
            _debug_count("request_body_alloc", 1)
        self.pipe = None
        self.owner = None
        self.complete = False
        self.waiter = None
        self.error = None
        self.read_all = False
        self.received = 0
        self.limit = -1
        self.wait_started = 0.0
        self.wait_total = 0.0

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("request_body_free", 1)

    cdef int feed(self, const char* data, Py_ssize_t length) except -1:
        if self.error is not None:
            return 0  # refused already: the rest is dropped as it arrives
        self.received += length
        if self.limit >= 0 and self.received > self.limit:
            # Only a chunked body gets here: a Content-Length over the limit is refused
            # before the first read (Request.stream).
            self.fail(HttpParseError(R_BODY_TOO_LARGE,
                                     f"request body larger than {self.limit} bytes"))
            return 0
        if self.pipe is None:
            self.pipe = Pipe((<Connection>self.owner).server.pool)
        self.pipe.write(data, length)
        self._wake()
        return 0

    cdef Py_ssize_t queued(self) noexcept:
        return self.pipe.size if self.pipe is not None else 0

    cdef void discard(self) noexcept:
        """Release what the handler will never read."""
        if self.pipe is not None:
            self.pipe.clear()

    cdef void finish(self) noexcept:
        self.complete = True
        self._wake()

    cdef void fail(self, object error) noexcept:
        if not self.complete:
            self.error = error
            self.discard()
            self._wake()

    cdef void _wake(self) noexcept:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.wait_total += _monotonic() - self.wait_started
            self.wait_started = 0.0
            if not waiter.done():
                waiter.set_result(None)

    async def read_chunk(self):
        """The next piece of the body, or b"" at its end."""
        cdef Py_ssize_t size
        cdef bytes chunk
        while True:
            if self.pipe is not None and self.pipe.size:
                size = min(self.pipe.size, MAX_BODY_READ)
                chunk = PyBytes_FromStringAndSize(NULL, size)
                self.pipe.take(PyBytes_AS_STRING(chunk), size)
                (<Connection>self.owner)._input_consumed()
                return chunk
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            self.waiter = asyncio.get_running_loop().create_future()
            # Waiting on the client: the only time the minimum body rate is measured over.
            self.wait_started = _monotonic()
            await self.waiter


@cython.freelist(256)
cdef class Request:
    """One HTTP request as the engine hands it to a handler."""

    # No __cinit__: its argument handling would cost every request, debug build or not;
    # allocations are counted where the engine makes a Request (_start_request).
    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("request_free", 1)

    @property
    def method(self):
        return self.head.method

    @property
    def target(self):
        return self.head.target

    @property
    def http_version(self):
        return self.head.http_version

    @property
    def headers(self):
        return self.head.headers

    @property
    def client(self):
        """(host, port) of the client, or None if the socket has no peer address."""
        return self.connection.peer_address()

    @property
    def content_length(self):
        """The Content-Length the client sent, or -1 (none, or a chunked body)."""
        return self.head.content_length

    @property
    def raw_path(self):
        """The path as sent (still percent-encoded), without the query."""
        if self._raw_path is None:
            self._split_target()
        return self._raw_path

    @property
    def query_string(self):
        """The query as sent (still percent-encoded), without the "?"."""
        if self._raw_path is None:
            self._split_target()
        return self._query_string

    @property
    def path(self):
        """The percent-decoded path; BadRequest if it does not decode to UTF-8."""
        if self._path is None:
            if self._raw_path is None:
                self._split_target()
            self._path = _decode_path(self._raw_path)
        return self._path

    cdef int _split_target(self) except -1:
        cdef bytes target = self.head.target
        cdef const char* data = PyBytes_AS_STRING(target)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(target)
        cdef const char* mark
        if size and (data[0] == b"/" or data[0] == b"*"):
            mark = <const char*>memchr(data, b"?", size)
            if mark == NULL:
                self._raw_path = target
                self._query_string = b""
            else:
                self._raw_path = PyBytes_FromStringAndSize(data, mark - data)
                self._query_string = PyBytes_FromStringAndSize(mark + 1, size - (mark - data) - 1)
        else:
            # absolute-form (RFC 9112 §3.2.2), sent to proxies: the path follows the authority.
            parts = urllib.parse.urlsplit(target)
            self._raw_path = parts.path or b"/"
            self._query_string = parts.query
        return 0

    def _routed(self, app, route, path_params):
        """The router's findings, set in one call rather than three attribute stores."""
        self.app = app
        self.route = route
        self.path_params = path_params

    @property
    def max_body_size(self):
        """This request's body limit in bytes (-1: none); a route may change it."""
        return self._body().limit

    @max_body_size.setter
    def max_body_size(self, long long value):
        self._body().limit = value

    cdef RequestBody _body(self):
        """The body stream. A request without a body has none until something asks (most
        never do): then it gets an empty, complete one."""
        cdef RequestBody body = self.body_stream
        if body is None:
            body = RequestBody.__new__(RequestBody)
            body.owner = self.connection
            body.limit = self.connection.server.max_request_body_size
            body.complete = True
            self.body_stream = body
        return body

    cdef void _fail_body(self, error):
        """Make the handler's next body read raise `error` (a request without a body stream
        has nothing left to read, so nothing to fail)."""
        if self.body_stream is not None:
            self.body_stream.fail(error)

    cdef int _start_reading(self) except -1:
        cdef RequestBody body = self._body()
        if body.read_all:
            raise BodyConsumedError("the request body was already read")
        body.read_all = True
        if body.limit >= 0 and self.head.content_length > body.limit:
            raise HttpParseError(R_BODY_TOO_LARGE,
                                 f"Content-Length {self.head.content_length} is over the "
                                 f"limit of {body.limit} bytes")
        if self.head.expect_continue and not body.complete and self.head.http_version is V_11:
            # Expect: 100-continue is answered lazily: only a handler that reads gets the
            # client to send its body (RFC 9110 §10.1.1).
            self.connection._send_continue()
        return 0

    async def stream(self):
        """The body, piece by piece, as the client sends it."""
        cdef RequestBody body = self._body()
        self._start_reading()
        while True:
            chunk = await body.read_chunk()
            if not chunk:
                return
            yield chunk

    async def body(self):
        """The whole body as bytes."""
        if self.body_bytes is not None:
            return self.body_bytes
        cdef RequestBody body = self._body()
        self._start_reading()
        parts = []
        while True:
            chunk = await body.read_chunk()
            if not chunk:
                break
            parts.append(chunk)
        self.body_bytes = b"".join(parts)
        return self.body_bytes

    def __repr__(self):
        return f"<Request {self.head.method} {self.head.target!r}>"


cdef class Connection(EpollHandler):
    """One client connection."""

    def __cinit__(self, HttpServer server, int fd):
        if KESTREL_DEBUG:
            _debug_count("connection_alloc", 1)
        self.server = server
        self.fd = fd
        self.parser = server._new_parser()
        self.held_in = None
        self.held_out = None
        self.reading_paused = False
        self.drain_waiter = None
        self.current = None
        self.task = None
        self.events = EPOLLIN | EPOLLRDHUP
        self.message_complete = False
        self.close_after_write = False
        self.closed = False
        self.peer_eof = False
        self.peer = None
        self.file_fd = -1
        # A new connection is idle until its first byte: the keep-alive timeout applies, as
        # in Kestrel; the headers timeout starts with that first byte.
        self.deadline_kind = DL_KEEP_ALIVE
        self.deadline = _monotonic() + server.keep_alive_timeout
        self.end_reason = -1
        self.draining = False
        self.lingering = False
        self.write_wait_started = 0.0
        self.write_wait_total = 0.0
        self.write_wait_bytes = 0
        self.continue_sent = False
        self.responded = False

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("connection_free", 1)

    cdef object peer_address(self):
        """The client's (host, port), looked up on first use: most requests never ask."""
        cdef sockaddr_storage address
        cdef socklen_t size = sizeof(address)
        cdef char text[64]
        if self.peer is None and not self.closed:
            if getpeername(self.fd, <sockaddr*>&address, &size) == 0:
                if address.ss_family == AF_INET:
                    inet_ntop(AF_INET, &(<sockaddr_in*>&address).sin_addr, text, sizeof(text))
                    self.peer = (text.decode(), ntohs((<sockaddr_in*>&address).sin_port))
                elif address.ss_family == AF_INET6:
                    inet_ntop(AF_INET6, &(<sockaddr_in6*>&address).sin6_addr, text,
                              sizeof(text))
                    self.peer = (text.decode(), ntohs((<sockaddr_in6*>&address).sin6_port))
        return self.peer

    cdef void on_events(self, uint32_t events) noexcept:
        if self.closed:
            return
        try:
            if self.lingering:
                self._discard_input()
                return
            if events & EPOLLOUT:
                self._flush()
                if self.closed:
                    return
            if events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR):
                self._on_readable()
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()

    cdef void _on_readable(self):
        cdef HttpServer server = self.server
        cdef ssize_t n = recv(self.fd, server.scratch, SCRATCH_SIZE, 0)
        if n < 0:
            if errno == EAGAIN or errno == EINTR:
                return
            self._end(END_CLIENT_CLOSED if errno == ECONNRESET else END_ERROR)
            self.abort()
            return
        if n == 0:
            self._on_eof()
            return
        server.bytes_read += n
        if self.held_in is not None and self.held_in.size:
            self.held_in.write(server.scratch, n)
            self._process_held()
        else:
            self._process(server.scratch, n)
        self._flush()
        self._check_input_watermark()
        self._update_deadline()

    cdef void _process_held(self):
        """Parse held input, block by block, as far as requests may be processed."""
        cdef Pipe held = self.held_in
        cdef Py_ssize_t length, used
        cdef const char* data
        while held.size and not self.closed and not self.lingering:
            data = held.front(&length)
            used = self._process_ptr(<char*>data, length)
            if self.closed or self.lingering:
                break  # closing: held input was released, nothing more is parsed
            held.consume(used)
            if used < length:
                break

    cdef void _process(self, char* data, Py_ssize_t size):
        """Parse freshly read bytes; hold what cannot be processed yet."""
        cdef Py_ssize_t used = self._process_ptr(data, size)
        if used < size and not self.closed and not self.lingering:
            if self.held_in is None:
                self.held_in = Pipe(self.server.pool)
            self.held_in.write(data + used, size - used)

    cdef int _input_held(self) noexcept:
        """Bytes received and not yet taken by the handler or the parser."""
        cdef Py_ssize_t held = self.held_in.size if self.held_in is not None else 0
        if self.current is not None and self.current.body_stream is not None:
            held += self.current.body_stream.queued()
        return held

    cdef void _check_input_watermark(self):
        """Stop reading at the high watermark, so input is never buffered without bound."""
        if (not self.reading_paused and not self.closed
                and self._input_held() >= self.server.max_request_buffer_size):
            self.reading_paused = True
            self.server.read_pauses += 1
            self._set_events(self.events & ~(EPOLLIN | EPOLLRDHUP))

    cdef void _input_consumed(self):
        """The handler took body bytes: resume reading below the low watermark."""
        if (self.reading_paused and not self.closed and not self.peer_eof
                and self._input_held() < self.server.min_request_buffer_size):
            self.reading_paused = False
            self._set_events(self.events | EPOLLIN | EPOLLRDHUP)

    cdef Py_ssize_t _process_ptr(self, char* data, Py_ssize_t size):
        """Run the parser over data while requests may be processed; return bytes used."""
        cdef HttpParser parser = self.parser
        cdef Py_ssize_t pos = 0
        cdef int event
        while not self.closed and not self.lingering:
            if self.current is not None and self.message_complete:
                break  # the next pipelined request waits for this response
            if parser.state == S_ERROR:
                return size  # refused already: the rest is not looked at
            event = parser.execute(data + pos, size - pos)
            pos += parser.consumed
            if event == EV_NEED_DATA:
                break
            if event == EV_HEADERS:
                self._start_request(parser.head)
            elif event == EV_BODY:
                if self.current is not None:
                    self.current._body().feed(parser.body_ptr, parser.body_len)
                elif self.draining:
                    # The handler answered without reading it: discarded, within the budget.
                    self.drain_left -= parser.body_len
                    if self.drain_left < 0:
                        self.draining = False
                        self._end(END_DRAIN_LIMIT)
                        _contract_warning(self, "an unread request body went past the drain "
                                                "budget of %d bytes; closing the connection",
                                          self.server.max_drain_size)
                        self.close_after_write = True
                        self._close_if_done()
                        break
            elif event == EV_MESSAGE_END:
                self.message_complete = True
                self.responded = False
                if self.current is not None and self.current.body_stream is not None:
                    self.current.body_stream.finish()
                elif self.draining:
                    self.draining = False
                    self.deadline_kind = DL_NONE  # _update_deadline arms the idle one
                    self.server.drained_bodies += 1
            elif event == EV_PAUSED:
                # Connection: close, HTTP/1.0, or an upgrade kestrel does not perform: what
                # follows is not read. Close once the response is out.
                self._end(END_CONNECTION_CLOSE)
                self.close_after_write = True
                if self.current is None:
                    self._close_if_done()
                break
            else:
                self._reject(parser.error_reason)
                break
        return pos

    cdef void _start_request(self, RequestHead head):
        cdef HttpServer server = self.server
        cdef Request request
        cdef RequestBody body
        cdef object request_class = server.request_class
        if request_class is Request:
            request = Request.__new__(Request)
        else:
            # A framework subclass: its type's tp_new directly, as __new__ would, minus
            # the attribute lookup and call.
            request = <Request>_type_new(request_class, _EMPTY_TUPLE)
        if KESTREL_DEBUG:
            _debug_count("request_alloc", 1)
        request.head = head
        request.connection = self
        if head.content_length == 0 or (head.content_length < 0 and not head.chunked):
            request.body_bytes = b""  # and no body stream unless one is asked for
        else:
            body = RequestBody.__new__(RequestBody)
            body.owner = self
            body.limit = server.max_request_body_size
            request.body_stream = body
        self.current = request
        self.message_complete = False
        self.responded = False
        self.deadline_kind = DL_NONE  # the head is in; the body rate applies from here
        self.continue_sent = False
        self.write_wait_total = 0.0
        self.write_wait_bytes = 0
        server.requests_total += 1
        if head.method is M_CONNECT and not server.accepts_connect:
            # CONNECT asks for a tunnel (RFC 9110 §9.3.6), which only a proxy gives: refused
            # here rather than routed (the parser has stopped reading: what follows it would
            # be tunnel bytes, not requests).
            self._handler_done(Response(b"Not Implemented: CONNECT", 501, None,
                                        b"text/plain; charset=utf-8"), None)
            return
        if server.metrics_target is not None and head.target == server.metrics_target:
            self._handler_done(Response(server.metrics_renderer(), 200, None,
                                        b"text/plain; version=0.0.4; charset=utf-8"), None)
            return
        try:
            coro = server.app(request)
            task = server._start_handler(coro)
        except BaseException as exc:
            self._handler_done(None, exc)
            return
        if task is None:
            result = server.step_result
            server.step_result = None
            self._handler_done(result, None)
        elif task.done():
            self._task_result(task)
        else:
            self.task = task
            task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task):
        """A handler that suspended has finished: answer, then go on with held input."""
        if self.task is not task:
            return
        self.task = None
        if self.closed:
            return
        try:
            self._task_result(task)
            self._after_response()
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()

    cdef void _after_response(self):
        """After an asynchronous response: send it, then go on with held input."""
        if not self.closed and self.held_in is not None and self.current is None:
            self._process_held()
        self._flush()
        if not self.closed and self.current is None:
            self._input_consumed()
            self._input_idle()
        self._update_deadline()

    # ---- Files, sent with sendfile(2) straight from the page cache.

    cdef bint _start_file(self, Request request, FileResponse response) except -1:
        """Write the head of a file response; True if its body is still to be sent."""
        cdef long long size, first, length
        try:
            fd = os.open(response.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            self._write_response(request, 404, None, b"Not Found", b"text/plain; charset=utf-8")
            return False
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                self._write_response(request, 404, None, b"Not Found",
                                     b"text/plain; charset=utf-8")
                return False
        except BaseException:
            os.close(fd)
            raise
        size = info.st_size
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        headers = [(b"accept-ranges", b"bytes"), (b"last-modified", last_modified.encode()),
                   (b"etag", etag.encode())]
        if response.filename is not None:
            headers.append((b"content-disposition", _content_disposition(response.filename)))
        if response._headers is not None:
            headers.extend(_header_items(response._headers))
        status = response.status
        if status == 200:
            condition = _file_precondition(request, etag, <long long>info.st_mtime)
            if condition:
                # 304 carries the validators and the response's own headers, and no body;
                # 412 is an error, with the usual small text body.
                os.close(fd)
                if condition == 304:
                    self._write_response(request, 304, headers, b"", None)
                else:
                    self._write_response(request, 412, None, b"Precondition Failed",
                                         b"text/plain; charset=utf-8")
                return False
        first, length = 0, size
        span = _file_range(request, size, etag, last_modified) if status == 200 else None
        if span == -1:
            os.close(fd)
            headers.append((b"content-range", b"bytes */%d" % size))
            self._write_response(request, 416, headers, b"", None)
            return False
        if span is not None:
            status = 206
            first = span[0]
            length = span[1] - first + 1
            headers.append((b"content-range", b"bytes %d-%d/%d" % (first, span[1], size)))
        try:
            self._write_response(request, status, headers, None, response.content_type, length)
        except BaseException:
            os.close(fd)  # a head the writer refused: the file is not sent
            raise
        if length == 0 or request.head.method is M_HEAD:
            os.close(fd)
            return False
        self.file_fd = fd
        self.file_offset = first
        self.file_remaining = length
        return True

    cdef void _send_file(self):
        """Send the file until the socket is full (EPOLLOUT resumes) or the file is out."""
        cdef ssize_t sent
        cdef HttpServer server = self.server
        while self.file_remaining > 0:
            sent = sendfile(self.fd, self.file_fd, &self.file_offset,
                            <size_t>min(self.file_remaining, SENDFILE_MAX))
            if sent < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    self._output_blocked()
                    return
                self._end(END_CLIENT_CLOSED if errno == EPIPE or errno == ECONNRESET
                          else END_ERROR)
                self.abort()
                return
            if sent == 0:
                # The file shrank while being sent: the promised length can no longer be
                # met, and only an incomplete response tells the client so.
                _log.warning("file shrank while being sent; connection aborted")
                self.abort()
                return
            server.bytes_written += sent
            if self.write_wait_started:
                self.write_wait_bytes += sent
            self.file_remaining -= sent
        self._close_file()
        self._output_unblocked()
        self._response_finished(self.current)
        self._after_response()

    cdef void _close_file(self) noexcept:
        if self.file_fd >= 0:
            close(self.file_fd)
            self.file_fd = -1

    # ---- Streamed responses, with output flow control.

    cdef void _start_stream(self, Request request, StreamingResponse response):
        cdef HttpServer server = self.server
        cdef ResponseWriter writer = server.writer
        cdef bint chunked
        cdef long long declared
        try:
            self._write_response(request, response.status, response._headers, None,
                                 response.content_type)
        except Exception as error:
            # Nothing of the head was kept: the client gets a 500 instead.
            self._write_error(request, error)
            self._response_finished(request)
            return
        # A declared Content-Length is what the stream is held to.
        chunked = writer.framing == FRAME_CHUNKED
        declared = writer.length if writer.framing == FRAME_LENGTH else -1
        self._flush()
        if not writer.send_body:
            self._response_finished(request)
            return
        task = server._start_task(self._stream_body(request, response, chunked, declared))
        if task.done():
            self._on_stream_done(task)
        else:
            self.task = task
            task.add_done_callback(self._on_stream_done)

    async def _stream_body(self, Request request, StreamingResponse response, bint chunked,
                           long long declared):
        """Send each piece of the body as it comes, waiting while the client is behind.

        With a declared Content-Length, producing more or less than that raises: the
        connection is then aborted, since extra bytes would be read as a next response and a
        short body would leave the client waiting.
        """
        cdef OutputBuffer out
        cdef bytes chunk
        cdef long long produced = 0
        content = response.content
        is_async = hasattr(content, "__aiter__")
        iterator = content.__aiter__() if is_async else iter(content)
        try:
            while True:
                if is_async:
                    try:
                        piece = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    try:
                        piece = next(iterator)
                    except StopIteration:
                        break
                if self.closed:
                    raise ClientDisconnect("the client went away during the response")
                chunk = piece.encode() if isinstance(piece, str) else bytes(piece)
                if not chunk:
                    continue
                produced += PyBytes_GET_SIZE(chunk)
                if declared >= 0 and produced > declared:
                    raise RuntimeError(f"a StreamingResponse produced more than the "
                                       f"Content-Length it declared ({declared} bytes)")
                out = self.server.out
                if chunked:
                    out.append_chunk_size(PyBytes_GET_SIZE(chunk))
                out.append(PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk))
                if chunked:
                    out.append(b"\r\n", 2)
                self._flush()
                if (self.held_out is not None
                        and self.held_out.size > self.server.max_response_buffer_size):
                    self.drain_waiter = asyncio.get_running_loop().create_future()
                    await self.drain_waiter
            if declared >= 0 and produced != declared and not self.closed:
                raise RuntimeError(f"a StreamingResponse produced {produced} bytes but "
                                   f"declared a Content-Length of {declared}")
            if chunked and not self.closed:
                self.server.out.append(b"0\r\n\r\n", 5)
        finally:
            if is_async and hasattr(iterator, "aclose"):
                await iterator.aclose()
            elif not is_async and hasattr(iterator, "close"):
                iterator.close()

    def _on_stream_done(self, task):
        if self.task is task:
            self.task = None
        # Retrieved even when the connection is gone: a stream that ended because the client
        # left is no "Task exception was never retrieved".
        failure = None if task.cancelled() else task.exception()
        if self.closed:
            return
        try:
            if task.cancelled() or failure is not None:
                # The head is out: the only honest signal left is an incomplete response.
                if failure is not None:
                    _log.error("streamed response failed", exc_info=failure)
                self.abort()
                return
            self._response_finished(self.current)
            self._after_response()
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()

    cdef void _output_progress(self):
        """The socket took output: wake a writer waiting below the low watermark."""
        waiter = self.drain_waiter
        if waiter is not None and (self.held_out is None or self.held_out.size
                                   <= self.server.max_response_buffer_size // 2):
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    cdef void _task_result(self, task):
        # One call on the common path: result() raises what the handler raised (or
        # CancelledError), which _handler_done turns into the response.
        try:
            result = task.result()
        except BaseException as exc:
            self._handler_done(None, exc)
            return
        self._handler_done(result, None)

    cdef void _handler_done(self, result, exc):
        cdef Request request = self.current
        cdef OutputBuffer out = self.server.out
        cdef Py_ssize_t mark = out.length
        if exc is None:
            try:
                self._write_result(request, result)
            except Exception as error:
                # Nothing of a response that failed to serialize may reach the client.
                out.length = mark
                exc = error
        if exc is not None:
            self._write_error(request, exc)
        elif isinstance(result, StreamingResponse):
            # The body is sent by its own task; the request ends when it has been sent.
            self._start_stream(request, <StreamingResponse>result)
            return
        elif isinstance(result, FileResponse):
            try:
                if self._start_file(request, <FileResponse>result):
                    return  # _flush sends the file; _file_sent ends the request
            except Exception as error:
                out.length = mark
                _log.error("%s: could not send %r", _route_of(request), result, exc_info=error)
                self._write_response(request, 500, None, b"Internal Server Error",
                                     b"text/plain; charset=utf-8")
        self._response_finished(request)

    cdef void _write_error(self, Request request, exc):
        """The response to a handler that raised (or a result that could not be sent)."""
        if isinstance(exc, HttpParseError):
            # The request body was refused while the handler read it (e.g. 413): the client
            # gets that status, and the connection closes, as for any rejection.
            status = exc.status
            self.close_after_write = True
            self._write_response(request, status, None, REASON_PHRASES.get(status, b""),
                                 b"text/plain; charset=utf-8")
        elif isinstance(exc, ClientDisconnect):
            # The client ended its side inside the body (a half-close: it may still read).
            # Its request is incomplete, which is the client's error (RFC 9112 §8), not a
            # crash: 400, and the connection closes.
            self.close_after_write = True
            self._write_response(request, 400, None, b"Bad Request: incomplete request body",
                                 b"text/plain; charset=utf-8")
        elif isinstance(exc, BadRequest):
            # Request.path found the target undecodable: the client's error, not a crash.
            self._write_response(request, 400, None, str(exc).encode(),
                                 b"text/plain; charset=utf-8")
        elif isinstance(exc, InvalidResponseError):
            # Nothing of the response went out; the app's bug is named, with its route.
            _log.error("%s: the app's response was refused, 500 sent instead: %s",
                       _route_of(request), exc)
            self._write_response(request, 500, None, b"Internal Server Error",
                                 b"text/plain; charset=utf-8")
        else:
            if not isinstance(exc, asyncio.CancelledError):
                response = self._app_error_response(request, exc)
                if response is not None:
                    try:
                        self._write_result(request, response)
                        return
                    except Exception as error:
                        _log.error("the app's error response to %r was refused", exc,
                                   exc_info=error)
                _log.error("handler raised for %s %s", request.head.method,
                           request.head.target.decode("latin-1"), exc_info=exc)
            self._write_response(request, 500, None, b"Internal Server Error",
                                 b"text/plain; charset=utf-8")

    cdef Response _app_error_response(self, Request request, exc):
        """The app's own answer to an exception that escaped it, or None for a 500."""
        error_response = self.server.error_response
        if error_response is None or not isinstance(exc, Exception):
            return None
        try:
            response = error_response(request, exc)
        except Exception as error:
            _log.error("the app's error_response failed for %r", exc, exc_info=error)
            return None
        if response is not None and not isinstance(response, Response):
            _log.error("the app's error_response returned %r, not a Response", response)
            return None
        return response

    cdef void _response_finished(self, Request request):
        """The whole response is queued: the connection may take the next request."""
        self.current = None
        self.responded = not self.message_complete
        if not request.head.keep_alive:
            self._end(END_CONNECTION_CLOSE)
            self.close_after_write = True
        if not self.message_complete:
            # The handler did not read all of the body: what is buffered goes now, the rest
            # is drained as it arrives (or the connection closes: _start_drain). A request
            # without a body is only waiting for the parser to say so.
            if not request._body_complete():
                request.body_stream.fail(ClientDisconnect("the response was already sent"))
                self._start_drain(request)
        elif request.body_stream is not None:
            request.body_stream.discard()
        if self.close_after_write:
            self._close_if_done()

    cdef int _write_result(self, Request request, result) except -1:
        cdef type kind = type(result)
        if kind is bytes:
            self._write_response(request, 200, None, <bytes>result, b"application/octet-stream")
        elif kind is str:
            self._write_response(request, 200, None, (<str>result).encode(),
                                 b"text/plain; charset=utf-8")
        elif isinstance(result, Response):
            response = <Response>result
            self._write_response(request, response.status, response._headers, response.body,
                                 response.content_type)
        elif isinstance(result, StreamingResponse) or isinstance(result, FileResponse):
            pass  # their heads are written by _start_stream and _start_file
        elif result is None:
            self._write_response(request, 204, None, b"", None)
        else:
            raise TypeError(f"a handler returned {kind.__name__}; the engine takes bytes, "
                            f"str, None or kestrel.Response")
        return 0

    cdef int _write_response(self, Request request, int status, headers, bytes body,
                             content_type, long long length=-1) except -1:
        """Serialize a response through the writer. Body None writes only the head of a
        streamed or file body, whose length is `length` (-1: not known)."""
        cdef HttpServer server = self.server
        cdef ResponseWriter writer = server.writer
        cdef OutputBuffer out = server.out
        cdef Py_ssize_t body_len = PyBytes_GET_SIZE(body) if body is not None else length
        cdef bint close = (self.close_after_write or not request.head.keep_alive
                           or request.head.upgrade or self.server.shutting_down
                           or (not self.message_complete and not request._body_complete()
                               and _unread_body_closes(self, request)))
        writer.write_head(status, request.head.method is M_HEAD,
                          request.head.http_version is V_10, not close, headers, content_type,
                          body_len)
        if writer.close:
            self.close_after_write = True
        if body_len > 0 and body is not None and writer.send_body:
            out.append(PyBytes_AS_STRING(body), body_len)
        server.responses_total += 1
        if server.access_log:
            peer = self.peer_address()
            _access_log.info('%s - "%s %s HTTP/%s" %d',
                             f"{peer[0]}:{peer[1]}" if peer else "-", request.head.method,
                             request.head.target.decode("latin-1"), request.head.http_version,
                             status)
        return 0

    cdef void _reject(self, int reason):
        """Answer a request the parser refused, then close (RFC 9112 §9.6... and §11)."""
        cdef HttpServer server = self.server
        cdef OutputBuffer out = server.out
        cdef int status = REJECT_STATUS_C[reason]
        if reason != R_REQUEST_HEADERS_TIMEOUT and reason != R_REQUEST_BODY_TIMEOUT:
            server.rejections[reason] = server.rejections.get(reason, 0) + 1
            if self.end_reason < 0:
                server.connections_rejected += 1
            self._end(END_REJECTED)
        if self.current is not None:
            # A framing error or limit in the body of a request being handled: the handler's
            # next read raises it; left uncaught, its status is the response (_handler_done).
            self.current._fail_body(HttpParseError(reason, self.parser.error_detail or ""))
            self.close_after_write = True
            return
        if self.responded:
            # The error is in the body of a request already answered (its drain): a second
            # response would be paired with the client's next request. Close, and say nothing.
            _contract_warning(self, "the unread request body was malformed (%s); closing the "
                                    "connection", RejectReason(reason).name)
            self._close_silently()
            return
        body = REASON_PHRASES.get(status, b"Bad Request")
        server.writer.write_head(status, False, False, False, None,
                                 b"text/plain; charset=utf-8", len(body))
        out.append_bytes(body)
        self.close_after_write = True
        self._close_if_done()

    cdef void _close_silently(self):
        """Close without another response: what is queued still goes out first."""
        self.draining = False
        if self.held_in is not None:
            self.held_in.clear()
        self.close_after_write = True
        self._close_if_done()

    cdef void _close_if_done(self):
        """Close once a connection that must close has nothing left to send."""
        if self.closed or self.current is not None:
            return
        self._flush()
        if (not self.closed and (self.held_out is None or self.held_out.size == 0)
                and self.file_fd < 0):
            self._linger()

    cdef void _flush(self):
        """Send this connection's part of the output buffer, and whatever it held back."""
        cdef HttpServer server = self.server
        cdef OutputBuffer out = server.out
        cdef ssize_t sent = 0
        cdef Pipe held = self.held_out
        cdef iovec iov[MAX_IOVEC]
        cdef int count
        if self.closed:
            out.length = 0
            return
        if held is not None and held.size:
            # Order matters: what was held goes first, then the new output behind it.
            if out.length:
                held.write(out.data, out.length)
                out.length = 0
            count = held.iovecs(iov, MAX_IOVEC)
            sent = writev(self.fd, iov, count)
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    self._end(END_CLIENT_CLOSED if errno == EPIPE or errno == ECONNRESET
                              else END_ERROR)
                    self.abort()
                return
            server.bytes_written += sent
            if self.write_wait_started:
                self.write_wait_bytes += sent
            held.consume(sent)
            self._output_progress()
        elif out.length:
            sent = send(self.fd, out.data, out.length, MSG_NOSIGNAL)
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    out.length = 0
                    self._end(END_CLIENT_CLOSED if errno == EPIPE or errno == ECONNRESET
                              else END_ERROR)
                    self.abort()
                    return
                sent = 0
            server.bytes_written += sent
            if sent < out.length:
                if held is None:
                    held = self.held_out = Pipe(server.pool)
                held.write(out.data + sent, out.length - sent)
            out.length = 0
        elif self.file_fd < 0:
            return
        if held is not None and held.size:
            self._output_blocked()
        elif self.file_fd >= 0:
            self._send_file()
        else:
            self._output_unblocked()
            self._output_progress()
            if self.close_after_write and self.current is None:
                self._linger()
            elif self.deadline_kind == DL_NONE and self.current is None:
                self._update_deadline()  # the response is out: the connection is idle now

    cdef void _output_blocked(self):
        """The socket took less than offered: wait for EPOLLOUT, and start the clock the
        minimum response rate is measured over (only while blocked on the client)."""
        if not (self.events & EPOLLOUT):
            self.server.write_pauses += 1
            self._set_events(self.events | EPOLLOUT)
        if not self.write_wait_started:
            self.write_wait_started = _monotonic()

    cdef void _output_unblocked(self):
        if self.events & EPOLLOUT:
            self._set_events(self.events & ~EPOLLOUT)
        if self.write_wait_started:
            self.write_wait_total += _monotonic() - self.write_wait_started
            self.write_wait_started = 0.0

    cdef void _set_events(self, uint32_t events):
        if events != self.events and not self.closed:
            self.events = events
            self.server.selector.modify_handler(self, events)

    cdef void _on_eof(self):
        """The client will send nothing more (it may still read: a half-close).

        Requests it already sent in full are still answered, and what is queued for it is
        still sent; the connection closes after that.
        """
        self.peer_eof = True
        self._set_events(self.events & ~(EPOLLIN | EPOLLRDHUP))
        if self.current is not None:
            if not self.message_complete:
                self.current._fail_body(
                    ClientDisconnect("the client closed the connection mid-body"))
        else:
            self._input_idle()

    cdef void _input_idle(self):
        """No handler runs and every complete request held was processed."""
        if self.peer_eof and not self.closed:
            # What is still held can only be an incomplete request: it will never finish.
            if self.held_in is not None:
                self.held_in.clear()
            self._end(END_CLIENT_CLOSED)
            self.close_after_write = True
            self._close_if_done()

    # ---- The request contract: deadlines, rates, drains and lingering closes.

    cdef void _end(self, int reason):
        """Record why this connection ends; the first reason given is the one counted."""
        if self.end_reason < 0:
            self.end_reason = reason

    cdef void _update_deadline(self):
        """Arm the deadline that applies now: none while a handler runs, the keep-alive
        timeout while idle, the headers timeout from the first byte of a request. (A drain's
        and a lingering close's deadlines are set by _start_drain and _linger.)"""
        cdef HttpParser parser = self.parser
        if self.closed or self.lingering or self.draining:
            return
        if (self.current is not None or self.file_fd >= 0
                or (self.held_out is not None and self.held_out.size)):
            # Busy: a handler runs, or a response is still going out (the response rate
            # watches that); the idle clock starts when the connection is really idle.
            self.deadline_kind = DL_NONE
            return
        if (parser.state == S_START_LINE and parser.line_len == 0
                and (self.held_in is None or self.held_in.size == 0)):
            if self.deadline_kind != DL_KEEP_ALIVE:
                self.deadline_kind = DL_KEEP_ALIVE
                self.last_unsent = 0
                self.deadline = _monotonic() + self.server.keep_alive_timeout
        elif self.deadline_kind != DL_HEADERS:
            self.deadline_kind = DL_HEADERS
            self.deadline = _monotonic() + self.server.request_headers_timeout

    cdef void _check_contract(self, double now):
        """The heartbeat's look at this connection: enforce whatever deadline has passed."""
        cdef HttpServer server = self.server
        cdef RequestBody body
        cdef double waited
        cdef int unsent
        if self.closed:
            return
        if self.lingering:
            if now >= self.deadline:
                self.close()
            return
        if self.draining:
            if now >= self.deadline:
                self.draining = False
                self._end(END_DRAIN_TIMEOUT)
                _contract_warning(self, "an unread request body did not finish within the "
                                        "drain timeout (%gs); closing the connection",
                                  server.drain_timeout)
                self.close_after_write = True
                self._close_if_done()
                return
        elif ((self.deadline_kind == DL_KEEP_ALIVE or self.deadline_kind == DL_HEADERS)
                and now >= self.deadline):
            if self.deadline_kind == DL_KEEP_ALIVE:
                unsent = 0
                if ioctl(self.fd, SIOCOUTQ, &unsent) == 0 and 0 < unsent and (
                        self.last_unsent == 0 or unsent < self.last_unsent):
                    # The last response is still on its way out of the kernel and the client
                    # is taking it: not idle yet. (A client that stops reading is closed at
                    # the next deadline.)
                    self.last_unsent = unsent
                    self.deadline = now + server.keep_alive_timeout
                    return
                self._end(END_KEEP_ALIVE_TIMEOUT)
                if unsent > 0:
                    self.abort()  # a response the client stopped reading: let go of it
                else:
                    self.close()  # idle: no response owed, nothing unread
            else:
                self._end(END_HEADERS_TIMEOUT)
                _contract_warning(self, "the request head did not arrive within %gs; 408 and "
                                        "close", server.request_headers_timeout)
                self.deadline_kind = DL_NONE
                self._reject(R_REQUEST_HEADERS_TIMEOUT)
            return
        body = self.current.body_stream if self.current is not None else None
        if body is not None and not self.message_complete and server.min_request_body_rate > 0:
            waited = body.wait_total
            if body.wait_started:
                waited += now - body.wait_started
            if (waited > server.min_rate_grace
                    and body.received < server.min_request_body_rate * waited):
                self._end(END_BODY_RATE)
                _contract_warning(self, "the request body arrived at %.0f B/s, under the "
                                        "minimum of %g B/s; 408 and close",
                                  body.received / waited, server.min_request_body_rate)
                self.close_after_write = True
                body.fail(HttpParseError(
                    R_REQUEST_BODY_TIMEOUT, "request body slower than the minimum data rate"))
                return
        if self.write_wait_started and server.min_response_rate > 0:
            waited = self.write_wait_total + now - self.write_wait_started
            if (waited > server.min_rate_grace
                    and self.write_wait_bytes < server.min_response_rate * waited):
                self._end(END_RESPONSE_RATE)
                _contract_warning(self, "the client read the response at %.0f B/s, under the "
                                        "minimum of %g B/s; connection aborted",
                                  self.write_wait_bytes / waited, server.min_response_rate)
                self.abort()

    cdef void _start_drain(self, Request request):
        """The handler answered without reading all of the body: drain it, or close."""
        cdef HttpServer server = self.server
        if self.closed or self.message_complete:
            return
        self.drain_route = _route_of(request)
        if _unread_body_closes(self, request):
            # (Its response already said Connection: close: _write_response asked the same.)
            if self.end_reason < 0:  # not closing for another reason already (408, ...)
                self._end(END_DRAIN_LIMIT)
                _contract_warning(self, "the handler left %s unread; closing the connection "
                                        "after the response", _unread_description(self, request))
            self.close_after_write = True
            return
        if self.close_after_write:
            return  # closing anyway (a 408, a rejection, Connection: close): no drain
        self.draining = True
        self.deadline_kind = DL_NONE  # `draining` tells what `deadline` is for
        self.deadline = _monotonic() + server.drain_timeout
        self.drain_left = server.max_drain_size
        self._input_consumed()  # reading may have paused on the body the handler left
        _contract_warning(self, "the handler left the request body unread; draining it (up to "
                                "%d bytes and %gs) to keep the connection",
                          server.max_drain_size, server.drain_timeout)

    cdef void _linger(self):
        """Close after a response without destroying it: send our FIN first, then discard
        what the client still sends until it closes too, or linger_time passes. Closing with
        unread input would make the kernel send an RST, which can destroy the response
        before the client has read it."""
        if self.closed or self.lingering:
            return
        if self.peer_eof:
            self._end(END_CLIENT_CLOSED)
            self.close()
            return
        self._end(END_CONNECTION_CLOSE)
        shutdown(self.fd, SHUT_WR)
        self.lingering = True
        self.draining = False
        self.deadline_kind = DL_NONE  # `lingering` tells what `deadline` is for
        self.deadline = _monotonic() + self.server.linger_time
        if self.held_in is not None:
            self.held_in.clear()
        self.reading_paused = False
        self._set_events(EPOLLIN | EPOLLRDHUP)
        self._discard_input()

    cdef void _discard_input(self):
        cdef ssize_t n
        cdef int rounds = 0
        while rounds < 64:  # a fast sender gets the next epoll round, not the whole loop
            n = recv(self.fd, self.server.scratch, SCRATCH_SIZE, 0)
            if n > 0:
                self.server.bytes_read += n
                rounds += 1
                continue
            if n == 0:
                self.peer_eof = True
                self.close()
            elif errno != EAGAIN and errno != EINTR:
                self.close()
            return

    cdef int _send_continue(self) except -1:
        if self.continue_sent or self.closed:
            return 0
        self.continue_sent = True
        self.server.out.append(b"HTTP/1.1 100 Continue\r\n\r\n", 25)
        self._flush()
        return 0

    cdef void close(self):
        cdef int reason
        if self.closed:
            return
        self.closed = True
        reason = self.end_reason
        if reason < 0:
            reason = END_CLIENT_CLOSED if self.peer_eof else END_ERROR
        self.server.end_counts[reason] += 1
        self.server.selector.remove_handler(self)
        close(self.fd)
        self._close_file()
        if self.held_in is not None:
            self.held_in.clear()
        if self.held_out is not None:
            self.held_out.clear()
        self.server._connection_closed(self)
        # The handler, if one runs, is not cancelled (as in ASP.NET Core and uvicorn): its
        # body reads fail with ClientDisconnect and its response is dropped when it ends.
        if self.current is not None and not self.message_complete:
            self.current._fail_body(ClientDisconnect("the connection was closed"))
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_exception(ClientDisconnect("the client went away during the response"))

    cdef void abort(self):
        """Reset the connection: with SO_LINGER 0, close() discards what the kernel still
        holds unsent and sends an RST, so an aborted slow reader pins no kernel memory (a
        plain close would leave it in FIN-WAIT-1, still sending)."""
        cdef linger reset
        if self.closed:
            return
        reset.l_onoff = 1
        reset.l_linger = 0
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset))
        self.close()
