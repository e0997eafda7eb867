# Declarations of the latency histogram (histogram.pxi), and its hot path.
#
# Unlike the other fragments' inline helpers, the recording functions live here, not in the
# .pxi: a cdef inline function is compiled into the modules that cimport it only when its body
# is in the .pxd, and a load generator may record from a module of its own (one histogram per
# thread, no GIL). Everything they touch is in this file.

from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    typedef unsigned __int128 kestrel_u128;
    """
    # 128 bits in C (GCC and Clang). Cython need only know it is an unsigned integer; it never
    # converts one to or from a Python int (histogram.pxi does that a half at a time).
    ctypedef unsigned long long kestrel_u128
    int __builtin_clzll(unsigned long long x) nogil


cdef struct Histogram:
    # The layout, fixed by histogram_init (HdrHistogram's names; the .pxi derives them).
    int64_t lowest_us                 # values below are recorded as this, and counted
    int64_t highest_us                # values above are recorded as this, and counted
    int significant_digits
    int unit_magnitude                # log2 of the resolution of the first bucket
    int sub_bucket_half_count_magnitude
    int64_t sub_bucket_half_count
    uint64_t sub_bucket_mask          # (sub_bucket_count - 1) << unit_magnitude
    int leading_zero_count_base       # 64 - unit_magnitude - sub_bucket_half_count_magnitude - 1
    int bucket_count
    Py_ssize_t counts_length          # (bucket_count + 1) * sub_bucket_half_count
    uint64_t* counts                  # one counter per range of equivalent values
    # What was recorded (after clamping). Sums are 128 bits: with highest_us <= 2^32 neither
    # can overflow before total_count does (see histogram.pxi).
    uint64_t total_count
    uint64_t clamped_low
    uint64_t clamped_high
    int64_t min_us                    # INT64_MAX while empty
    int64_t max_us                    # 0 while empty
    kestrel_u128 sum_us
    kestrel_u128 sum_squares_us2


cdef inline Py_ssize_t histogram_index(const Histogram* h, int64_t value_us) noexcept nogil:
    """The counter of `value_us`, which must lie in [0, highest_us]."""
    # The bucket is the power of two above the sub-bucket range that value_us falls under: a
    # bit scan. Buckets after the first share their lower half with the one before, so each
    # adds only sub_bucket_half_count counters.
    cdef int bucket = h.leading_zero_count_base - __builtin_clzll(
        <uint64_t>value_us | h.sub_bucket_mask)
    cdef Py_ssize_t sub_bucket = <Py_ssize_t>(value_us >> (bucket + h.unit_magnitude))
    return (((<Py_ssize_t>bucket + 1) << h.sub_bucket_half_count_magnitude)
            + sub_bucket - h.sub_bucket_half_count)


cdef inline void histogram_record_n(Histogram* h, int64_t value_us, uint64_t n) noexcept nogil:
    """Record `value_us` microseconds `n` times.

    Out of [lowest_us, highest_us] (a negative value included), the value is clamped to the
    range and counted in clamped_low or clamped_high. Touches no Python object.
    """
    if n == 0:  # recording nothing must not move min and max
        return
    if value_us < h.lowest_us:
        value_us = h.lowest_us
        h.clamped_low += n
    elif value_us > h.highest_us:
        value_us = h.highest_us
        h.clamped_high += n
    h.counts[histogram_index(h, value_us)] += n
    h.total_count += n
    if value_us < h.min_us:
        h.min_us = value_us
    if value_us > h.max_us:
        h.max_us = value_us
    h.sum_us += <kestrel_u128>value_us * n
    h.sum_squares_us2 += <kestrel_u128>value_us * <kestrel_u128>value_us * n


cdef inline void histogram_record(Histogram* h, int64_t value_us) noexcept nogil:
    """Record one value (microseconds); see histogram_record_n."""
    histogram_record_n(h, value_us, 1)


cdef class LatencyHistogram:
    # The struct is a member, so &histogram.hist stays valid while the object lives.
    cdef Histogram hist
