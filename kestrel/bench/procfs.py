"""Readings from /proc for benchmarks: a server's process tree, its CPU time and memory, the
busy time of each core, and the machine itself.

A server under test may be several processes (nginx's master and worker, granian's workers),
so each reading is of the whole tree under the pid that was started. Core readings come in
pairs: take one before and one after a measurement; the difference says how busy each core was,
and how much the hypervisor took (steal), which decides whether a figure is the server's or
the load generator's.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (nginx's master and worker, granian's workers)."""
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """(utime, stime) of ``pids``: time in the program and in the kernel on its behalf, in
    clock ticks (processes that are gone count 0)."""
    user = kernel = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        kernel += int(fields[12])
    return user, kernel


CLK_TCK = os.sysconf("SC_CLK_TCK")


def core_times() -> dict[int, tuple[int, int, int]]:
    """Per core, from /proc/stat: (busy, total, steal) ticks since boot.

    busy is everything but idle and iowait; steal is time the hypervisor gave to others.
    """
    out: dict[int, tuple[int, int, int]] = {}
    with contextlib.suppress(OSError), open("/proc/stat") as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name[3:].isdigit():
                v = [int(x) for x in rest.split()]
                idle = v[3] + v[4]
                steal = v[7] if len(v) > 7 else 0
                total = sum(v[:8])
                out[int(name[3:])] = (total - idle, total, steal)
    return out


def core_usage(
    before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]]
) -> dict[int, tuple[float, float]]:
    """Per core: (busy %, steal %) between two core_times() readings."""
    usage: dict[int, tuple[float, float]] = {}
    for core, (busy1, total1, steal1) in after.items():
        busy0, total0, steal0 = before.get(core, (0, 0, 0))
        dt = max(1, total1 - total0)
        usage[core] = (100.0 * (busy1 - busy0) / dt, 100.0 * (steal1 - steal0) / dt)
    return usage


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, VmRSS summed over the tree
    pss: int  # bytes, Pss from smaps_rollup summed over the tree (0 if unreadable)


def memory(pids: list[int]) -> Memory:
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return Memory(rss, pss)


def machine() -> dict[str, object]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    loadavg = ""
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "loadavg_at_start": loadavg,
    }
