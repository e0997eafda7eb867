# Timeout control: the deadlines and minimum data rates of the request contract.
#
# Theory of operation
# -------------------
# No connection has a timer of its own. Each keeps one Deadline (what it is for, and when it
# passes) and the server's one heartbeat looks at every connection once per tick (server.pxi),
# as Kestrel's heartbeat does; a deadline is therefore overshot by at most one tick, which the
# server keeps under a quarter of the shortest timeout.
#
# Which deadline applies is derived from the HTTP/1 processor's state, never stored beside
# it (Http1Processor._deadline_kind): keep-alive while idle, the headers timeout from the
# first byte of a head, the drain timeout while an unread body is drained, the linger time
# after our FIN. A deadline is armed when its kind changes, so it runs from the moment the
# connection entered that state.
#
# The minimum rates are measured with a RateClock over the time spent waiting on the peer
# only: a request body's clock runs while a read waits for bytes, a response's while output
# is blocked on the peer. A handler that takes its time, or a peer that is simply fast, is
# never counted against the peer. Below the rate, after a grace period, the peer is too slow.


cdef inline void deadline_arm(Deadline* deadline, int kind, double seconds) noexcept:
    """Set `kind` running from now, unless it is what already runs."""
    if deadline.kind != kind:
        deadline.kind = kind
        deadline.at = _monotonic() + seconds if kind != DL_NONE else 0.0


cdef inline void rate_clock_start(RateClock* clock) noexcept:
    """The peer is being waited on from now (a read waits, or output is blocked)."""
    if not clock.started:
        clock.started = _monotonic()


cdef inline void rate_clock_stop(RateClock* clock) noexcept:
    if clock.started:
        clock.total += _monotonic() - clock.started
        clock.started = 0.0


cdef inline void rate_clock_count(RateClock* clock, long long size) noexcept:
    """The peer moved `size` bytes; they count toward the rate only while it was waited on."""
    if clock.started:
        clock.bytes += size


cdef inline void rate_clock_reset(RateClock* clock) noexcept:
    """Measure afresh (a new response), from a wait that may be under way."""
    clock.total = 0.0
    clock.bytes = 0


cdef inline double rate_clock_waited(const RateClock* clock, double now) noexcept:
    return clock.total + (now - clock.started if clock.started else 0.0)


cdef inline bint rate_below(double moved, double waited, double minimum,
                            double grace) noexcept:
    """Too slow: waited past the grace period, at under `minimum` bytes per second."""
    return minimum > 0 and waited > grace and moved < minimum * waited
