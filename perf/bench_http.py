"""HTTP benchmark: kestrel against uvicorn, granian, socketify and nginx, with wrk.

Every contender serves the same plaintext route, ``GET /`` -> 200 ``Hello, World!`` text/plain
(perf/apps/plaintext.py; nginx: ``return 200``), pinned to core 0 on a free port of 127.0.0.1.
For each contender and round: start it, wait until it answers (and check the response), warm up
2 s, then run wrk pinned to core 1 in two scenarios, then stop it:

* ``keep-alive``: ``wrk -t1 -c64 -d10s --latency URL``;
* ``pipelined``: the same with perf/pipeline.lua, 16 requests per write.

Rounds alternate the contenders' order (forward, then reversed). The report gives the best and
median req/s per contender and scenario over the clean runs, and kestrel/peer ratios against
the engine issue's targets. A run is flagged, and left out of best and median, when wrk reports
socket errors or non-2xx/3xx responses, when wrk fails, or when the server dies.

Set up first: ``bash perf/setup_peers.sh`` (wrk, nginx-light, and the peers in perf/.venv).

    python perf/bench_http.py                                  # all, 3 rounds x 10 s
    python perf/bench_http.py --only uvicorn,nginx --rounds 1 --duration 5
    python perf/bench_http.py --json > http.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (
    CLIENT_CPU,
    CLK_TCK,
    DEFAULT_KESTREL_CMD,
    DEFAULT_VENV,
    HOST,
    PEERS,
    ROOT,
    SERVER_CPU,
    Server,
    ServerSpec,
    Unavailable,
    core_times,
    core_usage,
    cpu_ticks,
    git_commit,
    machine,
    pin_self_to_client_core,
    run_text,
    tool_path,
)

SCENARIOS = ("keep-alive", "pipelined")
PIPELINE_LUA = "perf/pipeline.lua"  # relative: wrk runs in ROOT
# kestrel / peer targets from the engine issue (#3), per scenario.
TARGETS: dict[str, dict[str, float]] = {
    "keep-alive": {"uvicorn": 3.5, "socketify": 1.3, "nginx": 0.9},
    "pipelined": {"uvicorn": 10.0, "socketify": 2.0},
}
RATIO_PEERS = ("uvicorn", "socketify", "nginx", "granian")
PERCENTILES = ("50%", "75%", "90%", "99%")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkRun:
    server: str
    scenario: str
    round: int
    command: str
    rps: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    latency_avg_ms: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0
    wrk_cpu_pct: float = 0.0  # of one core, over the wrk process's lifetime
    server_cpu_pct: float = 0.0  # of one core, the server's whole process tree
    server_kernel_pct: float = 0.0  # the part of server_cpu_pct spent in the kernel
    # Whole-core busy % (anything running there) and steal %, from /proc/stat.
    core_busy_pct: dict[int, float] = field(default_factory=dict)
    steal_pct: dict[int, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the run is left out of best/median
    warnings: list[str] = field(default_factory=list)  # the run counts, but read it with care

    @property
    def clean(self) -> bool:
        return not self.problems


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str, run: WrkRun) -> None:
    """Fill ``run`` from wrk's text output; anything missing or wrong goes to run.problems."""
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M):
        run.rps = float(m.group(1))
    else:
        run.problems.append("no Requests/sec line in wrk output")
    if m := re.search(r"^\s+(\d+) requests in ([\d.]+\w+),", out, re.M):
        run.requests = int(m.group(1))
        run.seconds = _ms(m.group(2)) / 1e3
    if m := re.search(r"^\s+Latency\s+([\d.]+\w+)", out, re.M):
        run.latency_avg_ms = _ms(m.group(1))
    for pct in PERCENTILES:
        if m := re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+\w+)", out, re.M):
            run.latency_ms[pct] = _ms(m.group(1))
    values = [run.latency_ms.get(p, 0.0) for p in PERCENTILES]
    if run.latency_ms and (0.0 in values or values != sorted(values)):
        # wrk 4.1 prints zeros in the distribution of some pipelined runs: not a measurement.
        run.latency_ms = {}
        run.warnings.append("wrk printed no valid latency distribution (zeros)")
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        run.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
        if any(run.socket_errors.values()):
            errs = ", ".join(f"{k} {v}" for k, v in run.socket_errors.items() if v)
            run.problems.append(f"socket errors: {errs}")
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        run.non_2xx_3xx = int(m.group(1))
        if run.non_2xx_3xx:
            run.problems.append(f"{run.non_2xx_3xx} non-2xx/3xx responses")
    if run.rps == 0 or run.requests == 0:
        run.problems.append("no requests completed")


