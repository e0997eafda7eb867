# The HTTP/1.1 response parser: the status-line front end of the message machinery
# (message.pxi), for a client such as kestrel-bench's load generator.
#
# Theory of operation
# -------------------
# HttpResponseParser derives from HttpMessageParser (see message.pxi's header for the machine,
# the line buffer, the fields buffer and the limits) and adds what is particular to
# responses: the status line (RFC 9112 §4) and its early checks, which response has a body
# and how it ends (RFC 9112 §6.3 from the client's side), 1xx responses, and the
# ResponseHead it reports.
#
# A response's framing depends on the request it answers: a response to HEAD has no body
# whatever its fields say. Responses arrive in the order the requests were sent (RFC 9112
# §9.3.2), so the client registers each request as it sends it, with expect(head_request),
# and the parser keeps them in a FIFO of "was HEAD" flags (a ring of bytes that doubles when
# full: no allocation per request once it has grown to the pipeline's depth). A final
# response (2xx-9xx, and 101) takes the oldest entry when its head is complete; a 1xx
# other than 101 takes none, since the final response to the same request follows it.
# `outstanding` is the number of entries left.
#
# Framing of a response body, in the order RFC 9112 §6.3 gives it:
# - a response to HEAD, a 1xx, 204 or 304 has none (point 1), whatever its fields say;
# - Transfer-Encoding whose final coding is chunked: chunked (point 4); other codings are not
#   decoded, so the body bytes still carry them (the fields say which);
# - Transfer-Encoding whose final coding is not chunked: the body runs until the server
#   closes the connection (point 4);
# - Content-Length: that many bytes (point 6);
# - neither: until the server closes (point 8).
# A body that runs until the close is state S_BODY_UNTIL_EOF of the machinery; execute_eof()
# (feed_eof() and next_event() in Python) ends it as a complete message. For the other
# framings, EOF before the end is INCOMPLETE_MESSAGE.
#
# Strictness is the request parser's wherever the rule is the same: CRLF only, the same
# field, Content-Length, chunk and limit checks. Transfer-Encoding with Content-Length, on
# HTTP/1.0, malformed, or with chunked twice is an error (RFC 9112 §6.1, §6.3 point 3: "ought
# to be handled as an error"), also in a response that has no body. What differs is written
# down where it is decided: a missing SP + reason phrase is accepted, empty lines before a
# status line are not (below).
#
# Framing only (heads=False, what kestrel-bench's load generator uses): a client that only
# counts responses needs their framing, not their heads. Every field is still checked, as
# strictly as above, but nothing is kept of it: no ResponseHead, no reason phrase, no packed
# fields; `status`, `keep_alive` and the body's framing are left in the parser, and
# next_event() makes a head of them (empty reason and fields) for a Python caller. Where a
# head begins, execute_response() first tries _whole_head(): if the whole head is in the
# input, it is read in one pass, each line scanned once, with no line buffer, no vtable call
# per line and only Content-Length, Transfer-Encoding, Connection and Upgrade looked at. That
# pass takes only what is plainly valid: a final status line, field lines of token ":" OWS
# field-value CRLF within the count and size limits; anything else (a 1xx, a head cut by
# the end of the input, any byte the grammar does not allow there, a framing field the
# machinery would refuse) makes it undo what it set and leave the head to the machinery,
# which reads it from its first byte and refuses it exactly as with heads=True (the same
# reason at every cut point: tests/test_response_parser.py). At 770a747 the load generator
# spent 4,190 instructions per nginx response in the parser; framing only spends about
# 1,700 (callgrind, perf/RESULTS.md).
#
# Invariants
# - The early checks refuse the first byte of a status line when no request is
#   outstanding, so _end_of_head() always finds an entry to take.
# - awaiting_final is True from a 1xx head until the final response's head: an EOF in
#   between is INCOMPLETE_MESSAGE, not a clean close.
# - After 101 Switching Protocols, and after a response that ends the connection
#   (Connection: close, HTTP/1.0 without keep-alive, a body that runs until EOF), the parser
#   pauses: what follows is not HTTP/1.1 responses.

# The status line's first 13 bytes, "HTTP/" DIGIT "." DIGIT SP 3DIGIT, then SP before the
# reason phrase (RFC 9112 §4, §2.3).
cdef const char* HTTP_NAME = b"HTTP/"
cdef enum:
    STATUS_LINE_PREFIX = 13

