"""Micro-benchmarks on pytest-benchmark: kestrel and a named peer, timed in the same run.

Theory of operation
-------------------
Each ``test_*_bench.py`` module times one layer. A *group* (``benchmark.group``) is one
operation on one fixed input, timed once per *contender*: the test's ``contender``
parameter, whose value starts with ``kestrel`` for kestrel (a group may hold several kestrel
variants) and names the peer otherwise (``httptools``, ``starlette``, ``h11``, ``hdrh``; a
group may hold several peers).
pytest-benchmark prints one table per group, every column's ratio to the group's best in
brackets; after the tables, ``ratios.py`` prints peer time / kestrel time per group.

To add a group, parametrize a test over ``contender`` (and the inputs), build everything
outside the timed function, set ``benchmark.group`` and call ``benchmark(fn)``.

Rules for the timed function, kept by every module:

- no I/O: the engine runs over its in-memory transport, ASGI apps are called directly;
- fixed inputs built outside it (parsers, route tables, apps, scopes, headers);
- ``benchmark.pedantic`` only where a contender cannot repeat the operation on one object
  (h11: a connection sends one response per request it has received, and reads one per
  request it has sent).

Run from the repository root: ``python -m pytest perf/micro`` (see perf/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ratios import ratio_table

# Saved runs (--benchmark-save, --benchmark-autosave) go here, git-ignored, wherever pytest
# is started from; pytest-benchmark's own default is ./.benchmarks of the working directory.
STORAGE = Path(__file__).resolve().parent / ".benchmarks"
_DEFAULT_STORAGE = "file://./.benchmarks"


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's own pytest_configure (trylast), which opens the storage.
    if config.getoption("benchmark_storage") == _DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{STORAGE}"


def pytest_report_header() -> list[str]:
    """Which kestrel is timed, and how it was built (a debug build makes the figures void)."""
    import kestrel._core

    debug = getattr(kestrel._core, "DEBUG_BUILD", False)  # not in the stub
    build = "DEBUG BUILD: the figures are meaningless" if debug else "release build"
    return [f"kestrel: {Path(kestrel._core.__file__).resolve()} ({build})"]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Peer time / kestrel time per group, after pytest-benchmark's tables."""
    session = getattr(terminalreporter.config, "_benchmarksession", None)  # no public handle
    if session is None or session.disabled:
        return
    benchmarks = [b.as_dict(include_data=False) for b in session.benchmarks if not b.has_error]
    table = ratio_table(benchmarks)
    if table:
        terminalreporter.write_sep("-", "peer time / kestrel time, same run (ratios.py)")
        terminalreporter.write_line(table)
