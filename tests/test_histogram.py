"""kestrel-bench's latency histogram (kestrel/histogram.pxi, issue #11).

The "exact" percentile the histogram is held to: for n samples sorted ascending, the value
at percentile p is the sample of rank r = max(1, ceil(p / 100 * n)) (1-based), with p read
as the decimal it is written as (Fraction(str(p))), so that 99.9 % of 1000 samples is rank
999: the lowest sample v such that at least p % of the samples are <= v. That is
HdrHistogram's definition. The histogram reports the top of the counter holding that sample,
clamped to [min, max], and the minimum itself for rank 1: never below the exact value, and
above it by less than 1/1024 of it (under the 0.1 % bound of 3 significant digits).

The bucket model below (bucket_range) is written from HdrHistogram's description, not from
kestrel's code, and LAYOUTS_FROM_HDRHISTOGRAM was printed by HdrHistogram 2.2.2 (Java).
"""

from __future__ import annotations

import array
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel._core import (
    DEFAULT_HISTOGRAM_HIGHEST_US,
    DEFAULT_HISTOGRAM_LOWEST_US,
    DEFAULT_HISTOGRAM_SIGNIFICANT_DIGITS,
    HISTOGRAM_FORMAT,
    LatencyHistogram,
    _histogram_record_benchmark,
)

ROOT = Path(__file__).resolve().parents[1]
HIGHEST = 60_000_000  # 60 s in microseconds
PERCENTILES = (0, 1, 50, 90, 99, 99.9, 99.99, 100)


def bucket_range(value: int) -> tuple[int, int]:
    """The values that share value's counter in the default layout (1 us, 3 digits).

    Below 2048 (the sub-bucket count: the power of two at or above 2 * 10^3) every value
    has a counter; above, a value of bit length b shares one 2^(b - 11) wide.
    """
    if value < 2048:
        return value, value
    width = 1 << (value.bit_length() - 11)
    low = value - value % width
    return low, low + width - 1


def exact_percentile(ordered: list[int], percentile: float) -> int:
    rank = max(1, math.ceil(Fraction(str(percentile)) * len(ordered) / 100))
    return ordered[rank - 1]


def reported_percentile(ordered: list[int], percentile: float) -> int:
    """What the histogram reports: the top of the exact value's counter, within [min, max]."""
    rank = max(1, math.ceil(Fraction(str(percentile)) * len(ordered) / 100))
    if rank == 1:
        return ordered[0]
    return min(bucket_range(ordered[rank - 1])[1], ordered[-1])


def histogram_of(samples: list[int], **layout: int) -> LatencyHistogram:
    histogram = LatencyHistogram(**layout)
    for value in samples:
        histogram.record(value)
    return histogram


# ---- Samples: the whole range, log-spread, heavy tails, repeats and bucket edges.

in_range = st.integers(1, HIGHEST)
# Uniform within a power of two chosen uniformly: every magnitude from 1 us to 60 s.
log_spread = st.tuples(st.integers(0, 25), st.integers(0, 2**25)).map(
    lambda t: min(HIGHEST, (1 << t[0]) + t[1] % (1 << t[0]))
)
# Each side of the bucket boundaries: 2^k - 1, 2^k, 2^k + 1, and the range's ends.
edges = st.sampled_from(
    sorted({1, 2, HIGHEST - 1, HIGHEST} | {(1 << k) + d for k in range(1, 26) for d in (-1, 0, 1)})
)
values = st.one_of(log_spread, in_range, edges)


@st.composite
def sample_lists(draw: st.DrawFn) -> list[int]:
    kind = draw(st.sampled_from(["spread", "heavy_tail", "repeats"]))
    if kind == "spread":
        return draw(st.lists(values, min_size=1, max_size=400))
    if kind == "heavy_tail":
        # A body of fast responses and a few slow ones, as a latency distribution has.
        body = draw(st.lists(st.integers(50, 3000), min_size=1, max_size=400))
        tail = draw(st.lists(st.integers(10_000, HIGHEST), max_size=8))
        return body + tail
    pool = draw(st.lists(values, min_size=1, max_size=5))
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=400))


@given(sample_lists())
def test_percentiles_within_a_tenth_of_a_percent_of_the_exact_ones(samples: list[int]) -> None:
    histogram = histogram_of(samples)
    ordered = sorted(samples)
    reported = histogram.percentiles(PERCENTILES)
    assert list(reported) == list(PERCENTILES)
    for p in PERCENTILES:
        exact = exact_percentile(ordered, p)
        value = reported[p]
        assert value == histogram.value_at_percentile(p)
        assert exact <= value <= exact * 1.001, (p, exact, value)
        assert value == reported_percentile(ordered, p), p


