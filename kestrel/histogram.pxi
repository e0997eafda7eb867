# The latency histogram of kestrel-bench: HdrHistogram's log-linear layout, recorded in C.
#
# Theory of operation
# -------------------
# Latencies are whole microseconds, as wrk2 records them (hdr_init(1, MAX_LATENCY, 3)). A
# histogram keeps `significant_digits` decimal digits of every value. sub_bucket_count is the
# power of two at or above 2 * 10^digits (2048 for 3 digits); values below it each have a
# counter of their own, and bucket b >= 1 covers [sub_bucket_count/2 * 2^b,
# sub_bucket_count * 2^b) with sub_bucket_count/2 counters 2^b wide. A counter 2^b wide starts
# at 1024 * 2^b or more, so a value shares its counter only with values within 1/1024
# (0.098 %) of it. Finding the counter is a bit scan and two shifts (histogram_index, in the
# .pxd); recording is that and a few increments, with no branch taken but the clamps'.
#
# The default layout (1 us to 60 s, 3 digits): 2048 sub-buckets, 16 buckets, 17,408 counters
# of 8 bytes, 136 KiB, allocated once (calloc) and never resized. HdrHistogram lays out the
# same parameters the same way (unit_magnitude 0, sub_bucket_half_count 1024).
#
# Percentiles follow HdrHistogram: the value at percentile p is the lowest recorded value v
# such that at least p % of the count is <= v, that is the value of rank
# r = max(1, ceil(p / 100 * count)) in sorted order. It is reported as the highest value
# equivalent to v (the top of v's counter), clamped to the recorded [min, max], and rank 1 is
# the minimum itself: a reported percentile is never below the true one, and above it by less
# than 0.1 %. (HdrHistogram reports the lowest equivalent value for p = 0, and does not clamp;
# the extremes are known exactly here.) The rank is computed in integers, with p rounded to a
# multiple of 10^-7: in floating point, 99.9 / 100 * 1000 is 999.0000000000001, whose
# ceiling would make the 99.9th percentile of 1000 values the largest of them.
#
# Invariants
# - counts has counts_length entries; total_count is their sum.
# - What is recorded is clamped to [lowest_us, highest_us] first, and counted as clamped;
#   min_us, max_us, sum_us and sum_squares_us2 are of the clamped values, exact (HdrHistogram
#   computes its mean from the counters instead).
# - highest_us <= 2^32 (71 minutes), so a value squared is at most 2^64 and, while total_count
#   < 2^64, sum_squares_us2 < 2^128: the sums cannot overflow before the count does. From C the
#   count cannot overflow in practice (2^64 records); record_many() and merge() refuse to.
# - Two histograms merge only if they have the same layout (lowest_us, highest_us, digits).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.math cimport llround, sqrt
from libc.stdint cimport INT64_MAX, UINT64_MAX, int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

DEFAULT_HISTOGRAM_LOWEST_US = 1             # wrk2: 1 us, its recording unit
DEFAULT_HISTOGRAM_HIGHEST_US = 60_000_000   # 60 s (issue #11): past any sane client timeout
DEFAULT_HISTOGRAM_SIGNIFICANT_DIGITS = 3    # wrk2 and HdrHistogram's examples: 0.1 %

# The most highest_us may be: keeps value^2 within 64 bits (see the invariants).
cdef int64_t HISTOGRAM_MAX_HIGHEST_US = 1LL << 32

cdef enum:
    # p is taken in parts per PERCENTILE_SCALE of 100 % (10^-7 %), so ranks are integer math.
    PERCENTILE_SCALE = 1000000000

HISTOGRAM_FORMAT = "kestrel.LatencyHistogram"
HISTOGRAM_FORMAT_VERSION = 1


