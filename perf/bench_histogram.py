"""Latency-histogram benchmark: nanoseconds per recorded value (kestrel/histogram.pxi, #11).

What kestrel-bench pays per response is histogram_record() from C (the load generator's loop
is Cython): measured through kestrel._core._histogram_record_benchmark, which records a
buffer of int64 values in a C loop with the GIL released. record() from Python is measured
too, against two peers in the same run: list.append (the floor: the naive way of keeping
latencies, sorted at the end) and HdrHistogram's Python port (hdrh, record_value), when
perf/setup_peers.sh has installed it.

Two distributions of 1,000,000 values (seeded): "lognormal", median 1 ms and sigma 1, as
response latencies are (a few hundred counters in use, all in cache), and "log-uniform",
every magnitude from 1 us to 60 s equally often (all 17,408 counters, 136 KiB: the
cache-unfriendly case). Rounds alternate the contenders; the table has the best round of each.

Run pinned to one core:  taskset -c 1 python perf/bench_histogram.py
"""

from __future__ import annotations

import argparse
import array
import gc
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from servers import git_commit, machine  # noqa: E402

import kestrel._core  # noqa: E402
from kestrel._core import LatencyHistogram, _histogram_record_benchmark  # noqa: E402

try:
    from hdrh.histogram import HdrHistogram

    HAVE_HDRH = True
except ImportError:  # not a dependency of kestrel: perf/setup_peers.sh installs it
    HAVE_HDRH = False

HIGHEST_US = 60_000_000
SAMPLES = 1_000_000


def lognormal(rng: random.Random) -> list[int]:
    return [min(HIGHEST_US, max(1, round(rng.lognormvariate(math.log(1000), 1.0)))) for _ in
            range(SAMPLES)]  # fmt: skip


def log_uniform(rng: random.Random) -> list[int]:
    return [max(1, round(math.exp(rng.uniform(0, math.log(HIGHEST_US))))) for _ in range(SAMPLES)]


def c_loop(values: list[int]) -> Callable[[], float]:
    packed = array.array("q", values).tobytes()

    def run() -> float:
        seconds, histogram = _histogram_record_benchmark(packed, 10)
        assert histogram.count == 10 * len(values)
        return seconds / (10 * len(values))

    return run


def python_loop(
    make_record: Callable[[], Callable[[int], object]], values: list[int]
) -> Callable[[], float]:
    def run() -> float:
        record = make_record()
        started = time.perf_counter()
        for value in values:
            record(value)
        return (time.perf_counter() - started) / len(values)

    return run


def list_append() -> Callable[[int], object]:
    latencies: list[int] = []
    return latencies.append


def contenders(values: list[int]) -> dict[str, Callable[[], float]]:
    found = {
        "kestrel histogram_record (C)": c_loop(values),
        "kestrel record() (Python)": python_loop(lambda: LatencyHistogram().record, values),
        "list.append (Python)": python_loop(list_append, values),
    }
    if HAVE_HDRH:
        found["hdrh record_value (Python)"] = python_loop(
            lambda: HdrHistogram(1, HIGHEST_US, 3).record_value, values
        )
    return found


def sanity_check(values: list[int]) -> None:
    """The C loop and record() count the same; the layout is the one #11 asks for."""
    _, from_c = _histogram_record_benchmark(array.array("q", values[:10_000]).tobytes(), 1)
    from_python = LatencyHistogram()
    for value in values[:10_000]:
        from_python.record(value)
    assert from_c.to_dict() == from_python.to_dict()
    assert (from_c.sub_bucket_count, from_c.bucket_count, from_c.counts_length) == (2048, 16, 17408)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(11)
    distributions = {"lognormal": lognormal(rng), "log-uniform": log_uniform(rng)}
    commit, _ = git_commit()
    build = "debug" if kestrel._core.DEBUG_BUILD else "release"
    print(f"CPU:      {machine()['cpu']} (affinity {sorted(os.sched_getaffinity(0))})")
    print(f"Python:   {platform.python_version()}, kestrel core {build} build")
    print(f"commit:   {commit}   {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"hdrh:     {'installed' if HAVE_HDRH else 'not installed (perf/setup_peers.sh)'}")
    print(f"rounds:   {args.rounds}, {SAMPLES:,} values per distribution\n")
    for name, values in distributions.items():
        sanity_check(values)
        runs = contenders(values)
        best = dict.fromkeys(runs, math.inf)
        for round_ in range(args.rounds):
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for contender in order:
                gc.collect()
                best[contender] = min(best[contender], runs[contender]())
        python = best["kestrel record() (Python)"]
        print(f"{name}:")
        for contender, seconds in best.items():
            ratio = ""
            if contender.endswith("(Python)") and not contender.startswith("kestrel"):
                ratio = f"   {seconds / python:6.2f}x kestrel record()"
            print(f"  {contender:<30} {seconds * 1e9:8.2f} ns/value{ratio}")
        print()


if __name__ == "__main__":
    main()
