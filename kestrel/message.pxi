# The HTTP/1.1 message machinery: lines, header fields, body framing, chunked bodies, limits.
#
# Theory of operation
# -------------------
# HttpMessageParser is everything an HTTP/1.1 parser does that does not depend on which side
# of the connection it is on; a front end derives from it and reads the start line. There are
# two: HttpParser (parser.pxi: requests, for the server) and HttpResponseParser
# (response_parser.pxi: responses, for a client such as kestrel-bench), as httptools'
# HttpRequestParser and HttpResponseParser share one base.
#
# The parser is sans-IO: execute(data, length) is handed whatever bytes the socket delivered
# and reports at most one event per call, setting self.consumed to the bytes it used. The
# caller passes the rest again (the server from its input pipe, Python code through
# feed()/next_event()).
#
# Everything up to the body is line-oriented. A line is processed as soon as its LF is
# present: the start line goes to the front end (_start_line), which makes its head object
# right then; each header field is validated, acted on (framing and Connection here, the
# rest through _front_field) and copied, its name lowercased, into fields_buf. At the end of
# the head (_end_of_head, the front end's) _take_fields() turns that buffer into one bytes
# object for the head, whose (name, value) pairs are built only when something reads them: a
# message whose reader never looks at its headers costs one allocation for all of them, not
# a tuple and one or two bytes objects each. The current unfinished line lives in line_buf
# and may never grow past the limit that applies to it (start line, remaining header budget,
# chunk-size line), which is how a 10 MB header is refused after 32 KiB instead of being
# buffered; fields_buf is bounded by the same header budget.
#
# Body bytes are never copied by the parser: EV_BODY points into the caller's buffer. A
# body is framed by Content-Length (S_BODY_LENGTH), by chunked coding (S_CHUNK_SIZE ...), or,
# for a response only, by the end of the connection (S_BODY_UNTIL_EOF, which the response
# front end enters from _end_of_head and execute_eof() ends); a request parser never enters
# that state.
#
# A front end overrides the cdef methods under "What a front end provides": _start_line,
# _start_line_early (its early checks, see "Errors within one line"), _front_field,
# _end_of_head, _head_event, _parse_error, _execute_next (what next_event() parses with),
# and _begin_message and execute_eof (calling these first or last). Every call between the
# machinery and the front end is a C call through the class's vtable, as every cdef method
# call here already was; none goes through Python.
#
# In `cython -a`, the only Python API on the per-message path is making the objects the caller
# is handed: the front end's head and the packed fields' bytes (plus the reference counting of
# the functions that hold them). Scanning, validation and framing are plain C; common header
# names are shared objects.
#
# Invariants
# - state == S_ERROR is final; error_reason is set.
# - line_len > 0 only in a line-oriented state (start line, headers, chunk size, trailers).
# - Framing is decided once, from the complete header section, in _end_of_head(); the
#   limit on Content-Length is checked on the following call so that the caller can apply a
#   per-route limit after seeing the head.
# - After a message that ends the connection (close, upgrade, or no_content set by the front
#   end) the parser pauses and does not look at the bytes after it: they are not HTTP.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy


# One header field in a packed section (HttpParser.fields_buf, RequestHead._fields): this
# record, then the lowercased name (none for a name in KNOWN_NAMES: `known` says which),
# then the value.
cdef struct FieldRecord:
    Py_ssize_t name_len
    Py_ssize_t value_len
    Py_ssize_t known                  # index in KNOWN_OBJECTS, or -1


cdef list _unpack_fields(bytes fields):
    """[(name, value), ...] from a packed header section."""
    cdef list headers = []
    cdef const char* data
    cdef Py_ssize_t size, position = 0
    cdef FieldRecord record
    if fields is None:
        return headers
    data = PyBytes_AS_STRING(fields)
    size = PyBytes_GET_SIZE(fields)
    while position < size:
        memcpy(&record, data + position, sizeof(FieldRecord))
        position += sizeof(FieldRecord)
        if record.known >= 0:
            name = <bytes>KNOWN_OBJECTS[record.known]
        else:
            name = PyBytes_FromStringAndSize(data + position, record.name_len)
            position += record.name_len
        value = PyBytes_FromStringAndSize(data + position, record.value_len)
        position += record.value_len
        headers.append((name, value))
    return headers

import enum


class RejectReason(enum.IntEnum):
    """Why a message was refused; REJECT_STATUS gives the status a server answers with.

    The last four are the response parser's own; it also reports the request parser's
    reasons where the meaning is the same (a bad header, framing, chunk or body limit).
    """

    INVALID_REQUEST_LINE = R_INVALID_REQUEST_LINE
    INVALID_REQUEST_TARGET = R_INVALID_REQUEST_TARGET
    INVALID_HTTP_VERSION = R_INVALID_HTTP_VERSION
    UNSUPPORTED_HTTP_VERSION = R_UNSUPPORTED_HTTP_VERSION
    REQUEST_LINE_TOO_LONG = R_REQUEST_LINE_TOO_LONG
    INVALID_LINE_ENDING = R_INVALID_LINE_ENDING
    INVALID_HEADER_NAME = R_INVALID_HEADER_NAME
    INVALID_HEADER_VALUE = R_INVALID_HEADER_VALUE
    OBSOLETE_LINE_FOLDING = R_OBSOLETE_LINE_FOLDING
    HEADERS_TOO_LARGE = R_HEADERS_TOO_LARGE
    TOO_MANY_HEADERS = R_TOO_MANY_HEADERS
    MISSING_HOST = R_MISSING_HOST
    MULTIPLE_HOST = R_MULTIPLE_HOST
    INVALID_HOST = R_INVALID_HOST
    INVALID_CONTENT_LENGTH = R_INVALID_CONTENT_LENGTH
    CONFLICTING_CONTENT_LENGTH = R_CONFLICTING_CONTENT_LENGTH
    CONTENT_LENGTH_WITH_TRANSFER_ENCODING = R_CONTENT_LENGTH_WITH_TRANSFER_ENCODING
    INVALID_TRANSFER_ENCODING = R_INVALID_TRANSFER_ENCODING
    UNSUPPORTED_TRANSFER_ENCODING = R_UNSUPPORTED_TRANSFER_ENCODING
    INVALID_CHUNK_SIZE = R_INVALID_CHUNK_SIZE
    INVALID_CHUNK_EXTENSION = R_INVALID_CHUNK_EXTENSION
    CHUNK_EXTENSIONS_TOO_LARGE = R_CHUNK_EXTENSIONS_TOO_LARGE
    MISSING_CHUNK_DATA_TERMINATOR = R_MISSING_CHUNK_DATA_TERMINATOR
    BODY_TOO_LARGE = R_BODY_TOO_LARGE
    INCOMPLETE_MESSAGE = R_INCOMPLETE_MESSAGE
    REQUEST_HEADERS_TIMEOUT = R_REQUEST_HEADERS_TIMEOUT
    REQUEST_BODY_TIMEOUT = R_REQUEST_BODY_TIMEOUT
    INVALID_STATUS_LINE = R_INVALID_STATUS_LINE
    INVALID_STATUS_CODE = R_INVALID_STATUS_CODE
    STATUS_LINE_TOO_LONG = R_STATUS_LINE_TOO_LONG
    UNEXPECTED_RESPONSE = R_UNEXPECTED_RESPONSE


