"""Large streamed responses: throughput to a fast reader, and what stalled readers cost.

Each contender is a kestrel checkout and the interpreter it is built for
(``--contender LABEL=PYTHON:ROOT``; default: this checkout with the running interpreter), so
two commits can be compared in the same run. Each serves ``perf.apps.backpressure:app`` from its
own root (``GET /stream?size=N``: a chunked response written in 64 KiB pieces of one
preallocated buffer) as ``python -m kestrel`` pinned to core 0; the client runs on core 1.

Throughput (default): per round and contender (the order alternates from round to round), one
``GET /stream`` of ``--size-mib`` (64) with ``Connection: close``, read as fast as possible
(``recv_into`` a 1 MiB buffer until EOF, or ``curl -o /dev/null`` with ``--client curl``).
MB/s = body bytes / (first byte of the request sent -> EOF), MB = 10^6 bytes. The report gives
median and best MB/s per contender, the server's CPU time per 64 MiB (user + kernel, summed
over the rounds), and the ratio of each contender's median to the first's. A response that is
not 200 or does not end with the chunked terminator fails the run.

Stall (``--stall``): ``--clients`` (16) connections with a small SO_RCVBUF (16 KiB, set
before connect) each send ``GET /stream`` and then read nothing. Once every connection's
Send-Q (``ss``) has stopped changing, the report gives Send-Q max/mean, the kernel's
send-buffer memory (``ss -m``, skmem ``w``: wmem_queued) and the server's VmRSS growth over its
idle figure. Bytes, not time: on a busy machine it takes longer, the figures stay.

    python perf/bench_stream.py --rounds 7
    python perf/bench_stream.py --contender head=.venv/bin/python:. \\
        --contender base=/tmp/ci-base/.ci/venv/bin/python:/tmp/ci-base --rounds 9
    python perf/bench_stream.py --client curl --contender ... --contender ...
    python perf/bench_stream.py --stall --contender ... --contender ...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import CLIENT_CPU, HOST, ROOT, SERVER_CPU, free_port, machine

MiB = 1 << 20
# An LD_PRELOAD shim for the server's setsockopt(TCP_NOTSENT_LOWAT), so that the same build can
# be measured with the option undone (--no-lowat LABEL: the call becomes a no-op) or with another
# value (--lowat LABEL=BYTES, passed in BENCH_STREAM_LOWAT); nothing in kestrel is changed.
LOWAT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
    if (level == IPPROTO_TCP && name == TCP_NOTSENT_LOWAT) {
        const char *bytes = getenv("BENCH_STREAM_LOWAT");
        if (!bytes) return 0;
        int lowat = atoi(bytes);
        return real(fd, level, name, &lowat, sizeof lowat);
    }
    return real(fd, level, name, value, len);
}
"""
START_TIMEOUT = 15.0
IO_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Contender:
    label: str
    python: str
    root: Path
    commit: str = ""
    preload: str = ""  # LD_PRELOAD for its server
    lowat: int | None = None  # with preload: the TCP_NOTSENT_LOWAT it sets instead (None: none)
    rates: list[float] = field(default_factory=list)  # MB/s, one per round
    user_ticks: int = 0
    sys_ticks: int = 0
    bytes_served: int = 0

    @classmethod
    def parse(cls, text: str) -> Contender:
        label, sep, rest = text.partition("=")
        python, _, root = rest.partition(":")
        if not sep or not label or not python:
            raise argparse.ArgumentTypeError(f"{text!r} is not LABEL=PYTHON[:ROOT]")
        return cls(label, os.path.abspath(python), Path(root or ROOT).resolve())


def describe_commit(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        ).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain").strip() else "")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    command: list[str]


@contextlib.contextmanager
def serve(c: Contender) -> Iterator[Running]:
    """The contender's kestrel on core 0, run from its root so that it imports its own code."""
    port = free_port()
    command = [
        *("taskset", "-c", str(SERVER_CPU), c.python, "-m", "kestrel"),
        *("perf.apps.backpressure:app", "--host", HOST, "--port", str(port)),
        *("--no-access-log", "--log-level", "warning"),
    ]
    env = dict(os.environ, PYTHONPATH=str(c.root))
    if c.preload:
        env["LD_PRELOAD"] = c.preload
        if c.lowat is not None:
            env["BENCH_STREAM_LOWAT"] = str(c.lowat)
    with tempfile.TemporaryFile() as errlog:
        process = subprocess.Popen(
            command,
            cwd=c.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            start_new_session=True,
        )
        try:
            wait_listening(c, process, port)
            yield Running(process, port, command)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            errlog.seek(0)
            errors = sum(1 for line in errlog if b" ERROR " in line)
            if errors:
                log(f"{c.label}: the server logged {errors} ERROR lines")


