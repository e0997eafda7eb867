"""Latency histogram: kestrel's LatencyHistogram against HdrHistogram's Python port (hdrh).

Both with kestrel-bench's layout (1 us to 60 s, 3 significant digits: the same counters in
both), on canned.LATENCIES_US (1,000 lognormal latencies, median 1 ms). Groups:

* record 1,000 values: ``record(v)`` / ``record_value(v)`` in a Python loop, into a
  histogram that keeps growing from call to call (a reset would time a 136 KiB memset too);
* record one value 1,000 times: ``record_many(v, 1000)`` / ``record_value(v, 1000)``, one
  call;
* p99, and 5 percentiles (p50, p90, p99, p99.9, p99.99), of a histogram of the 1,000 values:
  ``value_at_percentile`` / ``get_value_at_percentile``, ``percentiles`` /
  ``get_percentile_to_value_dict``;
* merge a histogram of the 1,000 values into another (kestrel-bench's per-thread histograms
  into one): ``merge`` / ``add``.

From Python the call is what these figures measure for kestrel's record: in C (the load
generator's loop, perf/bench_histogram.py) a record takes 2.3 ns, a fraction of one Python
method call, so "record 1,000 values" is mostly the interpreter's loop and calls, and
"record one value 1,000 times" is one call's overhead, the 1,000 increments inside it adding
next to nothing. hdrh records in Python (an index computation and four updates per call).

Every benchmark checks its result: the count recorded (a multiple of 1,000, one per call),
or percentiles that agree with the sorted values to HdrHistogram's 0.1 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from canned import LATENCIES_US
from hdrh.histogram import HdrHistogram
from pytest_benchmark.fixture import BenchmarkFixture

from kestrel._core import LatencyHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3
PERCENTILES = [50.0, 90.0, 99.0, 99.9, 99.99]
SORTED_US = sorted(LATENCIES_US)
MANY = 1_000
ONE_VALUE_US = 1_000
CONTENDERS = ["kestrel", "hdrh"]


def new_kestrel() -> LatencyHistogram:
    return LatencyHistogram(lowest_us=LOWEST_US, highest_us=HIGHEST_US, significant_digits=DIGITS)


def new_hdrh() -> Any:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def kestrel_histogram() -> LatencyHistogram:
    """A histogram of the 1,000 latencies."""
    histogram = new_kestrel()
    for value in LATENCIES_US:
        histogram.record(value)
    return histogram


def hdrh_histogram() -> Any:
    histogram = new_hdrh()
    for value in LATENCIES_US:
        histogram.record_value(value)
    return histogram


def count(histogram: Any) -> int:
    if isinstance(histogram, LatencyHistogram):
        return histogram.count
    return int(histogram.get_total_count())


def true_percentile(percentile: float) -> int:
    """The value of rank max(1, ceil(p / 100 * n)) in sorted order."""
    rank = max(1, math.ceil(round(percentile / 100 * len(SORTED_US), 7)))
    return SORTED_US[rank - 1]


def check_percentile(percentile: float, reported: int) -> None:
    """Both report the top of the true value's counter: at or above it, by under 0.1 %."""
    true = true_percentile(percentile)
    assert true <= reported <= true * 1.001, (percentile, true, reported)


def recorder(contender: str) -> tuple[Callable[[], None], Any]:
    """Record the 1,000 latencies, one call per value."""
    histogram: Any
    if contender == "kestrel":
        histogram = new_kestrel()
        record = histogram.record
    else:
        histogram = new_hdrh()
        record = histogram.record_value
    values = LATENCIES_US

    def record_all() -> None:
        for value in values:
            record(value)

    return record_all, histogram


def many_recorder(contender: str) -> tuple[Callable[[], None], Any]:
    """Record one latency 1,000 times, in one call."""
    histogram: Any
    if contender == "kestrel":
        histogram = new_kestrel()
        record_many = histogram.record_many
    else:
        histogram = new_hdrh()
        record_many = histogram.record_value

    def record() -> None:
        record_many(ONE_VALUE_US, MANY)

    return record, histogram


def merger(contender: str) -> tuple[Callable[[], None], Any]:
    """Merge a histogram of the 1,000 latencies into a growing one."""
    if contender == "kestrel":
        kestrel_into = new_kestrel()
        kestrel_other = kestrel_histogram()

        def kestrel_merge() -> None:
            kestrel_into.merge(kestrel_other)

        return kestrel_merge, kestrel_into
    hdrh_into = new_hdrh()
    hdrh_other = hdrh_histogram()

    def hdrh_add() -> None:
        hdrh_into.add(hdrh_other)

    return hdrh_add, hdrh_into


@pytest.mark.parametrize("contender", CONTENDERS)
def test_the_histograms_agree(contender: str) -> None:
    """Both lay out the same counters: the same percentiles, within 0.1 % of the truth."""
    histogram = kestrel_histogram() if contender == "kestrel" else hdrh_histogram()
    assert count(histogram) == len(LATENCIES_US)
    if isinstance(histogram, LatencyHistogram):
        found = histogram.percentiles(PERCENTILES)
        assert histogram.counts_length == new_hdrh().counts_len
    else:
        found = histogram.get_percentile_to_value_dict(PERCENTILES)
    for percentile in PERCENTILES:
        check_percentile(percentile, found[percentile])


@pytest.mark.parametrize(
    ("group", "make"),
    [
        pytest.param("histogram: record 1,000 values", recorder, id="record"),
        pytest.param("histogram: record one value 1,000 times", many_recorder, id="record-many"),
        pytest.param("histogram: merge 1,000 values", merger, id="merge"),
    ],
)
@pytest.mark.parametrize("contender", CONTENDERS)
def test_add_records(
    benchmark: BenchmarkFixture,
    contender: str,
    group: str,
    make: Callable[[str], tuple[Callable[[], None], Any]],
) -> None:
    benchmark.group = group
    run, histogram = make(contender)
    calls = 0

    def counted() -> None:
        nonlocal calls
        calls += 1
        run()

    benchmark(counted)
    # Each call adds 1,000 records; the warm-up calls count too.
    assert calls > 0
    assert count(histogram) == MANY * calls


@pytest.mark.parametrize("contender", CONTENDERS)
def test_p99(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "histogram: p99 of 1,000 values"
    if contender == "kestrel":
        kestrel = kestrel_histogram()
        reported = benchmark(kestrel.value_at_percentile, 99.0)
    else:
        hdrh = hdrh_histogram()
        reported = benchmark(hdrh.get_value_at_percentile, 99.0)
    check_percentile(99.0, reported)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_percentiles(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "histogram: 5 percentiles of 1,000 values"
    if contender == "kestrel":
        kestrel = kestrel_histogram()
        found = benchmark(kestrel.percentiles, PERCENTILES)
    else:
        hdrh = hdrh_histogram()
        found = benchmark(hdrh.get_percentile_to_value_dict, PERCENTILES)
    for percentile in PERCENTILES:
        check_percentile(percentile, found[percentile])