cdef int REJECT_STATUS_C[R_COUNT]

REJECT_STATUS = {}
for _reason in RejectReason:
    if _reason in (RejectReason.UNSUPPORTED_HTTP_VERSION,):
        _status = 505
    elif _reason is RejectReason.REQUEST_LINE_TOO_LONG:
        _status = 414
    elif _reason in (RejectReason.HEADERS_TOO_LARGE, RejectReason.TOO_MANY_HEADERS):
        _status = 431
    elif _reason is RejectReason.UNSUPPORTED_TRANSFER_ENCODING:
        _status = 501
    elif _reason is RejectReason.BODY_TOO_LARGE:
        _status = 413
    elif _reason in (RejectReason.REQUEST_HEADERS_TIMEOUT, RejectReason.REQUEST_BODY_TIMEOUT):
        _status = 408
    elif _reason >= RejectReason.INVALID_STATUS_LINE:
        # Only a response parser finds these; a gateway answers an invalid response with 502
        # (RFC 9110 §15.6.3).
        _status = 502
    else:
        _status = 400
    REJECT_STATUS[_reason] = _status
    REJECT_STATUS_C[<int>_reason] = _status


class HttpParseError(Exception):
    """A message the parser refuses. For a request, `status` is the response to send before
    closing (REJECT_STATUS[reason]); HttpResponseParser raises it with status 502, what a
    gateway answers an invalid response with (RFC 9110 §15.6.3)."""

    def __init__(self, reason, detail="", status=None):
        self.reason = RejectReason(reason)
        self.status = REJECT_STATUS[self.reason] if status is None else status
        super().__init__(f"{self.status} {self.reason.name}: {detail}" if detail
                         else f"{self.status} {self.reason.name}")


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


NEED_DATA = _Marker("NEED_DATA")
END_OF_MESSAGE = _Marker("END_OF_MESSAGE")
PAUSED = _Marker("PAUSED")
CLOSED = _Marker("CLOSED")


# ---- Character tables and well-known names.

cdef void _init_tables():
    cdef int c
    cdef bytes tchar_punct = b"!#$%&'*+-.^_`|~"
    cdef bytes host_punct = b"-._~%!$&'()*+;=:[]"
    for c in range(256):
        is_alnum = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
        TOKEN_CHAR[c] = is_alnum or c in tchar_punct
        VALUE_CHAR[c] = c == 9 or (32 <= c <= 126) or c >= 128
        # No form of request-target has a fragment (RFC 9112 §3.2), so no "#" either.
        TARGET_CHAR[c] = 33 <= c <= 126 and c != 35
        HOST_CHAR[c] = is_alnum or c in host_punct
        QDTEXT_CHAR[c] = c in (9, 32, 33) or (35 <= c <= 91) or (93 <= c <= 126) or c >= 128
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        if 48 <= c <= 57:
            HEX_VALUE[c] = c - 48
        elif 65 <= c <= 70:
            HEX_VALUE[c] = c - 55
        elif 97 <= c <= 102:
            HEX_VALUE[c] = c - 87
        else:
            HEX_VALUE[c] = -1

_init_tables()

# Header names the parser acts on get an id; common ones get a shared lowercase bytes object
# so a browser request's names cost no allocation.
cdef enum HeaderId:
    H_OTHER = 0
    H_HOST
    H_CONTENT_LENGTH
    H_TRANSFER_ENCODING
    H_CONNECTION
    H_EXPECT
    H_UPGRADE

cdef tuple KNOWN_NAMES = (
    b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade",
    b"accept", b"accept-encoding", b"accept-language", b"accept-charset", b"authorization",
    b"cache-control", b"content-type", b"content-encoding", b"cookie", b"date", b"dnt",
    b"forwarded", b"if-match", b"if-modified-since", b"if-none-match", b"if-range",
    b"if-unmodified-since", b"keep-alive", b"origin", b"pragma", b"priority", b"range",
    b"referer", b"te", b"trailer", b"user-agent", b"via", b"x-forwarded-for",
    b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip", b"x-request-id",
    b"x-requested-with", b"upgrade-insecure-requests", b"sec-ch-ua", b"sec-ch-ua-mobile",
    b"sec-ch-ua-platform", b"sec-fetch-dest", b"sec-fetch-mode", b"sec-fetch-site",
    b"sec-fetch-user", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"content-disposition",
    b"accept-ranges", b"access-control-request-method", b"access-control-request-headers",
)
cdef int KNOWN_IDS[7]
# Names bucketed by length: KNOWN_BY_LENGTH_START[n] .. KNOWN_BY_LENGTH_END[n] index into
# KNOWN_SORTED, which holds indexes into KNOWN_NAMES.
cdef enum:
    MAX_KNOWN_LENGTH = 40