def wait_listening(c: Contender, process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{c.label}: server exited {process.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{c.label}: not listening after {START_TIMEOUT:g} s") from None
            time.sleep(0.05)


def server_text(c: Contender, r: Running) -> str:
    preload = f"LD_PRELOAD={c.preload} " if c.preload else ""
    if c.preload and c.lowat is not None:
        preload += f"BENCH_STREAM_LOWAT={c.lowat} "
    return f"(cd {c.root} && {preload}{shlex.join(r.command)})"


def build_shim(directory: Path) -> str:
    source = directory / "lowat_shim.c"
    source.write_text(LOWAT_SHIM)
    library = directory / "lowat_shim.so"
    if library.exists():
        return str(library)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        check=True,
        timeout=60,
    )
    return str(library)


def server_pid(r: Running) -> int:
    """taskset execs the interpreter, so the child's pid is the server's."""
    return r.process.pid


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, kernel) clock ticks the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int) -> int:
    got = []
    for _ in range(5):
        got.append(vm_rss(pid))
        time.sleep(0.1)
    return int(statistics.median(got))


def request(size: int) -> bytes:
    return (
        f"GET /stream?size={size} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    ).encode()


def read_stream_python(port: int, size: int) -> float:
    """Seconds to read the whole response; checks its status and end."""
    buf = bytearray(MiB)
    total = 0
    first = b""
    tail = b""
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as sock:
        t0 = time.perf_counter()
        sock.sendall(request(size))
        while n := sock.recv_into(buf):
            if not first:
                first = bytes(buf[:16])
            total += n
            tail = (tail + bytes(buf[max(0, n - 5) : n]))[-5:]
        seconds = time.perf_counter() - t0
    if not first.startswith(b"HTTP/1.1 200 ") or tail != b"0\r\n\r\n" or total < size:
        raise RuntimeError(f"bad response: {first!r} ... {tail!r}, {total} bytes")
    return seconds


def read_stream_curl(port: int, size: int) -> float:
    out = subprocess.run(
        [
            *(
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{time_total}",
            ),
            f"http://{HOST}:{port}/stream?size={size}",
        ],
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT,
        check=True,
    ).stdout.split()
    if out[0] != "200" or int(out[1]) != size:
        raise RuntimeError(f"bad response from curl: {out}")
    return float(out[2])


def throughput(contenders: list[Contender], args: argparse.Namespace) -> list[str]:
    size = args.size_mib * MiB
    read = read_stream_curl if args.client == "curl" else read_stream_python
    lines = []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve(c)) for c in contenders]
        for c, r in zip(contenders, servers, strict=True):
            lines.append(f"{c.label}: {c.commit}  server: {server_text(c, r)}")
            read(r.port, 4 * MiB)  # warm-up
        for rnd in range(args.rounds):
            order = list(zip(contenders, servers, strict=True))
            if rnd % 2:
                order.reverse()
            for c, r in order:
                pid = server_pid(r)
                before = cpu_ticks(pid)
                seconds = read(r.port, size)
                after = cpu_ticks(pid)
                c.user_ticks += after[0] - before[0]
                c.sys_ticks += after[1] - before[1]
                c.bytes_served += size
                c.rates.append(size / seconds / 1e6)
            log(
                f"round {rnd + 1}: "
                + ", ".join(f"{c.label} {c.rates[-1]:,.0f}" for c in contenders)
            )
    first = statistics.median(contenders[0].rates)
    for c in contenders:
        med = statistics.median(c.rates)
        per_64mib = 1000 / CLK_TCK / (c.bytes_served / (64 * MiB))
        user_ms, sys_ms = c.user_ticks * per_64mib, c.sys_ticks * per_64mib
        lines.append(
            f"{c.label:>8}: median {med:,.0f} MB/s, best {max(c.rates):,.0f} MB/s, "
            f"worst {min(c.rates):,.0f} MB/s ({len(c.rates)} rounds); server CPU "
            f"{user_ms + sys_ms:.0f} ms per 64 MiB ({user_ms:.0f} user + {sys_ms:.0f} kernel); "
            f"median / {contenders[0].label} {med / first:.3f}"
        )
        lines.append(f"          rounds: {' '.join(f'{x:.0f}' for x in c.rates)}")
    return lines


