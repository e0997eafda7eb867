# The request as a handler sees it, and its body as a stream.
#
# Theory of operation
# -------------------
# The HTTP/1 processor (http1.pxi) makes a Request for each head the parser reports, and a
# RequestBody when a body follows. Body bytes wait in pooled blocks (a Pipe) until the handler
# reads them; nothing is copied into Python objects until it asks. The target is split, and
# the path percent-decoded, on first use.
#
# A request needs three things from the connection it arrived on, and reaches them through
# RequestOwner, which the processor implements: the peer's address, a "100 Continue" when the
# handler starts reading a body the client waits to send, and word that the handler took body
# bytes (which may resume a paused socket). So this fragment does not depend on the
# processor.
#
# The time a body read waits on the client is a RateClock (timeouts.pxi): the minimum request
# body rate is measured over it.


cdef tuple _EMPTY_TUPLE = ()


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


cdef extern from *:
    """
    static PyObject* kestrel_type_new(PyObject* type, PyObject* args) {
        return ((PyTypeObject*)type)->tp_new((PyTypeObject*)type, args, NULL);
    }
    """
    object _type_new "kestrel_type_new" (object type, object args)



cdef class RequestOwner(Protocol):
    """What a request needs from its connection (the HTTP/1 processor implements it)."""

    cdef object peer_address(self):
        return None

    cdef int send_continue(self) except -1:
        return 0

    cdef void body_consumed(self):
        pass

    cdef Pipe new_pipe(self):
        raise NotImplementedError


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
        self.read_clock.started = 0.0
        self.read_clock.total = 0.0
        self.read_clock.bytes = 0

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
            self.pipe = self.owner.new_pipe()
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
            rate_clock_stop(&self.read_clock)
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
                self.owner.body_consumed()
                return chunk
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            self.waiter = asyncio.get_running_loop().create_future()
            # Waiting on the client: the only time the minimum body rate is measured over.
            rate_clock_start(&self.read_clock)
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
            body.limit = self.connection.body_limit
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
            self.connection.send_continue()
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