cdef int KNOWN_BY_LENGTH_START[MAX_KNOWN_LENGTH + 1]
cdef int KNOWN_BY_LENGTH_END[MAX_KNOWN_LENGTH + 1]
cdef int KNOWN_SORTED[64]
# C views of KNOWN_NAMES (which keeps the objects alive), so a lookup touches no Python API.
cdef const unsigned char* KNOWN_CHARS[64]
cdef PyObject* KNOWN_OBJECTS[64]

cdef void _init_known_names():
    cdef int i, n, k = 0
    order = sorted(range(len(KNOWN_NAMES)), key=lambda j: len(KNOWN_NAMES[j]))
    assert len(order) <= 64 and max(len(x) for x in KNOWN_NAMES) <= MAX_KNOWN_LENGTH
    for i in range(len(KNOWN_NAMES)):
        KNOWN_CHARS[i] = <const unsigned char*>PyBytes_AS_STRING(KNOWN_NAMES[i])
        KNOWN_OBJECTS[i] = <PyObject*>KNOWN_NAMES[i]
    for n in range(MAX_KNOWN_LENGTH + 1):
        KNOWN_BY_LENGTH_START[n] = k
        for i in order:
            if len(KNOWN_NAMES[i]) == n:
                KNOWN_SORTED[k] = i
                k += 1
        KNOWN_BY_LENGTH_END[n] = k

_init_known_names()

cdef inline int _known_name(const unsigned char* name, Py_ssize_t length) noexcept:
    """Index into KNOWN_NAMES of this (any-case) name, or -1."""
    cdef int k, i, j
    cdef const unsigned char* known
    if length > MAX_KNOWN_LENGTH:
        return -1
    for k in range(KNOWN_BY_LENGTH_START[length], KNOWN_BY_LENGTH_END[length]):
        i = KNOWN_SORTED[k]
        known = KNOWN_CHARS[i]
        if LOWER[name[0]] != known[0]:
            continue
        j = 1
        while j < length and LOWER[name[j]] == known[j]:
            j += 1
        if j == length:
            return i
    return -1

cdef inline bint _equals_lower(const unsigned char* p, Py_ssize_t n, const char* lower,
                               Py_ssize_t lower_len) noexcept:
    cdef Py_ssize_t i
    if n != lower_len:
        return False
    for i in range(n):
        if LOWER[p[i]] != <unsigned char>lower[i]:
            return False
    return True

cdef inline Py_ssize_t _skip_plain_value_bytes(const unsigned char* p, Py_ssize_t i,
                                                Py_ssize_t length) noexcept:
    """Skip 8 bytes at a time while none is a control character (< 0x20, or DEL): such
    bytes are field-vchar, SP or obs-text, all valid in a field value. Stops before the first
    word holding one (an HTAB, valid, included); the byte loop takes it from there."""
    cdef uint64_t word, flipped
    while i + 8 <= length:
        memcpy(&word, p + i, 8)
        flipped = word ^ 0x7f7f7f7f7f7f7f7fULL
        # "Has a byte below 0x20" and "has a zero byte (here: a DEL)", exact as booleans
        # (Bit Twiddling Hacks, hasless / haszero).
        if (((word - 0x2020202020202020ULL) & ~word)
                | ((flipped - 0x0101010101010101ULL) & ~flipped)) & 0x8080808080808080ULL:
            break
        i += 8
    return i


# The detail of an error an early check found (see "Errors within one line"): it says only
# where the check fired, so a front end's _parse_error() may word it from the reason instead.
cdef str DETAIL_EARLY_PARTIAL = "refused before the end of the line"
cdef str DETAIL_EARLY_WHOLE = "line refused"


cdef inline bint _is_ows(unsigned char c) noexcept:
    return c == 32 or c == 9


cdef inline Py_ssize_t _passes_limit_at(const unsigned char* p, Py_ssize_t n,
                                        Py_ssize_t budget) noexcept:
    """The prefix length at which a line's content first exceeds budget, or n + 1.

    A trailing CR may be the start of the CRLF, so it is not content until a byte follows.
    """
    if budget < 0:
        budget = 0
    if n <= budget:
        return n + 1
    if p[budget] != b'\r':
        return budget + 1
    return budget + 2 if n > budget + 1 else n + 1



