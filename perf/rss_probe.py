"""Server memory under many idle connections and under slow peers.

The server runs pinned to core 0 on a free port of 127.0.0.1 (perf/servers.py); this client
runs on core 1. Memory is the server's whole process tree: VmRSS from /proc/PID/status and
Pss from /proc/PID/smaps_rollup, summed over the tree.

1. idle keep-alive connections: open N (default 5000) connections, each sends one ``GET /``
   and reads its answer, then stays open and idle. Server memory before and after gives bytes
   per connection. Then one more request goes out on EVERY connection, and each must be
   answered 200 ``Hello, World!`` (an idle connection the server dropped counts as a failure).
   This is `kestrel-bench suite`'s idle scenario (kestrel/bench/idle.py, ``run_idle``) with
   Pss as well and the target below.
2. slow-reading uploads: 16 clients each upload 64 MiB to ``POST /upload`` whose handler reads
   at a paced rate (perf/apps/backpressure.py); RSS is sampled every 50 ms and the report
   gives the peak growth over the idle server.
3. stalled downloads: 16 clients request ``GET /stream`` (64 MiB, streamed), read the response
   head and stop reading for a while; peak RSS growth as in (2).

Targets (issue #3, kestrel): (1) at most 1.5 KiB per connection, and all answered afterwards;
(2) and (3) at most 24 MiB of growth. Parts (2) and (3) need kestrel's backpressure routes;
for peers they run only when asked (``--parts 2,3``, uvicorn or granian, ASGI app), as reference.
Each part starts its own server. Everything is bounded in time and count, talks only to
127.0.0.1, and closes every socket it opened.

    python perf/rss_probe.py                              # kestrel, parts 1-3
    python perf/rss_probe.py --server uvicorn             # part 1 only for a peer
    python perf/rss_probe.py --server nginx --connections 5000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import platform
import resource
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (
    DEFAULT_VENV,
    HOST,
    PEERS,
    Memory,
    Server,
    ServerSpec,
    Unavailable,
    git_commit,
    machine,
    memory,
    pin_self_to_client_core,
)

from kestrel.bench.idle import run_idle

DEFAULT_KESTREL_CMD = (
    "{python} -m kestrel {app} --host 127.0.0.1 --port {port} --no-access-log --log-level warning"
)
MiB = 1024 * 1024
TARGET_BYTES_PER_CONN = 1.5 * 1024
TARGET_GROWTH = 24 * MiB
IO_TIMEOUT = 30.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client on asyncio streams


class BadResponse(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise BadResponse(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length or chunked body (all the servers here send one)."""
    status, headers = await read_head(reader)
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        pieces = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await _skip_trailers(reader)
                break
            pieces.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(pieces)
    else:
        raise BadResponse("response without Content-Length or chunked body")
    return status, headers, body


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


def get_request(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    for w in writers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.wait_closed(), 5)


# --------------------------------------------------------------------------------------------
# Memory sampling


def settled_memory(server: Server, samples: int = 5, interval: float = 0.1) -> Memory:
    """Median of a few samples, so that one allocation in flight does not decide the figure."""
    got = []
    for _ in range(samples):
        got.append(memory(server.pids()))
        time.sleep(interval)
    return Memory(
        int(statistics.median(m.rss for m in got)), int(statistics.median(m.pss for m in got))
    )


