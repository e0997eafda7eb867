# Declarations of the HTTP/1.1 message machinery (message.pxi).

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
    cdef bint te_chunked_twice        # chunked given more than once
    cdef bint conn_close
    cdef bint conn_keep_alive
    cdef bint conn_upgrade
    cdef bint has_upgrade_header
    cdef bint no_content              # set by the front end: no body whatever the fields say
    cdef bint keep_alive
    cdef bint upgrade
    cdef long long body_remaining     # bytes left in this Content-Length body or chunk
    cdef long long body_received      # decoded chunked (or until-EOF) body bytes so far
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
    cdef void release_line_buffer(self) noexcept
    @cython.final
    cdef void _release_fields(self) noexcept
    @cython.final
    cdef int _check_transfer_encoding(self) noexcept
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
    cdef int _execute_next(self, const char* data, Py_ssize_t length) except -1
    cdef object _parse_error(self)
    cdef int execute_eof(self) except -1
