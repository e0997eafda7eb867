"""kestrel-bench against wrk as load generators: the same servers, pinned the same way.

Each server (nginx, kestrel) runs on the server core; each generator runs on the client core
with one loop (``wrk -t1``, ``kestrel-bench --threads 1``), keep-alive and pipelined x16, in
alternating rounds so drift on the shared VM falls on both alike. For each run the report
gives the rate and the generator's own CPU use (user + system seconds over wall seconds): at
100 % the figure is the generator's ceiling, not the server's.

    python perf/bench_loadgen.py                       # 5 rounds of 5 s
    python perf/bench_loadgen.py --rounds 3 --duration 3 --only nginx
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (
    CLIENT_CPU,
    ROOT,
    SERVER_CPU,
    Server,
    ServerSpec,
    core_times,
    core_usage,
    git_commit,
    machine,
    tool_path,
)

PIPELINE_LUA = ROOT / "perf" / "pipeline.lua"
SCENARIOS = {"keep-alive": 1, "pipelined x16": 16}


def timed(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd` to the end; its output and its CPU use (user + system over wall)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu / wall


def run_wrk(url: str, depth: int, connections: int, duration: float) -> tuple[float, float]:
    cmd = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s"]
    if depth > 1:
        cmd += ["-s", str(PIPELINE_LUA), url, "--", str(depth)]
    else:
        cmd.append(url)
    out, cpu = timed(cmd)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no rate: {out[-300:]}")
    return float(match.group(1)), cpu


def run_kestrel_bench(
    url: str, depth: int, connections: int, duration: float
) -> tuple[float, float]:
    cmd = ["taskset", "-c", str(CLIENT_CPU), sys.executable, "-m", "kestrel.bench", url]
    cmd += ["-c", str(connections), "-d", f"{duration:g}", "-p", str(depth), "--json"]
    out, cpu = timed(cmd)
    data = json.loads(out)
    if sum(data["errors"].values()):
        raise RuntimeError(f"kestrel-bench counted errors: {data['errors']}")
    return float(data["requests_per_second"]), cpu


GENERATORS = {"wrk": run_wrk, "kestrel-bench": run_kestrel_bench}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", default="nginx,kestrel", help="servers, comma-separated")
    args = parser.parse_args()
    if not tool_path("wrk"):
        print("bench_loadgen: wrk is not installed (perf/setup_peers.sh)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {CLIENT_CPU})
    commit, _ = git_commit()
    print(f"# kestrel-bench against wrk at {commit}: {machine()}")
    print(f"# {args.rounds} rounds x {args.duration:g} s, {args.connections} connections")
    # Per run: the rate, the generator's CPU, and how busy the server's core was. A server
    # core near 100 % means the rate is the server's, whichever generator drove it.
    results: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for name in args.only.split(","):
        with Server(ServerSpec(name)) as server:
            url = f"http://127.0.0.1:{server.port}/"
            for round_ in range(args.rounds):
                for scenario, depth in SCENARIOS.items():
                    order = list(GENERATORS.items())
                    if round_ % 2:
                        order.reverse()  # neither generator always goes first
                    for generator, measure in order:
                        before = core_times()
                        rate, cpu = measure(url, depth, args.connections, args.duration)
                        busy = core_usage(before, core_times())[SERVER_CPU][0]
                        results.setdefault((name, scenario, generator), []).append(
                            (rate, cpu, busy)
                        )
                        print(
                            f"round {round_ + 1} {name:8} {scenario:14} {generator:14} "
                            f"{rate:>10,.0f} req/s  generator CPU {cpu:4.0%}  "
                            f"server core {busy:3.0f} %",
                            flush=True,
                        )
    print()
    print(
        "| server | scenario | generator | best req/s | median | generator CPU (median) "
        "| server core (median) |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (name, scenario, generator), runs in results.items():
        rates = [r for r, _, _ in runs]
        cpus = [c for _, c, _ in runs]
        server_busy = [b for _, _, b in runs]
        print(
            f"| {name} | {scenario} | {generator} | {max(rates):,.0f} | "
            f"{statistics.median(rates):,.0f} | {statistics.median(cpus):.0%} | "
            f"{statistics.median(server_busy):.0f} % |"
        )
    print()
    for name in args.only.split(","):
        for scenario in SCENARIOS:
            ours = results[(name, scenario, "kestrel-bench")]
            theirs = results[(name, scenario, "wrk")]
            best = max(r for r, _, _ in ours) / max(r for r, _, _ in theirs)
            median = statistics.median(r for r, _, _ in ours) / statistics.median(
                r for r, _, _ in theirs
            )
            print(
                f"- {name} {scenario}: kestrel-bench / wrk = {best:.2f}x best, {median:.2f}x median"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