# What each of the status line's errors means, for its early checks' errors too (whose
# detail says only where they fired).
cdef dict STATUS_LINE_DETAIL = {
    R_INVALID_STATUS_LINE: 'not an HTTP/1.x status line ("HTTP/1.x" SP 3DIGIT [SP reason])',
    R_INVALID_HTTP_VERSION: "invalid HTTP version in the status line",
    R_INVALID_STATUS_CODE: "status code is not 3 digits from 100 to 999",
    R_STATUS_LINE_TOO_LONG: "status line longer than max_request_line_size",
    R_UNEXPECTED_RESPONSE: "a response with no request outstanding (expect() registers each)",
}

# Shared reason phrases, so the usual response allocates none.
cdef bytes REASON_EMPTY = b""
cdef bytes REASON_OK = b"OK"


cdef inline int _status_line_error(const unsigned char* p, Py_ssize_t n,
                                   Py_ssize_t* at) noexcept:
    """The first byte of p[0:min(n, 13)] that "HTTP/" DIGIT "." DIGIT SP 3DIGIT SP (a status
    code from 100 to 999) cannot have there: why, with at[0] set to its index; or R_NONE."""
    cdef Py_ssize_t i, end = n if n < STATUS_LINE_PREFIX else STATUS_LINE_PREFIX
    cdef unsigned char c
    cdef bint digit
    for i in range(end):
        c = p[i]
        digit = 48 <= c <= 57
        at[0] = i
        if i < 5:
            if c != <unsigned char>HTTP_NAME[i]:
                return R_INVALID_STATUS_LINE
        elif i == 6:
            if c != b'.':
                return R_INVALID_HTTP_VERSION
        elif i == 5 or i == 7:
            if not digit:
                return R_INVALID_HTTP_VERSION
        elif i == 8:
            if c != b' ':
                # "HTTP/1.10": the version is longer than DIGIT "." DIGIT.
                return R_INVALID_HTTP_VERSION if digit else R_INVALID_STATUS_LINE
        elif i == 9:
            # RFC 9110 §15: the first digit is the class, 1 to 5 defined; 100..999 is what a
            # recipient can process (600..999 as 5xx), so 000..099 are refused.
            if not (49 <= c <= 57):
                return R_INVALID_STATUS_CODE
        elif i < 12:
            if not digit:
                return R_INVALID_STATUS_CODE
        elif c != b' ':
            # A fourth digit makes a bad status code; anything else, a bad status line.
            return R_INVALID_STATUS_CODE if digit else R_INVALID_STATUS_LINE
    return R_NONE


@cython.freelist(64)
cdef class ResponseHead:
    """The status line and header section of one response (see docs/parser.md)."""

    def __cinit__(self):
        if KESTREL_DEBUG:
            _debug_count("response_head_alloc", 1)

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("response_head_free", 1)

    @property
    def headers(self):
        """[(lowercased name, value), ...] in the order received; built on first use."""
        if self._headers is None:
            self._headers = _unpack_fields(self._fields)
        return self._headers

    def __repr__(self):
        return (f"ResponseHead(status={self.status}, reason={self.reason!r}, "
                f"http_version={self.http_version!r}, headers={self.headers!r}, "
                f"keep_alive={self.keep_alive}, content_length={self.content_length}, "
                f"chunked={self.chunked})")


