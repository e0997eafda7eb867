# Declarations of the response writer (response_writer.pxi).

cdef class OutputBuffer:
    cdef char* data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity
    cdef int _grow(self, Py_ssize_t needed) except -1
    cdef int append(self, const char* data, Py_ssize_t size) except -1
    cdef int append_bytes(self, bytes data) except -1
    cdef int append_content_length(self, Py_ssize_t value) except -1
    cdef int append_chunk_size(self, Py_ssize_t value) except -1


cdef class ResponseWriter:
    cdef OutputBuffer out
    cdef bytes server_line            # None: no Server header
    cdef bytes date_line              # rebuilt on each heartbeat tick
    cdef bytes common_lines           # date_line + server_line, in one append
    cdef object valid_content_type    # the last bytes content type found valid
    # What the last write_head decided.
    cdef int framing                  # Framing (response_writer.pxi)
    cdef long long length             # the body's length with FRAME_LENGTH, else -1
    cdef bint close                   # the connection closes after this response
    cdef bint send_body               # body bytes go on the wire (not HEAD, 204, 304)
    cdef void tick(self) noexcept
    cdef int write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                        headers, content_type, long long body_length) except -1
    cdef int _write_head(self, int status, bint head_request, bint http10, bint keep_alive,
                         headers, content_type, long long body_length) except -1
