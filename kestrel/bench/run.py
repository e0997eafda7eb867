"""One kestrel-bench run: warm-up, the measured run, and its result, on one or more loops.

Each loop is a LoadGenerator (kestrel/load_generator.pxi) driven from here in slices of a
quarter of a second, so progress can be shown between slices. With --threads N the loops run
in N forked processes, one per core of the CPU set this process may use: a loop holds the GIL
while it parses, so threads of one interpreter would take turns instead of running at once.
Each process sends its counters and its histogram back at the end; they are merged here.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from kestrel._core import LatencyHistogram, LoadGenerator
from kestrel.bench.target import Target

SLICE = 0.25  # seconds between progress reports


@dataclass(frozen=True)
class Options:
    connections: int = 64
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 0.0
    pipeline: int = 1
    timeout: float = 10.0
    rate: float | None = None
    threads: int = 1


@dataclass
class Result:
    """What a run measured: the merged counters and histogram of every loop."""

    elapsed: float
    counters: dict[str, Any]
    histogram: LatencyHistogram
    options: Options
    target: Target
    loops: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return int(self.counters["requests"])

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(self.counters["errors"].values())

    @property
    def non_2xx(self) -> int:
        return sum(v for k, v in self.counters["status"].items() if k != "2xx")


Progress = Callable[[float, int, int], None]  # elapsed s, requests so far, errors so far


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _generator(target: Target, options: Options, index: int, loops: int) -> LoadGenerator:
    connections = _split(options.connections, loops, index)
    requests = -1 if options.requests is None else _split(options.requests, loops, index)
    # Each loop takes the share of the rate its connections are of all of them.
    rate = options.rate * connections / options.connections if options.rate else 0.0
    return LoadGenerator(
        target.family,
        target.sockaddr,
        target.request,
        connections=connections,
        pipeline=options.pipeline,
        head_requests=target.method == "HEAD",
        timeout=options.timeout,
        rate=rate,
        requests=requests,
    )


def _errors(counters: dict[str, Any]) -> int:
    return int(sum(counters["errors"].values()))


def _drive(
    generator: LoadGenerator, options: Options, report: Callable[[float, dict[str, Any]], None]
) -> float:
    """Warm up, reset, then run the measured part; return its length in seconds."""
    if options.warmup > 0:
        end = time.monotonic() + options.warmup
        while (left := end - time.monotonic()) > 0:
            generator.run(min(SLICE, left))
        generator.reset_counters()
    start = time.monotonic()
    limit = math.inf if options.duration is None else options.duration
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= limit or generator.finished:
            break
        generator.run(min(SLICE, limit - elapsed))
        report(time.monotonic() - start, generator.counters())
    return time.monotonic() - start


def run(target: Target, options: Options, progress: Progress | None = None) -> Result:
    loops = max(1, min(options.threads, options.connections))
    if loops == 1:
        generator = _generator(target, options, 0, 1)
        try:

            def report(elapsed: float, counters: dict[str, Any]) -> None:
                if progress is not None:
                    progress(elapsed, counters["requests"], _errors(counters))

            elapsed = _drive(generator, options, report)
            return Result(elapsed, generator.counters(), generator.histogram, options, target)
        finally:
            generator.close()
    return _run_processes(target, options, loops, progress)


# ---- Several loops: one forked process each.


def _cores(loops: int) -> list[int]:
    available = sorted(os.sched_getaffinity(0))
    return [available[i % len(available)] for i in range(loops)]


def _child(
    target: Target, options: Options, index: int, loops: int, core: int, pipe: Connection
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    os.sched_setaffinity(0, {core})
    generator = _generator(target, options, index, loops)

    def report(elapsed: float, counters: dict[str, Any]) -> None:
        pipe.send(("progress", elapsed, counters["requests"], _errors(counters)))

    try:
        elapsed = _drive(generator, options, report)
        pipe.send(("done", elapsed, generator.counters(), generator.histogram.to_dict()))
    finally:
        generator.close()
        pipe.close()


def _merge_counters(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict):
            _merge_counters(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value


def _run_processes(
    target: Target, options: Options, loops: int, progress: Progress | None
) -> Result:
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    children = []
    for index, core in enumerate(_cores(loops)):
        ours, theirs = context.Pipe(duplex=False)
        child = context.Process(
            target=_child, args=(target, options, index, loops, core, theirs), daemon=True
        )
        child.start()
        theirs.close()
        pipes.append(ours)
        children.append(child)
    latest = [(0.0, 0, 0)] * loops
    done: dict[int, tuple[float, dict[str, Any], dict[str, Any]]] = {}
    try:
        while len(done) < loops:
            for index, pipe in enumerate(pipes):
                if index in done or not pipe.poll(0.05):
                    continue
                try:
                    message = pipe.recv()
                except EOFError:
                    raise RuntimeError(f"load loop {index} ended without a result") from None
                if message[0] == "progress":
                    latest[index] = message[1:]
                    if progress is not None:
                        progress(
                            max(m[0] for m in latest),
                            sum(m[1] for m in latest),
                            sum(m[2] for m in latest),
                        )
                else:
                    done[index] = message[1:]
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()
    counters: dict[str, Any] = {}
    histogram = LatencyHistogram()
    for _elapsed, loop_counters, loop_histogram in done.values():
        _merge_counters(counters, loop_counters)
        histogram.merge(LatencyHistogram.from_dict(loop_histogram))
    elapsed = max(d[0] for d in done.values())
    return Result(elapsed, counters, histogram, options, target, loops=loops)
