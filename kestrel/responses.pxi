# The responses a handler returns, and the one mapping of any handler result to one of them.
#
# Theory of operation
# -------------------
# Three kinds of response are sent by the engine itself: Response (a body in memory),
# StreamingResponse (an iterable, sent with output backpressure) and FileResponse (sendfile).
# Everything else a handler may return is turned into one of them by to_response(), which is
# the only place that mapping is written: the engine applies it to a handler's result, and the
# framework applies the same function when a middleware must see a Response. A str is
# text/plain, bytes application/octet-stream, a dict or list JSON, None an empty 204.
#
# Headers stay as the app gave them until someone asks for response.headers; the response
# writer (response_writer.pxi) validates and frames them whatever their form.

import collections.abc
import mimetypes
import os
import re

import kestrel.json_encoding as _json_encoding

cdef object _mutable_headers(headers):
    """A response's headers as MutableHeaders: built directly when there are none yet (the
    common case, a middleware adding one), through its constructor otherwise."""
    if headers is None:
        result = _type_new(MutableHeaders, _EMPTY_TUPLE)
        result.raw = []
        return result
    return MutableHeaders(headers)


cdef class BaseResponse:
    """What the three kinds of response share: a status, headers and a content type."""

    # Made on first access, so a response nobody adds headers to never builds one.
    @property
    def headers(self):
        """The response's headers as a MutableHeaders: ``response.headers["x"] = "1"``."""
        if type(self._headers) is not MutableHeaders:
            self._headers = _mutable_headers(self._headers)
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = value

    @property
    def status_code(self):
        return self.status


cdef class StreamingResponse(BaseResponse):
    """A response whose body is produced piece by piece (a sync or async iterable).

    It is sent with chunked encoding (or as-is when the headers give a Content-Length), and
    the iteration waits whenever more than max_response_buffer_size bytes are unsent.
    """

    def __init__(self, content, int status=200, headers=None, content_type=None):
        if not (hasattr(content, "__aiter__") or hasattr(content, "__iter__")):
            raise TypeError("StreamingResponse needs an iterable or an async iterable")
        self.content = content
        self.status = status
        self._headers = headers
        self.content_type = content_type


cdef class Response(BaseResponse):
    """What a handler returns: a status, headers and a body, sent as given."""

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        if isinstance(body, str):
            body = (<str>body).encode()
            if content_type is None:
                content_type = "text/plain; charset=utf-8"
        elif not isinstance(body, bytes):
            body = bytes(body)
        self.body = body
        self.status = status
        self._headers = headers
        self.content_type = content_type

    def __repr__(self):
        return f"<Response {self.status} {len(self.body)} bytes>"

    cdef Response _set(self, bytes body, int status, content_type):
        """Fill a Response made with __new__ (to_response: no argument parsing)."""
        self.body = body
        self.status = status
        self.content_type = content_type
        return self


cdef class FileResponse(BaseResponse):
    """A file sent with sendfile(2), with single-range requests (RFC 9110 §14) supported.

    The file is opened when the response is sent, not when it is made: a missing file is a
    404. Accept-Ranges, Last-Modified and an ETag are sent; a Range asking for one satisfiable
    range gets 206 with Content-Range, an unsatisfiable one 416, and several ranges the whole
    file (RFC 9110 §14.2 lets a server ignore Range). If-Range that does not match sends the
    whole file. Conditional requests are answered as RFC 9110 §13.2.2 orders them: a failed
    If-Match or If-Unmodified-Since is 412; a matching If-None-Match, or an If-Modified-Since
    the file is not newer than, is 304 for GET and HEAD (a matching If-None-Match is 412 for
    other methods).
    """

    def __init__(self, path, int status=200, headers=None, content_type=None,
                 filename=None):
        self.path = os.fspath(path)
        self.status = status
        self._headers = headers
        if content_type is None:
            content_type = mimetypes.guess_type(self.path)[0] or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
        self.content_type = content_type
        self.filename = filename

    def __repr__(self):
        return f"<FileResponse {self.status} {self.path!r}>"


cdef bytes _TEXT_PLAIN = b"text/plain; charset=utf-8"
cdef bytes _OCTET_STREAM = b"application/octet-stream"
cdef bytes _JSON = b"application/json"


cpdef object to_response(object result):
    """What a handler returned, as a Response, StreamingResponse or FileResponse: str is
    text/plain, bytes application/octet-stream, a dict or list JSON, None an empty 204, and a
    response is itself. Anything else is a TypeError (the handler's bug: a 500)."""
    cdef type kind = type(result)
    if kind is Response:
        return result
    if kind is bytes:
        return (<Response>Response.__new__(Response))._set(<bytes>result, 200, _OCTET_STREAM)
    if kind is str:
        return (<Response>Response.__new__(Response))._set((<str>result).encode(), 200, _TEXT_PLAIN)
    if kind is dict or kind is list:
        return (<Response>Response.__new__(Response))._set(
            _json_encoding.json_dumps(result), 200, _JSON)
    if result is None:
        return (<Response>Response.__new__(Response))._set(b"", 204, None)
    if (isinstance(result, Response) or isinstance(result, StreamingResponse)
            or isinstance(result, FileResponse)):
        return result
    raise TypeError(f"a handler returned {kind.__name__}; return str, bytes, dict, list, None "
                    f"or a Response, StreamingResponse or FileResponse")