cdef int histogram_init(Histogram* h, int64_t lowest_us, int64_t highest_us,
                        int significant_digits) except -1:
    """Lay out an empty histogram and allocate its counters (HdrHistogram's derivation)."""
    cdef int64_t largest_single_unit = 2
    cdef int64_t smallest_untrackable
    cdef int sub_bucket_count_magnitude = 0
    cdef int i
    h.counts = NULL
    if lowest_us < 1:
        raise ValueError(f"lowest_us must be at least 1, not {lowest_us}")
    if highest_us < 2 * lowest_us:
        raise ValueError(
            f"highest_us must be at least twice lowest_us ({lowest_us}), not {highest_us}")
    if highest_us > HISTOGRAM_MAX_HIGHEST_US:
        raise ValueError(
            f"highest_us must be at most 2**32 ({HISTOGRAM_MAX_HIGHEST_US}), not {highest_us}")
    if not 1 <= significant_digits <= 5:
        raise ValueError(
            f"significant_digits must be within 1..5, not {significant_digits}")
    for i in range(significant_digits):
        largest_single_unit *= 10
    while (1LL << sub_bucket_count_magnitude) < largest_single_unit:
        sub_bucket_count_magnitude += 1
    h.lowest_us = lowest_us
    h.highest_us = highest_us
    h.significant_digits = significant_digits
    h.unit_magnitude = 63 - __builtin_clzll(<uint64_t>lowest_us)
    h.sub_bucket_half_count_magnitude = sub_bucket_count_magnitude - 1
    h.sub_bucket_half_count = 1LL << h.sub_bucket_half_count_magnitude
    h.sub_bucket_mask = ((1ULL << sub_bucket_count_magnitude) - 1) << h.unit_magnitude
    h.leading_zero_count_base = 64 - h.unit_magnitude - h.sub_bucket_half_count_magnitude - 1
    # One bucket per doubling until the buckets reach past highest_us.
    smallest_untrackable = (1LL << sub_bucket_count_magnitude) << h.unit_magnitude
    h.bucket_count = 1
    while smallest_untrackable <= highest_us:
        smallest_untrackable <<= 1
        h.bucket_count += 1
    h.counts_length = (h.bucket_count + 1) * h.sub_bucket_half_count
    h.counts = <uint64_t*>calloc(h.counts_length, sizeof(uint64_t))
    if h.counts == NULL:
        raise MemoryError()
    histogram_reset(h)
    return 0


cdef void histogram_reset(Histogram* h) noexcept nogil:
    memset(h.counts, 0, h.counts_length * sizeof(uint64_t))
    h.total_count = 0
    h.clamped_low = 0
    h.clamped_high = 0
    h.min_us = INT64_MAX
    h.max_us = 0
    h.sum_us = 0
    h.sum_squares_us2 = 0


cdef inline int histogram_bucket_of(const Histogram* h, Py_ssize_t index) noexcept nogil:
    cdef int bucket = <int>(index >> h.sub_bucket_half_count_magnitude) - 1
    return bucket if bucket > 0 else 0


