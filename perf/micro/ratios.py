"""Peer time / kestrel time for each group of a micro-benchmark run.

    python perf/micro/ratios.py              # the run saved last under perf/micro/.benchmarks
    python perf/micro/ratios.py RUN.json     # a saved run, or a --benchmark-json file

In a group, a row whose ``contender`` does not start with "kestrel" is a peer, and each
kestrel row gets peer/kestrel for the median and for the minimum, one line per peer (the
response parser's groups have two: httptools and h11): 2.00x means kestrel takes half the
peer's time (a rate ratio, as in RESULTS.md). conftest.py prints this same table
after every run that times anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STORAGE = Path(__file__).resolve().parent / ".benchmarks"


def _contender(bench: dict[str, Any]) -> str:
    return str((bench.get("params") or {}).get("contender", bench["name"]))


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def ratio_table(benchmarks: list[dict[str, Any]]) -> str:
    """A Markdown table from pytest-benchmark's benchmark dicts (its JSON's "benchmarks");
    empty when no group has a peer."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in benchmarks:
        groups.setdefault(bench["group"] or "", []).append(bench)
    lines = [
        "| group | kestrel | peer | kestrel median | peer median | peer/kestrel median | min |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    for group in sorted(groups):
        kestrels = [b for b in groups[group] if _contender(b).startswith("kestrel")]
        peers = [b for b in groups[group] if not _contender(b).startswith("kestrel")]
        for peer in peers:
            theirs = peer["stats"]
            for bench in kestrels:
                ours = bench["stats"]
                lines.append(
                    f"| {group} | {_contender(bench)} | {_contender(peer)} "
                    f"| {_ns(ours['median'])} | {_ns(theirs['median'])} "
                    f"| {theirs['median'] / ours['median']:.2f}x "
                    f"| {theirs['min'] / ours['min']:.2f}x |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str]) -> int:
    if argv:
        path = Path(argv[0])
    else:
        saved = sorted(STORAGE.glob("*/*.json"), key=lambda p: p.stat().st_mtime)
        if not saved:
            print(f"no saved run under {STORAGE}; pass a JSON file", file=sys.stderr)
            return 2
        path = saved[-1]
    run = json.loads(path.read_text())
    commit = run.get("commit_info", {})
    print(f"{path}: commit {commit.get('id', '?')[:12]}{'+dirty' if commit.get('dirty') else ''}")
    print(ratio_table(run["benchmarks"]) or "no group with a peer in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
