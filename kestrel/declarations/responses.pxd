# Declarations of the responses (responses.pxi).

cdef class BaseResponse:
    cdef public int status
    cdef object _headers              # as given, or a MutableHeaders once asked for
    cdef public object content_type


cdef class StreamingResponse(BaseResponse):
    cdef public object content


cdef class Response(BaseResponse):
    cdef public bytes body
    cdef Response _set(self, bytes body, int status, content_type)


cdef class FileResponse(BaseResponse):
    cdef public object path
    cdef public object filename
