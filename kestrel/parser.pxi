# The HTTP/1.1 request parser: the request front end of the message machinery (message.pxi).
#
# Theory of operation
# -------------------
# HttpParser derives from HttpMessageParser (see message.pxi's header for the machine, the
# line buffer, the fields buffer, framing and limits) and adds what is particular to
# requests: the request line (method, request-target forms, version; RFC 9112 §3), its early
# checks (the first byte must be able to begin a method, and 414 versus 400 for a line over
# the limit), Host (exactly one on HTTP/1.1, RFC 9112 §3.2) and Expect, CONNECT (no content,
# and the connection pauses for the tunnel), the RequestHead it reports, and resume() after
# a declined upgrade.
#
# The request line's objects (method, target) are made when its line is complete; methods
# and versions are shared objects, so a common request allocates only its target bytes, its
# packed fields' bytes and its RequestHead.

# Methods interned so a request does not allocate a str for them.
cdef str M_GET = "GET", M_POST = "POST", M_PUT = "PUT", M_HEAD = "HEAD"
cdef str M_DELETE = "DELETE", M_PATCH = "PATCH", M_OPTIONS = "OPTIONS"
cdef str M_CONNECT = "CONNECT", M_TRACE = "TRACE"
cdef str V_10 = "1.0", V_11 = "1.1"

cdef inline str _method(const char* p, Py_ssize_t n):
    if n == 3:
        if memcmp(p, b"GET", 3) == 0:
            return M_GET
        if memcmp(p, b"PUT", 3) == 0:
            return M_PUT
    elif n == 4:
        if memcmp(p, b"POST", 4) == 0:
            return M_POST
        if memcmp(p, b"HEAD", 4) == 0:
            return M_HEAD
    elif n == 5:
        if memcmp(p, b"PATCH", 5) == 0:
            return M_PATCH
        if memcmp(p, b"TRACE", 5) == 0:
            return M_TRACE
    elif n == 6:
        if memcmp(p, b"DELETE", 6) == 0:
            return M_DELETE
    elif n == 7:
        if memcmp(p, b"OPTIONS", 7) == 0:
            return M_OPTIONS
        if memcmp(p, b"CONNECT", 7) == 0:
            return M_CONNECT
    return p[:n].decode("ascii")


@cython.freelist(64)
cdef class RequestHead:
    """The request line and header section of one request (see docs/parser.md)."""

    def __cinit__(self):
        if KESTREL_DEBUG:
            _debug_count("request_head_alloc", 1)

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("request_head_free", 1)

    @property
    def headers(self):
        """[(lowercased name, value), ...] in the order received; built on first use."""
        if self._headers is None:
            self._headers = _unpack_fields(self._fields)
        return self._headers

    def __repr__(self):
        return (f"RequestHead(method={self.method!r}, target={self.target!r}, "
                f"http_version={self.http_version!r}, headers={self.headers!r}, "
                f"keep_alive={self.keep_alive}, content_length={self.content_length}, "
                f"chunked={self.chunked}, upgrade={self.upgrade}, "
                f"expect_continue={self.expect_continue})")