cdef int64_t histogram_value_low(const Histogram* h, Py_ssize_t index) noexcept nogil:
    """The lowest value counted by counter `index`."""
    cdef int bucket = <int>(index >> h.sub_bucket_half_count_magnitude) - 1
    cdef int64_t sub_bucket = (index & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
    if bucket < 0:  # the first bucket's lower half: the counters below sub_bucket_half_count
        sub_bucket -= h.sub_bucket_half_count
        bucket = 0
    return sub_bucket << (bucket + h.unit_magnitude)


cdef int64_t histogram_value_high(const Histogram* h, Py_ssize_t index) noexcept nogil:
    """The highest value counted by counter `index`."""
    return (histogram_value_low(h, index)
            + (1LL << (histogram_bucket_of(h, index) + h.unit_magnitude)) - 1)


cdef uint64_t histogram_rank(uint64_t total_count, double percentile) noexcept nogil:
    """max(1, ceil(percentile / 100 * total_count)), percentile in [0, 100] to 10^-7."""
    cdef uint64_t parts = <uint64_t>llround(percentile * (PERCENTILE_SCALE / 100))
    # total = whole * SCALE + part; whole * parts <= total_count and part * parts < 10^18,
    # so nothing overflows 64 bits.
    cdef uint64_t whole = total_count // PERCENTILE_SCALE
    cdef uint64_t part = total_count % PERCENTILE_SCALE
    cdef uint64_t rank = whole * parts + (part * parts + PERCENTILE_SCALE - 1) // PERCENTILE_SCALE
    return rank if rank > 0 else 1


cdef int64_t histogram_value_at_rank(const Histogram* h, uint64_t rank) noexcept nogil:
    """The `rank`-th smallest value (1-based) as reported (see above); 0 if empty."""
    cdef uint64_t seen = 0
    cdef Py_ssize_t i
    cdef int64_t value
    if h.total_count == 0:
        return 0
    if rank <= 1:
        return h.min_us
    for i in range(h.counts_length):
        seen += h.counts[i]
        if seen >= rank:
            value = histogram_value_high(h, i)
            return value if value < h.max_us else h.max_us
    return h.max_us  # rank > total_count: the last value


cdef int64_t histogram_value_at_percentile(const Histogram* h, double percentile) noexcept nogil:
    """The value at `percentile` (0..100, checked by the caller); 0 if empty."""
    return histogram_value_at_rank(h, histogram_rank(h.total_count, percentile))


cdef bint histogram_same_layout(const Histogram* a, const Histogram* b) noexcept nogil:
    return (a.lowest_us == b.lowest_us and a.highest_us == b.highest_us
            and a.significant_digits == b.significant_digits)


cdef str _histogram_layout(const Histogram* h):
    return f"{h.lowest_us}..{h.highest_us} us, {h.significant_digits} digits"


cdef int histogram_merge(Histogram* into, const Histogram* other) except -1:
    """Add `other`'s records to `into` (per-thread histograms into one)."""
    cdef Py_ssize_t i
    if not histogram_same_layout(into, other):
        raise ValueError(
            f"cannot merge histograms of different layouts: {_histogram_layout(other)} "
            f"into {_histogram_layout(into)}")
    if other.total_count > UINT64_MAX - into.total_count:
        raise OverflowError("the merged histogram would count more than 2**64 - 1 values")
    # `other` may be `into` itself (doubling it): read each counter before writing it.
    for i in range(into.counts_length):
        into.counts[i] += other.counts[i]
    into.total_count += other.total_count
    into.clamped_low += other.clamped_low
    into.clamped_high += other.clamped_high
    if other.min_us < into.min_us:
        into.min_us = other.min_us
    if other.max_us > into.max_us:
        into.max_us = other.max_us
    into.sum_us += other.sum_us
    into.sum_squares_us2 += other.sum_squares_us2
    return 0


cdef object _u128_to_int(kestrel_u128 value):
    return (<object>(<uint64_t>(value >> 64)) << 64) | <object>(<uint64_t>value)


cdef kestrel_u128 _int_to_u128(object value):
    """`value`, already checked to be an int in [0, 2**128)."""
    return ((<kestrel_u128>(<uint64_t>(value >> 64)) << 64)
            | <kestrel_u128>(<uint64_t>(value & 0xFFFFFFFFFFFFFFFF)))


cdef int64_t _histogram_value(object value_us) except? -1:
    """A value from Python: an int >= 0; one past int64 is recorded as clamped high."""
    cdef int overflow = 0
    cdef long long value = PyLong_AsLongLongAndOverflow(value_us, &overflow)
    if overflow > 0:
        return INT64_MAX
    if overflow < 0 or value < 0:
        raise ValueError(f"a latency cannot be negative: {value_us!r} us")
    return value


cdef int _check_percentile(double percentile) except -1:
    if not 0.0 <= percentile <= 100.0:  # also refuses NaN
        raise ValueError(f"a percentile must be within 0..100, not {percentile!r}")
    return 0


cdef object _dict_int(dict data, str key, object low, object high):
    """data[key], an int within [low, high], or a ValueError that names the key."""
    try:
        value = data[key]
    except KeyError:
        raise ValueError(f"histogram dict: {key!r} is missing") from None
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"histogram dict: {key!r} must be an int within {low}..{high}, "
                         f"not {value!r}")
    return value


