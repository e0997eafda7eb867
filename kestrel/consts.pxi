# Constants of the core: default limits with their precedents, event codes, parser states,
# rejection reasons and the character classes of RFC 9110 / RFC 9112.

# ---- Default limits. Each follows ASP.NET Core Kestrel's KestrelServerLimits unless noted.
# Spare parsers a server keeps (service_context.pxi): a connection takes one only while a
# message is in progress, so this is about the requests parsed at once, not the connections.
cdef enum:
    MAX_SPARE_PARSERS = 64  # the size of ServiceContext.spare_parsers (_core.pxd)

DEFAULT_MAX_REQUEST_LINE_SIZE = 8192          # Kestrel MaxRequestLineSize; nginx large_client_header_buffers 8k
DEFAULT_MAX_REQUEST_HEADERS_SIZE = 32768      # Kestrel MaxRequestHeadersTotalSize (32 KiB)
DEFAULT_MAX_REQUEST_HEADERS = 100             # Kestrel MaxRequestHeaderCount; Apache LimitRequestFields
DEFAULT_MAX_REQUEST_BODY_SIZE = 30000000      # Kestrel MaxRequestBodySize (~28.6 MiB)
DEFAULT_MAX_CHUNK_EXTENSIONS_SIZE = 16384     # Node.js (llhttp) after CVE-2024-22019: 16 KiB per message
DEFAULT_MAX_REQUEST_BUFFER_SIZE = 1048576     # Kestrel MaxRequestBufferSize: pause reading at 1 MiB
DEFAULT_MAX_RESPONSE_BUFFER_SIZE = 65536     # Kestrel MaxResponseBufferSize: writers wait above 64 KiB
DEFAULT_KEEP_ALIVE_TIMEOUT = 130.0           # Kestrel KeepAliveTimeout (130 s)
DEFAULT_REQUEST_HEADERS_TIMEOUT = 30.0       # Kestrel RequestHeadersTimeout (30 s)
DEFAULT_MIN_REQUEST_BODY_RATE = 240.0        # Kestrel MinRequestBodyDataRate: 240 B/s ...
DEFAULT_MIN_RESPONSE_RATE = 240.0            # ... and MinResponseDataRate: 240 B/s ...
DEFAULT_MIN_RATE_GRACE = 5.0                 # ... both after a 5 s grace period
DEFAULT_DRAIN_TIMEOUT = 5.0                  # Kestrel drains an unread body for up to 5 s
DEFAULT_MAX_DRAIN_SIZE = 262144              # Go net/http reads up to 256 KiB of an unread body
DEFAULT_GRACEFUL_TIMEOUT = 30.0              # .NET HostOptions.ShutdownTimeout (30 s)
# The most a connection's socket may hold unsent in the kernel (TCP_NOTSENT_LOWAT): beyond
# this, send() takes no more and the writer waits (output flow control continues into the
# kernel). Without it, Linux autotunes a stalled reader's send buffer to megabytes. 128 KiB
# is as much as loopback needs to keep the wire full; Cloudflare runs 16 KiB for HTTP/2.
DEFAULT_MAX_KERNEL_UNSENT = 131072
# A lingering close discards what the client still sends for at most this long after the
# server's FIN (nginx's lingering_timeout is 5 s).
DEFAULT_LINGER_TIME = 5.0

# Content-Length above 18 decimal digits cannot be a real body and would overflow int64 math.
cdef enum:
    MAX_CONTENT_LENGTH_DIGITS = 18
    # A chunk size of 2^62 or more is never legitimate; refusing it before the accumulator
    # is shifted again keeps it far from int64 overflow. 16 digits bound leading zeros.
    MAX_CHUNK_SIZE_DIGITS = 16

cdef long long MAX_CHUNK_SIZE = 1LL << 62

# ---- What execute() reports.
cdef enum Event:
    EV_NEED_DATA = 0     # all input consumed, nothing to report
    EV_HEADERS = 1       # self.head is the front end's new head (RequestHead, ResponseHead)
    EV_BODY = 2          # body_ptr/body_len point into the input just passed
    EV_MESSAGE_END = 3   # the message is complete (trailers, if any, in self._trailers)
    EV_PAUSED = 4        # no further message on this connection (close, upgrade, or EOF)
    EV_ERROR = 5         # error_reason says why; the parser stays failed

# ---- Parser states.
cdef enum State:
    S_START_LINE = 0     # a request line and empty lines before it, or a status line
    S_HEADERS = 1
    S_HEADERS_DONE = 2   # head reported; body framing is decided on the next call
    S_BODY_LENGTH = 3
    S_CHUNK_SIZE = 4
    S_CHUNK_DATA = 5
    S_CHUNK_DATA_CR = 6
    S_CHUNK_DATA_LF = 7
    S_TRAILERS = 8
    S_MESSAGE_END = 9
    S_PAUSED = 10
    S_ERROR = 11
    S_BODY_UNTIL_EOF = 12  # a response body with neither length nor chunked: it ends at EOF

