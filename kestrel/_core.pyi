"""Type stubs for the Cython core (kestrel/_core.pyx)."""

import asyncio
import enum
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from socket import socket
from typing import Any, Final
from typing import Protocol as _Protocol

from kestrel.datastructures import MutableHeaders, QueryParams

class RejectReason(enum.IntEnum):
    """Why a message was refused. Each value maps to one status in REJECT_STATUS."""

    INVALID_REQUEST_LINE = ...  # 400
    INVALID_REQUEST_TARGET = ...  # 400
    INVALID_HTTP_VERSION = ...  # 400
    UNSUPPORTED_HTTP_VERSION = ...  # 505
    REQUEST_LINE_TOO_LONG = ...  # 414
    INVALID_LINE_ENDING = ...  # 400 (bare LF or bare CR)
    INVALID_HEADER_NAME = ...  # 400 (non-token, whitespace before colon, no colon)
    INVALID_HEADER_VALUE = ...  # 400 (NUL, CTL)
    OBSOLETE_LINE_FOLDING = ...  # 400 (line starting with SP/HTAB)
    HEADERS_TOO_LARGE = ...  # 431
    TOO_MANY_HEADERS = ...  # 431
    MISSING_HOST = ...  # 400
    MULTIPLE_HOST = ...  # 400
    INVALID_HOST = ...  # 400
    INVALID_CONTENT_LENGTH = ...  # 400
    CONFLICTING_CONTENT_LENGTH = ...  # 400
    CONTENT_LENGTH_WITH_TRANSFER_ENCODING = ...  # 400
    INVALID_TRANSFER_ENCODING = ...  # 400
    UNSUPPORTED_TRANSFER_ENCODING = ...  # 501
    INVALID_CHUNK_SIZE = ...  # 400
    INVALID_CHUNK_EXTENSION = ...  # 400
    CHUNK_EXTENSIONS_TOO_LARGE = ...  # 400
    MISSING_CHUNK_DATA_TERMINATOR = ...  # 400
    BODY_TOO_LARGE = ...  # 413
    INCOMPLETE_MESSAGE = ...  # 400 (EOF inside a message)
    REQUEST_HEADERS_TIMEOUT = ...  # 408 (the engine: the head did not arrive in time)
    REQUEST_BODY_TIMEOUT = ...  # 408 (the engine: the body came under the minimum rate)
    # HttpResponseParser's own (it raises every reason with status 502):
    INVALID_STATUS_LINE = ...  # 502 (not "HTTP/x.y SP 3DIGIT [SP reason]", or an empty line)
    INVALID_STATUS_CODE = ...  # 502 (not three digits from 100 to 999)
    STATUS_LINE_TOO_LONG = ...  # 502
    UNEXPECTED_RESPONSE = ...  # 502 (a response with no request outstanding: see expect())

REJECT_STATUS: Final[dict[RejectReason, int]]

class HttpParseError(Exception):
    reason: RejectReason
    status: int  # REJECT_STATUS[reason] for a request; 502 from HttpResponseParser
    def __init__(
        self, reason: RejectReason, detail: str = ..., status: int | None = ...
    ) -> None: ...

class RequestHead:
    """The request line and header section of one request."""

    method: str  # "GET", ... (any RFC 9110 token)
    target: bytes  # raw request-target as sent
    http_version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]  # (lowercased name, value without OWS), in order
    keep_alive: bool  # after this request, may the connection be reused?
    content_length: int  # -1 when absent or chunked
    chunked: bool
    upgrade: bool  # CONNECT, or Connection: upgrade + Upgrade
    expect_continue: bool  # Expect: 100-continue

# Default limits (kestrel/consts.pxi, with their precedents); kestrel.Limits uses them.
DEFAULT_MAX_REQUEST_LINE_SIZE: Final[int]
DEFAULT_MAX_REQUEST_HEADERS_SIZE: Final[int]
DEFAULT_MAX_REQUEST_HEADERS: Final[int]
DEFAULT_MAX_REQUEST_BODY_SIZE: Final[int]
DEFAULT_MAX_REQUEST_BUFFER_SIZE: Final[int]
DEFAULT_MAX_RESPONSE_BUFFER_SIZE: Final[int]
DEFAULT_MAX_KERNEL_UNSENT: Final[int]
DEFAULT_KEEP_ALIVE_TIMEOUT: Final[float]
DEFAULT_REQUEST_HEADERS_TIMEOUT: Final[float]
DEFAULT_MIN_REQUEST_BODY_RATE: Final[float]
DEFAULT_MIN_RESPONSE_RATE: Final[float]
DEFAULT_MIN_RATE_GRACE: Final[float]
DEFAULT_DRAIN_TIMEOUT: Final[float]
DEFAULT_MAX_DRAIN_SIZE: Final[int]
DEFAULT_GRACEFUL_TIMEOUT: Final[float]

