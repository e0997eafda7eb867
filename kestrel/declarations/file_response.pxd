# Declarations of file responses (file_response.pxi).

cdef class FileHead:
    cdef public int status
    cdef public list headers
    cdef public bytes body            # a small body of its own (404, 412), or None
    cdef public object content_type
    cdef public int fd                # the file, when a body follows; -1: none
    cdef public long long offset
    cdef public long long length
