"""Framework benchmark: kestrel's App against Starlette under uvicorn, with wrk.

Both serve perf/apps/framework.py: ``GET /users/42?q=hello`` -> ``{"id":42,"q":"hello"}``
through one middleware that stamps a header (a pure ASGI middleware for Starlette). Each runs
pinned to core 0, wrk on core 1, in two scenarios (keep-alive, 64 connections; pipelined,
depth 16). kestrel's plaintext app (perf/apps/plaintext.py, a handler behind one middleware)
is measured in the same rounds, so the report can say what the framework layer (routing with
a path parameter, query parsing, JSON, a middleware that edits headers) costs per request:

    cost = 1 / framework rate - 1 / plaintext rate      (microseconds, one core)

It also reports the server's CPU time per request, split into user time and kernel time
(from /proc/PID/stat over each wrk run): with keep-alive, the kernel's loopback TCP work on
the server's core is a floor that no code in the server removes, and the report says what it
leaves of the time per request that 5x Starlette's rate allows.

Rounds alternate the order of the contenders. Set up first: ``bash perf/setup_peers.sh``.

    python perf/bench_framework.py                      # 3 rounds x 10 s
    python perf/bench_framework.py --rounds 1 --duration 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import WrkRun, run_wrk, wrk_command
from servers import HOST, Server, ServerSpec, Unavailable, git_commit, pin_self_to_client_core

PATH = "/users/42?q=hello"
EXPECTED = {"id": 42, "q": "hello"}
CONTENDERS = {
    "kestrel App": ServerSpec("kestrel", app="framework"),
    "Starlette/uvicorn": ServerSpec("uvicorn", app="framework"),
    "kestrel plaintext": ServerSpec("kestrel", app="plaintext"),
}
SCENARIOS = ("keep-alive", "pipelined")


def check_framework(port: int) -> None:
    """The route answers exactly as both apps must: JSON body and the middleware's header."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or json.loads(body) != EXPECTED:
        raise Unavailable(f"wrong answer to {PATH}: {response.status} {body[:80]!r}")
    if response.getheader("x-mw") != "1":
        raise Unavailable("the middleware's x-mw header is missing")
    if not (response.getheader("content-type") or "").startswith("application/json"):
        raise Unavailable(f"content-type {response.getheader('content-type')!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args(argv)
    pin_self_to_client_core()

    rates: dict[tuple[str, str], list[float]] = {}
    # The server's CPU time per request, (user, kernel) in microseconds: where it goes when
    # the server is the limit, and how much of it no framework code can save.
    cpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
    problems: list[str] = []
    names = list(CONTENDERS)
    for round_no in range(1, args.rounds + 1):
        order = names if round_no % 2 else names[::-1]
        for name in order:
            spec = CONTENDERS[name]
            try:
                with Server(spec) as server:
                    path = "/" if spec.app == "plaintext" else PATH
                    if spec.app == "framework":
                        check_framework(server.port)
                    url = f"http://{HOST}:{server.port}{path}"
                    warm = wrk_command(url, "keep-alive", args.connections, args.warmup, 1)
                    run_wrk(server, warm, WrkRun(name, "warmup", round_no, ""), args.warmup)
                    for scenario in SCENARIOS:
                        cmd = wrk_command(
                            url, scenario, args.connections, args.duration, args.depth
                        )
                        run = WrkRun(name, scenario, round_no, " ".join(cmd))
                        run_wrk(server, cmd, run, args.duration)
                        if run.clean:
                            rates.setdefault((name, scenario), []).append(run.rps)
                            kernel = run.server_kernel_pct / 100 / run.rps * 1e6
                            user = run.server_cpu_pct / 100 / run.rps * 1e6 - kernel
                            cpu.setdefault((name, scenario), []).append((user, kernel))
                        else:
                            problems.append(
                                f"{name} {scenario} round {round_no}: " + "; ".join(run.problems)
                            )
                        print(
                            f"round {round_no} {name:18s} {scenario:10s} {run.rps:10.0f} req/s"
                            + (f"  ({'; '.join(run.warnings)})" if run.warnings else ""),
                            file=sys.stderr,
                            flush=True,
                        )
            except Unavailable as exc:
                problems.append(f"{name}: {exc}")
                print(f"{name}: not available: {exc}", file=sys.stderr)
            time.sleep(0.5)

    print(f"\n# Framework benchmark at {git_commit()}: GET {PATH}, JSON + one middleware")
    print(
        f"# {args.rounds} rounds x {args.duration:g} s, {args.connections} connections, "
        f"pipelined depth {args.depth}; server core 0, wrk core 1\n"
    )
    print(
        f"| {'contender':18s} | {'scenario':10s} | {'best req/s':>10s} | {'median':>10s} "
        "| server us/request: user + kernel (median) |"
    )
    print(f"|{'-' * 20}|{'-' * 12}|{'-' * 12}:|{'-' * 12}:|{'-' * 42}:|")
    best: dict[tuple[str, str], float] = {}
    median: dict[tuple[str, str], float] = {}
    for name in names:
        for scenario in SCENARIOS:
            values = rates.get((name, scenario))
            if values:
                best[name, scenario] = max(values)
                median[name, scenario] = statistics.median(values)
                user = statistics.median(u for u, _ in cpu[name, scenario])
                kernel = statistics.median(k for _, k in cpu[name, scenario])
                print(
                    f"| {name:18s} | {scenario:10s} | {best[name, scenario]:10.0f} | "
                    f"{median[name, scenario]:10.0f} | {user:.2f} + {kernel:.2f} = "
                    f"{user + kernel:.2f} |"
                )
    print()
    for scenario in SCENARIOS:
        k, s, p = (
            ("kestrel App", scenario),
            ("Starlette/uvicorn", scenario),
            ("kestrel plaintext", scenario),
        )
        if k in best and s in best:
            print(
                f"- {scenario}: kestrel App / Starlette = {best[k] / best[s]:.2f}x best, "
                f"{median[k] / median[s]:.2f}x median (target >= 5x)"
            )
            budget = 1e6 / (5 * median[s])
            kernel = statistics.median(part for _, part in cpu[k])
            print(
                f"- {scenario}: 5x Starlette's median is {5 * median[s]:.0f} req/s, "
                f"{budget:.2f} us of the server's core per request; kestrel App's kernel time "
                f"is {kernel:.2f} us of that, leaving {budget - kernel:.2f} us for user space"
            )
        if k in best and p in best:
            cost = (1 / median[k] - 1 / median[p]) * 1e6
            print(
                f"- {scenario}: framework layer costs {cost:.2f} us per request over "
                f"plaintext (medians: {median[p]:.0f} -> {median[k]:.0f} req/s)"
            )
    for problem in problems:
        print(f"- left out: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