cdef class HttpParser(HttpMessageParser):
    """Sans-IO HTTP/1.1 request parser (see docs/parser.md)."""

    # The machinery's methods are called here as HttpMessageParser.method(self, ...): a direct
    # C call. Through `self` Cython would go through the vtable even for a final method.

    cdef void _begin_message(self) noexcept:
        HttpMessageParser._begin_message(self)
        self.host_count = 0
        self.expect_continue = False
        self.is_connect = False

    cdef int _start_line_early(self, const unsigned char* p, Py_ssize_t n,
                               Py_ssize_t* first) noexcept:
        cdef Py_ssize_t budget, at
        if not TOKEN_CHAR[p[0]] and p[0] != b'\r':
            # A request line starts with its method, a token (RFC 9110 §9.1); only the CRLF
            # of an empty line may come before it (RFC 9112 §2.2). Anything else (a TLS
            # ClientHello's 0x16, binary noise, whitespace) is not HTTP/1.1.
            first[0] = 1
            return R_INVALID_REQUEST_LINE
        budget = HttpMessageParser._line_budget(self, S_START_LINE)
        at = _passes_limit_at(p, n, budget)
        if at <= n:
            first[0] = at
            # 414 is about the target; a line whose method alone passes the limit is just a
            # bad request line.
            return (R_REQUEST_LINE_TOO_LONG if memchr(p, b' ', budget) != NULL
                    else R_INVALID_REQUEST_LINE)
        return R_NONE

    cdef int _start_line(self, const char* line, Py_ssize_t length) except -1:
        """The request line (RFC 9112 §3), CRLF removed."""
        cdef const unsigned char* p = <const unsigned char*>line
        cdef Py_ssize_t i = 0, method_end, target_start, target_end
        cdef unsigned char c
        cdef str method
        cdef RequestHead head
        while i < length and TOKEN_CHAR[p[i]]:
            i += 1
        method_end = i
        if i == 0 or i == length or p[i] != b' ':
            return self._fail(R_INVALID_REQUEST_LINE, "invalid method")
        target_start = i + 1
        # The version is what follows the last SP, so a stray space is reported where it is:
        # doubled separators as a bad request line, a space inside the target as a bad target.
        target_end = length
        while target_end > target_start and p[target_end - 1] != b' ':
            target_end -= 1
        if target_end == target_start:
            # "GET /" with no version is HTTP/0.9, which is not served.
            return self._fail(R_INVALID_REQUEST_LINE, "missing HTTP version")
        i = target_end
        target_end -= 1
        # HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3)
        if (length - i != 8 or memcmp(p + i, b"HTTP/", 5) != 0
                or not (48 <= p[i + 5] <= 57) or p[i + 6] != b'.'
                or not (48 <= p[i + 7] <= 57)):
            return self._fail(R_INVALID_HTTP_VERSION, "invalid HTTP version")
        if (target_end == target_start or p[target_start] == b' '
                or p[target_end - 1] == b' '):
            return self._fail(R_INVALID_REQUEST_LINE, "request line parts not separated by "
                                                      "exactly one SP")
        for i in range(target_start, target_end):
            if not TARGET_CHAR[p[i]]:
                return self._fail(R_INVALID_REQUEST_TARGET,
                                  "fragment (#) in request-target" if p[i] == b'#'
                                  else "invalid byte in request-target")
        i = length - 8
        if p[i + 5] != b'1':
            return self._fail(R_UNSUPPORTED_HTTP_VERSION, "only HTTP/1.x is served")
        # A higher 1.x minor is served as 1.1 (RFC 9110 §2.5).
        self.http_minor = 0 if p[i + 7] == b'0' else 1

        method = _method(line, method_end)
        # request-target forms, RFC 9112 §3.2
        c = p[target_start]
        if method is M_CONNECT:
            if not _valid_authority(p + target_start, target_end - target_start):
                return self._fail(R_INVALID_REQUEST_TARGET, "CONNECT needs authority-form")
            self.is_connect = True
            self.no_content = True
        elif c == b'*' and target_end - target_start == 1:
            if method is not M_OPTIONS:
                return self._fail(R_INVALID_REQUEST_TARGET, "asterisk-form is only for OPTIONS")
        elif c != b'/' and not _absolute_form(p + target_start, target_end - target_start):
            return self._fail(R_INVALID_REQUEST_TARGET, "request-target must be origin-form "
                                                        "or absolute-form")
        self.start_line_bytes += length + 2
        head = RequestHead.__new__(RequestHead)
        head.method = method
        head.target = PyBytes_FromStringAndSize(line + target_start, target_end - target_start)
        head.http_version = V_10 if self.http_minor == 0 else V_11
        self.head = head
        self._trailers = None
        self.state = S_HEADERS
        return EV_NEED_DATA

    cdef int _front_field(self, int known, const unsigned char* value,
                          Py_ssize_t length) except -1:
        cdef Py_ssize_t i
        if known == H_HOST:
            self.host_count += 1
            if self.host_count > 1:
                return self._fail(R_MULTIPLE_HOST, "more than one Host")
            if length == 0:
                return self._fail(R_INVALID_HOST, "empty Host")
            for i in range(length):
                if not HOST_CHAR[value[i]]:
                    return self._fail(R_INVALID_HOST, "invalid Host")
        elif known == H_EXPECT:
            if _equals_lower(value, length, b"100-continue", 12):
                self.expect_continue = True
        return EV_NEED_DATA

    cdef int _end_of_head(self) except -1:
        cdef RequestHead head = self.head
        if self.host_count == 0 and self.http_minor == 1:
            return self._fail(R_MISSING_HOST, "HTTP/1.1 request without Host")
        if HttpMessageParser._end_of_fields(self) == EV_ERROR:
            return EV_ERROR
        if self.is_connect:
            self.upgrade = True
        head._fields = HttpMessageParser._take_fields(self)
        head.keep_alive = self.keep_alive
        # CONNECT has no content whatever its headers say (RFC 9110 §9.3.6).
        head.content_length = (-1 if self.has_transfer_encoding or self.is_connect
                               else self.content_length)
        head.chunked = self.has_transfer_encoding and not self.is_connect
        head.upgrade = self.upgrade
        head.expect_continue = self.expect_continue
        self.state = S_HEADERS_DONE
        return EV_HEADERS

    cdef object _head_event(self):
        return self.head

    def resume(self):
        """Go on parsing HTTP after an upgrade request the server did not accept."""
        if self.state != S_PAUSED or not self.keep_alive or self.is_connect:
            # After CONNECT the bytes that follow have no HTTP framing at all (RFC 9110
            # §9.3.6): a server that declines the tunnel must close, not read on.
            raise RuntimeError("resume() is only for a paused Upgrade request")
        self._begin_message()
        self.state = S_START_LINE


cdef bint _valid_authority(const unsigned char* p, Py_ssize_t n) noexcept:
    """authority-form for CONNECT: uri-host ":" port (RFC 9112 §3.2.3)."""
    cdef Py_ssize_t i, colon = -1
    for i in range(n):
        if not HOST_CHAR[p[i]]:
            return False
        if p[i] == b':':
            colon = i
    if colon <= 0 or colon == n - 1:
        return False
    for i in range(colon + 1, n):
        if not (48 <= p[i] <= 57):
            return False
    return True


cdef bint _absolute_form(const unsigned char* p, Py_ssize_t n) noexcept:
    """scheme "://" authority ..., scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).

    RFC 3986 §3.1 would also allow "scheme:path" with no authority, but an http(s) URI always
    has one (RFC 9110 §4.2), and without "//" a CONNECT-style "host:443" would read as a URI
    whose scheme is "host".
    """
    cdef Py_ssize_t i
    cdef unsigned char c
    if n < 2 or not ((65 <= p[0] <= 90) or (97 <= p[0] <= 122)):
        return False
    for i in range(1, n):
        c = p[i]
        if c == b':':
            return (i + 3 < n and p[i + 1] == b'/' and p[i + 2] == b'/'
                    and p[i + 3] != b'/' and p[i + 3] != b'?')
        if not ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57)
                or c == b'+' or c == b'-' or c == b'.'):
            return False
    return False
