# The response writer: the one place a response head is built, and its framing decided.
#
# Theory of operation
# -------------------
# Every response the server sends goes through ResponseWriter.write_head: a handler's
# Response, a streamed or file response, an error page, a rejection. It is socket-free: it
# appends the head to an OutputBuffer and records what it decided (`framing`, `length`,
# `close`, `send_body`); the HTTP/1 processor then sends the body as that decision says.
# Like h11's writers and Kestrel's CreateResponseHeaders, the writer, not the app, owns
# framing:
#
# - Every header name must be an RFC 9110 token and every value a field-value (no CR, LF,
#   NUL or other control byte, no leading or trailing whitespace), whichever path built the
#   headers. A violation raises InvalidResponseError and nothing of the head stays in the
#   buffer: the caller answers 500 instead.
# - Content-Length and Transfer-Encoding are the writer's. An app's Content-Length that
#   matches a complete body is sent once; one that contradicts it is refused; for a stream it
#   is the declared length the processor holds the stream to. An app's
#   `Transfer-Encoding: chunked` is the framing a stream gets anyway; a body of known length
#   is sent with its Content-Length instead. Any other coding, or both fields, is refused.
# - No Content-Length or Transfer-Encoding on 1xx or 204 (RFC 9110 §8.6, RFC 9112 §6.1); no
#   body on HEAD, 1xx, 204 or 304 (RFC 9110 §6.4.1). A 1xx cannot be a final response.
# - `Connection` and the other hop-by-hop fields (RFC 9110 §7.6.1) are the server's: an
#   app's `Connection: close` is honoured, the rest of what it says there is dropped.
# - An app's own Date or Server replaces the server's.
#
# Invariants
# - write_head either appends one complete head and returns, or appends nothing and raises.
# - `length` is the exact number of body bytes promised when framing == FRAME_LENGTH.

import http

REASON_PHRASES = {s.value: s.phrase.encode("latin-1") for s in http.HTTPStatus}
cdef dict _STATUS_LINES = {}  # status -> its line; keeps the lines _STATUS_LINE_AT points to
cdef PyObject* _STATUS_LINE_AT[1000]  # the same, by index, without a dict lookup per response


class InvalidResponseError(RuntimeError):
    """A response the server cannot send unambiguously (an invalid header, or framing that
    contradicts the body): it is answered with a 500 instead, and logged."""


cdef bytes _status_line(int status):
    # A server answers with its own version, HTTP/1.1, also to HTTP/1.0 clients (RFC 9110
    # §2.5).
    if not 100 <= status <= 999:
        raise InvalidResponseError(f"invalid HTTP status {status}")
    if _STATUS_LINE_AT[status] != NULL:
        return <bytes>_STATUS_LINE_AT[status]
    phrase = REASON_PHRASES.get(status, b"")
    line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    _STATUS_LINES[status] = line
    _STATUS_LINE_AT[status] = <PyObject*>line
    return line


