# Declarations of the request parser (parser.pxi).

cdef class RequestHead:
    cdef readonly str method
    cdef readonly bytes target
    cdef readonly str http_version
    # The header fields packed by the parser (see parser.pxi); `headers` builds the list of
    # (name, value) pairs from them on first use and keeps it in _headers.
    cdef bytes _fields
    cdef list _headers
    cdef readonly bint keep_alive
    cdef readonly long long content_length
    cdef readonly bint chunked
    cdef readonly bint upgrade
    cdef readonly bint expect_continue


cdef class HttpParser(HttpMessageParser):
    # The request front end (parser.pxi).
    cdef readonly RequestHead head
    cdef int host_count
    cdef bint expect_continue
    cdef bint is_connect
