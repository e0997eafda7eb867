"""The keep-alive targets of the engine and framework issues, measured with kestrel-bench.

Issues #3 and #4 set keep-alive targets that one wrk thread could not measure here: wrk -t1
tops out near kestrel's plaintext rate, so the ratios were wrk's. This script measures them
again with kestrel-bench as the load generator (one loop, pinned to the client core; every
server pinned to the server core), keep-alive with 64 connections:

* plaintext: kestrel against uvicorn (uvloop + httptools; target >= 3.5x), socketify
  (target >= 1.3x) and nginx (the ceiling), all serving perf/apps/plaintext.py or nginx's
  ``return 200``;
* the framework route ``GET /users/42?q=hello`` (perf/apps/framework.py): kestrel's App
  against Starlette under uvicorn (target >= 5x).

The contenders run in alternating order, round after round, so the VM's drift falls on all
of them. For each run it reports how busy each core was (from /proc/stat) and kestrel-bench's
own CPU. A figure is the server's when the server's core is saturated; when it is not, the
report says the figure may be the generator's. kestrel-bench's CPU share alone does not tell:
its closed loop polls epoll briefly before it sleeps, which fills its idle time.

    python perf/bench_targets.py                       # 3 rounds x 5 s
    python perf/bench_targets.py --rounds 1 --duration 3 --only plaintext
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loadgen import timed
from servers import (
    CLIENT_CPU,
    SERVER_CPU,
    Server,
    ServerSpec,
    Unavailable,
    core_times,
    core_usage,
    git_commit,
    machine,
    pin_self_to_client_core,
)

GROUPS: dict[str, tuple[str, dict[str, ServerSpec]]] = {
    "plaintext": (
        "/",
        {
            "kestrel": ServerSpec("kestrel"),
            "uvicorn": ServerSpec("uvicorn"),
            "socketify": ServerSpec("socketify"),
            "nginx": ServerSpec("nginx"),
        },
    ),
    "framework": (
        "/users/42?q=hello",
        {
            "kestrel App": ServerSpec("kestrel", app="framework"),
            "Starlette/uvicorn": ServerSpec("uvicorn", app="framework"),
        },
    ),
}
TARGETS = {  # (group, peer): the least kestrel / peer the issues ask for
    ("plaintext", "uvicorn"): 3.5,
    ("plaintext", "socketify"): 1.3,
    ("framework", "Starlette/uvicorn"): 5.0,
}
SATURATED = 95.0  # % busy: a core this busy is the limit of whatever runs on it


@dataclass
class Run:
    rate: float
    p99_us: float
    errors: int
    server_core: float  # % busy, whatever ran there
    client_core: float
    generator_cpu: float  # % of one core: kestrel-bench's own user + system time


def measure(url: str, connections: int, duration: float, warmup: float) -> Run:
    """One kestrel-bench run on the client core, with both cores' busy time around it."""
    cmd = ["taskset", "-c", str(CLIENT_CPU), sys.executable, "-m", "kestrel.bench", url]
    cmd += ["-c", str(connections), "-d", f"{duration:g}", "--warmup", f"{warmup:g}", "--json"]
    before = core_times()
    out, cpu = timed(cmd)
    usage = core_usage(before, core_times())
    data = json.loads(out)
    # The warm-up is inside the same window, at the same load: it dilutes nothing.
    return Run(
        rate=float(data["requests_per_second"]),
        p99_us=float(data["latency_us"]["percentiles"]["99"]),
        errors=sum(data["errors"].values())
        + sum(n for status, n in data["status"].items() if status != "2xx"),
        server_core=usage[SERVER_CPU][0],
        client_core=usage[CLIENT_CPU][0],
        generator_cpu=100.0 * cpu,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", default=",".join(GROUPS), help="groups, comma-separated")
    args = parser.parse_args()
    groups = args.only.split(",")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        print(f"bench_targets: unknown group {unknown[0]!r}; known: {', '.join(GROUPS)}")
        return 2
    pin_self_to_client_core()
    commit, _ = git_commit()
    print(f"# keep-alive targets with kestrel-bench at {commit}: {machine()}")
    print(f"# {args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warm-up), ", end="")
    print(f"{args.connections} connections, one generator loop on core {CLIENT_CPU}")
    runs: dict[tuple[str, str], list[Run]] = {}
    for group in groups:
        path, contenders = GROUPS[group]
        for round_ in range(args.rounds):
            order = list(contenders.items())
            if round_ % 2:
                order.reverse()
            for name, spec in order:
                try:
                    with Server(spec) as server:
                        run = measure(
                            f"http://127.0.0.1:{server.port}{path}",
                            args.connections,
                            args.duration,
                            args.warmup,
                        )
                except Unavailable as exc:
                    print(f"{group:9} {name:18} unavailable: {exc}")
                    continue
                runs.setdefault((group, name), []).append(run)
                print(
                    f"round {round_ + 1} {group:9} {name:18} {run.rate:>10,.0f} req/s  "
                    f"p99 {run.p99_us:>6,.0f} us  errors {run.errors}  "
                    f"server core {run.server_core:3.0f} %  generator core "
                    f"{run.client_core:3.0f} % (kestrel-bench {run.generator_cpu:3.0f} %)",
                    flush=True,
                )
    print()
    print(
        "| group | server | best req/s | median | p99 (median) | server core "
        "| generator core | kestrel-bench CPU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (group, name), rs in runs.items():
        print(
            f"| {group} | {name} | {max(r.rate for r in rs):,.0f} | "
            f"{statistics.median(r.rate for r in rs):,.0f} | "
            f"{statistics.median(r.p99_us for r in rs):,.0f} us | "
            f"{statistics.median(r.server_core for r in rs):.0f} % | "
            f"{statistics.median(r.client_core for r in rs):.0f} % | "
            f"{statistics.median(r.generator_cpu for r in rs):.0f} % |"
        )
    print()
    for group in groups:
        ours_name = next(iter(GROUPS[group][1]))
        ours = runs.get((group, ours_name))
        if not ours:
            continue
        for (g, name), theirs in runs.items():
            if g != group or name == ours_name:
                continue
            best = max(r.rate for r in ours) / max(r.rate for r in theirs)
            median = statistics.median(r.rate for r in ours) / statistics.median(
                r.rate for r in theirs
            )
            target = TARGETS.get((group, name))
            verdict = "" if target is None else f" (target {target:g}x: "
            if target is not None:
                verdict += "met)" if median >= target else "NOT met)"
            print(
                f"- {group}: {ours_name} / {name} = {best:.2f}x best, {median:.2f}x median{verdict}"
            )
        for name, rs in ((n, r) for (g, n), r in runs.items() if g == group):
            busy = statistics.median(r.server_core for r in rs)
            if busy >= SATURATED:
                continue  # the server's own core was the limit: the figure is the server's
            print(
                f"  {name}'s core was only {busy:.0f} % busy: that figure may be the "
                "generator's limit, not the server's"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
