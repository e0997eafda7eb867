# File responses: opening the file, its validators, conditional requests and Range.
#
# Theory of operation
# -------------------
# A FileResponse is opened when it is sent, not when it is made, and its head is decided here
# from the file and the request alone: 404 for a missing or non-regular file; the validators
# (Last-Modified, a strong ETag from mtime and size) and Accept-Ranges; RFC 9110's conditional
# requests in §13.2.2's order (412 or 304); one satisfiable Range as 206 with Content-Range,
# an unsatisfiable one 416. open_file_response returns that head as a FileHead, with the
# descriptor and the span to send when a body follows; the HTTP/1 processor writes the head
# through the response writer and sends the span with its transport's send_file (sendfile(2)
# on a socket, straight from the page cache).


cdef class FileHead:
    """What open_file_response decided: a head, and the file span its body is (fd -1: none)."""

    def __cinit__(self):
        self.fd = -1
        self.offset = 0
        self.length = 0


cdef bytes _content_disposition(str filename):
    """attachment; filename=..., with RFC 6266's filename* for names that are not ASCII."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    try:
        return f'attachment; filename="{quoted}"'.encode("ascii")
    except UnicodeEncodeError:
        return ("attachment; filename*=utf-8''" + urllib.parse.quote(filename)).encode("ascii")


cdef object _RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")


cdef frozenset _CONDITIONAL_FIELDS = frozenset(
    (b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"))


cdef bint _etag_listed(str field, str etag, bint weak):
    """Does an If-Match / If-None-Match field value list `etag` (or say "*")? Weak comparison
    ignores a W/ prefix on either side; strong comparison never matches a weak tag (RFC 9110
    §8.8.3.2)."""
    for candidate in field.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if weak:
            if candidate.startswith("W/"):
                candidate = candidate[2:]
        elif candidate.startswith("W/"):
            continue
        if candidate == etag:
            return True
    return False


cdef object _http_date(str value):
    """An HTTP-date as a POSIX timestamp, or None if it is not one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


cdef int _file_precondition(Request request, str etag, long long modified):
    """The status the conditional headers of a file request ask for instead of sending it:
    304 (not modified), 412 (precondition failed), or 0 to go on. RFC 9110 §13.2.2's order:
    If-Match, else If-Unmodified-Since; then If-None-Match, else If-Modified-Since (GET and
    HEAD only). `modified` is the file's mtime in whole seconds, an HTTP-date's precision."""
    cdef dict fields = {}
    for name, value in request.head.headers:
        if name in _CONDITIONAL_FIELDS:
            text = value.decode("latin-1")
            if name not in fields:
                fields[name] = text
            elif name.endswith(b"match"):
                fields[name] += "," + text  # repeated list fields combine (RFC 9110 §5.3)
    if not fields:
        return 0
    cdef bint safe = request.head.method is M_GET or request.head.method is M_HEAD
    if b"if-match" in fields:
        if not _etag_listed(fields[b"if-match"], etag, False):
            return 412
    elif b"if-unmodified-since" in fields:
        limit = _http_date(fields[b"if-unmodified-since"])
        if limit is not None and modified > limit:
            return 412
    if b"if-none-match" in fields:
        if _etag_listed(fields[b"if-none-match"], etag, True):
            return 304 if safe else 412
    elif safe and b"if-modified-since" in fields:
        since = _http_date(fields[b"if-modified-since"])
        if since is not None and modified <= since:
            return 304
    return 0


cdef object _file_range(Request request, long long size, str etag, str last_modified):
    """(first, last) byte of the range to send, None for the whole file, or -1 if unsatisfiable."""
    cdef list ranges = [v for n, v in request.head.headers if n == b"range"]
    if len(ranges) != 1 or request.head.method not in ("GET", "HEAD"):
        return None
    for name, value in request.head.headers:
        if name == b"if-range":
            validator = value.decode("latin-1").strip()
            if validator != etag and validator != last_modified:
                return None
    spec = (<bytes>ranges[0]).decode("latin-1").replace(" ", "")
    if "," in spec:
        return None  # several ranges: the whole file, in one ordinary response
    match = _RANGE.match(spec)
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # not a byte range we understand: ignored, as RFC 9110 §14.2 allows
    if not match.group(1):
        suffix = int(match.group(2))
        if suffix == 0 or size == 0:
            return -1
        return (max(size - suffix, 0), size - 1)
    first = int(match.group(1))
    if match.group(2) and first > int(match.group(2)):
        return None  # an invalid range-spec is ignored (§14.1.1)
    if first >= size:
        return -1  # starts past the end: unsatisfiable (§14.1.1), 416
    last = int(match.group(2)) if match.group(2) else size - 1
    return (first, min(last, size - 1))


cdef bytes _NOT_FOUND = b"Not Found"


cdef FileHead open_file_response(Request request, FileResponse response):
    """Open the response's file and decide its head (see the theory above). The caller owns
    the returned descriptor (fd >= 0), and must close it whatever it does with the head."""
    cdef FileHead result = FileHead.__new__(FileHead)
    cdef long long size, first, length
    result.content_type = _TEXT_PLAIN
    try:
        fd = os.open(response.path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        result.status, result.body = 404, _NOT_FOUND
        return result
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            result.status, result.body = 404, _NOT_FOUND
            return result
        size = info.st_size
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        headers = [(b"accept-ranges", b"bytes"), (b"last-modified", last_modified.encode()),
                   (b"etag", etag.encode())]
        if response.filename is not None:
            headers.append((b"content-disposition", _content_disposition(response.filename)))
        if response._headers is not None:
            headers.extend(_header_items(response._headers))
        result.headers = headers
        status = response.status
        if status == 200:
            condition = _file_precondition(request, etag, <long long>info.st_mtime)
            if condition:
                # 304 carries the validators and the response's own headers, and no body;
                # 412 is an error, with the usual small text body.
                os.close(fd)
                if condition == 304:
                    result.status, result.body, result.content_type = 304, b"", None
                else:
                    result.status, result.headers = 412, None
                    result.body = REASON_PHRASES[412]
                return result
        first, length = 0, size
        span = _file_range(request, size, etag, last_modified) if status == 200 else None
        if span == -1:
            os.close(fd)
            headers.append((b"content-range", b"bytes */%d" % size))
            result.status, result.body, result.content_type = 416, b"", None
            return result
        if span is not None:
            status = 206
            first = span[0]
            length = span[1] - first + 1
            headers.append((b"content-range", b"bytes %d-%d/%d" % (first, span[1], size)))
    except BaseException:
        os.close(fd)
        raise
    result.status = status
    result.content_type = response.content_type
    result.fd = fd
    result.offset = first
    result.length = length
    return result