# ---- Rejection reasons: one value per way a message can be refused (cf. Kestrel's
# RequestRejectionReason). REJECT_STATUS_C maps each to the status a server answers with;
# the last few are the response parser's own (HttpResponseParser), which a gateway would
# answer with 502.
cdef enum Reject:
    R_NONE = 0
    R_INVALID_REQUEST_LINE = 1
    R_INVALID_REQUEST_TARGET = 2
    R_INVALID_HTTP_VERSION = 3
    R_UNSUPPORTED_HTTP_VERSION = 4
    R_REQUEST_LINE_TOO_LONG = 5
    R_INVALID_LINE_ENDING = 6
    R_INVALID_HEADER_NAME = 7
    R_INVALID_HEADER_VALUE = 8
    R_OBSOLETE_LINE_FOLDING = 9
    R_HEADERS_TOO_LARGE = 10
    R_TOO_MANY_HEADERS = 11
    R_MISSING_HOST = 12
    R_MULTIPLE_HOST = 13
    R_INVALID_HOST = 14
    R_INVALID_CONTENT_LENGTH = 15
    R_CONFLICTING_CONTENT_LENGTH = 16
    R_CONTENT_LENGTH_WITH_TRANSFER_ENCODING = 17
    R_INVALID_TRANSFER_ENCODING = 18
    R_UNSUPPORTED_TRANSFER_ENCODING = 19
    R_INVALID_CHUNK_SIZE = 20
    R_INVALID_CHUNK_EXTENSION = 21
    R_CHUNK_EXTENSIONS_TOO_LARGE = 22
    R_MISSING_CHUNK_DATA_TERMINATOR = 23
    R_BODY_TOO_LARGE = 24
    R_INCOMPLETE_MESSAGE = 25
    R_REQUEST_HEADERS_TIMEOUT = 26
    R_REQUEST_BODY_TIMEOUT = 27
    R_INVALID_STATUS_LINE = 28        # not "HTTP/x.y SP 3DIGIT [SP reason]"
    R_INVALID_STATUS_CODE = 29        # not three digits from 100 to 999
    R_STATUS_LINE_TOO_LONG = 30
    R_UNEXPECTED_RESPONSE = 31        # a response with no request outstanding
    R_COUNT = 32

# ---- Why a connection ended: exactly one per connection (metrics count each once).
cdef enum End:
    END_CLIENT_CLOSED = 0      # the client closed or reset it
    END_CONNECTION_CLOSE = 1   # closed after a response, as the request asked (or HTTP/1.0)
    END_KEEP_ALIVE_TIMEOUT = 2
    END_HEADERS_TIMEOUT = 3    # 408: the request head did not arrive in time
    END_BODY_RATE = 4          # 408: the body came slower than the minimum rate
    END_RESPONSE_RATE = 5      # aborted: the client read the response slower than the minimum
    END_DRAIN_TIMEOUT = 6      # an unread body did not finish within the drain timeout
    END_DRAIN_LIMIT = 7        # an unread body was larger than the drain budget
    END_REJECTED = 8           # the request was refused (400, 413, 414, 431, 501, 505)
    END_SHUTDOWN = 9           # the server shut down
    END_ERROR = 10             # a socket error, or a response that failed part-way
    END_COUNT = 11

cdef enum:
    # Output buffer growth step; responses larger than this are sent with writev.
    OUT_INITIAL = 16384
    # The most one body read hands the handler at once.
    MAX_BODY_READ = 65536
    # The most one sendfile call is asked for (the kernel caps it near 2 GiB anyway).
    SENDFILE_MAX = 1 << 30

# What a connection's deadline is for (derived from its state: timeouts.pxi, http1.pxi).
cdef enum DeadlineKind:
    DL_NONE = 0
    DL_KEEP_ALIVE = 1        # idle between requests
    DL_HEADERS = 2           # a request head is arriving
    DL_DRAIN = 3             # an unread body is being drained
    DL_LINGER = 4            # our FIN is sent; the client's remaining input is discarded
    DL_COUNT = 5

# The HTTP/1 processor's state (http1.pxi has the transitions).
cdef enum ProcessorState:
    PS_IDLE = 0              # no request in flight (a head may be partly in)
    PS_READING = 1           # a request is in flight; the rest of its message is arriving
    PS_HANDLING = 2          # a request is in flight; its message is complete
    PS_DRAINING = 3          # its response is out; the rest of its message is read and dropped
    PS_LINGERING = 4         # our FIN is sent; input is discarded until the client closes
    PS_UPGRADED = 5          # the connection's bytes belong to another protocol now
    PS_CLOSED = 6

# ---- Character classes, filled once at import (see _init_tables in parser.pxi).
cdef unsigned char TOKEN_CHAR[256]     # tchar, RFC 9110 §5.6.2
cdef unsigned char VALUE_CHAR[256]     # field-vchar / obs-text / SP / HTAB, RFC 9110 §5.5
cdef unsigned char TARGET_CHAR[256]    # visible ASCII but "#", RFC 9112 §3.2 (no fragment)
cdef unsigned char HOST_CHAR[256]      # uri-host and port, RFC 3986 §3.2.2 minus ","
cdef unsigned char QDTEXT_CHAR[256]    # qdtext, RFC 9110 §5.6.4
cdef unsigned char LOWER[256]
cdef signed char HEX_VALUE[256]