class _Marker:
    name: str

NEED_DATA: Final[_Marker]  # feed more bytes
END_OF_MESSAGE: Final[_Marker]  # the current request's body is complete
PAUSED: Final[_Marker]  # parser stopped: connection closing or upgrade; see resume()
CLOSED: Final[_Marker]  # EOF was fed at a message boundary

Event = RequestHead | bytes | _Marker

class HttpParser:
    """Sans-IO HTTP/1.1 request parser."""

    max_request_line_size: int
    max_request_headers_size: int
    max_request_headers: int
    max_request_body_size: int  # -1: unlimited
    max_chunk_extensions_size: int
    def __init__(
        self,
        *,
        max_request_line_size: int = 8192,
        max_request_headers_size: int = 32768,
        max_request_headers: int = 100,
        max_request_body_size: int = 30_000_000,
        max_chunk_extensions_size: int = 16384,
    ) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def next_event(self) -> Event: ...
    def resume(self) -> None: ...
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def messages_completed(self) -> int: ...

class ResponseHead:
    """The status line and header section of one response."""

    status: int  # 100..999
    reason: bytes  # the reason phrase as sent (b"" when absent)
    http_version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]  # (lowercased name, value without OWS), in order
    keep_alive: bool  # after this response, may the connection carry another?
    # Body bytes that follow: 0 when the response can have none (to HEAD, 1xx, 204, 304),
    # -1 when chunked or running until the server closes (chunked says which).
    content_length: int
    chunked: bool

ResponseEvent = ResponseHead | bytes | _Marker

class HttpResponseParser:
    """Sans-IO HTTP/1.1 response parser, for a client; expect() each request sent."""

    # The request parser's limits, under its names: the status line, the header section,
    # the body (-1: unlimited, the default here) and chunk extensions.
    max_request_line_size: int
    max_request_headers_size: int
    max_request_headers: int
    max_request_body_size: int
    max_chunk_extensions_size: int
    def __init__(
        self,
        *,
        max_request_line_size: int = 8192,
        max_request_headers_size: int = 32768,
        max_request_headers: int = 100,
        max_request_body_size: int = -1,
        max_chunk_extensions_size: int = 16384,
        heads: bool = True,  # False: framing only (heads without reason or fields)
    ) -> None: ...
    def expect(self, head_request: bool = False) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def next_event(self) -> ResponseEvent: ...
    @property
    def head(self) -> ResponseHead | None: ...  # the last head reported
    @property
    def heads(self) -> bool: ...
    @property
    def status(self) -> int: ...  # the last status line's code (0 before the first)
    @property
    def outstanding(self) -> int: ...  # requests expected whose final response has not begun
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def messages_completed(self) -> int: ...

DEBUG_BUILD: bool

def debug_counters() -> dict[str, int]: ...

END_REASONS: Final[tuple[str, ...]]  # why connections end, as metrics name them

# ---- kestrel-bench's latency histogram (kestrel/histogram.pxi): microseconds, HdrHistogram's
# layout. Other Cython code records with histogram_record(&h.hist, value_us) (nogil).

DEFAULT_HISTOGRAM_LOWEST_US: Final[int]  # 1 us
DEFAULT_HISTOGRAM_HIGHEST_US: Final[int]  # 60 s
DEFAULT_HISTOGRAM_SIGNIFICANT_DIGITS: Final[int]  # 3: within 0.1 %
HISTOGRAM_FORMAT: Final[str]  # to_dict()'s "format"
HISTOGRAM_FORMAT_VERSION: Final[int]

