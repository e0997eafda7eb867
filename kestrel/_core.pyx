# cython: language_level=3
"""kestrel's engine: one extension module so the per-request path is C calls end to end.

Theory of operation
-------------------
This module is assembled from fragments, each with its own theory of operation:

- consts.pxi            default limits (with precedents), event codes, states, rejection reasons
- message.pxi           the sans-IO HTTP/1.1 message machinery (lines, fields, framing, chunks)
- parser.pxi            the request parser: the request-line front end of that machinery
- response_parser.pxi   the response parser (for a client): the status-line front end
- pool.pxi              the buffer pool of 4 KiB blocks, and pipes of blocks
- engine.pxi            the epoll selector asyncio runs on, which also owns the HTTP sockets
- watchdog.pxi          the native thread that watches the loop for a pass that holds it too long
- timeouts.pxi          timeout control: deadlines and minimum data rates
- histogram.pxi         kestrel-bench's latency histogram (HdrHistogram's layout), recorded in C
- response_writer.pxi   the one builder of response heads, which owns framing
- responses.pxi         the responses a handler returns, and the one mapping of its result
- transport.pxi         what carries a connection's bytes: socket, and memory for tests
- request.pxi           the request a handler is handed, and its body stream
- file_response.pxi     files: validators, conditional requests, Range
- handler_step.pxi      a handler's first step without a Task; the event loop class
- service_context.pxi   what every connection shares from its server
- http1.pxi             the HTTP/1 processor: one connection's requests and responses
- listener.pxi          accepting connections
- server.pxi            the server object, the connection table, the heartbeat

Each fragment depends only on fragments listed before it, and has its declarations in
kestrel/declarations/ (one .pxd each, included by _core.pxd in the same order).

The core never imports the Python layer, except kestrel.datastructures (a leaf module) for
the MutableHeaders a Response hands out and the QueryParams split_query makes; the Python
layer imports the core.

Debug builds (KESTREL_DEBUG=1 at build time) count allocations and frees of every object the
core manages; debug_counters() returns them so tests can assert that they balance.
"""

cimport cython

cdef extern from *:
    """
    #ifndef KESTREL_DEBUG
    #define KESTREL_DEBUG 0
    #endif
    """
    const int KESTREL_DEBUG

include "consts.pxi"

from kestrel.datastructures import Headers, MutableHeaders, QueryParams

cdef dict _DEBUG_COUNTERS = {}

cdef void _debug_count(str name, long delta) noexcept:
    _DEBUG_COUNTERS[name] = _DEBUG_COUNTERS.get(name, 0) + delta


def debug_counters():
    """Allocation counters of a debug build (empty in a release build)."""
    return dict(_DEBUG_COUNTERS)


DEBUG_BUILD = bool(KESTREL_DEBUG)

include "message.pxi"
include "parser.pxi"
include "response_parser.pxi"
include "pool.pxi"
include "engine.pxi"
include "watchdog.pxi"
include "timeouts.pxi"
include "histogram.pxi"
include "response_writer.pxi"
include "responses.pxi"
include "transport.pxi"
include "request.pxi"
include "file_response.pxi"
include "handler_step.pxi"
include "service_context.pxi"
include "http1.pxi"
include "listener.pxi"
include "server.pxi"
include "load_generator.pxi"