@given(sample_lists())
def test_statistics_are_exact(samples: list[int]) -> None:
    histogram = histogram_of(samples)
    assert histogram.count == len(samples)
    assert histogram.min == min(samples)
    assert histogram.max == max(samples)
    assert histogram.clamped_low == histogram.clamped_high == 0
    assert math.isclose(histogram.mean, statistics.fmean(samples), rel_tol=1e-12)
    assert math.isclose(histogram.stdev, statistics.pstdev(samples), rel_tol=1e-12, abs_tol=1e-9)


@given(sample_lists())
def test_buckets_hold_what_was_recorded(samples: list[int]) -> None:
    histogram = histogram_of(samples)
    expected: dict[tuple[int, int], int] = {}
    for value in samples:
        expected[bucket_range(value)] = expected.get(bucket_range(value), 0) + 1
    buckets = list(histogram.buckets())
    assert [(low, high) for low, high, _ in buckets] == sorted(expected)
    assert [count for *_, count in buckets] == [expected[low, high] for low, high, _ in buckets]
    for low, high, _ in buckets:  # every counter is narrower than 0.1 % of its values
        assert high - low < max(1, low / 1000)


def test_the_default_layout() -> None:
    histogram = LatencyHistogram()
    layout = (histogram.lowest_us, histogram.highest_us, histogram.significant_digits)
    assert layout == (1, HIGHEST, 3)
    assert layout == (
        DEFAULT_HISTOGRAM_LOWEST_US,
        DEFAULT_HISTOGRAM_HIGHEST_US,
        DEFAULT_HISTOGRAM_SIGNIFICANT_DIGITS,
    )
    assert histogram.sub_bucket_count == 2048
    assert histogram.bucket_count == 16
    assert histogram.counts_length == 17 * 1024  # 136 KiB of 8-byte counters


