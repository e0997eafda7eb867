"""What `kestrel-bench suite` writes: results.md (the tables a person reads), results.json
(everything, for scripts) and chart.svg (chart.py).

The Markdown has one table of requests per second, with each peer's ratio to kestrel (kestrel's
rate over the peer's: above 1, kestrel is faster), one of p99 latency, and one of the heavy
scenarios' figures, then notes for every cell that is not a plain figure: why a server cannot
do a scenario, why a scenario failed, and errors seen during a load run.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kestrel
from kestrel.bench import chart
from kestrel.bench.cell import Cell
from kestrel.bench.report import format_duration
from kestrel.bench.scenarios import SCENARIOS, LoadScenario
from kestrel.bench.servers import CONTENDERS, kestrel_pythonpath

if TYPE_CHECKING:
    from kestrel.bench.suite import SuiteResult

REFERENCE = "kestrel"


def commit() -> str:
    """The commit of the kestrel checkout measured, '+dirty' if it has changes ('' if none)."""
    root = kestrel_pythonpath()
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+dirty" if status else "")


def format_figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


class Notes:
    """Numbered notes under the tables, each text once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"{i}. {text}" for i, text in enumerate(self.texts, 1))


def _not_figure(cell: Cell, server: str, scenario: str, notes: Notes) -> str | None:
    if cell.unsupported is not None:
        return "n/a " + notes.ref(f"{server} cannot do {scenario}: {cell.unsupported}")
    if cell.failed is not None:
        return "failed " + notes.ref(f"{server}, {scenario}: {cell.failed}")
    return None


def _flags(cell: Cell, server: str, scenario: str, notes: Notes) -> str:
    said = []
    if cell.errors or cell.non_2xx:
        said.append(f"{cell.errors:,} errors, {cell.non_2xx:,} non-2xx responses")
    if cell.note:
        said.append(cell.note)
    return " " + notes.ref(f"{server}, {scenario}: " + "; ".join(said)) if said else ""


def _table(header: list[str], rows: list[list[str]], numbers: bool = True) -> str:
    """A Markdown table; ``numbers``: every column but the first is right-aligned."""
    rule = "|---" + ("|--:" if numbers else "|---") * (len(header) - 1) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _load_tables(result: SuiteResult, notes: Notes) -> tuple[str, str]:
    servers = list(result.plan.servers)
    rates: list[list[str]] = []
    p99s: list[list[str]] = []
    for name in result.plan.scenarios:
        scenario = SCENARIOS[name]
        if not isinstance(scenario, LoadScenario):
            continue
        cells = result.cells.get(name, {})
        reference = cells.get(REFERENCE)
        rate_row, p99_row = (
            [scenario.heading(result.plan.quick)],
            [scenario.heading(result.plan.quick)],
        )
        for server in servers:
            cell = cells.get(server, Cell(failed="not run"))
            missing = _not_figure(cell, server, name, notes)
            if missing is not None:
                rate_row.append(missing)
                p99_row.append(missing)
                continue
            assert cell.rate is not None
            text = f"{cell.rate:,.0f}"
            if server == REFERENCE:
                text = f"**{text}**"
            elif reference is not None and reference.ok and reference.rate and cell.rate:
                text += f" ({reference.rate / cell.rate:.2f}x)"
            rate_row.append(text + _flags(cell, server, name, notes))
            p99_row.append(format_duration(cell.p99_us) if cell.p99_us is not None else "-")
        rates.append(rate_row)
        p99s.append(p99_row)
    header = ["scenario", *servers]
    return _table(header, rates), _table(header, p99s)


def _heavy_table(result: SuiteResult, notes: Notes) -> str:
    servers = list(result.plan.servers)
    rows: list[list[str]] = []
    for name in result.plan.scenarios:
        scenario = SCENARIOS[name]
        if isinstance(scenario, LoadScenario):
            continue
        cells = result.cells.get(name, {})
        figures: list[str] = []
        for cell in cells.values():
            figures += [f for f in cell.figures if f not in figures]
        if not figures:  # nothing measured anywhere: one row of reasons
            row = [scenario.heading(result.plan.quick)]
            for server in servers:
                cell = cells.get(server, Cell(failed="not run"))
                row.append(_not_figure(cell, server, name, notes) or "-")
            rows.append(row)
            continue
        for figure in figures:
            row = [f"{scenario.heading(result.plan.quick)}: {figure}"]
            for server in servers:
                cell = cells.get(server, Cell(failed="not run"))
                missing = _not_figure(cell, server, name, notes)
                if missing is not None:
                    row.append(missing)
                elif figure in cell.figures:
                    row.append(
                        format_figure(cell.figures[figure]) + _flags(cell, server, name, notes)
                    )
                else:
                    row.append("-")
            rows.append(row)
    return _table(["scenario", *servers], rows) if rows else ""


