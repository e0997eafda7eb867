"""`kestrel-bench suite`: every contender, every scenario, one table and one chart.

    kestrel-bench suite                        # everything: about 8 minutes on 2 cores
    kestrel-bench suite --quick                # about 2 minutes
    kestrel-bench suite --only kestrel,uvicorn --only plaintext-keepalive,json
    kestrel-bench suite --out results/ --peer-python /path/to/venv/bin/python

Theory of operation. The suite pins itself (and so the load generator, which runs in this
process) to the second core and starts each server pinned to the first (servers.py). Server by
server: one start serves all its load scenarios in turn (a scenario whose server died gets a
fresh one), then each heavy scenario gets a fresh server of its own, since it measures memory.
A cell the server cannot do is marked unsupported with the reason; a cell that fails says why;
neither stops the suite. Whatever ends the suite (its end, an error, Ctrl-C, SIGTERM), every
server it started is stopped before it exits (servers.stop_all).

``--only`` takes names of servers and of scenarios, comma-separated or repeated; the two sets
of names are disjoint, so each name says which kind it is. On a terminal a progress bar shows
the server, the scenario, the share done and the time left; otherwise nothing is printed until
the summary. Results go to ``--out``: results.md, results.json and chart.svg (report.py and
chart.py in this package).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from kestrel.bench import procfs, suite_report
from kestrel.bench.cell import Cell
from kestrel.bench.progress import ProgressBar
from kestrel.bench.scenarios import SCENARIOS, HeavyScenario, LoadScenario
from kestrel.bench.servers import (
    CONTENDERS,
    HOST,
    Contender,
    ServerProcess,
    Unavailable,
    cores,
    default_peer_python,
    stop_all,
)

PROG = "kestrel-bench suite"


class SuiteError(Exception):
    """A bad command line for the suite: its message is the one line shown."""


@dataclass(frozen=True)
class Plan:
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    warmup: float  # seconds of unmeasured load before each load cell
    duration: float  # measured seconds of each load cell
    quick: bool
    peer_python: str

    def budget(self, scenario: HeavyScenario) -> float:
        return scenario.quick_budget if self.quick else scenario.budget

    def planned_seconds(self, scenario_name: str) -> float:
        scenario = SCENARIOS[scenario_name]
        if isinstance(scenario, LoadScenario):
            return self.warmup + self.duration
        return self.budget(scenario)


@dataclass
class SuiteResult:
    plan: Plan
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # scenario -> server -> cell
    versions: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)  # server -> its command line
    affinity: dict[str, list[int]] = field(default_factory=dict)  # server -> cores it ran on
    machine: dict[str, object] = field(default_factory=dict)
    server_core: int = 0
    generator_core: int = 0
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0

    def put(self, scenario: str, server: str, cell: Cell) -> None:
        self.cells.setdefault(scenario, {})[server] = cell


def parse_only(values: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The servers and scenarios that ``--only`` values name (all of a kind none names)."""
    servers: list[str] = []
    scenarios: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name in CONTENDERS:
                servers.append(name)
            elif name in SCENARIOS:
                scenarios.append(name)
            else:
                raise SuiteError(
                    f"--only: {name!r} is neither a server ({', '.join(CONTENDERS)}) "
                    f"nor a scenario ({', '.join(SCENARIOS)})"
                )
    # The suite's own order, whatever the order given.
    return (
        tuple(s for s in CONTENDERS if s in servers) if servers else tuple(CONTENDERS),
        tuple(s for s in SCENARIOS if s in scenarios) if scenarios else tuple(SCENARIOS),
    )


def _generic_command(server: ServerProcess) -> str:
    text = shlex.join(server.argv).replace(str(server.workdir), "DIR")
    return text.replace(str(server.port), "PORT")


def _unsupported(contender: Contender, scenario_name: str) -> str | None:
    if scenario_name in contender.cannot:
        return contender.cannot[scenario_name]
    for endpoint in SCENARIOS[scenario_name].needs:
        if endpoint in contender.cannot:
            return contender.cannot[endpoint]
    return None


def run_suite(
    plan: Plan, progress: ProgressBar, server_core: int, generator_core: int
) -> SuiteResult:
    """Every planned cell; the caller runs this on ``generator_core``, servers get theirs."""
    result = SuiteResult(
        plan, machine=procfs.machine(), server_core=server_core, generator_core=generator_core
    )
    for name in plan.servers:
        contender = CONTENDERS[name]
        try:
            contender.check(plan.peer_python)
        except Unavailable as exc:
            for scenario in plan.scenarios:
                result.put(scenario, name, Cell(failed=f"not available here: {exc}"))
                progress.skip(plan.planned_seconds(scenario))
            result.versions[name] = "not available"
            continue
        result.versions[name] = contender.version(plan.peer_python)
        todo = []
        for scenario in plan.scenarios:
            reason = _unsupported(contender, scenario)
            if reason is not None:
                result.put(scenario, name, Cell(unsupported=reason))
                progress.skip(plan.planned_seconds(scenario))
            else:
                todo.append(SCENARIOS[scenario])
        load = [s for s in todo if isinstance(s, LoadScenario)]
        heavy = [s for s in todo if isinstance(s, HeavyScenario)]
        _run_load(plan, contender, load, server_core, result, progress)
        for heavy_scenario in heavy:
            planned = plan.planned_seconds(heavy_scenario.name)
            with progress.step(name, heavy_scenario.name, planned):
                cell = _run_heavy(plan, contender, heavy_scenario, server_core, result)
            result.put(heavy_scenario.name, name, cell)
    result.wall_seconds = time.time() - result.started
    return result