# (lowest, highest, digits) -> bucket count, sub-bucket count, counters, and three values'
# (value, lowest equivalent, highest equivalent), as HdrHistogram 2.2.2 (Java) reports them.
LAYOUTS_FROM_HDRHISTOGRAM = [
    ((1, 60_000_000, 3), 16, 2048, 17408, [(739, 739, 739), (68072, 68032, 68095),
                                           (358041, 357888, 358143)]),
    ((1, 3_600_000_000, 3), 22, 2048, 23552, [(3344, 3344, 3345), (866603, 866304, 866815),
                                              (6662064, 6660096, 6664191)]),
    ((1000, 60_000_000, 2), 10, 256, 1408, [(1738, 1536, 2047), (1004, 512, 1023),
                                            (359036, 358400, 360447)]),
    ((1, 2**32, 5), 16, 262144, 2228224, [(3569, 3569, 3569), (967055, 967052, 967055),
                                          (7556931, 7556928, 7556959)]),
    ((7, 100_000, 1), 11, 32, 192, [(76, 76, 79), (9, 8, 11), (3723, 3712, 3839)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("layout", "buckets", "sub_buckets", "counters", "equivalents"), LAYOUTS_FROM_HDRHISTOGRAM
)
def test_layouts_match_hdrhistogram(
    layout: tuple[int, int, int],
    buckets: int,
    sub_buckets: int,
    counters: int,
    equivalents: list[tuple[int, int, int]],
) -> None:
    lowest, highest, digits = layout
    histogram = LatencyHistogram(lowest_us=lowest, highest_us=highest, significant_digits=digits)
    assert histogram.bucket_count == buckets
    assert histogram.sub_bucket_count == sub_buckets
    assert histogram.counts_length == counters
    for value, low, high in equivalents:
        histogram.reset()
        histogram.record(value)
        assert list(histogram.buckets()) == [(low, high, 1)]


def test_reported_value_is_the_top_of_the_counter_clamped_to_min_and_max() -> None:
    # Counters [99968, 100031] (both first values) and [199936, 200063].
    histogram = histogram_of([100_000, 100_010, 200_000])
    assert histogram.value_at_percentile(50) == 100_031  # rank 2: the top of its counter
    assert histogram.value_at_percentile(34) == 100_031  # rank 2 (ceil 1.02)
    assert histogram.value_at_percentile(33) == 100_000  # rank 1: the recorded minimum
    assert histogram.value_at_percentile(0) == 100_000  # not 99968
    assert histogram.value_at_percentile(1e-9) == 100_000
    assert histogram.value_at_percentile(100) == 200_000  # not 200063: the recorded maximum
    assert histogram.value_at_percentile(67) == 200_000  # rank 3 (ceil 2.01)


def test_percentile_ranks_are_exact_decimal_arithmetic() -> None:
    histogram = histogram_of(list(range(1, 1001)))
    # In floating point 99.9 / 100 * 1000 is 999.0000000000001: rank 1000 by its ceiling.
    assert histogram.value_at_percentile(99.9) == 999
    assert histogram.value_at_percentile(99.91) == 1000
    assert histogram.value_at_percentile(50) == 500
    assert histogram.value_at_percentile(0.1) == 1
    assert histogram.value_at_percentile(0.11) == 2
    assert histogram.percentiles([1, 29, 100]) == {1: 10, 29: 290, 100: 1000}


def test_empty_histogram() -> None:
    histogram = LatencyHistogram()
    assert (histogram.count, histogram.min, histogram.max) == (0, 0, 0)
    assert (histogram.mean, histogram.stdev) == (0.0, 0.0)
    assert histogram.percentiles(PERCENTILES) == dict.fromkeys(PERCENTILES, 0)
    assert list(histogram.buckets()) == []


def test_record_many_and_reset() -> None:
    histogram = LatencyHistogram()
    histogram.record_many(5000, 3)
    histogram.record_many(7, 0)  # recording nothing moves nothing, min included
    histogram.record(3)
    assert histogram.to_dict() == histogram_of([5000, 5000, 5000, 3]).to_dict()
    histogram.reset()
    assert histogram.to_dict() == LatencyHistogram().to_dict()


@given(sample_lists(), sample_lists())
def test_merge_equals_one_histogram_of_all_samples(first: list[int], second: list[int]) -> None:
    merged = histogram_of(first)
    merged.merge(histogram_of(second))
    assert merged.to_dict() == histogram_of(first + second).to_dict()


def test_merge_edge_cases() -> None:
    histogram = histogram_of([5, 70_000])
    histogram.merge(LatencyHistogram())
    assert histogram.to_dict() == histogram_of([5, 70_000]).to_dict()
    empty = LatencyHistogram()
    empty.merge(histogram)
    assert empty.to_dict() == histogram.to_dict()
    histogram.merge(histogram)  # into itself: every sample twice
    assert histogram.to_dict() == histogram_of([5, 70_000] * 2).to_dict()
    clamped = histogram_of([0, HIGHEST + 1])
    clamped.merge(histogram_of([0]))
    assert (clamped.clamped_low, clamped.clamped_high) == (2, 1)


@given(sample_lists())
def test_to_dict_from_dict_round_trip(samples: list[int]) -> None:
    histogram = histogram_of([*samples, 0, HIGHEST * 2])  # clamped ones too
    saved = json.loads(json.dumps(histogram.to_dict()))
    loaded = LatencyHistogram.from_dict(saved)
    assert loaded.to_dict() == histogram.to_dict()
    assert loaded.percentiles(PERCENTILES) == histogram.percentiles(PERCENTILES)
    assert (loaded.mean, loaded.stdev) == (histogram.mean, histogram.stdev)
    # A saved histogram merges like the live one.
    loaded.merge(histogram)
    histogram.merge(histogram)
    assert loaded.to_dict() == histogram.to_dict()


def test_to_dict_is_sparse_and_self_describing() -> None:
    histogram = histogram_of([3, 3, 70_000])
    assert histogram.to_dict() == {
        "format": HISTOGRAM_FORMAT,
        "version": 1,
        "unit": "us",
        "lowest_us": 1,
        "highest_us": HIGHEST,
        "significant_digits": 3,
        "count": 3,
        "min_us": 3,
        "max_us": 70_000,
        "sum_us": 70_006,
        "sum_squares_us2": 9 + 9 + 70_000**2,
        "clamped_low": 0,
        "clamped_high": 0,
        "buckets": [[3, 2], [69_952, 1]],
    }
    other = LatencyHistogram(lowest_us=1000, highest_us=10**9, significant_digits=2)
    other.record(1500)
    loaded = LatencyHistogram.from_dict(other.to_dict())
    assert (loaded.lowest_us, loaded.highest_us, loaded.significant_digits) == (1000, 10**9, 2)
    assert loaded.to_dict() == other.to_dict()
    empty = LatencyHistogram.from_dict(LatencyHistogram().to_dict())
    empty.record(9)
    assert empty.min == 9


def test_out_of_range_values_are_clamped_and_counted() -> None:
    histogram = LatencyHistogram()
    histogram.record(0)  # below 1 us
    histogram.record(HIGHEST + 1)
    histogram.record(2**80)  # past int64 too
    histogram.record_many(HIGHEST * 10, 2)
    histogram.record(500)
    assert histogram.count == 6
    assert (histogram.clamped_low, histogram.clamped_high) == (1, 4)
    assert (histogram.min, histogram.max) == (1, HIGHEST)
    assert histogram.value_at_percentile(100) == HIGHEST
    assert histogram.value_at_percentile(0) == 1
    # The statistics are of the clamped values.
    assert histogram.mean == (1 + 4 * HIGHEST + 500) / 6
    assert list(histogram.buckets()) == [
        (1, 1, 1),
        (500, 500, 1),
        (*bucket_range(HIGHEST), 4),
    ]


def test_narrower_range_clamps_at_its_own_ends() -> None:
    histogram = LatencyHistogram(lowest_us=1000, highest_us=100_000, significant_digits=2)
    for value in (10, 999, 1000, 100_000, 100_001):
        histogram.record(value)
    assert (histogram.clamped_low, histogram.clamped_high) == (2, 1)
    assert (histogram.min, histogram.max) == (1000, 100_000)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.record(-1), "cannot be negative: -1"),
        (lambda h: h.record(-(2**70)), "cannot be negative"),
        (lambda h: h.record_many(-5, 1), "cannot be negative: -5"),
        (lambda h: h.record_many(5, -1), "count cannot be negative: -1"),
        (lambda h: h.value_at_percentile(-0.1), "within 0..100, not -0.1"),
        (lambda h: h.value_at_percentile(100.01), "within 0..100, not 100.01"),
        (lambda h: h.value_at_percentile(math.nan), "within 0..100, not nan"),
        (lambda h: h.percentiles([50, 101]), "within 0..100, not 101"),
        (lambda h: LatencyHistogram(lowest_us=0), "lowest_us must be at least 1"),
        (lambda h: LatencyHistogram(lowest_us=10, highest_us=19), "at least twice lowest_us"),
        (lambda h: LatencyHistogram(highest_us=2**32 + 1), "at most 2\\*\\*32"),
        (lambda h: LatencyHistogram(significant_digits=0), "within 1..5, not 0"),
        (lambda h: LatencyHistogram(significant_digits=6), "within 1..5, not 6"),
    ],
)
def test_bad_input_raises_value_error(call: object, message: str) -> None:
    histogram = histogram_of([10])
    with pytest.raises(ValueError, match=message):
        call(histogram)  # type: ignore[operator]
    assert histogram.to_dict() == histogram_of([10]).to_dict()  # nothing half-done