class LatencyHistogram:
    """Latencies in whole microseconds; values outside the range are clamped and counted."""

    def __init__(
        self,
        *,
        lowest_us: int = 1,
        highest_us: int = 60_000_000,
        significant_digits: int = 3,
    ) -> None: ...
    def record(self, value_us: int) -> None: ...
    def record_many(self, value_us: int, count: int) -> None: ...
    def merge(self, other: LatencyHistogram) -> None: ...
    def reset(self) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def min(self) -> int: ...  # 0 when empty
    @property
    def max(self) -> int: ...  # 0 when empty
    @property
    def mean(self) -> float: ...  # exact; 0.0 when empty
    @property
    def stdev(self) -> float: ...  # population (statistics.pstdev); 0.0 when empty
    @property
    def clamped_low(self) -> int: ...
    @property
    def clamped_high(self) -> int: ...
    @property
    def lowest_us(self) -> int: ...
    @property
    def highest_us(self) -> int: ...
    @property
    def significant_digits(self) -> int: ...
    @property
    def sub_bucket_count(self) -> int: ...
    @property
    def bucket_count(self) -> int: ...
    @property
    def counts_length(self) -> int: ...  # counters, 8 bytes each
    def value_at_percentile(self, percentile: float) -> int: ...
    def percentiles(self, percentiles: Iterable[float]) -> dict[float, int]: ...
    def buckets(self) -> Iterator[tuple[int, int, int]]: ...  # (value_low_us, value_high_us, count)
    def to_dict(self) -> dict[str, Any]: ...
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyHistogram: ...

# Measurement only (perf/bench_histogram.py): (seconds, histogram) for recording `values`
# (native int64s) `rounds` times from C.
def _histogram_record_benchmark(values: bytes, rounds: int) -> tuple[float, LatencyHistogram]: ...

# ---- The engine.

class ClientDisconnect(Exception):
    """The client closed the connection before the request body was complete."""

class BadRequest(ValueError):
    """The request is malformed in a way only the framework sees (answered with 400)."""

class BodyConsumedError(RuntimeError):
    """The request body was already read in full."""

def split_query(query: bytes) -> QueryParams | None: ...

class Request:
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> bytes: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def client(self) -> tuple[str, int] | None: ...
    max_body_size: int  # this request's body limit (-1: none); starts at the server's
    head: RequestHead
    @property
    def content_length(self) -> int: ...  # -1: none sent, or chunked
    @property
    def raw_path(self) -> bytes: ...
    @property
    def query_string(self) -> bytes: ...
    @property
    def path(self) -> str: ...  # percent-decoded; raises BadRequest
    # Set by the framework's router, and the framework's caches (None until used).
    app: Any
    route: str | None
    path_params: Any
    _query: Any
    _headers: Any
    _cookies: Any
    _state: Any
    _form: Any
    def _routed(self, app: Any, route: str | None, path_params: Any) -> None: ...
    def stream(self) -> AsyncIterator[bytes]: ...
    async def body(self) -> bytes: ...

HeaderItems = (
    list[tuple[str | bytes, str | bytes]]
    | dict[str | bytes, str | bytes]
    | Mapping[str, str]
    | Iterable[tuple[str | bytes, str | bytes]]
)

class BaseResponse:
    """What the three kinds of response share."""

    status: int
    content_type: str | bytes | None
    @property
    def headers(self) -> MutableHeaders: ...
    @headers.setter
    def headers(self, value: HeaderItems | None) -> None: ...
    @property
    def status_code(self) -> int: ...

class Response(BaseResponse):
    body: bytes
    def __init__(
        self,
        body: bytes | str | bytearray | memoryview = b"",
        status: int = 200,
        headers: HeaderItems | None = None,
        content_type: str | bytes | None = None,
    ) -> None: ...

class StreamingResponse(BaseResponse):
    content: Any
    def __init__(
        self,
        content: Any,
        status: int = 200,
        headers: HeaderItems | None = None,
        content_type: str | bytes | None = None,
    ) -> None: ...

class FileResponse(BaseResponse):
    path: str
    filename: str | None
    def __init__(
        self,
        path: str | os.PathLike[str],
        status: int = 200,
        headers: HeaderItems | None = None,
        content_type: str | bytes | None = None,
        filename: str | None = None,
    ) -> None: ...

EAGER_TASKS_NATIVE: Final[bool]
REASON_PHRASES: Final[dict[int, bytes]]

def to_response(result: Any) -> Response | StreamingResponse | FileResponse: ...

