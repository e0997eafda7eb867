# Declarations of timeout control (timeouts.pxi).

cdef struct Deadline:
    int kind                          # DeadlineKind (consts.pxi)
    double at                         # when it passes (monotonic seconds)

cdef struct RateClock:
    double started                    # waiting on the peer since (0.0: not waiting)
    double total                      # seconds waited before that
    long long bytes                   # bytes the peer moved while waited on