@pytest.mark.parametrize(
    "layout",
    [
        {"significant_digits": 2},
        {"highest_us": HIGHEST * 2},
        {"lowest_us": 2},
    ],
)
def test_merging_different_layouts_is_refused(layout: dict[str, int]) -> None:
    histogram = histogram_of([10])
    other = histogram_of([20], **layout)
    with pytest.raises(ValueError, match=r"cannot merge histograms of different layouts: .* into"):
        histogram.merge(other)
    with pytest.raises(ValueError, match="cannot merge"):
        other.merge(histogram)
    assert histogram.to_dict() == histogram_of([10]).to_dict()


def test_type_errors_and_overflow() -> None:
    histogram = LatencyHistogram()
    with pytest.raises(TypeError):
        histogram.record(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        histogram.merge(None)  # type: ignore[arg-type]
    histogram.record_many(10, 2**64 - 2)
    with pytest.raises(OverflowError, match="2\\*\\*64 - 1"):
        histogram.record_many(10, 2)
    with pytest.raises(OverflowError, match="2\\*\\*64 - 1"):
        histogram.merge(histogram_of([1, 2]))
    histogram.record(10)
    assert histogram.count == 2**64 - 1
    assert histogram.mean == 10.0
    assert histogram.stdev == 0.0
    assert histogram.value_at_percentile(50) == 10


def good_dict() -> dict[str, object]:
    return histogram_of([3, 3, 70_000]).to_dict()  # buckets [[3, 2], [69952, 1]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "hdr"}, "not a kestrel.LatencyHistogram version 1"),
        ({"version": 2}, "not a kestrel.LatencyHistogram version 1"),
        ({"unit": "ns"}, "unit must be 'us'"),
        ({"count": None}, "'count' must be an int"),
        ({"significant_digits": 9}, "'significant_digits' must be an int within 1..5"),
        ({"highest_us": 10**12}, "'highest_us' must be an int within"),
        ({"count": 4}, "the buckets count 3 values, 'count' says 4"),
        ({"buckets": [[3, 2], [69_953, 1]]}, "69953 is not the low end of a bucket"),
        ({"buckets": [[69_952, 1], [3, 2]]}, "3 is not the low end of a bucket after"),
        ({"buckets": [[3, 2], [3, 1]]}, "3 is not the low end of a bucket after"),
        ({"buckets": [[3, 3], [69_952, 0]]}, "bucket count 0 must be an int within 1..3"),
        ({"buckets": [[0, 2], [69_952, 1]]}, "0 is not the low end of a bucket"),
        ({"buckets": [[3, 2], [HIGHEST + 1, 1]]}, "bucket value 60000001 is out of range"),
        ({"buckets": [[3, 2, 1]]}, "a bucket must be \\[value_low_us, count\\]"),
        ({"buckets": "3:2"}, "'buckets' must be a list"),
        ({"min_us": 4}, "'min_us' must be an int within 3..3"),
        ({"max_us": 70_016}, "'max_us' must be an int within 69952..70015"),
        ({"sum_us": 5}, "'sum_us' must be an int within 9..210000"),
        ({"clamped_low": 4}, "'clamped_low' must be an int within 0..3"),
        ({"lowest_us": None}, "'lowest_us' must be an int"),
    ],
)
def test_from_dict_refuses_what_to_dict_cannot_have_made(
    change: dict[str, object], message: str
) -> None:
    data = good_dict()
    data.update(change)
    with pytest.raises(ValueError, match=message):
        LatencyHistogram.from_dict(data)


