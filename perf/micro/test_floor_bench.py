"""The floor: what pytest-benchmark adds to every figure, one call of an empty function.

Every timed function here is called as this one is, so its figure holds this much of the
harness too; it matters only for the fastest operations (a static route's match).
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture


def empty() -> None:
    pass


def test_empty_call(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "floor: an empty call"
    benchmark(empty)