cdef class HttpMessageParser:
    """The HTTP/1.1 message machinery a front end derives from (see the header above)."""

    def __cinit__(self):
        self.line_buf = NULL
        self.line_len = 0
        self.line_cap = 0
        self.fields_buf = NULL
        self.fields_len = 0
        self.fields_cap = 0
        self.pending = []
        if KESTREL_DEBUG:
            _debug_count("parser_alloc", 1)

    def __init__(self, *, Py_ssize_t max_request_line_size=DEFAULT_MAX_REQUEST_LINE_SIZE,
                 Py_ssize_t max_request_headers_size=DEFAULT_MAX_REQUEST_HEADERS_SIZE,
                 Py_ssize_t max_request_headers=DEFAULT_MAX_REQUEST_HEADERS,
                 long long max_request_body_size=DEFAULT_MAX_REQUEST_BODY_SIZE,
                 Py_ssize_t max_chunk_extensions_size=DEFAULT_MAX_CHUNK_EXTENSIONS_SIZE):
        if (max_request_line_size < 16 or max_request_headers_size < 0
                or max_request_headers < 0 or max_request_body_size < -1
                or max_chunk_extensions_size < 0):
            raise ValueError("parser limits must be non-negative "
                             "(max_request_line_size at least 16; body size -1 = unlimited)")
        self.max_request_line_size = max_request_line_size
        self.max_request_headers_size = max_request_headers_size
        self.max_request_headers = max_request_headers
        self.max_request_body_size = max_request_body_size
        self.max_chunk_extensions_size = max_chunk_extensions_size
        self.state = S_START_LINE
        self.messages_completed = 0
        self.error_reason = R_NONE
        self.eof = False
        self._begin_message()

    def __dealloc__(self):
        if self.line_buf != NULL:
            PyMem_Free(self.line_buf)
            if KESTREL_DEBUG:
                _debug_count("line_buffer_free", 1)
        self._release_fields()
        if KESTREL_DEBUG:
            _debug_count("parser_free", 1)


    cdef void _begin_message(self) noexcept:
        # The last head and _trailers stay readable until the next start line replaces them.
        self.fields_len = 0
        self.start_line_bytes = 0
        self.field_bytes = 0
        self.field_count = 0
        self.http_minor = 1
        self.content_length = -1
        self.has_transfer_encoding = False
        self.te_codings = 0
        self.te_chunked_seen = False
        self.te_after_chunked = False
        self.te_unsupported = False
        self.te_syntax_error = False
        self.te_chunked_twice = False
        self.conn_close = False
        self.conn_keep_alive = False
        self.conn_upgrade = False
        self.has_upgrade_header = False
        self.no_content = False
        self.keep_alive = True
        self.upgrade = False
        self.body_remaining = 0
        self.body_received = 0
        self.chunk_ext_bytes = 0

    @cython.final
    cdef int _fail(self, int reason, str detail) noexcept:
        self.state = S_ERROR
        self.error_reason = reason
        self.error_detail = detail
        return EV_ERROR

    # ---- The machine.

    @cython.final
    cdef int execute(self, const char* data, Py_ssize_t length) except -1:
        """Parse from data[0:length]; report one event; set self.consumed."""
        cdef Py_ssize_t pos = 0, n, line_length, scanned
        cdef const char* newline
        cdef const char* line
        cdef int event, state, reason
        self.consumed = 0
        while True:
            state = self.state
            if (state == S_START_LINE or state == S_HEADERS or state == S_CHUNK_SIZE
                    or state == S_TRAILERS):
                if pos == length:
                    self.consumed = pos
                    return EV_NEED_DATA
                newline = <const char*>memchr(data + pos, b'\n', length - pos)
                if newline == NULL:
                    scanned = self.line_len
                    self._buffer_partial(data + pos, length - pos)
                    self.consumed = length
                    reason = self._early_reason(state, <const unsigned char*>self.line_buf,
                                                self.line_len, scanned, True)
                    if reason != R_NONE:
                        return self._fail(reason, DETAIL_EARLY_PARTIAL)
                    return EV_NEED_DATA
                n = newline - (data + pos)
                scanned = self.line_len
                if scanned:
                    self._buffer_partial(data + pos, n)
                    line = self.line_buf
                    line_length = self.line_len
                else:
                    line = data + pos
                    line_length = n
                pos += n + 1
                self.line_len = 0
                event = self._on_line(line, line_length, scanned)
                if event != EV_NEED_DATA:
                    self.consumed = pos
                    return event
            elif state == S_BODY_LENGTH or state == S_CHUNK_DATA:
                if self.body_remaining == 0:
                    self.state = S_MESSAGE_END if state == S_BODY_LENGTH else S_CHUNK_DATA_CR
                    continue
                if pos == length:
                    self.consumed = pos
                    return EV_NEED_DATA
                n = length - pos
                if n > self.body_remaining:
                    n = <Py_ssize_t>self.body_remaining
                self.body_remaining -= n
                self.body_ptr = data + pos
                self.body_len = n
                self.consumed = pos + n
                return EV_BODY
            elif state == S_HEADERS_DONE:
                if self.no_content:
                    # The front end ruled out content (a CONNECT request: what follows is
                    # tunnel data).
                    self.state = S_MESSAGE_END
                elif self.has_transfer_encoding:
                    self.state = S_CHUNK_SIZE
                elif self.content_length > 0:
                    if (self.max_request_body_size >= 0
                            and self.content_length > self.max_request_body_size):
                        self.consumed = pos
                        return self._fail(R_BODY_TOO_LARGE, "Content-Length exceeds the limit")
                    self.body_remaining = self.content_length
                    self.state = S_BODY_LENGTH
                else:
                    self.state = S_MESSAGE_END
            elif state == S_CHUNK_DATA_CR or state == S_CHUNK_DATA_LF:
                if pos == length:
                    self.consumed = pos
                    return EV_NEED_DATA
                if data[pos] != (13 if state == S_CHUNK_DATA_CR else 10):
                    self.consumed = pos
                    if data[pos] == 10 or state == S_CHUNK_DATA_LF:
                        return self._fail(R_INVALID_LINE_ENDING, "bare LF or CR after chunk data")
                    return self._fail(R_MISSING_CHUNK_DATA_TERMINATOR,
                                      "chunk data not followed by CRLF")
                pos += 1
                self.state = S_CHUNK_DATA_LF if state == S_CHUNK_DATA_CR else S_CHUNK_SIZE
            elif state == S_MESSAGE_END:
                self.messages_completed += 1
                if self.upgrade or not self.keep_alive:
                    self.state = S_PAUSED
                else:
                    self._begin_message()
                    self.state = S_START_LINE
                self.consumed = pos
                return EV_MESSAGE_END
            elif state == S_PAUSED:
                self.consumed = pos
                return EV_PAUSED
            elif state == S_BODY_UNTIL_EOF:
                # Everything up to EOF is body (RFC 9112 §6.3, point 8); execute_eof() ends
                # it. The limit passes at a definite byte, so the bytes delivered before the
                # error do not depend on how the input was split.
                if pos == length:
                    self.consumed = pos
                    return EV_NEED_DATA
                n = length - pos
                if self.max_request_body_size >= 0:
                    if self.body_received >= self.max_request_body_size:
                        self.consumed = pos
                        return self._fail(R_BODY_TOO_LARGE, "body exceeds the limit")
                    if n > self.max_request_body_size - self.body_received:
                        n = <Py_ssize_t>(self.max_request_body_size - self.body_received)
                self.body_received += n
                self.body_ptr = data + pos
                self.body_len = n
                self.consumed = pos + n
                return EV_BODY
            else:
                self.consumed = pos
                return EV_ERROR

    # ---- Errors within one line.
    #
    # A line can arrive whole or a byte at a time, and its error must not depend on which. So
    # a few checks are "early": each fires at a definite byte of the line, and can therefore
    # be applied to an unfinished line as well as to a whole one (a start line's first
    # byte, obs-fold and the field count at byte 1, a size limit at the byte that passes it,
    # a bare CR at the byte after it, chunk-size digits at the 17th). In either case the
    # check that fires first wins. Only when none fires is the line judged as a whole: a bare
    # LF ending, then its content. An unfinished line is kept only up to the size at which an
    # early check must fire, so no line costs more memory than its limit.

    @cython.final
    cdef Py_ssize_t _line_budget(self, int state) noexcept:
        """Content bytes a line in this state may hold before a size check fires."""
        cdef Py_ssize_t budget
        if state == S_START_LINE:
            budget = self.max_request_line_size - self.start_line_bytes
        elif state == S_CHUNK_SIZE:
            budget = MAX_CHUNK_SIZE_DIGITS + self.max_chunk_extensions_size - self.chunk_ext_bytes
        else:
            # The field line's own CRLF counts towards the section.
            budget = self.max_request_headers_size - self.field_bytes - 2
        return budget if budget > 0 else 0

    @cython.final
    cdef int _buffer_partial(self, const char* data, Py_ssize_t length) except -1:
        """Append to the unfinished line, never past the point where an early check fires."""
        cdef Py_ssize_t room = self._line_budget(self.state) + 3 - self.line_len, capacity
        cdef char* grown
        if length > room:
            length = room if room > 0 else 0
        if self.line_len + length > self.line_cap:
            capacity = max(self.line_len + length, 2 * self.line_cap, 256)
            grown = <char*>PyMem_Realloc(self.line_buf, capacity)
            if grown == NULL:
                raise MemoryError()
            if KESTREL_DEBUG and self.line_buf == NULL:
                _debug_count("line_buffer_alloc", 1)
            self.line_buf = grown
            self.line_cap = capacity
        memcpy(self.line_buf + self.line_len, data, length)
        self.line_len += length
        return 0

    @cython.final
    cdef int _early_reason(self, int state, const unsigned char* p, Py_ssize_t n,
                           Py_ssize_t scanned, bint scan_cr) noexcept:
        """The early check that fires first within p[0:n] (a line without its LF), or R_NONE.

        state: the line's state (not self.state, which a failure has already changed).
        p[0:scanned] was checked before and fired nothing. scan_cr: also look for bare CRs
        (skipped on the valid path, where the character classes would catch one anyway).
        """
        cdef int reason = R_NONE
        cdef Py_ssize_t first = n + 1, at, digits, start
        cdef const void* cr
        if n == 0:
            return R_NONE
        if state == S_HEADERS or state == S_TRAILERS:
            if p[0] == b' ' or p[0] == b'\t':
                first = 1
                reason = R_OBSOLETE_LINE_FOLDING
            elif p[0] != b'\r' and self.field_count >= self.max_request_headers:
                first = 1
                reason = R_TOO_MANY_HEADERS
            at = _passes_limit_at(p, n, self._line_budget(state))
            if at < first:
                first = at
                reason = R_HEADERS_TOO_LARGE
        elif state == S_START_LINE:
            reason = self._start_line_early(p, n, &first)
        else:
            digits = 0
            while digits < n and digits <= MAX_CHUNK_SIZE_DIGITS and HEX_VALUE[p[digits]] >= 0:
                digits += 1
            if digits > MAX_CHUNK_SIZE_DIGITS:
                first = digits
                reason = R_INVALID_CHUNK_SIZE
            elif digits < n:
                at = digits + _passes_limit_at(
                    p + digits, n - digits,
                    self.max_chunk_extensions_size - self.chunk_ext_bytes)
                if at < first:
                    first = at
                    # BWS may come before the ";" of an extension (RFC 9112 §7.1.1).
                    reason = (R_CHUNK_EXTENSIONS_TOO_LARGE
                              if p[digits] == b';' or _is_ows(p[digits])
                              else R_INVALID_CHUNK_SIZE)
        if scan_cr:
            # A CR with a byte after it in the line is bare; it fires at that byte.
            start = scanned - 1 if scanned > 0 else 0
            if n - 1 > start and first > start + 2:
                cr = memchr(p + start, b'\r', n - 1 - start)
                if cr != NULL:
                    at = (<const unsigned char*>cr - p) + 2
                    if at < first:
                        first = at
                        reason = R_INVALID_LINE_ENDING
        return reason if first <= n else R_NONE

    @cython.final
    cdef int _on_line(self, const char* line, Py_ssize_t length, Py_ssize_t scanned) except -1:
        """Handle one whole line (without its LF). Returns EV_NEED_DATA to go on, or an event."""
        cdef int event, reason, state = self.state
        # The counters the early checks read, as they were before this line.
        cdef Py_ssize_t field_bytes = self.field_bytes, field_count = self.field_count
        cdef Py_ssize_t start_line_bytes = self.start_line_bytes
        cdef Py_ssize_t chunk_ext_bytes = self.chunk_ext_bytes
        reason = self._early_reason(state, <const unsigned char*>line, length, scanned, False)
        if reason != R_NONE:
            event = self._fail(reason, DETAIL_EARLY_WHOLE)
        elif length == 0 or line[length - 1] != b'\r':
            event = self._fail(R_INVALID_LINE_ENDING, "line not terminated by CRLF")
        else:
            event = self._dispatch_line(line, length - 1)
            if event != EV_ERROR:
                return event
            self.field_bytes = field_bytes
            self.field_count = field_count
            self.start_line_bytes = start_line_bytes
            self.chunk_ext_bytes = chunk_ext_bytes
        # A bare CR fires earlier than the end of the line, so it outranks what was found.
        reason = self._early_reason(state, <const unsigned char*>line, length, scanned, True)
        if reason != R_NONE and reason != self.error_reason:
            # Only the bare-CR check is new in this pass.
            self.error_reason = reason
            self.error_detail = "CR not followed by LF"
        return event

    @cython.final
    cdef int _dispatch_line(self, const char* line, Py_ssize_t length) except -1:
        cdef int state = self.state
        if state == S_START_LINE:
            if length == 0:
                # Empty lines before a start line are ignored (RFC 9112 §2.2).
                self.start_line_bytes += 2
                if self.start_line_bytes > self.max_request_line_size:
                    return self._fail(R_REQUEST_LINE_TOO_LONG, "too many empty lines")
                return EV_NEED_DATA
            return self._start_line(line, length)
        if state == S_HEADERS:
            if length == 0:
                return self._end_of_head()
            return self._field_line(line, length, False)
        if state == S_CHUNK_SIZE:
            return self._chunk_size_line(line, length)
        # S_TRAILERS
        if length == 0:
            self.state = S_MESSAGE_END
            return EV_NEED_DATA
        return self._field_line(line, length, True)


    @cython.final
    cdef int _store_field(self, int known, const unsigned char* name, Py_ssize_t name_len,
                          const unsigned char* value, Py_ssize_t value_len) except -1:
        """Append one field to fields_buf (see FieldRecord)."""
        cdef FieldRecord record
        cdef Py_ssize_t needed, capacity, j
        cdef char* grown
        cdef char* out
        record.name_len = 0 if known >= 0 else name_len
        record.value_len = value_len
        record.known = known
        needed = self.fields_len + <Py_ssize_t>sizeof(FieldRecord) + record.name_len + value_len
        if needed > self.fields_cap:
            capacity = max(needed, 2 * self.fields_cap, 256)
            grown = <char*>PyMem_Realloc(self.fields_buf, capacity)
            if grown == NULL:
                raise MemoryError()
            if KESTREL_DEBUG and self.fields_buf == NULL:
                _debug_count("fields_buffer_alloc", 1)
            self.fields_buf = grown
            self.fields_cap = capacity
        out = self.fields_buf + self.fields_len
        memcpy(out, &record, sizeof(FieldRecord))
        out += sizeof(FieldRecord)
        for j in range(record.name_len):
            out[j] = LOWER[name[j]]
        out += record.name_len
        memcpy(out, value, value_len)
        self.fields_len = needed
        return 0

    @cython.final
    cdef void release_line_buffer(self) noexcept:
        """Between messages: free the partial-line buffer, so a parser kept as a spare holds
        no more memory than a new one (a line split across reads grows it to the line's
        limit)."""
        if self.line_buf != NULL and self.line_len == 0:
            PyMem_Free(self.line_buf)
            self.line_buf = NULL
            self.line_cap = 0
            if KESTREL_DEBUG:
                _debug_count("line_buffer_free", 1)

    @cython.final
    cdef void _release_fields(self) noexcept:
        """Free fields_buf: an idle connection holds no header memory."""
        if self.fields_buf != NULL:
            PyMem_Free(self.fields_buf)
            self.fields_buf = NULL
            self.fields_cap = 0
            if KESTREL_DEBUG:
                _debug_count("fields_buffer_free", 1)
        self.fields_len = 0

    @cython.final
    cdef int _field_line(self, const char* line, Py_ssize_t length, bint trailer) except -1:
        """One header (or trailer) field line, CRLF already removed."""
        cdef const unsigned char* p = <const unsigned char*>line
        cdef Py_ssize_t i = 0, j, value_start, value_end, name_len
        cdef int known
        cdef bytes name
        cdef char* out
        # Obs-fold, the field count and the section size were checked by _early_reason().
        self.field_bytes += length + 2
        self.field_count += 1
        while i < length and TOKEN_CHAR[p[i]]:
            i += 1
        if i == 0 or i == length or p[i] != b':':
            return self._fail(R_INVALID_HEADER_NAME, "invalid header field name")
        known = _known_name(p, i)
        name_len = i
        i += 1
        while i < length and _is_ows(p[i]):
            i += 1
        value_start = i
        i = _skip_plain_value_bytes(p, i, length)
        while i < length and VALUE_CHAR[p[i]]:
            i += 1
        if i != length:
            return self._fail(R_INVALID_HEADER_VALUE, "invalid byte in header value")
        value_end = length
        while value_end > value_start and _is_ows(p[value_end - 1]):
            value_end -= 1
        if trailer:
            if known >= 0:
                name = <bytes>KNOWN_OBJECTS[known]
            else:
                name = PyBytes_FromStringAndSize(NULL, name_len)
                out = PyBytes_AS_STRING(name)
                for j in range(name_len):
                    out[j] = LOWER[p[j]]
            value = PyBytes_FromStringAndSize(line + value_start, value_end - value_start)
            self._trailers.append((name, value))
            return EV_NEED_DATA
        self._store_field(known, p, name_len, p + value_start, value_end - value_start)
        if 0 <= known < H_UPGRADE:
            # KNOWN_NAMES starts with the names the parser acts on, in HeaderId order.
            known += 1
            if known == H_CONTENT_LENGTH:
                return self._content_length(p + value_start, value_end - value_start)
            elif known == H_TRANSFER_ENCODING:
                self._transfer_encoding(p + value_start, value_end - value_start)
            elif known == H_CONNECTION:
                self._connection(p + value_start, value_end - value_start)
            elif known == H_UPGRADE:
                self.has_upgrade_header = value_end > value_start
            else:
                return self._front_field(known, p + value_start, value_end - value_start)
        return EV_NEED_DATA

    @cython.final
    cdef int _content_length(self, const unsigned char* value, Py_ssize_t length) noexcept:
        """Content-Length = 1*DIGIT, or a list of identical ones (RFC 9110 §8.6)."""
        cdef Py_ssize_t i = 0, digits
        cdef long long number
        if length == 0:
            return self._fail(R_INVALID_CONTENT_LENGTH, "empty Content-Length")
        while True:
            number = 0
            digits = 0
            while i < length and 48 <= value[i] <= 57:
                number = number * 10 + (value[i] - 48)
                digits += 1
                if digits > MAX_CONTENT_LENGTH_DIGITS:
                    return self._fail(R_INVALID_CONTENT_LENGTH, "Content-Length too large")
                i += 1
            if digits == 0:
                return self._fail(R_INVALID_CONTENT_LENGTH, "Content-Length is not 1*DIGIT")
            if self.content_length >= 0 and self.content_length != number:
                return self._fail(R_CONFLICTING_CONTENT_LENGTH, "differing Content-Length values")
            self.content_length = number
            while i < length and _is_ows(value[i]):
                i += 1
            if i == length:
                return EV_NEED_DATA
            if value[i] != b',':
                return self._fail(R_INVALID_CONTENT_LENGTH, "Content-Length is not 1*DIGIT")
            i += 1
            while i < length and _is_ows(value[i]):
                i += 1

    @cython.final
    cdef void _transfer_encoding(self, const unsigned char* value, Py_ssize_t length) noexcept:
        """Record the codings of one Transfer-Encoding line; judged in _end_of_head()."""
        cdef Py_ssize_t i = 0, start, end
        self.has_transfer_encoding = True
        while i < length:
            while i < length and (_is_ows(value[i]) or value[i] == b','):
                i += 1
            if i == length:
                break
            start = i
            while i < length and TOKEN_CHAR[value[i]]:
                i += 1
            end = i
            while i < length and _is_ows(value[i]):
                i += 1
            if end == start or (i < length and value[i] != b','):
                # Not a token, or a transfer-parameter: chunked takes none.
                self.te_syntax_error = True
                return
            self.te_codings += 1
            if self.te_chunked_seen:
                self.te_after_chunked = True
            if _equals_lower(value + start, end - start, b"chunked", 7):
                self.te_chunked_twice = self.te_chunked_seen
                self.te_chunked_seen = True
            else:
                self.te_unsupported = True

    @cython.final
    cdef void _connection(self, const unsigned char* value, Py_ssize_t length) noexcept:
        cdef Py_ssize_t i = 0, start, end
        while i < length:
            start = i
            while i < length and value[i] != b',':
                i += 1
            end = i
            i += 1
            while start < end and _is_ows(value[start]):
                start += 1
            while end > start and _is_ows(value[end - 1]):
                end -= 1
            if _equals_lower(value + start, end - start, b"close", 5):
                self.conn_close = True
            elif _equals_lower(value + start, end - start, b"keep-alive", 10):
                self.conn_keep_alive = True
            elif _equals_lower(value + start, end - start, b"upgrade", 7):
                self.conn_upgrade = True

    @cython.final
    cdef int _check_transfer_encoding(self) noexcept:
        """What any message with Transfer-Encoding must pass (RFC 9112 §6.1 and §6.3: the
        checks that stop request smuggling and response splitting)."""
        if self.content_length >= 0:
            return self._fail(R_CONTENT_LENGTH_WITH_TRANSFER_ENCODING,
                              "both Content-Length and Transfer-Encoding")
        if self.http_minor == 0:
            return self._fail(R_INVALID_TRANSFER_ENCODING, "Transfer-Encoding in HTTP/1.0")
        if self.te_syntax_error or self.te_codings == 0:
            return self._fail(R_INVALID_TRANSFER_ENCODING, "malformed Transfer-Encoding")
        return EV_NEED_DATA

    @cython.final
    cdef int _end_of_fields(self) except -1:
        """Judge the framing of a complete request header section; set keep_alive and
        upgrade."""
        if self.has_transfer_encoding:
            if self._check_transfer_encoding() == EV_ERROR:
                return EV_ERROR
            if self.te_after_chunked:
                return self._fail(R_INVALID_TRANSFER_ENCODING, "chunked is not the final coding")
            if self.te_unsupported:
                return self._fail(R_UNSUPPORTED_TRANSFER_ENCODING,
                                  "only the chunked transfer coding is implemented")
        # Persistence, RFC 9112 §9.3.
        if self.http_minor == 1:
            self.keep_alive = not self.conn_close
        else:
            self.keep_alive = self.conn_keep_alive and not self.conn_close
        self.upgrade = self.conn_upgrade and self.has_upgrade_header
        return EV_NEED_DATA

    @cython.final
    cdef bytes _take_fields(self):
        """The head's packed fields as one bytes object (None if there are none); frees them."""
        cdef bytes fields = None
        if self.fields_len:
            fields = PyBytes_FromStringAndSize(self.fields_buf, self.fields_len)
        self._release_fields()
        return fields

    @cython.final
    cdef int _chunk_size_line(self, const char* line, Py_ssize_t length) except -1:
        """chunk-size [ chunk-ext ], CRLF removed (RFC 9112 §7.1)."""
        cdef const unsigned char* p = <const unsigned char*>line
        cdef Py_ssize_t i = 0, ext_start, start, after
        cdef long long size = 0
        while i < length and HEX_VALUE[p[i]] >= 0:
            if i == MAX_CHUNK_SIZE_DIGITS or size >= MAX_CHUNK_SIZE >> 4:
                return self._fail(R_INVALID_CHUNK_SIZE, "chunk size too large")
            size = size * 16 + HEX_VALUE[p[i]]
            i += 1
        if i == 0:
            return self._fail(R_INVALID_CHUNK_SIZE, "invalid chunk size")
        ext_start = i
        while i < length:
            # chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
            # chunk-ext-val = token / quoted-string (RFC 9112 §7.1.1). BWS (SP/HTAB, RFC 9110
            # §5.6.3) only where the grammar has it: whitespace that no ";" follows, as in
            # "5 " or "5;a ", is an error.
            start = i
            while i < length and _is_ows(p[i]):
                i += 1
            if i == length or p[i] != b';':
                return self._fail(R_INVALID_CHUNK_SIZE if start == ext_start else
                                  R_INVALID_CHUNK_EXTENSION, "invalid chunk-size line")
            i += 1
            while i < length and _is_ows(p[i]):
                i += 1
            start = i
            while i < length and TOKEN_CHAR[p[i]]:
                i += 1
            if i == start:
                return self._fail(R_INVALID_CHUNK_EXTENSION, "chunk extension without a name")
            # Look past BWS for "="; without one, the BWS must precede the next ";".
            after = i
            while after < length and _is_ows(p[after]):
                after += 1
            if after < length and p[after] == b'=':
                i = after + 1
                while i < length and _is_ows(p[i]):
                    i += 1
                if i < length and p[i] == b'"':
                    i += 1
                    while True:
                        if i == length:
                            return self._fail(R_INVALID_CHUNK_EXTENSION, "unterminated quote")
                        if p[i] == b'"':
                            i += 1
                            break
                        if p[i] == b'\\':
                            if i + 1 == length or not VALUE_CHAR[p[i + 1]]:
                                return self._fail(R_INVALID_CHUNK_EXTENSION,
                                                  "invalid quoted-pair")
                            i += 2
                        elif QDTEXT_CHAR[p[i]]:
                            i += 1
                        else:
                            return self._fail(R_INVALID_CHUNK_EXTENSION,
                                              "invalid byte in quoted string")
                else:
                    start = i
                    while i < length and TOKEN_CHAR[p[i]]:
                        i += 1
                    if i == start:
                        return self._fail(R_INVALID_CHUNK_EXTENSION,
                                          "chunk extension without a value")
        # The extension budget was checked by _early_reason().
        self.chunk_ext_bytes += length - ext_start
        if size == 0:
            self.field_bytes = 0
            self.field_count = 0
            self._trailers = []
            self.state = S_TRAILERS
            return EV_NEED_DATA
        self.body_received += size
        if self.max_request_body_size >= 0 and self.body_received > self.max_request_body_size:
            return self._fail(R_BODY_TOO_LARGE, "chunked body exceeds the limit")
        self.body_remaining = size
        self.state = S_CHUNK_DATA
        return EV_NEED_DATA

    # ---- What a front end provides (HttpParser: requests). The versions here are those of
    # a parser that has no start line to read: they refuse one, and act on nothing else.

    cdef int _start_line_early(self, const unsigned char* p, Py_ssize_t n,
                               Py_ssize_t* first) noexcept:
        """The early check that fires first in an unfinished start line p[0:n] (see
        _early_reason), or R_NONE; *first is set to the byte it fires at."""
        cdef Py_ssize_t at = _passes_limit_at(p, n, self._line_budget(S_START_LINE))
        if at <= n:
            first[0] = at
            return R_INVALID_REQUEST_LINE
        return R_NONE

    cdef int _start_line(self, const char* line, Py_ssize_t length) except -1:
        """A whole start line, CRLF removed: make the head and go on to S_HEADERS."""
        return self._fail(R_INVALID_REQUEST_LINE, "no front end to read a start line")

    cdef int _front_field(self, int known, const unsigned char* value,
                          Py_ssize_t length) except -1:
        """A header field in HeaderId `known` that the machinery leaves to the front end."""
        return EV_NEED_DATA

    cdef int _end_of_head(self) except -1:
        """The empty line after the header section: judge it, finish the head, report it."""
        if self._end_of_fields() == EV_ERROR:
            return EV_ERROR
        self._release_fields()
        self.state = S_HEADERS_DONE
        return EV_HEADERS

    cdef object _head_event(self):
        """What next_event() returns for EV_HEADERS."""
        return None

    cdef int _execute_next(self, const char* data, Py_ssize_t length) except -1:
        """execute() as next_event() calls it: a front end with a faster way to the same
        events (the response parser's whole-head path) puts it here."""
        return self.execute(data, length)

    cdef object _parse_error(self):
        """The HttpParseError next_event() raises for the current error."""
        return HttpParseError(self.error_reason, self.error_detail or "")

    cdef int execute_eof(self) except -1:
        """The peer closed its sending side; call it once execute() has used all input.

        Ends a body that runs until EOF (EV_MESSAGE_END, then the parser is paused), reports
        EV_PAUSED at a message boundary or when paused already (nothing more will come), and
        fails with INCOMPLETE_MESSAGE inside a message.
        """
        if self.state == S_BODY_UNTIL_EOF:
            self.keep_alive = False
            self.state = S_MESSAGE_END
            return self.execute(NULL, 0)
        if self.state == S_PAUSED or (self.state == S_START_LINE and self.line_len == 0):
            return EV_PAUSED
        if self.state == S_ERROR:
            return EV_ERROR
        return self._fail(R_INCOMPLETE_MESSAGE, "connection closed inside a message")

    # ---- Python interface: feed() / next_event().

    def feed(self, bytes data not None):
        """Queue bytes received from the peer; the parser keeps a reference, not a copy."""
        if self.eof:
            raise RuntimeError("feed() after feed_eof()")
        if PyBytes_GET_SIZE(data):
            self.pending.append(data)

    def feed_eof(self):
        """The peer closed its sending side."""
        self.eof = True


    @property
    def trailers(self):
        """Trailer fields of the last chunked message, as (lowercase name, value) pairs."""
        return list(self._trailers) if self._trailers is not None else []

    def next_event(self):
        """The next head (a RequestHead from HttpParser, a ResponseHead from
        HttpResponseParser), body bytes, END_OF_MESSAGE, NEED_DATA, PAUSED or CLOSED."""
        cdef bytes chunk
        cdef int event
        cdef Py_ssize_t size
        while True:
            if self.pending_index < len(self.pending):
                chunk = <bytes>self.pending[self.pending_index]
                size = PyBytes_GET_SIZE(chunk)
                event = self._execute_next(PyBytes_AS_STRING(chunk) + self.pending_offset,
                                           size - self.pending_offset)
                self.pending_offset += self.consumed
                if event == EV_BODY:
                    body = PyBytes_FromStringAndSize(self.body_ptr, self.body_len)
                if self.pending_offset == size:
                    self.pending_index += 1
                    self.pending_offset = 0
                    if self.pending_index == len(self.pending):
                        self.pending.clear()
                        self.pending_index = 0
                if event == EV_NEED_DATA:
                    continue
            else:
                event = self.execute(NULL, 0)
                if event == EV_NEED_DATA:
                    if not self.eof:
                        return NEED_DATA
                    event = self.execute_eof()
            if event == EV_HEADERS:
                return self._head_event()
            if event == EV_BODY:
                return body
            if event == EV_MESSAGE_END:
                return END_OF_MESSAGE
            if event == EV_PAUSED:
                return CLOSED if self.eof and not self.pending else PAUSED
            raise self._parse_error()