cdef class OutputBuffer:
    """A growable C buffer responses are serialized into before they are sent."""

    def __cinit__(self, Py_ssize_t capacity=OUT_INITIAL):
        self.data = <char*>malloc(capacity)
        if self.data == NULL:
            raise MemoryError()
        self.capacity = capacity
        self.length = 0

    def __dealloc__(self):
        free(self.data)

    cdef int _grow(self, Py_ssize_t needed) except -1:
        cdef Py_ssize_t capacity = self.capacity
        cdef char* grown
        while capacity < needed:
            capacity *= 2
        grown = <char*>realloc(self.data, capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef int append(self, const char* data, Py_ssize_t size) except -1:
        if self.length + size > self.capacity:
            self._grow(self.length + size)
        memcpy(self.data + self.length, data, size)
        self.length += size
        return 0

    cdef int append_bytes(self, bytes data) except -1:
        return self.append(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int append_chunk_size(self, Py_ssize_t value) except -1:
        cdef char digits[24]
        cdef int i = 22
        digits[22] = 13
        digits[23] = 10
        while True:
            i -= 1
            digits[i] = b"0123456789abcdef"[value & 15]
            value >>= 4
            if value == 0:
                break
        return self.append(digits + i, 24 - i)

    @cython.cdivision(True)
    cdef int append_content_length(self, Py_ssize_t value) except -1:
        """The whole field line in one append; value >= 0."""
        cdef char line[48]
        cdef int i = 46
        line[46] = 13
        line[47] = 10
        while True:
            i -= 1
            line[i] = <char>(48 + value % 10)
            value //= 10
            if value == 0:
                break
        i -= 16
        memcpy(line + i, b"content-length: ", 16)
        return self.append(line + i, 48 - i)


cdef object _header_items(headers):
    """(name, value) pairs of response headers given as a list, a dict or Headers."""
    cdef type kind = type(headers)
    if kind is MutableHeaders or kind is Headers:
        return headers.raw
    if kind is list or kind is tuple:
        return headers
    if isinstance(headers, Headers):
        return headers.raw
    return headers.items()


cdef inline bytes _field_bytes(object text, str what):
    if type(text) is bytes:
        return <bytes>text
    if type(text) is str:
        try:
            return (<str>text).encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidResponseError(
                f"response header {what} {text!r} is not Latin-1 (encode it, e.g. RFC 8187 "
                f"for a filename)") from None
    raise InvalidResponseError(f"response header {what} {text!r} is not str or bytes")


cdef bint _is_token(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if not TOKEN_CHAR[p[i]]:
            return False
    return True


cdef bint _is_field_value(const unsigned char* p, Py_ssize_t n) noexcept:
    """field-value (RFC 9110 §5.5): field-vchar, SP and HTAB between them, obs-text."""
    cdef Py_ssize_t i
    if n == 0:
        return True
    if p[0] == b" " or p[0] == b"\t" or p[n - 1] == b" " or p[n - 1] == b"\t":
        return False
    for i in range(n):
        if not VALUE_CHAR[p[i]]:
            return False
    return True


cdef bint _name_is(const unsigned char* p, Py_ssize_t n, const char* lower) noexcept:
    """The header name p[:n] equals `lower` (a lowercase name of length n), ignoring case."""
    cdef Py_ssize_t i
    for i in range(n):
        if LOWER[p[i]] != <unsigned char>lower[i]:
            return False
    return True


cdef bint _has_token(const unsigned char* p, Py_ssize_t n, const char* lower,
                     Py_ssize_t token_len) noexcept:
    """A comma-separated list (RFC 9110 §5.6.1) holds `lower`, ignoring case."""
    cdef Py_ssize_t i = 0, start, end
    while i < n:
        while i < n and (p[i] == b" " or p[i] == b"\t" or p[i] == b","):
            i += 1
        start = i
        while i < n and p[i] != b",":
            i += 1
        end = i
        while end > start and (p[end - 1] == b" " or p[end - 1] == b"\t"):
            end -= 1
        if end - start == token_len and _name_is(p + start, token_len, lower):
            return True
    return False


cdef long long _parse_length(const unsigned char* p, Py_ssize_t n) noexcept:
    """A Content-Length value (1*DIGIT, RFC 9110 §8.6), or -1 if it is not one."""
    cdef long long value = 0
    cdef Py_ssize_t i
    if n == 0 or n > MAX_CONTENT_LENGTH_DIGITS:
        return -1
    for i in range(n):
        if p[i] < 48 or p[i] > 57:  # not "0".."9"
            return -1
        value = value * 10 + (p[i] - 48)
    return value


cdef enum Framing:
    FRAME_NONE = 0      # no body on the wire: HEAD, 1xx, 204, 304
    FRAME_LENGTH = 1    # Content-Length: exactly `length` bytes follow
    FRAME_CHUNKED = 2   # Transfer-Encoding: chunked
    FRAME_CLOSE = 3     # an HTTP/1.0 client and no length: the body ends with the connection

# Fields the writer treats itself rather than copying (by the name's length, then its bytes).
cdef enum Owned:
    OWN_NONE = 0
    OWN_CONTENT_LENGTH
    OWN_TRANSFER_ENCODING
    OWN_CONNECTION
    OWN_HOP_BY_HOP      # Keep-Alive, Proxy-Connection, TE, Upgrade: dropped
    OWN_CONTENT_TYPE
    OWN_DATE
    OWN_SERVER


cdef int _owned(const unsigned char* p, Py_ssize_t n) noexcept:
    if n == 14 and _name_is(p, n, b"content-length"):
        return OWN_CONTENT_LENGTH
    if n == 17 and _name_is(p, n, b"transfer-encoding"):
        return OWN_TRANSFER_ENCODING
    if n == 10:
        if _name_is(p, n, b"connection"):
            return OWN_CONNECTION
        if _name_is(p, n, b"keep-alive"):
            return OWN_HOP_BY_HOP
    elif n == 12 and _name_is(p, n, b"content-type"):
        return OWN_CONTENT_TYPE
    elif n == 4 and _name_is(p, n, b"date"):
        return OWN_DATE
    elif n == 6 and _name_is(p, n, b"server"):
        return OWN_SERVER
    elif ((n == 2 and _name_is(p, n, b"te")) or (n == 7 and _name_is(p, n, b"upgrade"))
          or (n == 16 and _name_is(p, n, b"proxy-connection"))):
        return OWN_HOP_BY_HOP
    return OWN_NONE


cdef class ResponseWriter:
    """Builds response heads into `out` and decides each response's framing."""

    def __cinit__(self, OutputBuffer out, bytes server_line):
        self.out = out
        self.server_line = server_line
        self.valid_content_type = None
        self.framing = FRAME_NONE
        self.length = -1
        self.close = False
        self.send_body = False
        self.tick()

    cdef void tick(self) noexcept:
        """The Date line changes once a second: rebuilt on each heartbeat, not per response."""
        try:
            self.date_line = ("date: " + email.utils.formatdate(usegmt=True) + "\r\n").encode()
            self.common_lines = self.date_line + (self.server_line or b"")
        except BaseException:
            pass  # keeps the previous line: a stale Date is better than no response

    cdef int write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                        headers, content_type, long long body_length) except -1:
        """Append the head of a response whose body is `body_length` bytes long (-1: a
        stream of unknown length), and decide its framing. Raises InvalidResponseError, with
        nothing appended, for a response that cannot be sent unambiguously."""
        cdef OutputBuffer out = self.out
        cdef Py_ssize_t mark = out.length
        try:
            self._write_head(status, head_request, http10, keep_alive, headers, content_type,
                             body_length)
        except BaseException:
            out.length = mark
            raise
        return 0

    cdef int _write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                         headers, content_type, long long body_length) except -1:
        cdef OutputBuffer out = self.out
        cdef bytes name, value
        cdef const unsigned char* p
        cdef const unsigned char* v
        cdef Py_ssize_t n, vn
        cdef long long declared = -1, given
        cdef bint app_chunked = False, app_close = False, own_type = False
        cdef bint own_date = False, own_server = False
        cdef int owned
        cdef bint bodiless = status < 200 or status == 204 or status == 304
        if status < 200:
            # A handler's answer is final; 1xx are interim (RFC 9110 §15.2): a client would
            # go on waiting for the real response.
            raise InvalidResponseError(f"status {status} is not a final response")
        out.append_bytes(_status_line(status))
        if headers is not None:  # not truth: Headers' __bool__ would be a Python call
            for item_name, item_value in _header_items(headers):
                name = _field_bytes(item_name, "name")
                value = _field_bytes(item_value, "value")
                p = <const unsigned char*>PyBytes_AS_STRING(name)
                n = PyBytes_GET_SIZE(name)
                v = <const unsigned char*>PyBytes_AS_STRING(value)
                vn = PyBytes_GET_SIZE(value)
                if not _is_token(p, n):
                    raise InvalidResponseError(f"response header name {name!r} is not a token "
                                               f"(RFC 9110 §5.6.2)")
                if not _is_field_value(v, vn):
                    raise InvalidResponseError(
                        f"response header {name.decode('latin-1')} has an invalid value "
                        f"{value!r} (control characters or surrounding whitespace, RFC 9110 "
                        f"§5.5)")
                owned = _owned(p, n)
                if owned == OWN_NONE:
                    pass
                elif owned == OWN_CONTENT_LENGTH:
                    given = _parse_length(v, vn)
                    if given < 0:
                        raise InvalidResponseError(f"invalid Content-Length {value!r}")
                    if declared >= 0 and given != declared:
                        raise InvalidResponseError("two different Content-Length values")
                    declared = given
                    continue
                elif owned == OWN_TRANSFER_ENCODING:
                    if vn != 7 or not _name_is(v, vn, b"chunked"):
                        raise InvalidResponseError(
                            f"Transfer-Encoding {value!r}: the server frames the body itself "
                            f"and applies no coding but chunked")
                    app_chunked = True
                    continue
                elif owned == OWN_CONNECTION:
                    if _has_token(v, vn, b"close", 5):
                        app_close = True
                    continue
                elif owned == OWN_HOP_BY_HOP:
                    continue
                elif owned == OWN_CONTENT_TYPE:
                    own_type = True
                elif owned == OWN_DATE:
                    own_date = True
                elif owned == OWN_SERVER:
                    own_server = True
                out.append(<const char*>p, n)
                out.append(b": ", 2)
                out.append(<const char*>v, vn)
                out.append(b"\r\n", 2)
        if content_type is not None and not own_type:
            if content_type is not self.valid_content_type:
                value = _field_bytes(content_type, "value")
                if not _is_field_value(<const unsigned char*>PyBytes_AS_STRING(value),
                                       PyBytes_GET_SIZE(value)):
                    raise InvalidResponseError(f"invalid content type {value!r}")
                if type(content_type) is bytes:
                    self.valid_content_type = content_type  # most are constants: check once
                content_type = value
            out.append(b"content-type: ", 14)
            out.append_bytes(<bytes>content_type)
            out.append(b"\r\n", 2)
        if not (own_date or own_server):
            out.append_bytes(self.common_lines)
        elif not own_date:
            out.append_bytes(self.date_line)
        elif not own_server and self.server_line is not None:
            out.append_bytes(self.server_line)
        if app_chunked and declared >= 0:
            raise InvalidResponseError("both Content-Length and Transfer-Encoding: a response "
                                       "has one framing (RFC 9112 §6.3)")
        self.length = -1
        if bodiless:
            # 204 carries no framing fields (RFC 9110 §8.6); a 304's Content-Length, if the
            # app gives one, describes the representation it stands for, and is kept.
            self.framing = FRAME_NONE
            if status == 304 and declared >= 0:
                out.append_content_length(declared)
        elif body_length >= 0:
            if declared >= 0 and declared != body_length and not (head_request
                                                                  and body_length == 0):
                raise InvalidResponseError(f"Content-Length {declared} contradicts a body of "
                                           f"{body_length} bytes")
            # Known: framed by its length, whether or not the app asked for chunks.
            self.framing = FRAME_LENGTH
            self.length = declared if declared >= 0 else body_length
            out.append_content_length(self.length)
        elif declared >= 0:
            self.framing = FRAME_LENGTH
            self.length = declared
            out.append_content_length(declared)
        elif http10:
            # An HTTP/1.0 client cannot take chunks: the body ends with the connection.
            self.framing = FRAME_CLOSE
        else:
            self.framing = FRAME_CHUNKED
            out.append(b"transfer-encoding: chunked\r\n", 28)
        self.close = not keep_alive or app_close or self.framing == FRAME_CLOSE
        if self.close:
            out.append(b"connection: close\r\n", 19)
        elif http10:
            out.append(b"connection: keep-alive\r\n", 24)
        out.append(b"\r\n", 2)
        self.send_body = not (head_request or bodiless)
        return 0

    def format_head(self, int status, *, method="GET", http_version="1.1",
                    bint keep_alive=True, headers=None, content_type=None,
                    long long body_length=0):
        """The head write_head builds, as bytes, with its decision (for tests): (head,
        framing name, length, close, send_body)."""
        cdef Py_ssize_t mark = self.out.length
        self.write_head(status, method == "HEAD", http_version == "1.0", keep_alive, headers,
                        content_type, body_length)
        head = PyBytes_FromStringAndSize(self.out.data + mark, self.out.length - mark)
        self.out.length = mark
        framing = ("none", "length", "chunked", "close")[self.framing]
        return head, framing, self.length, self.close, self.send_body


def new_response_writer(server_header="kestrel"):
    """A writer with a buffer of its own, for tests of the writer alone."""
    return ResponseWriter(OutputBuffer(),
                          b"server: " + server_header.encode("latin-1") + b"\r\n"
                          if server_header else None)