class Sampler:
    """Samples the server's tree RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.peak = Memory(0, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = self.server.pids()
        while not self._stop.is_set():
            m = memory(pids)
            self.peak = Memory(max(self.peak.rss, m.rss), max(self.peak.pss, m.pss))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _count(errors: dict[str, int], e: BaseException) -> None:
    key = f"{type(e).__name__}: {e}" if isinstance(e, BadResponse) else type(e).__name__
    errors[key] = errors.get(key, 0) + 1


# --------------------------------------------------------------------------------------------
# Parts 2 and 3: slow uploads and stalled downloads


@dataclass
class FlowResult:
    part: str
    clients: int
    size: int
    baseline: Memory = field(default_factory=lambda: Memory(0, 0))
    peak: Memory = field(default_factory=lambda: Memory(0, 0))
    completed: int = 0
    seconds: float = 0.0
    samples: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def growth(self) -> int:
        return self.peak.rss - self.baseline.rss


async def _route_works(port: int, request: bytes, expect: Callable[[int, bytes], bool]) -> str:
    """'' if a small request to the route gets the expected answer, else what went wrong."""
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(request)
                status, _, body = await read_response(reader)
            finally:
                await close_all([writer])
    except (OSError, TimeoutError, asyncio.IncompleteReadError, BadResponse) as e:
        return f"{type(e).__name__}: {e}"
    return "" if expect(status, body) else f"got {status} {body[:60]!r}"


async def _early_answer(port: int, head: bytes, wait: float = 1.0) -> str:
    """What the server answers to a request head alone within ``wait`` seconds ('' if nothing).

    A server whose body limit is below the upload size answers 413 from the head.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(head)
        async with asyncio.timeout(wait):
            status, _, body = await read_response(reader)
        return f"HTTP {status} {body[:60]!r}"
    except TimeoutError:
        return ""
    except (OSError, asyncio.IncompleteReadError, BadResponse) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        await close_all([writer])


def upload_head(size: int, rate: int) -> bytes:
    return (
        f"POST /upload?rate={rate} HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    ).encode()


async def slow_uploads(
    server: Server, clients: int, size: int, rate: int, timeout: float
) -> FlowResult:
    res = FlowResult("slow uploads", clients, size)
    problem = await _route_works(
        server.port, upload_head(1024, 1 << 30) + b"x" * 1024, lambda s, b: b == b"received 1024"
    )
    if problem:
        res.note = f"skipped: POST /upload does not work yet ({problem})"
        return res
    early = await _early_answer(server.port, upload_head(size, rate))
    if early:
        res.note = f"skipped: the server answers a {size}-byte upload before reading it: {early}"
        return res
    chunk = b"u" * (64 * 1024)
    expected = b"received %d" % size
    await asyncio.sleep(0.5)
    res.baseline = await asyncio.to_thread(settled_memory, server)

    async def one() -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(upload_head(size, rate))
            sent = 0
            try:
                while sent < size:
                    piece = chunk[: size - sent]
                    writer.write(piece)
                    await writer.drain()
                    sent += len(piece)
            except OSError as e:
                # A server that refuses the upload answers before closing: say what it said
                # (413 = its request body limit is below the upload size).
                answer = None
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        answer = await read_response(reader)
                if answer is not None:
                    raise BadResponse(f"HTTP {answer[0]} {answer[2][:60]!r}") from e
                raise
            status, _, body = await read_response(reader)
            if status != 200 or body != expected:
                raise BadResponse(f"{status} {body[:60]!r}")
            res.completed += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, BadResponse) as e:
            _count(res.errors, e)
        finally:
            if writer is not None:
                await close_all([writer])

    t0 = time.monotonic()
    with Sampler(server) as sampler:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(one() for _ in range(clients)))
        except TimeoutError:
            res.note = f"stopped after {timeout:g} s"
    res.seconds = time.monotonic() - t0
    res.peak, res.samples = sampler.peak, sampler.samples
    return res


async def stalled_downloads(server: Server, clients: int, size: int, hold: float) -> FlowResult:
    res = FlowResult("stalled downloads", clients, size)
    problem = await _route_works(
        server.port, get_request("/stream?size=1000"), lambda s, b: s == 200 and len(b) == 1000
    )
    if problem:
        res.note = f"skipped: GET /stream does not work yet ({problem})"
        return res
    await asyncio.sleep(0.5)
    res.baseline = await asyncio.to_thread(settled_memory, server)
    writers: list[asyncio.StreamWriter] = []
    t0 = time.monotonic()
    with Sampler(server) as sampler:
        try:

            async def one() -> None:
                try:
                    # limit: the client buffers at most ~2 x 64 KiB, then stops reading the socket.
                    reader, writer = await asyncio.open_connection(
                        HOST, server.port, limit=64 * 1024
                    )
                    writers.append(writer)
                    writer.write(get_request(f"/stream?size={size}"))
                    async with asyncio.timeout(IO_TIMEOUT):
                        status, _ = await read_head(reader)
                    if status != 200:
                        raise BadResponse(str(status))
                    res.completed += 1  # here: clients that got the head and then stalled
                except (OSError, TimeoutError, asyncio.IncompleteReadError, BadResponse) as e:
                    _count(res.errors, e)

            await asyncio.gather(*(one() for _ in range(clients)))
            await asyncio.sleep(hold)
        finally:
            res.seconds = time.monotonic() - t0
            await close_all(writers)
    res.peak, res.samples = sampler.peak, sampler.samples
    res.note = f"{res.completed} clients got the head and stopped reading for {hold:g} s"
    return res