def markdown_table(result: SuiteResult) -> str:
    """The tables and their notes (what the suite prints when it is done)."""
    notes = Notes()
    rates, p99s = _load_tables(result, notes)
    heavy = _heavy_table(result, notes)
    parts = [
        "Requests per second (in brackets: kestrel's rate over the server's; above 1, "
        "kestrel is faster)",
        "",
        rates,
        "",
        "p99 latency",
        "",
        p99s,
    ]
    if heavy:
        parts += ["", "Heavy scenarios", "", heavy]
    if notes.texts:
        parts += ["", "Notes", "", notes.markdown()]
    return "\n".join(parts)


def markdown(result: SuiteResult, command: str) -> str:
    plan, machine = result.plan, result.machine
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.started))
    rev = commit()
    lines = [
        "# kestrel-bench suite",
        "",
        f"- kestrel {kestrel.__version__}" + (f" at commit `{rev}`" if rev else "") + f", {when}",
        f"- CPU: {machine.get('cpu')} ({machine.get('cores')} cores), "
        f"Linux {machine.get('kernel')}, load average at start {machine.get('loadavg_at_start')}",
        f"- command: `{command}`, wall time {result.wall_seconds:.0f} s",
        f"- each server pinned to core {result.server_core}, the load generator "
        f"(kestrel-bench, closed loop) to core {result.generator_core}; each load cell "
        f"{plan.warmup:g} s warm-up, then {plan.duration:g} s measured, 64 connections "
        f"(early-8m: 16)" + (", quick run (--quick)" if plan.quick else ""),
        "",
        markdown_table(result),
        "",
        "Servers",
        "",
        _table(
            ["server", "version", "how it runs", "command"],
            [
                [
                    name,
                    result.versions.get(name, "-"),
                    CONTENDERS[name].about,
                    f"`{result.commands[name]}`" if name in result.commands else "-",
                ]
                for name in plan.servers
            ],
            numbers=False,
        ),
        "",
        "![req/s and p99 per scenario and server](chart.svg)",
        "",
    ]
    return "\n".join(lines)


def as_dict(result: SuiteResult, command: str) -> dict[str, Any]:
    plan = result.plan
    return {
        "command": command,
        "kestrel": kestrel.__version__,
        "commit": commit(),
        "started": result.started,
        "wall_seconds": result.wall_seconds,
        "machine": result.machine,
        "server_core": result.server_core,
        "generator_core": result.generator_core,
        "plan": {
            "servers": list(plan.servers),
            "scenarios": list(plan.scenarios),
            "warmup": plan.warmup,
            "duration": plan.duration,
            "quick": plan.quick,
            "peer_python": plan.peer_python,
        },
        "servers": {
            name: {
                "version": result.versions.get(name),
                "about": CONTENDERS[name].about,
                "command": result.commands.get(name),
                "cores": result.affinity.get(name),
            }
            for name in plan.servers
        },
        "scenarios": {
            name: {"title": SCENARIOS[name].heading(plan.quick)} for name in plan.scenarios
        },
        "cells": {
            scenario: {server: cell.to_dict() for server, cell in cells.items()}
            for scenario, cells in result.cells.items()
        },
    }


def write(result: SuiteResult, out: Path, command: str) -> list[Path]:
    paths = [out / "results.md", out / "results.json", out / "chart.svg"]
    paths[0].write_text(markdown(result, command))
    paths[1].write_text(json.dumps(as_dict(result, command), indent=2) + "\n")
    rev = commit()
    when = time.strftime("%Y-%m-%d", time.gmtime(result.started))
    about = (
        f"kestrel {kestrel.__version__}" + (f" at {rev}" if rev else "") + f" · {when} · "
        f"{result.machine.get('cpu')} ({result.machine.get('cores')} cores) · "
        f"wall time {result.wall_seconds:.0f} s"
    )
    paths[2].write_text(chart.svg(result, [about, command]))
    return paths