def _start(contender: Contender, plan: Plan, core: int, result: SuiteResult) -> ServerProcess:
    server = contender.server(plan.peer_python, core)
    server.start()  # stopped by the caller, or by stop_all() if the caller never gets it
    result.commands.setdefault(contender.name, _generic_command(server))
    # As the kernel has it, not as asked: the record shows the server had its own core.
    result.affinity[contender.name] = sorted(os.sched_getaffinity(server.pid))
    return server


def _run_load(
    plan: Plan,
    contender: Contender,
    scenarios: list[LoadScenario],
    core: int,
    result: SuiteResult,
    progress: ProgressBar,
) -> None:
    server: ServerProcess | None = None
    try:
        for scenario in scenarios:
            with progress.step(contender.name, scenario.name, plan.planned_seconds(scenario.name)):
                if server is None or not server.alive():
                    if server is not None:
                        server.stop()
                    try:
                        server = _start(contender, plan, core, result)
                    except Unavailable as exc:
                        server = None
                        result.put(scenario.name, contender.name, Cell(failed=str(exc)))
                        continue
                cell = scenario.measure(
                    HOST, server.port, warmup=plan.warmup, duration=plan.duration
                )
                if not server.alive():
                    cell.failed = f"the server died: {server.log_tail() or '(no output)'}"
            result.put(scenario.name, contender.name, cell)
    finally:
        if server is not None:
            server.stop()


def _run_heavy(
    plan: Plan, contender: Contender, scenario: HeavyScenario, core: int, result: SuiteResult
) -> Cell:
    try:
        server = _start(contender, plan, core, result)
    except Unavailable as exc:
        return Cell(failed=str(exc))
    try:
        cell = scenario.measure(
            HOST, server.port, server.pids, quick=plan.quick, budget=plan.budget(scenario)
        )
        if not server.alive():
            cell.failed = f"the server died: {server.log_tail() or '(no output)'}"
        return cell
    except Exception as exc:  # one scenario's failure is its cell's, not the suite's
        return Cell(failed=f"{type(exc).__name__}: {exc}")
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# The command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: {message}\n")


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Start kestrel and each installed peer on loopback, run every scenario "
        "against each, and write a table and a chart.",
    )
    parser.add_argument("--quick", action="store_true", help="a shorter run (about 2 minutes)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAMES",
        help=f"servers ({', '.join(CONTENDERS)}) and/or scenarios ({', '.join(SCENARIOS)}), "
        "comma-separated, repeatable",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("kestrel-bench-results"),
        help="directory for results.md, results.json and chart.svg "
        "(default ./kestrel-bench-results)",
    )
    parser.add_argument(
        "--peer-python",
        help="the interpreter that has the Python peers installed (default: "
        "perf/.venv/bin/python here if it exists, else this Python)",
    )
    parser.add_argument(
        "--warmup", type=_seconds, help="unmeasured seconds per load cell (1; quick 0.3)"
    )
    parser.add_argument(
        "--duration", type=_seconds, help="measured seconds per load cell (3; quick 1)"
    )
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    servers, scenarios = parse_only(args.only)
    if args.duration is not None and args.duration <= 0:
        raise SuiteError("--duration must be more than 0")
    peer_python = args.peer_python or default_peer_python()
    if args.peer_python and not os.access(peer_python, os.X_OK):
        raise SuiteError(f"--peer-python {peer_python}: not an executable")
    return Plan(
        servers=servers,
        scenarios=scenarios,
        warmup=args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0),
        duration=args.duration if args.duration is not None else (1.0 if args.quick else 3.0),
        quick=args.quick,
        peer_python=peer_python,
    )


def _total_planned(plan: Plan) -> float:
    return len(plan.servers) * sum(plan.planned_seconds(s) for s in plan.scenarios)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _pinned(core: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = _plan(args)
        args.out.mkdir(parents=True, exist_ok=True)
    except SuiteError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: --out {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    # SIGTERM and SIGHUP end the suite as Ctrl-C does: through every finally, stopping servers.
    # SIGINT too, explicitly: a process started in the background by a script inherits SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, _raise_interrupt) for s in stop_signals}
    progress = ProgressBar(_total_planned(plan), enabled=sys.stderr.isatty())
    try:
        # The cores are chosen before this process pins itself to the generator's: a server
        # started after that would otherwise get the generator's core too.
        server_core, generator_core = cores()
        with _pinned(generator_core), progress:
            result = run_suite(plan, progress, server_core, generator_core)
    except KeyboardInterrupt:
        stop_all()
        print(f"\n{PROG}: interrupted; every server it started is stopped", file=sys.stderr)
        return 130
    finally:
        stop_all()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    command = "kestrel-bench suite" + ("" if not argv else " " + shlex.join(argv))
    paths = suite_report.write(result, args.out, command)
    print(suite_report.markdown_table(result))
    print(f"\n{len(paths)} files in {args.out}: {', '.join(p.name for p in paths)}")
    print(f"wall time {result.wall_seconds:.0f} s")
    return 0