# --------------------------------------------------------------------------------------------


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (inherited by the server) to at least ``need`` if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def kib(n: float) -> str:
    return f"{n / 1024:,.2f} KiB"


def mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--server", choices=PEERS, default="kestrel")
    ap.add_argument(
        "--parts",
        default="",
        help="comma-separated parts (default: 1,2,3 for kestrel, 1 for peers)",
    )
    ap.add_argument("--connections", type=int, default=5000, help="part 1 connections (5000)")
    ap.add_argument("--concurrency", type=int, default=200, help="part 1 connects in flight")
    ap.add_argument(
        "--idle", type=float, default=2.0, help="part 1 idle seconds at least before 'after'"
    )
    ap.add_argument("--idle-budget", type=float, default=120.0, help="part 1 time bound (s)")
    ap.add_argument("--clients", type=int, default=16, help="parts 2 and 3 clients (16)")
    ap.add_argument("--size-mib", type=int, default=64, help="upload/stream size per client")
    ap.add_argument(
        "--upload-rate-mib", type=float, default=8.0, help="slow reader's MiB/s per upload (8)"
    )
    ap.add_argument("--upload-timeout", type=float, default=120.0, help="part 2 time bound (s)")
    ap.add_argument("--hold", type=float, default=5.0, help="part 3 stall seconds (5)")
    ap.add_argument(
        "--kestrel-cmd",
        default=DEFAULT_KESTREL_CMD,
        help="kestrel's command template: {python}, {port}, {app} (= perf.apps.NAME:app)",
    )
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--json", action="store_true", help="print only a JSON document on stdout")
    args = ap.parse_args(argv)
    parts = [
        p.strip() for p in (args.parts or ("1,2,3" if args.server == "kestrel" else "1")).split(",")
    ]
    if not set(parts) <= {"1", "2", "3"}:
        ap.error("--parts takes 1, 2 and/or 3")

    pin_self_to_client_core()
    limits = raise_nofile(args.connections + 1024)
    if limits[0] < args.connections + 64:
        log(f"warning: RLIMIT_NOFILE is {limits[0]}: fewer than {args.connections} connections")
    commit, _dirty = git_commit()
    env: dict[str, Any] = {
        "machine": machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": shlex.join(["python", *sys.argv]),
        "rlimit_nofile": limits[0],
    }
    spec = ServerSpec(args.server, kestrel_cmd=args.kestrel_cmd, venv=args.venv, nofile=limits[0])
    env["server_version"] = spec.version()
    out: dict[str, Any] = {"benchmark": "rss", "server": args.server, "environment": env}
    lines = [
        f"server:   {args.server} {env['server_version']}",
        f"machine:  {env['machine']['cpu']}, {env['machine']['cores']} cores; "
        f"server on core 0, client on core 1",
        f"commit:   {commit}   date: {env['date']}",
        f"command:  {env['command']}",
    ]

    def start(app: str) -> Server | str:
        s = Server(dataclasses.replace(spec, app=app))
        try:
            s.start()
        except Unavailable as e:
            s.stop()
            return str(e)
        log(f"{args.server} ({app}) serving on port {s.port}, pid {s.pid}")
        return s

    if "1" in parts:
        s = start("plaintext")
        if isinstance(s, str):
            out["idle"] = {"skipped": s}
            lines.append(f"(1) idle keep-alive: {args.server} not available: {s}")
        else:
            command = shlex.join(s.argv).replace(str(s.workdir), "DIR")
            command = command.replace(f"--port {s.port}", "--port PORT")
            try:
                r = run_idle(
                    HOST,
                    s.port,
                    s.pids,
                    connections=args.connections,
                    budget=args.idle_budget,
                    idle_seconds=args.idle,
                    in_flight=args.concurrency,
                )
            finally:
                s.stop()
            out["idle"] = {
                "connections": r.asked,
                "opened_and_answered": r.opened,
                "second_request_ok": r.served,
                "seconds_to_open": r.seconds_open,
                "rss_before": r.before.rss,
                "rss_after": r.after.rss,
                "pss_before": r.before.pss,
                "pss_after": r.after.pss,
                "rss_bytes_per_connection": r.bytes_per_connection,
                "pss_bytes_per_connection": r.pss_bytes_per_connection,
                "memory_settled": r.settled,
                "errors": dict(r.errors),
                "cut_by_budget": r.cut or None,
                "failed": r.failed,
            }
            all_ok = r.served == r.opened == r.asked
            verdict = ""
            if args.server == "kestrel":
                met = r.bytes_per_connection <= TARGET_BYTES_PER_CONN and all_ok
                verdict = f"   target <= 1.5 KiB and all served: {'met' if met else 'MISSED'}"
            lines += [
                f"(1) {r.asked} idle keep-alive connections: opened and answered once "
                f"{r.opened} in {r.seconds_open:.1f} s, second request ok {r.served}"
                + ("" if all_ok else "  ** NOT ALL SERVED **"),
                f"    VmRSS {mib(r.before.rss)} -> {mib(r.after.rss)}: "
                f"{kib(r.bytes_per_connection)} per connection{verdict}",
                f"    Pss   {mib(r.before.pss)} -> {mib(r.after.pss)}: "
                f"{kib(r.pss_bytes_per_connection)} per connection",
            ]
            if r.failed:
                lines.append(f"    failed: {r.failed}")
            if r.cut:
                lines.append(f"    the {args.idle_budget:g} s bound cut {r.cut}")
            if not r.settled:
                lines.append("    server memory had not settled when read")
            if r.errors:
                lines.append(f"    errors: {r.errors}")
            lines.append(f"    server command: {command}")

    size = args.size_mib * MiB
    for part in ("2", "3"):
        if part not in parts:
            continue
        name = "slow uploads" if part == "2" else "stalled downloads"
        key = "uploads" if part == "2" else "downloads"
        if args.server not in ("kestrel", "uvicorn", "granian"):
            msg = f"skipped: {args.server} has no backpressure app (kestrel, uvicorn, granian)"
            out[key] = {"skipped": msg}
            lines.append(f"({part}) {name}: {msg}")
            continue
        s = start("backpressure")
        if isinstance(s, str):
            msg = f"skipped: {args.server} backpressure app not available: {s}"
            out[key] = {"skipped": msg}
            lines.append(f"({part}) {name}: {msg}")
            continue
        try:
            if part == "2":
                rate = int(args.upload_rate_mib * MiB)
                f = asyncio.run(slow_uploads(s, args.clients, size, rate, args.upload_timeout))
            else:
                f = asyncio.run(stalled_downloads(s, args.clients, size, args.hold))
        finally:
            s.stop()
        out[key] = {
            "clients": f.clients,
            "bytes_per_client": f.size,
            "completed": f.completed,
            "seconds": f.seconds,
            "rss_baseline": f.baseline.rss,
            "rss_peak": f.peak.rss,
            "rss_peak_growth": f.growth if f.samples else None,
            "samples": f.samples,
            "errors": f.errors,
            "note": f.note,
        }
        if not f.samples:
            lines.append(f"({part}) {name}: {f.note}")
            continue
        verdict = ""
        complete = f.completed == f.clients and not f.errors
        if args.server == "kestrel":
            word = "met" if f.growth <= TARGET_GROWTH else "MISSED"
            verdict = (
                f"   target <= 24 MiB: {word if complete else 'NOT MEASURED (clients failed)'}"
            )
        out[key]["valid"] = complete
        lines += [
            f"({part}) {name}: {f.clients} x {mib(f.size)}, {f.completed} completed in "
            f"{f.seconds:.1f} s; {f.samples} samples"
            + ("" if complete else "  ** NOT ALL CLIENTS COMPLETED: figure not valid **"),
            f"    VmRSS {mib(f.baseline.rss)} -> peak {mib(f.peak.rss)}: "
            f"growth {mib(f.growth)}{verdict}",
        ]
        if f.note:
            lines.append(f"    {f.note}")
        if f.errors:
            lines.append(f"    errors: {f.errors}")

    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