def send_queues(port: int) -> list[tuple[int, int]]:
    """(Send-Q, skmem wmem_queued) of each established socket on the server side of `port`."""
    text = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    found = []
    # With a state filter ss prints no State column; -m adds "skmem:(...)" to each socket.
    for entry in re.split(r"\n(?=\S)", text.strip()):
        if not entry.strip():
            continue
        send_q = int(entry.split()[1])
        w = re.search(r"skmem:\([^)]*\bw(\d+)", entry)
        found.append((send_q, int(w.group(1)) if w else -1))
    return found


def stall(contenders: list[Contender], args: argparse.Namespace) -> list[str]:
    size = args.size_mib * MiB
    lines = []
    for c in contenders:
        with serve(c) as r:
            pid = server_pid(r)
            read_stream_python(r.port, 4 * MiB)  # warm-up
            time.sleep(0.3)
            idle = settled_rss(pid)
            clients: list[socket.socket] = []
            try:
                for _ in range(args.clients):
                    s = socket.socket()
                    clients.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
                    s.settimeout(10)
                    s.connect((HOST, r.port))
                    s.sendall(request(size))
                deadline = time.monotonic() + SETTLE_TIMEOUT
                last: list[tuple[int, int]] = []
                same = 0
                while same < 5:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{c.label}: Send-Q still moving: {last}")
                    time.sleep(0.2)
                    now = sorted(send_queues(r.port))
                    same = same + 1 if now == last and len(now) == args.clients else 0
                    last = now
                stalled = settled_rss(pid)
            finally:
                for s in clients:
                    s.close()
        q = [x for x, _ in last]
        w = [x for _, x in last]
        lines += [
            f"{c.label}: {c.commit}  server: {server_text(c, r)}",
            f"{c.label:>8}: {args.clients} stalled readers of {args.size_mib} MiB "
            f"(SO_RCVBUF {args.rcvbuf}): Send-Q max {max(q) / 1024:,.1f} KiB, mean "
            f"{statistics.mean(q) / 1024:,.1f} KiB, total {sum(q) / MiB:,.2f} MiB; "
            f"wmem_queued max {max(w) / 1024:,.1f} KiB, total {sum(w) / MiB:,.2f} MiB; "
            f"VmRSS {idle / MiB:.1f} -> {stalled / MiB:.1f} MiB "
            f"(growth {(stalled - idle) / MiB:.2f} MiB)",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--contender",
        type=Contender.parse,
        action="append",
        help="LABEL=PYTHON[:ROOT] (repeatable; default: this checkout, this interpreter)",
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--client", choices=("python", "curl"), default="python")
    ap.add_argument("--stall", action="store_true", help="measure stalled readers instead")
    ap.add_argument("--clients", type=int, default=16, help="stalled readers (16)")
    ap.add_argument(
        "--no-lowat",
        action="append",
        default=[],
        metavar="LABEL",
        help="run this contender's server with setsockopt(TCP_NOTSENT_LOWAT) made a no-op",
    )
    ap.add_argument(
        "--lowat",
        action="append",
        default=[],
        metavar="LABEL=BYTES",
        help="run this contender's server with TCP_NOTSENT_LOWAT BYTES instead of its own",
    )
    ap.add_argument("--rcvbuf", type=int, default=16 * 1024, help="stalled readers' SO_RCVBUF")
    args = ap.parse_args(argv)
    contenders: list[Contender] = args.contender or [Contender("head", sys.executable, ROOT)]
    lowats = {}
    for text in args.lowat:
        label, _, value = text.partition("=")
        if not value.isdigit():
            ap.error(f"--lowat {text!r}: not LABEL=BYTES")
        lowats[label] = int(value)
    unknown = (set(args.no_lowat) | set(lowats)) - {c.label for c in contenders}
    if unknown:
        ap.error(f"--no-lowat: no contender {sorted(unknown)}")
    shim_dir = Path(tempfile.mkdtemp(prefix="bench_stream."))
    for c in contenders:
        c.commit = describe_commit(c.root)
        if c.label in args.no_lowat or c.label in lowats:
            c.preload = build_shim(shim_dir)
            c.lowat = lowats.get(c.label)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    m = machine()
    lines = [
        f"machine: {m.get('cpu')}, {m.get('cores')} cores; server on core {SERVER_CPU}, "
        f"client on core {CLIENT_CPU}",
        f"date:    {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"command: {shlex.join(['python', *sys.argv])}",
    ]
    lines += stall(contenders, args) if args.stall else throughput(contenders, args)
    print("\n".join(lines))
    with contextlib.suppress(OSError):
        for f in shim_dir.iterdir():
            f.unlink()
        shim_dir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
