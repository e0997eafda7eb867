# Declarations of the core's cdef classes, so other Cython modules (and the engine in later
# issues) can call their C methods directly.

cdef class RequestHead:
    cdef readonly str method
    cdef readonly bytes target
    cdef readonly str http_version
    cdef readonly list headers
    cdef readonly bint keep_alive
    cdef readonly long long content_length
    cdef readonly bint chunked
    cdef readonly bint upgrade
    cdef readonly bint expect_continue


cdef class HttpParser:
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
    cdef readonly RequestHead head
    cdef list headers
    cdef list _trailers
    cdef Py_ssize_t start_line_bytes  # leading empty lines + request line
    cdef Py_ssize_t field_bytes       # header (or trailer) section bytes so far
    cdef Py_ssize_t field_count
    cdef int http_minor
    cdef int host_count
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
    cdef bint expect_continue
    cdef bint is_connect
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

    cdef int execute(self, const char* data, Py_ssize_t length) except -1
    cdef int _fail(self, int reason, str detail) noexcept
    cdef Py_ssize_t _line_budget(self, int state) noexcept
    cdef int _buffer_partial(self, const char* data, Py_ssize_t length) except -1
    cdef int _early_reason(self, int state, const unsigned char* p, Py_ssize_t n,
                           Py_ssize_t scanned, bint scan_cr) noexcept
    cdef int _on_line(self, const char* line, Py_ssize_t length, Py_ssize_t scanned) except -1
    cdef int _dispatch_line(self, const char* line, Py_ssize_t length) except -1
    cdef int _request_line(self, const char* line, Py_ssize_t length) except -1
    cdef int _field_line(self, const char* line, Py_ssize_t length, bint trailer) except -1
    cdef int _end_of_head(self) except -1
    cdef int _chunk_size_line(self, const char* line, Py_ssize_t length) except -1
    cdef int _content_length(self, const unsigned char* value, Py_ssize_t length) noexcept
    cdef void _transfer_encoding(self, const unsigned char* value, Py_ssize_t length) noexcept
    cdef void _connection(self, const unsigned char* value, Py_ssize_t length) noexcept
    cdef void _begin_message(self) noexcept