class InvalidResponseError(RuntimeError):
    """A response the server cannot send unambiguously: answered with a 500 instead."""

class ResponseWriter:
    """The one builder of response heads; it decides each response's framing."""

    def format_head(
        self,
        status: int,
        *,
        method: str = ...,
        http_version: str = ...,
        keep_alive: bool = ...,
        headers: Any = ...,
        content_type: str | bytes | None = ...,
        body_length: int = ...,
    ) -> tuple[bytes, str, int, bool, bool]:
        """(head, framing: "none" | "length" | "chunked" | "close", length, close, send_body)"""

def new_response_writer(server_header: str | None = ...) -> ResponseWriter: ...

class EpollSelector:
    # time.monotonic() when the loop left epoll_wait; 0.0 while it waits.
    @property
    def busy_since(self) -> float: ...

class LoopWatch:
    """A native thread calling callback(held_seconds) for each pass of the loop over threshold."""

    def __init__(
        self, selector: EpollSelector, threshold: float, callback: Callable[[float], object]
    ) -> None: ...
    @property
    def passes(self) -> int: ...
    @property
    def callbacks(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

class KestrelEventLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None: ...

class HttpServer:
    connections_total: int
    requests_total: int
    responses_total: int
    bytes_read: int
    bytes_written: int
    def __init__(
        self,
        app: Callable[[Any], Awaitable[Any]],
        *,
        loop: asyncio.AbstractEventLoop,
        limits: Any = None,  # a kestrel.Limits; None: its defaults
        access_log: bool = False,
        server_header: str | None = "kestrel",
        max_parser_body_size: int = ...,
        request_class: type[Request] | None = None,
        heartbeat_interval: float | None = None,
        metrics_path: str | None = None,
        metrics_renderer: Callable[[], bytes] | None = None,
        error_response: Callable[[Request, Exception], Response | None] | None = None,
        accepts_connect: bool = False,
    ) -> None: ...
    drained_bodies: int
    connections_rejected: int
    async def shutdown(self, timeout: float = 30.0) -> None: ...
    def metrics(self) -> dict[str, Any]: ...
    read_pauses: int
    write_pauses: int
    accept_pauses: int
    def listen(self, sock: socket) -> None: ...
    def adopt(self, sock: socket, peer: tuple[str, int] | None = None) -> None: ...
    def open_in_memory(self, peer: tuple[str, int] = ...) -> MemoryTransport: ...
    def check_deadlines(self, now: float) -> None: ...
    def close(self) -> None: ...

class UpgradeReceiver(_Protocol):
    """What Http1Processor.upgrade() hands a connection's bytes to."""

    def data_received(self, data: bytes) -> object: ...  # b"": the client's EOF
    def connection_lost(self) -> object: ...

class Http1Processor:
    """One connection's HTTP/1 processor (reached in tests as MemoryTransport.processor)."""

    def upgrade(self, receiver: UpgradeReceiver) -> None: ...
    def send_raw(self, data: bytes) -> None: ...

class MemoryTransport:
    """The transport contract over memory, for tests (HttpServer.open_in_memory())."""

    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def pump(self) -> None: ...
    def read(self, window: int | None = None) -> bytes: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def was_reset(self) -> bool: ...
    @property
    def fin_sent(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def held_bytes(self) -> int: ...
    @property
    def processor(self) -> Http1Processor: ...

FIRST_STEP_WITHOUT_TASK: Final[bool]

class RequestTask(asyncio.Task[Any]):
    """The Task a request handler runs as; initialized only if the handler suspends."""

class LoadGenerator:
    """kestrel-bench's client loop (load_generator.pxi): HTTP/1.1 load on `connections`
    connections to one address, timed into `histogram`."""

    histogram: LatencyHistogram
    def __init__(
        self,
        family: int,
        address: bytes,
        request: bytes,
        *,
        connections: int = 64,
        pipeline: int = 1,
        head_requests: bool = False,
        timeout: float = 10.0,
        rate: float = 0.0,
        requests: int = -1,
        histogram: LatencyHistogram | None = None,
    ) -> None: ...
    def run(self, seconds: float) -> None: ...
    def reset_counters(self) -> None: ...
    def counters(self) -> dict[str, Any]: ...
    @property
    def finished(self) -> bool: ...
    def close(self) -> None: ...