cdef class HttpResponseParser(HttpMessageParser):
    """Sans-IO HTTP/1.1 response parser for a client (see docs/parser.md)."""

    # As in HttpParser, the machinery's methods are called as HttpMessageParser.method(self,
    # ...): a direct C call.

    def __cinit__(self):
        self.expected = NULL
        self.expected_cap = 0
        self.expected_first = 0
        self.outstanding = 0
        self.awaiting_final = False

    def __init__(self, *, Py_ssize_t max_request_line_size=DEFAULT_MAX_REQUEST_LINE_SIZE,
                 Py_ssize_t max_request_headers_size=DEFAULT_MAX_REQUEST_HEADERS_SIZE,
                 Py_ssize_t max_request_headers=DEFAULT_MAX_REQUEST_HEADERS,
                 long long max_request_body_size=-1,
                 Py_ssize_t max_chunk_extensions_size=DEFAULT_MAX_CHUNK_EXTENSIONS_SIZE,
                 bint heads=True):
        # The machinery's limits under its names: here the status line, the response's
        # header section, its body and its chunk extensions. A client counts body bytes
        # without keeping them, so the body is unlimited unless asked (curl's
        # --max-filesize is off by default too).
        HttpMessageParser.__init__(
            self, max_request_line_size=max_request_line_size,
            max_request_headers_size=max_request_headers_size,
            max_request_headers=max_request_headers,
            max_request_body_size=max_request_body_size,
            max_chunk_extensions_size=max_chunk_extensions_size)
        self.outstanding = 0
        self.expected_first = 0
        self.awaiting_final = False
        # heads=False: framing only (see "Framing only" above).
        self.heads = heads

    def __dealloc__(self):
        if self.expected != NULL:
            PyMem_Free(self.expected)
            if KESTREL_DEBUG:
                _debug_count("expected_ring_free", 1)

    cpdef void expect(self, bint head_request=False) except *:
        """Register a request sent on this connection; call it once per request, in the
        order they are sent. head_request: it is a HEAD request, so its response has no
        body whatever its header fields say."""
        cdef Py_ssize_t capacity
        cdef unsigned char* grown
        if self.outstanding == self.expected_cap:
            capacity = 2 * self.expected_cap if self.expected_cap else 16
            grown = <unsigned char*>PyMem_Realloc(self.expected, capacity)
            if grown == NULL:
                raise MemoryError()
            if KESTREL_DEBUG and self.expected == NULL:
                _debug_count("expected_ring_alloc", 1)
            # The ring was full: its entries ran from expected_first to the old end, then
            # from 0. Those from 0 move after the old end, so they follow on.
            memcpy(grown + self.expected_cap, grown, self.expected_first)
            self.expected = grown
            self.expected_cap = capacity
        self.expected[(self.expected_first + self.outstanding)
                      & (self.expected_cap - 1)] = head_request
        self.outstanding += 1

    cdef int _start_line_early(self, const unsigned char* p, Py_ssize_t n,
                               Py_ssize_t* first) noexcept:
        cdef Py_ssize_t at
        cdef int reason
        if self.outstanding == 0:
            # A response answers a request; bytes when none was sent are not one (a server's
            # unsolicited 408 before it closes an idle connection lands here too).
            first[0] = 1
            return R_UNEXPECTED_RESPONSE
        reason = _status_line_error(p, n, &at)
        # A CR there is the end of the line (judged whole) or a bare CR (which fires at the
        # byte after it), except as the first byte: an empty line is not skipped before a
        # status line. RFC 9112 §2.2 asks that robustness of a server reading a request line;
        # h11 refuses it in a response too.
        if reason != R_NONE and (p[at] != b'\r' or at == 0):
            first[0] = at + 1
            return reason
        at = _passes_limit_at(p, n, HttpMessageParser._line_budget(self, S_START_LINE))
        if at <= n:
            first[0] = at
            return R_STATUS_LINE_TOO_LONG
        return R_NONE

    cdef int _start_line(self, const char* line, Py_ssize_t length) except -1:
        """The status line (RFC 9112 §4), CRLF removed."""
        cdef const unsigned char* p = <const unsigned char*>line
        cdef Py_ssize_t i
        cdef int reason
        cdef ResponseHead head
        reason = _status_line_error(p, length, &i)
        if reason == R_NONE and length < STATUS_LINE_PREFIX - 1:
            # The line ends before its status code does.
            reason = (R_INVALID_HTTP_VERSION if 5 <= length < 8 else
                      R_INVALID_STATUS_CODE if length > 8 else R_INVALID_STATUS_LINE)
        if reason != R_NONE:
            return self._fail(reason, STATUS_LINE_DETAIL[reason])
        if p[5] != b'1':
            return self._fail(R_UNSUPPORTED_HTTP_VERSION, "only HTTP/1.x is parsed")
        # reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ), the bytes of a field value.
        i = _skip_plain_value_bytes(p, STATUS_LINE_PREFIX, length)
        while i < length and VALUE_CHAR[p[i]]:
            i += 1
        if i < length:
            return self._fail(R_INVALID_STATUS_LINE, "invalid byte in reason phrase")
        # A higher 1.x minor is read as 1.1 (RFC 9110 §2.5).
        self.http_minor = 0 if p[7] == b'0' else 1
        self.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
        self._trailers = None
        self.state = S_HEADERS
        if not self.heads:
            return EV_NEED_DATA
        head = ResponseHead.__new__(ResponseHead)
        head.status = self.status
        # "HTTP/1.1 200" without the SP before an empty reason phrase is accepted, as h11,
        # llhttp and curl do: the grammar requires the SP, but servers omit it, and nothing
        # can be misread for its absence.
        if length <= STATUS_LINE_PREFIX:
            head.reason = REASON_EMPTY
        elif length == STATUS_LINE_PREFIX + 2 and p[13] == b'O' and p[14] == b'K':
            head.reason = REASON_OK
        else:
            head.reason = PyBytes_FromStringAndSize(line + STATUS_LINE_PREFIX,
                                                    length - STATUS_LINE_PREFIX)
        head.http_version = V_10 if self.http_minor == 0 else V_11
        self.head = head
        return EV_NEED_DATA

    cdef int _end_of_head(self) except -1:
        """Judge the framing (RFC 9112 §6.3, see the header), finish the head, report it."""
        cdef ResponseHead head
        cdef int status = self.status
        cdef bint informational = status < 200 and status != 101
        cdef bint head_request = False, chunked = False, until_eof = False, keep_alive
        if self.has_transfer_encoding:
            if HttpMessageParser._check_transfer_encoding(self) == EV_ERROR:
                return EV_ERROR
            if self.te_chunked_twice:
                # RFC 9112 §6.1: a sender must not apply chunked more than once.
                return self._fail(R_INVALID_TRANSFER_ENCODING, "chunked given more than once")
            chunked = self.te_chunked_seen and not self.te_after_chunked
            until_eof = not chunked
        elif self.content_length < 0:
            until_eof = True
        if not informational:
            head_request = <bint>self.expected[self.expected_first]
            self.expected_first = (self.expected_first + 1) & (self.expected_cap - 1)
            self.outstanding -= 1
        self.awaiting_final = informational
        self.no_content = head_request or status < 200 or status == 204 or status == 304
        # Persistence, RFC 9112 §9.3: as for a request, and never after a body that only the
        # close can end, or after 101 (the connection is no longer HTTP/1.1's).
        if self.http_minor == 1:
            keep_alive = not self.conn_close
        else:
            keep_alive = self.conn_keep_alive and not self.conn_close
        if self.no_content:
            chunked = until_eof = False
        elif until_eof:
            keep_alive = False
        if status == 101:
            self.upgrade = True
            keep_alive = False
        self.keep_alive = keep_alive
        self.body_chunked = chunked
        self.body_length = (0 if self.no_content else
                            -1 if chunked or until_eof else self.content_length)
        if self.heads:
            head = self.head
            head._fields = HttpMessageParser._take_fields(self)
            head.keep_alive = keep_alive
            head.chunked = chunked
            head.content_length = self.body_length
        else:
            # Fields the machinery packed (a head split between inputs: see "Framing only").
            HttpMessageParser._release_fields(self)
        if informational:
            # The final response to the same request follows (RFC 9110 §15.2).
            self._begin_message()
            self.state = S_START_LINE
        else:
            self.state = S_BODY_UNTIL_EOF if until_eof else S_HEADERS_DONE
        return EV_HEADERS

    cdef object _head_event(self):
        cdef ResponseHead head
        if not self.heads:
            # Framing only: the head is made here, for a Python caller, from what was kept.
            head = ResponseHead.__new__(ResponseHead)
            head.status = self.status
            head.reason = REASON_EMPTY
            head.http_version = V_10 if self.http_minor == 0 else V_11
            head.keep_alive = self.keep_alive
            head.chunked = self.body_chunked
            head.content_length = self.body_length
            self.head = head
        return self.head

    cdef int _execute_next(self, const char* data, Py_ssize_t length) except -1:
        return self.execute_response(data, length)

    # ---- Framing only: a whole head in one pass.

    @cython.final
    cdef int execute_response(self, const char* data, Py_ssize_t length) except -1:
        """execute(), first trying _whole_head() where a head begins (heads=False)."""
        cdef int event
        if (not self.heads and self.state == S_START_LINE and self.line_len == 0
                and self.outstanding):
            event = self._whole_head(<const unsigned char*>data, length)
            if event != EV_NEED_DATA:
                return event
        return HttpMessageParser.execute(self, data, length)

    @cython.final
    cdef int _whole_head(self, const unsigned char* p, Py_ssize_t length) except -1:
        """Read a final response's head that is whole in p[0:length]: EV_HEADERS with
        `consumed` set, as execute() would report it; or EV_NEED_DATA, with nothing changed,
        when the head is not whole there or anything in it is not plainly valid. The
        machinery then reads it from its first byte and finds what is wrong, if anything."""
        cdef Py_ssize_t i, start, name_length, value_start, value_end
        cdef Py_ssize_t field_bytes = 0, field_count = 0
        cdef int event
        # The status line: "HTTP/1." DIGIT SP, a final status code (200-999: a 1xx takes the
        # machinery's path), then SP reason-phrase or nothing, and CRLF.
        if (length <= STATUS_LINE_PREFIX or memcmp(p, HTTP_NAME, 5) != 0 or p[5] != b'1'
                or p[6] != b'.' or not (48 <= p[7] <= 57) or p[8] != b' '
                or not (50 <= p[9] <= 57) or not (48 <= p[10] <= 57)
                or not (48 <= p[11] <= 57)):
            return EV_NEED_DATA
        if p[12] == b' ':
            i = _skip_plain_value_bytes(p, STATUS_LINE_PREFIX, length)
            while i < length and VALUE_CHAR[p[i]]:
                i += 1
        elif p[12] == b'\r':
            i = 12
        else:
            return EV_NEED_DATA
        if (i + 1 >= length or p[i] != b'\r' or p[i + 1] != b'\n'
                or i > self.max_request_line_size):
            return EV_NEED_DATA
        self.http_minor = 0 if p[7] == b'0' else 1
        self.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
        i += 2
        # Field lines, each checked as _field_line() and the early checks would: a token,
        # ":", OWS, field-value bytes, CRLF, within the count and the section's size.
        while True:
            if i + 1 >= length:
                return self._not_whole_head()
            if p[i] == b'\r':
                if p[i + 1] != b'\n':
                    return self._not_whole_head()
                i += 2
                break
            if field_count >= self.max_request_headers:
                return self._not_whole_head()
            start = i
            while i < length and TOKEN_CHAR[p[i]]:
                i += 1
            name_length = i - start
            if name_length == 0 or i == length or p[i] != b':':
                return self._not_whole_head()
            i += 1
            while i < length and _is_ows(p[i]):
                i += 1
            value_start = i
            i = _skip_plain_value_bytes(p, i, length)
            while i < length and VALUE_CHAR[p[i]]:
                i += 1
            if i + 1 >= length or p[i] != b'\r' or p[i + 1] != b'\n':
                return self._not_whole_head()
            field_bytes += i - start + 2
            field_count += 1
            if field_bytes > self.max_request_headers_size:
                return self._not_whole_head()
            value_end = i
            while value_end > value_start and _is_ows(p[value_end - 1]):
                value_end -= 1
            i += 2
            # Only the fields framing reads are looked at; the others are not kept.
            if name_length == 14 and _equals_lower(p + start, 14, b"content-length", 14):
                if HttpMessageParser._content_length(
                        self, p + value_start, value_end - value_start) == EV_ERROR:
                    return self._not_whole_head()
            elif name_length == 17 and _equals_lower(p + start, 17, b"transfer-encoding", 17):
                HttpMessageParser._transfer_encoding(self, p + value_start,
                                                     value_end - value_start)
            elif name_length == 10 and _equals_lower(p + start, 10, b"connection", 10):
                HttpMessageParser._connection(self, p + value_start, value_end - value_start)
            elif name_length == 7 and _equals_lower(p + start, 7, b"upgrade", 7):
                self.has_upgrade_header = value_end > value_start
        self.field_bytes = field_bytes
        self.field_count = field_count
        if self._trailers is not None:
            self._trailers = None
        self.state = S_HEADERS
        event = self._end_of_head()
        if event == EV_ERROR:
            return self._not_whole_head()
        self.consumed = i
        return event

    @cython.final
    cdef int _not_whole_head(self) noexcept:
        """Undo what _whole_head() set, so the machinery reads the head afresh."""
        self._begin_message()
        self.state = S_START_LINE
        self.error_reason = R_NONE
        self.error_detail = None
        return EV_NEED_DATA

    cdef object _parse_error(self):
        cdef str detail = self.error_detail or ""
        if detail is DETAIL_EARLY_PARTIAL or detail is DETAIL_EARLY_WHOLE:
            detail = STATUS_LINE_DETAIL.get(self.error_reason, detail)
        # 502: what a gateway answers an invalid response with (RFC 9110 §15.6.3).
        return HttpParseError(self.error_reason, detail, 502)

    cdef int execute_eof(self) except -1:
        if self.awaiting_final and self.state == S_START_LINE and self.line_len == 0:
            return self._fail(R_INCOMPLETE_MESSAGE,
                              "connection closed after a 1xx response, before the final one")
        return HttpMessageParser.execute_eof(self)
