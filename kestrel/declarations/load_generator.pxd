# Declarations of the load generator (load_generator.pxi).

cdef enum:
    MAX_PIPELINE = 256

cdef struct ClientConnection:
    int fd
    int state
    int in_flight              # requests sent whose response has not ended
    int queued                 # requests due but not yet handed to send()
    Py_ssize_t out_offset      # a partial send: where the unsent part of the block starts
    Py_ssize_t out_end         # and where it ends (0: nothing pending)
    int ring_head              # stamps of requests in flight, oldest first (a ring)
    uint64_t last_progress     # the last send or receive, for the timeout
    uint64_t next_due          # open loop: when the next request is due
    uint64_t retry_at          # CS_RETRY: when to connect again
    bint out_armed             # EPOLLOUT is in the interest set
    unsigned int epoch         # connects so far: tells a schedule entry of a closed one
    bint scheduled             # open loop: has an entry (of this epoch) in the schedule


cdef struct DueEntry:
    uint64_t due               # when the connection's next request is due
    int conn
    unsigned int epoch         # the connection's epoch when it was scheduled


cdef class LoadGenerator:
    cdef int epfd
    cdef int family
    cdef bytes address            # a packed sockaddr_in / sockaddr_in6
    cdef bytes block              # `pipeline` copies of the request
    cdef Py_ssize_t request_size
    cdef int connections
    cdef int pipeline
    cdef bint head_requests       # responses to HEAD have no body
    cdef uint64_t timeout_ns
    cdef uint64_t interval_ns     # open loop: per connection; 0 = closed loop
    cdef ClientConnection* conns
    cdef uint64_t* stamps         # connections x pipeline send (or due) times
    cdef list parsers
    cdef char* scratch
    cdef Py_ssize_t scratch_size
    cdef epoll_event* events
    cdef DueEntry* schedule       # open loop: a min-heap of connections by next due time
    cdef Py_ssize_t schedule_len, schedule_cap
    cdef readonly LatencyHistogram histogram
    cdef long long request_budget # --requests: requests still to send (-1: no budget)
    # Counters (read by counters(); reset by reset_counters()).
    cdef long long completed, bytes_read, bytes_written
    cdef long long status_classes[6]
    cdef long long connect_errors, read_errors, write_errors, timeouts, malformed
    cdef long long reconnects, closed_by_server, sent
    cdef bint _finished(self)
    cdef void _on_events(self, int i, uint32_t events)
    cdef void _read(self, int i)
    cdef int _parse(self, int i, HttpResponseParser parser, char* data, Py_ssize_t size,
                    uint64_t now, bint* closing)
    cdef void _refill(self, int i, uint64_t now)
    cdef void _queue(self, int i, int count, uint64_t stamp)
    cdef void _send(self, int i, uint64_t now)
    cdef void _start_queued(self, int i)
    cdef void _expect(self, int i, int count)
    cdef void _arm_out(self, int i, bint on)
    cdef uint64_t _send_due(self, uint64_t now, uint64_t wake)
    cdef void _send_connection_due(self, int i, uint64_t now)
    cdef void _schedule_push(self, int i)
    cdef DueEntry _schedule_pop(self)
    cdef void _connect(self, int i, uint64_t now)
    cdef void _close(self, int i)
    cdef void _fail(self, int i, long long* counter)
    cdef void _reopen(self, int i, uint64_t now)
    cdef void _check(self, uint64_t now)
