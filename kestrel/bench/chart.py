"""The suite's chart, as hand-written SVG: one small panel per scenario and figure.

A scenario's servers differ by up to two orders of magnitude, and scenarios differ by more
(a plaintext rate against 8 MiB uploads), so one shared axis would flatten most bars. Each
panel therefore has its own linear axis from zero: bar lengths compare servers within a
scenario, and every bar carries its value, so no figure has to be read off an axis. Load
scenarios get two panels side by side, requests per second and p99 latency; heavy scenarios
one panel per figure (but not for a figure every server shares). kestrel's bar is drawn in
the strong colour; a server that cannot do a scenario, or failed it, gets its reason's short
form in place of a bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from kestrel.bench.cell import Cell
from kestrel.bench.report import format_duration
from kestrel.bench.scenarios import SCENARIOS, LoadScenario

if TYPE_CHECKING:
    from kestrel.bench.suite import SuiteResult

WIDTH = 1000
MARGIN = 24
GAP = 28  # between the two panels of a row
PANEL = (WIDTH - 2 * MARGIN - GAP) // 2
NAME_COLUMN = 78  # server names, left of the bars
VALUE_COLUMN = 92  # room right of the longest bar for its value
BAR = 14
BAR_GAP = 5
TITLE = 22  # a panel's title line
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

COLOURS = {
    "kestrel": "#d9480f",
    "uvicorn": "#4c6ef5",
    "granian": "#2f9e44",
    "socketify": "#ae3ec9",
    "hypercorn": "#1098ad",
    "nginx": "#868e96",
}
OTHER = "#495057"


@dataclass
class Panel:
    title: str
    subtitle: str
    values: list[tuple[str, float | None, str]]  # server, value (None: none), its label


def _value_label(value: float, unit: str) -> str:
    if unit == "us":
        return format_duration(value)
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _missing(cell: Cell | None) -> str:
    if cell is None:
        return "not run"
    if cell.unsupported is not None:
        return "n/a (cannot)"
    return "failed"


def _better(figure: str) -> str:
    name = figure.lower()
    if "/s" in name or "served" in name:
        return "higher is better"
    if any(word in name for word in ("rss", "kib", "mib", "latency", "p99", " ms", " us")):
        return "lower is better"
    return ""


def _same_everywhere(figure: str, cells: dict[str, Cell]) -> bool:
    values = {c.figures[figure] for c in cells.values() if c.ok and figure in c.figures}
    with_it = sum(1 for c in cells.values() if c.ok and figure in c.figures)
    return with_it > 1 and len(values) == 1


def panels(result: SuiteResult) -> list[tuple[str, list[Panel]]]:
    """(row title, its one or two panels) for every scenario of the run."""
    rows: list[tuple[str, list[Panel]]] = []
    servers = result.plan.servers
    for name in result.plan.scenarios:
        scenario = SCENARIOS[name]
        cells = result.cells.get(name, {})
        if isinstance(scenario, LoadScenario):
            rate = Panel("requests per second", "higher is better", [])
            p99 = Panel("p99 latency", "lower is better", [])
            for server in servers:
                cell = cells.get(server)
                if cell is None or not cell.ok or cell.rate is None:
                    rate.values.append((server, None, _missing(cell)))
                    p99.values.append((server, None, _missing(cell)))
                    continue
                rate.values.append((server, cell.rate, _value_label(cell.rate, "")))
                if cell.p99_us is None:
                    p99.values.append((server, None, "-"))
                else:
                    p99.values.append((server, cell.p99_us, _value_label(cell.p99_us, "us")))
            rows.append((scenario.heading(result.plan.quick), [rate, p99]))
            continue
        figures: list[str] = []
        for cell in cells.values():
            figures += [f for f in cell.figures if f not in figures]
        # A figure every server shares (all 2,000 served, none closed) compares nothing: the
        # table has it, the chart leaves it out.
        figures = [f for f in figures if not _same_everywhere(f, cells)] or ["(no figure)"]
        row: list[Panel] = []
        for figure in figures:
            panel = Panel(figure, _better(figure), [])
            for server in servers:
                cell = cells.get(server)
                if cell is None or not cell.ok or figure not in cell.figures:
                    label = _missing(cell) if cell is None or not cell.ok else "-"
                    panel.values.append((server, None, label))
                else:
                    value = cell.figures[figure]
                    panel.values.append((server, value, _value_label(value, "")))
            row.append(panel)
        for start in range(0, len(row), 2):
            suffix = "" if start == 0 else " (cont.)"
            rows.append((scenario.heading(result.plan.quick) + suffix, row[start : start + 2]))
    return rows


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>'


def _panel(panel: Panel, x: float, y: float) -> list[str]:
    out = [
        _text(x, y + 14, panel.title, font_size="12.5", font_weight="600", fill="#212529"),
    ]
    if panel.subtitle:
        out.append(
            _text(
                x + PANEL, y + 14, panel.subtitle, font_size="11", fill="#868e96", text_anchor="end"
            )
        )
    top = y + TITLE
    bar_width = PANEL - NAME_COLUMN - VALUE_COLUMN
    biggest = max((v for _, v, _ in panel.values if v is not None), default=0.0)
    for i, (server, value, label) in enumerate(panel.values):
        by = top + i * (BAR + BAR_GAP)
        out.append(
            _text(
                x + NAME_COLUMN - 6,
                by + BAR - 3,
                server,
                font_size="11.5",
                fill="#343a40",
                text_anchor="end",
            )
        )
        left = x + NAME_COLUMN
        if value is None:
            out.append(
                _text(
                    left + 2,
                    by + BAR - 3,
                    label,
                    font_size="11",
                    fill="#adb5bd",
                    font_style="italic",
                )
            )
            continue
        length = bar_width * value / biggest if biggest > 0 else 0.0
        colour = COLOURS.get(server, OTHER)
        out.append(
            f'<rect x="{left:.1f}" y="{by:.1f}" width="{max(length, 1.0):.1f}" '
            f'height="{BAR}" rx="2" fill="{colour}"/>'
        )
        weight = "700" if server == "kestrel" else "400"
        out.append(
            _text(
                left + length + 5,
                by + BAR - 3,
                label,
                font_size="11",
                fill="#212529",
                font_weight=weight,
            )
        )
    axis_bottom = top + len(panel.values) * (BAR + BAR_GAP) - BAR_GAP + 2
    out.append(
        f'<line x1="{x + NAME_COLUMN:.1f}" y1="{top - 2:.1f}" x2="{x + NAME_COLUMN:.1f}" '
        f'y2="{axis_bottom:.1f}" stroke="#ced4da" stroke-width="1"/>'
    )
    return out


def svg(result: SuiteResult, subtitles: list[str]) -> str:
    rows = panels(result)
    servers = result.plan.servers
    panel_height = TITLE + len(servers) * (BAR + BAR_GAP) + 10
    row_height = 22 + panel_height + 14
    header = 100
    height = header + len(rows) * row_height + MARGIN
    body: list[str] = [
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        _text(MARGIN, 30, "kestrel-bench suite", font_size="20", font_weight="700", fill="#212529"),
    ]
    for i, line in enumerate(subtitles[:2]):
        body.append(_text(MARGIN, 50 + 16 * i, line, font_size="11.5", fill="#495057"))
    # Legend: one swatch per server, in the suite's order.
    lx = MARGIN
    legend_y = 78
    for server in servers:
        body.append(
            f'<rect x="{lx}" y="{legend_y}" width="12" height="12" rx="2" '
            f'fill="{COLOURS.get(server, OTHER)}"/>'
        )
        body.append(_text(lx + 17, legend_y + 10.5, server, font_size="12", fill="#343a40"))
        lx += 28 + 7 * len(server) + 12
    y = header
    for title, row in rows:
        body.append(
            f'<line x1="{MARGIN}" y1="{y + 2}" x2="{WIDTH - MARGIN}" y2="{y + 2}" '
            'stroke="#e9ecef" stroke-width="1"/>'
        )
        body.append(_text(MARGIN, y + 19, title, font_size="14", font_weight="700", fill="#212529"))
        for i, panel in enumerate(row):
            body += _panel(panel, MARGIN + i * (PANEL + GAP), y + 24)
        y += row_height
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}">\n' + "\n".join(body) + "\n</svg>\n"
    )