def wrk_command(
    url: str, scenario: str, connections: int, duration: float, depth: int
) -> list[str]:
    cmd = [
        "taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{connections}",
        f"-d{duration:g}s", "--latency",
    ]  # fmt: skip
    if scenario == "pipelined":
        cmd += ["-s", PIPELINE_LUA, url, "--", str(depth)]
    else:
        cmd.append(url)
    return cmd


def run_wrk(server: Server, cmd: list[str], run: WrkRun, duration: float) -> None:
    """Run wrk against ``server`` and fill ``run``, with wrk's and the server's CPU use."""
    pids = server.pids()
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_ticks = cpu_ticks(pids)
    cores_before = core_times()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired:
        run.problems.append("wrk did not finish in time")
        return
    wall = time.monotonic() - t0
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = core_usage(cores_before, core_times())
    user, kernel = cpu_ticks(pids)
    run.server_cpu_pct = 100.0 * (user + kernel - sum(server_ticks)) / CLK_TCK / wall
    run.server_kernel_pct = 100.0 * (kernel - server_ticks[1]) / CLK_TCK / wall
    run.wrk_cpu_pct = (
        100.0
        * (
            after_children.ru_utime
            - before_children.ru_utime
            + after_children.ru_stime
            - before_children.ru_stime
        )
        / wall
    )
    run.core_busy_pct = {core: busy for core, (busy, _) in usage.items()}
    run.steal_pct = {core: steal for core, (_, steal) in usage.items()}
    # Something else on the server's core (another tenant's or session's work) or a hypervisor
    # that takes it away: the run counts, but its rate is suspect.
    other = run.core_busy_pct.get(SERVER_CPU, 0.0) - run.server_cpu_pct
    if other > 10:
        run.warnings.append(f"{other:.0f} % of core {SERVER_CPU} busy with other work")
    for core, steal in run.steal_pct.items():
        if steal > 5:
            run.warnings.append(f"{steal:.0f} % steal on core {core}")
    if proc.returncode != 0:
        run.problems.append(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
    parse_wrk(proc.stdout, run)
    if not server.alive():
        run.problems.append(f"server died: {server.log_tail()}")


# --------------------------------------------------------------------------------------------
# Rounds


@dataclass
class Contender:
    spec: ServerSpec
    version: str = ""
    unavailable: str | None = None
    server_command: str = ""
    runs: list[WrkRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def clean_rates(self, scenario: str) -> list[float]:
        return [r.rps for r in self.runs if r.scenario == scenario and r.clean]

    def best(self, scenario: str) -> float | None:
        rates = self.clean_rates(scenario)
        return max(rates) if rates else None

    def median(self, scenario: str) -> float | None:
        rates = self.clean_rates(scenario)
        return statistics.median(rates) if rates else None

    def best_run(self, scenario: str) -> WrkRun | None:
        runs = [r for r in self.runs if r.scenario == scenario and r.clean]
        return max(runs, key=lambda r: r.rps) if runs else None


def _generic(command: str, server: Server) -> str:
    """The command with its port and temporary directory as PORT and DIR."""
    command = command.replace(str(server.workdir), "DIR")
    return re.sub(rf"(?<![\d]){server.port}(?![\d])", "PORT", command)


def run_round(
    contender: Contender, rnd: int, args: argparse.Namespace, commands: dict[str, str]
) -> None:
    server = Server(contender.spec)
    try:
        server.start()
    except Unavailable as e:
        server.stop()
        contender.unavailable = str(e)
        contender.server_command = _generic(shlex.join(server.argv), server) if server.argv else ""
        log(f"  {contender.name}: NOT AVAILABLE: {e}")
        return
    try:
        contender.server_command = _generic(shlex.join(server.argv), server)
        url = f"http://{HOST}:{server.port}/"
        log(
            f"  {contender.name}: serving on {url} (pid {server.pid}); warming up {args.warmup:g} s"
        )
        warm = WrkRun(contender.name, "warm-up", rnd, "")
        run_wrk(server, wrk_command(url, "keep-alive", args.connections, args.warmup, 1), warm, 60)
        for scenario in SCENARIOS:
            cmd = wrk_command(url, scenario, args.connections, args.duration, args.depth)
            commands[scenario] = shlex.join(cmd).replace(url, "URL")
            run = WrkRun(contender.name, scenario, rnd, shlex.join(cmd))
            if not server.alive():
                run.problems.append(f"server died: {server.log_tail()}")
            else:
                run_wrk(server, cmd, run, args.duration)
            contender.runs.append(run)
            flag = "" if run.clean else "  FLAGGED: " + "; ".join(run.problems)
            if run.warnings:
                flag += "  (warning: " + "; ".join(run.warnings) + ")"
            log(
                f"    {scenario:<10} {run.rps:>12,.0f} req/s"
                + (f"  p99 {run.latency_ms['99%']:.2f} ms" if "99%" in run.latency_ms else "")
                + f"  wrk CPU {run.wrk_cpu_pct:.0f} %  server CPU {run.server_cpu_pct:.0f} %"
                f" (kernel {run.server_kernel_pct:.0f} %)"
                f"  core 0/1 busy {run.core_busy_pct.get(0, 0):.0f}/"
                f"{run.core_busy_pct.get(1, 0):.0f} %{flag}"
            )
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Report


def _fmt_rate(v: float | None) -> str:
    return f"{v:,.0f}" if v is not None else "-"


def ratios(contenders: dict[str, Contender]) -> dict[str, dict[str, dict[str, Any]]]:
    """kestrel/peer per scenario: best/best and median/median, with the issue's target."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    k = contenders.get("kestrel")
    for scenario in SCENARIOS:
        out[scenario] = {}
        for peer in RATIO_PEERS:
            p = contenders.get(peer)
            if k is None or p is None:
                continue
            kb, km, pb, pm = (
                k.best(scenario),
                k.median(scenario),
                p.best(scenario),
                p.median(scenario),
            )
            target = TARGETS[scenario].get(peer)
            best = kb / pb if kb and pb else None
            med = km / pm if km and pm else None
            out[scenario][peer] = {
                "best": best,
                "median": med,
                "target": target,
                "met": None if best is None or target is None else best >= target,
            }
    return out


def environment(args: argparse.Namespace, contenders: dict[str, Contender]) -> dict[str, Any]:
    commit, dirty = git_commit()
    wrk_version = run_text(["wrk", "--version"], stderr=True).splitlines()
    return {
        "machine": machine(),
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {name: c.version for name, c in contenders.items()},
        "wrk": wrk_version[0] if wrk_version else "not found",
        "commit": commit,
        "dirty_paths": dirty,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": shlex.join(["python", *sys.argv]),
        "kestrel_cmd": args.kestrel_cmd,
    }


def report_text(
    env: dict[str, Any],
    contenders: dict[str, Contender],
    args: argparse.Namespace,
    commands: dict[str, str],
) -> str:
    mach = env["machine"]
    dirty = env["dirty_paths"]
    lines = [
        f"machine:  {mach['cpu']}, {mach['cores']} cores, kernel {mach['kernel']}, "
        f"loadavg at start {mach['loadavg_at_start']}",
        f"pinning:  servers on core {env['server_cpu']}, wrk on core {env['client_cpu']}",
        f"python:   {env['python']} (driver)",
        f"wrk:      {env['wrk']}",
    ]
    for name, c in contenders.items():
        lines.append(f"{name + ':':<9} {c.version}")
    lines += [
        f"commit:   {env['commit']}"
        + (
            f" (changed: {', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''})" if dirty else ""
        ),
        f"date:     {env['date']}",
        f"command:  {env['command']}",
        f"config:   {args.rounds} rounds x {args.duration:g} s per scenario, {args.connections} "
        f"connections, 1 wrk thread, pipeline depth {args.depth}, warm-up {args.warmup:g} s",
        "",
        "| server    | scenario   | best req/s | median req/s | clean runs | p50 / p99 ms (best) "
        "| server CPU | wrk CPU |",
        "|-----------|------------|-----------:|-------------:|-----------:|--------------------"
        "|-----------:|--------:|",
    ]
    for name, c in contenders.items():
        if c.unavailable and not c.runs:
            lines.append(f"| {name:<9} | not available: {c.unavailable} |")
            continue
        for scenario in SCENARIOS:
            runs = [r for r in c.runs if r.scenario == scenario]
            best = c.best_run(scenario)
            if best is None:
                lat = "-"
            elif best.latency_ms:
                lat = f"{best.latency_ms.get('50%', 0):.2f} / {best.latency_ms.get('99%', 0):.2f}"
            else:
                lat = f"(avg {best.latency_avg_ms or 0:.2f})"
            cpu = f"{best.server_cpu_pct:.0f} %" if best else "-"
            wcpu = f"{best.wrk_cpu_pct:.0f} %" if best else "-"
            lines.append(
                f"| {name:<9} | {scenario:<10} | {_fmt_rate(c.best(scenario)):>10} "
                f"| {_fmt_rate(c.median(scenario)):>12} "
                f"| {len(c.clean_rates(scenario))}/{len(runs):<8} | {lat:<19} "
                f"| {cpu:>10} | {wcpu:>7} |"
            )
    flagged = [r for c in contenders.values() for r in c.runs if not r.clean]
    if flagged:
        lines += ["", "FLAGGED runs (left out of best and median):"]
        lines += [
            f"  {r.server} {r.scenario} round {r.round}: {r.rps:,.0f} req/s; "
            + "; ".join(r.problems)
            for r in flagged
        ]
    warned = [r for c in contenders.values() for r in c.runs if r.warnings]
    if warned:
        lines += ["", "Warnings (runs counted; core busy % is the whole core, server included):"]
        lines += [
            f"  {r.server} {r.scenario} round {r.round}: {r.rps:,.0f} req/s; "
            + "; ".join(r.warnings)
            for r in warned
        ]
    unavailable = [c for c in contenders.values() if c.unavailable]
    if unavailable:
        lines += [""]
        lines += [f"{c.name}: not available: {c.unavailable}" for c in unavailable]

    lines += ["", "kestrel / peer (best/best, median/median; target from issue #3):"]
    k = contenders.get("kestrel")
    if k is None:
        lines.append("  kestrel not selected (--only)")
    elif not k.clean_rates("keep-alive") and not k.clean_rates("pipelined"):
        lines.append(f"  n/a: kestrel not available ({k.unavailable or 'no clean run'})")
    else:
        for scenario, per_peer in ratios(contenders).items():
            for peer, r in per_peer.items():
                best_s = f"{r['best']:.2f}x" if r["best"] is not None else "-"
                med_s = f"{r['median']:.2f}x" if r["median"] is not None else "-"
                target = (
                    f">= {r['target']:g}x {'met' if r['met'] else 'MISSED'}"
                    if r["target"] is not None and r["met"] is not None
                    else ""
                )
                lines.append(f"  {scenario:<10} vs {peer:<9} {best_s:>7} {med_s:>7}  {target}")
    lines += [
        "",
        "commands (URL = http://127.0.0.1:PORT/, PORT free per start, DIR a temporary directory):",
    ]
    for scenario, cmd in commands.items():
        lines.append(f"  wrk {scenario}: {cmd}")
    for name, c in contenders.items():
        if c.server_command:
            lines.append(f"  {name}: {c.server_command}")
    return "\n".join(lines)


def report_json(
    env: dict[str, Any],
    contenders: dict[str, Contender],
    args: argparse.Namespace,
    commands: dict[str, str],
) -> str:
    doc = {
        "benchmark": "http",
        "environment": env,
        "config": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": 1,
            "pipeline_depth": args.depth,
            "warmup_s": args.warmup,
        },
        "wrk_commands": commands,
        "servers": {
            name: {
                "version": c.version,
                "available": c.unavailable is None,
                "unavailable_reason": c.unavailable,
                "command": c.server_command,
                "summary": {
                    s: {
                        "best_rps": c.best(s),
                        "median_rps": c.median(s),
                        "clean_runs": len(c.clean_rates(s)),
                    }
                    for s in SCENARIOS
                },
                "runs": [asdict(r) for r in c.runs],
            }
            for name, c in contenders.items()
        },
        "ratios_kestrel_over_peer": ratios(contenders),
    }
    return json.dumps(doc, indent=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all servers (3)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--depth", type=int, default=16, help="pipeline depth (16)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per start (2)")
    ap.add_argument(
        "--only", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}"
    )
    ap.add_argument(
        "--kestrel-cmd",
        default=DEFAULT_KESTREL_CMD,
        help="kestrel's command template; {python} = this interpreter, {port} = the port "
        f"(default: {DEFAULT_KESTREL_CMD!r})",
    )
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="peers' venv (perf/.venv)")
    ap.add_argument("--json", action="store_true", help="print only a JSON document on stdout")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        ap.error(f"--only: unknown {unknown}; choose from {','.join(PEERS)}")
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.depth < 1:
        ap.error("--rounds, --duration, --connections and --depth must be positive")
    for tool in ("wrk", "taskset"):
        if tool_path(tool) is None:
            ap.error(f"{tool} not found: run `bash perf/setup_peers.sh` first")

    pin_self_to_client_core()
    contenders = {
        n: Contender(ServerSpec(n, kestrel_cmd=args.kestrel_cmd, venv=args.venv)) for n in names
    }
    for c in contenders.values():
        c.version = c.spec.version()
        if c.name == "kestrel":
            kind = run_text(
                [
                    c.spec.python,
                    "-c",
                    "import perf.apps.plaintext as m; print(m.KESTREL_APP_KIND)",
                ],
                stderr=True,
            )
            c.version += f"; app: {kind.splitlines()[-1] if kind else 'not importable'}"
        try:
            c.spec.check()
        except Unavailable as e:
            c.unavailable = str(e)
    env = environment(args, contenders)
    log(f"{env['date']}  commit {env['commit']}")
    commands: dict[str, str] = {}
    for rnd in range(args.rounds):
        order = list(contenders.values())
        if rnd % 2:
            order.reverse()
        log(f"round {rnd + 1}/{args.rounds}: {', '.join(c.name for c in order)}")
        for c in order:
            if c.unavailable is None:
                run_round(c, rnd + 1, args, commands)
    env["machine"]["loadavg_at_end"] = machine()["loadavg_at_start"]
    if args.json:
        print(report_json(env, contenders, args, commands))
    else:
        print(report_text(env, contenders, args, commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