def test_from_dict_refuses_a_missing_key_and_a_non_dict() -> None:
    data = good_dict()
    del data["sum_squares_us2"]
    with pytest.raises(ValueError, match="'sum_squares_us2' is missing"):
        LatencyHistogram.from_dict(data)
    with pytest.raises(ValueError, match="expected a dict, not list"):
        LatencyHistogram.from_dict([])  # type: ignore[arg-type]


def test_record_from_c_counts_like_record_from_python() -> None:
    samples = [0, 1, 2047, 2048, 70_000, HIGHEST, HIGHEST + 5, -3]
    seconds, histogram = _histogram_record_benchmark(array.array("q", samples).tobytes(), 3)
    assert seconds >= 0.0
    # From C a negative value is clamped (and counted) instead of refused.
    expected = histogram_of([max(0, v) for v in samples] * 3)
    assert histogram.to_dict() == expected.to_dict()
    assert (histogram.clamped_low, histogram.clamped_high) == (6, 3)


RECORDER = """
# cython: language_level=3
from libc.stdint cimport int64_t, uint64_t
from kestrel._core cimport LatencyHistogram, histogram_record, histogram_record_n

def record_all(LatencyHistogram histogram not None, values, int64_t repeated, uint64_t times):
    cdef int64_t[16] buffer
    cdef Py_ssize_t n = len(values), i
    for i in range(n):
        buffer[i] = values[i]
    with nogil:
        for i in range(n):
            histogram_record(&histogram.hist, buffer[i])
        histogram_record_n(&histogram.hist, repeated, times)
"""


def test_another_cython_module_records_without_the_gil(tmp_path: Path) -> None:
    """The C API is the .pxd's: a module that cimports kestrel._core compiles it in."""
    (tmp_path / "recorder.pyx").write_text(RECORDER)
    (tmp_path / "setup.py").write_text(
        textwrap.dedent(
            f"""
            from Cython.Build import cythonize
            from setuptools import Extension, setup
            setup(ext_modules=cythonize([Extension("recorder", ["recorder.pyx"])],
                                        include_path=[{str(ROOT)!r}], quiet=True))
            """
        )
    )
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = tmp_path.glob("recorder.*.so")
    spec = importlib.util.spec_from_file_location("recorder", built)
    assert spec is not None and spec.loader is not None
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    histogram = LatencyHistogram()
    recorder.record_all(histogram, [1, 2500, 70_000, -4, HIGHEST + 1], 7, 3)
    assert histogram.to_dict() == histogram_of([1, 2500, 70_000, 0, HIGHEST + 1, 7, 7, 7]).to_dict()