cdef class LatencyHistogram:
    """Latencies in microseconds, HdrHistogram's layout: see kestrel/histogram.pxi."""

    def __cinit__(self, *, int64_t lowest_us=DEFAULT_HISTOGRAM_LOWEST_US,
                  int64_t highest_us=DEFAULT_HISTOGRAM_HIGHEST_US,
                  int significant_digits=DEFAULT_HISTOGRAM_SIGNIFICANT_DIGITS):
        self.hist.counts = NULL
        histogram_init(&self.hist, lowest_us, highest_us, significant_digits)
        if KESTREL_DEBUG:
            _debug_count("histogram_alloc", 1)

    def __dealloc__(self):
        if self.hist.counts != NULL:
            free(self.hist.counts)
            if KESTREL_DEBUG:
                _debug_count("histogram_free", 1)

    def record(self, value_us):
        """Record one latency, in whole microseconds (clamped to the range, and counted)."""
        histogram_record(&self.hist, _histogram_value(value_us))

    def record_many(self, value_us, count):
        """Record one latency `count` times."""
        cdef int64_t value = _histogram_value(value_us)
        if count < 0:
            raise ValueError(f"a count cannot be negative: {count!r}")
        if count > UINT64_MAX - self.hist.total_count:
            raise OverflowError("the histogram would count more than 2**64 - 1 values")
        if count == 0:
            return
        histogram_record_n(&self.hist, value, <uint64_t>count)

    def merge(self, LatencyHistogram other not None):
        """Add another histogram's records to this one; the layouts must be the same."""
        histogram_merge(&self.hist, &other.hist)

    def reset(self):
        histogram_reset(&self.hist)

    @property
    def count(self):
        return self.hist.total_count

    @property
    def min(self):
        """The smallest value recorded (after clamping); 0 when empty."""
        return self.hist.min_us if self.hist.total_count else 0

    @property
    def max(self):
        """The largest value recorded (after clamping); 0 when empty."""
        return self.hist.max_us

    @property
    def mean(self):
        """The exact mean of the values recorded (not of their counters); 0.0 when empty."""
        if self.hist.total_count == 0:
            return 0.0
        return _u128_to_int(self.hist.sum_us) / self.hist.total_count

    @property
    def stdev(self):
        """The population standard deviation (statistics.pstdev's); 0.0 when empty."""
        cdef object n = self.hist.total_count
        cdef object total, squares
        if n == 0:
            return 0.0
        total = _u128_to_int(self.hist.sum_us)
        squares = _u128_to_int(self.hist.sum_squares_us2)
        # n * variance * n, exact in integers; one rounding in the division, one in sqrt.
        return sqrt((n * squares - total * total) / (n * n))

    @property
    def clamped_low(self):
        """How many values were below lowest_us (negative ones from C included)."""
        return self.hist.clamped_low

    @property
    def clamped_high(self):
        """How many values were above highest_us."""
        return self.hist.clamped_high

    @property
    def lowest_us(self):
        return self.hist.lowest_us

    @property
    def highest_us(self):
        return self.hist.highest_us

    @property
    def significant_digits(self):
        return self.hist.significant_digits

    @property
    def sub_bucket_count(self):
        return 2 * self.hist.sub_bucket_half_count

    @property
    def bucket_count(self):
        return self.hist.bucket_count

    @property
    def counts_length(self):
        """How many counters the histogram holds (8 bytes each)."""
        return self.hist.counts_length

    def value_at_percentile(self, double percentile):
        """The lowest value v with at least `percentile` % of the count <= v.

        Reported as the top of v's counter, clamped to [min, max] (the minimum for p = 0):
        never below the true value, above it by less than 0.1 %. 0 when empty.
        """
        _check_percentile(percentile)
        return histogram_value_at_percentile(&self.hist, percentile)

    def percentiles(self, percentiles):
        """{p: value_at_percentile(p)} for each p of `percentiles`."""
        cdef dict result = {}
        for p in percentiles:
            _check_percentile(p)
            result[p] = histogram_value_at_percentile(&self.hist, p)
        return result

    def buckets(self):
        """(value_low_us, value_high_us, count) of each counter that counted, in order."""
        cdef Py_ssize_t i
        for i in range(self.hist.counts_length):
            if self.hist.counts[i]:
                yield (histogram_value_low(&self.hist, i), histogram_value_high(&self.hist, i),
                       self.hist.counts[i])

    def to_dict(self):
        """A JSON-ready dict: the layout, the statistics, and the counters that counted."""
        cdef Py_ssize_t i
        cdef list buckets = []
        for i in range(self.hist.counts_length):
            if self.hist.counts[i]:
                buckets.append([histogram_value_low(&self.hist, i), self.hist.counts[i]])
        return {
            "format": HISTOGRAM_FORMAT,
            "version": HISTOGRAM_FORMAT_VERSION,
            "unit": "us",
            "lowest_us": self.hist.lowest_us,
            "highest_us": self.hist.highest_us,
            "significant_digits": self.hist.significant_digits,
            "count": self.hist.total_count,
            "min_us": self.min,
            "max_us": self.hist.max_us,
            "sum_us": _u128_to_int(self.hist.sum_us),
            "sum_squares_us2": _u128_to_int(self.hist.sum_squares_us2),
            "clamped_low": self.hist.clamped_low,
            "clamped_high": self.hist.clamped_high,
            "buckets": buckets,
        }

    @classmethod
    def from_dict(cls, data):
        """The histogram to_dict() described; ValueError if `data` is not such a dict."""
        cdef LatencyHistogram histogram
        cdef Histogram* h
        cdef Py_ssize_t index, previous = -1, first = -1
        cdef object count, total = 0, value, counted, sum_us, squares, low, high
        if not isinstance(data, dict):
            raise ValueError(f"histogram dict: expected a dict, not {type(data).__name__}")
        if data.get("format") != HISTOGRAM_FORMAT or data.get("version") != HISTOGRAM_FORMAT_VERSION:
            raise ValueError(f"histogram dict: not a {HISTOGRAM_FORMAT} version "
                             f"{HISTOGRAM_FORMAT_VERSION} (format {data.get('format')!r}, "
                             f"version {data.get('version')!r})")
        if data.get("unit") != "us":
            raise ValueError(f"histogram dict: unit must be 'us', not {data.get('unit')!r}")
        histogram = cls(
            lowest_us=_dict_int(data, "lowest_us", 1, HISTOGRAM_MAX_HIGHEST_US),
            highest_us=_dict_int(data, "highest_us", 1, HISTOGRAM_MAX_HIGHEST_US),
            significant_digits=_dict_int(data, "significant_digits", 1, 5))
        h = &histogram.hist
        count = _dict_int(data, "count", 0, UINT64_MAX)
        buckets = data.get("buckets")
        if not isinstance(buckets, list):
            raise ValueError("histogram dict: 'buckets' must be a list of [value_low_us, count]")
        for entry in buckets:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise ValueError(f"histogram dict: a bucket must be [value_low_us, count], "
                                 f"not {entry!r}")
            value, counted = entry
            if type(value) is not int or not 0 <= value <= h.highest_us:
                raise ValueError(f"histogram dict: bucket value {value!r} is out of range")
            if type(counted) is not int or not 1 <= counted <= count:
                raise ValueError(f"histogram dict: bucket count {counted!r} must be an int "
                                 f"within 1..{count}")
            index = histogram_index(h, value)
            if (histogram_value_low(h, index) != value or index <= previous
                    or index < histogram_index(h, h.lowest_us)):
                raise ValueError(f"histogram dict: {value!r} is not the low end of a bucket "
                                 f"after the one before it, in this layout")
            if first < 0:
                first = index
            h.counts[index] = counted
            total += counted
            previous = index
        if total != count:
            raise ValueError(f"histogram dict: the buckets count {total} values, "
                             f"'count' says {count}")
        h.total_count = count
        h.clamped_low = _dict_int(data, "clamped_low", 0, count)
        h.clamped_high = _dict_int(data, "clamped_high", 0, count - h.clamped_low)
        # The extremes lie in the first and the last counter that counted, within the range.
        if count == 0:
            h.min_us = _dict_int(data, "min_us", 0, 0)
            h.max_us = _dict_int(data, "max_us", 0, 0)
        else:
            low = histogram_value_low(h, first)
            high = histogram_value_high(h, first)
            h.min_us = _dict_int(data, "min_us", low if low > h.lowest_us else h.lowest_us,
                                 high if high < h.highest_us else h.highest_us)
            low = histogram_value_low(h, previous)
            high = histogram_value_high(h, previous)
            h.max_us = _dict_int(data, "max_us", low if low > h.min_us else h.min_us,
                                 high if high < h.highest_us else h.highest_us)
        sum_us = _dict_int(data, "sum_us", count * h.min_us, count * h.max_us)
        squares = _dict_int(data, "sum_squares_us2", count * h.min_us * h.min_us,
                            count * h.max_us * h.max_us)
        h.sum_us = _int_to_u128(sum_us)
        h.sum_squares_us2 = _int_to_u128(squares)
        if count == 0:
            h.min_us = INT64_MAX
        return histogram

    def __repr__(self):
        return (f"<LatencyHistogram count={self.count} min_us={self.min} max_us={self.max} "
                f"layout {_histogram_layout(&self.hist)}>")


def _histogram_record_benchmark(bytes values not None, Py_ssize_t rounds):
    """Measurement only: record `values` (native int64s, array("q").tobytes()) `rounds`
    times from C, with the GIL released, into a new default histogram.

    Returns (seconds, histogram), so a caller can check what was counted.
    """
    cdef const int64_t* data = <const int64_t*>PyBytes_AS_STRING(values)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(values) // <Py_ssize_t>sizeof(int64_t)
    cdef LatencyHistogram histogram = LatencyHistogram()
    cdef Histogram* h = &histogram.hist
    cdef Py_ssize_t i, r
    cdef double started, elapsed
    with nogil:
        started = _monotonic()
        for r in range(rounds):
            for i in range(n):
                histogram_record(h, data[i])
        elapsed = _monotonic() - started
    return elapsed, histogram
