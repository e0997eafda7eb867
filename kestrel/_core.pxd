# Declarations of the core's cdef classes, one file per fragment (kestrel/declarations/),
# included in the fragments' order, so other Cython modules can call their C methods directly.

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport uint32_t
from posix.types cimport off_t
from kestrel.includes.system cimport epoll_event, iovec, pthread_t, timespec

include "declarations/message.pxd"
include "declarations/parser.pxd"
include "declarations/response_parser.pxd"
include "declarations/pool.pxd"
include "declarations/engine.pxd"
include "declarations/watchdog.pxd"
include "declarations/timeouts.pxd"
include "declarations/histogram.pxd"
include "declarations/response_writer.pxd"
include "declarations/responses.pxd"
include "declarations/transport.pxd"
include "declarations/request.pxd"
include "declarations/file_response.pxd"
include "declarations/service_context.pxd"
include "declarations/http1.pxd"
include "declarations/listener.pxd"
include "declarations/server.pxd"
include "declarations/load_generator.pxd"
