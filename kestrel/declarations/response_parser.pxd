# Declarations of the response parser (response_parser.pxi).

cdef class ResponseHead:
    cdef readonly int status
    cdef readonly bytes reason
    cdef readonly str http_version
    # The header fields packed by the parser, as in RequestHead; `headers` builds the list.
    cdef bytes _fields
    cdef list _headers
    cdef readonly bint keep_alive
    cdef readonly long long content_length  # body bytes that follow; -1: chunked or until EOF
    cdef readonly bint chunked


cdef class HttpResponseParser(HttpMessageParser):
    # The response front end (response_parser.pxi).
    cdef readonly ResponseHead head
    # The requests whose final response has not begun, oldest first: a ring of "is HEAD"
    # flags, expected_cap (a power of two, or 0) bytes from PyMem.
    cdef unsigned char* expected
    cdef Py_ssize_t expected_cap
    cdef Py_ssize_t expected_first
    cdef readonly Py_ssize_t outstanding
    cdef bint awaiting_final          # a 1xx was reported; its final response has not begun
    # heads=False (kestrel-bench): no ResponseHead and no fields are kept, only the framing
    # of the last head, below; _whole_head() reads a head that is whole in the input at once.
    cdef readonly bint heads
    cdef readonly int status
    cdef long long body_length        # what ResponseHead.content_length would say
    cdef bint body_chunked

    cpdef void expect(self, bint head_request=*) except *
    @cython.final
    cdef int execute_response(self, const char* data, Py_ssize_t length) except -1
    @cython.final
    cdef int _whole_head(self, const unsigned char* p, Py_ssize_t length) except -1
    @cython.final
    cdef int _not_whole_head(self) noexcept
