"""Where an idle keep-alive connection's bytes go, measured inside the server process.

The server (perf/apps/plaintext.py's ``app``, loaded by its ``module:attr`` name as rss_probe
part 1 serves it) runs in a thread of this process; a client subprocess (pinned to core 1) opens
N connections, sends one ``GET /`` on each, reads the answer and leaves them open. The
measurement waits --settle seconds (more than one heartbeat tick, HEARTBEAT_S) first: the
heartbeat has each connection under its keep-alive deadline give its parser back to the server
(http1.pxi ``_park_parser``, ServiceContext's spare parsers, at most 64 kept), so what is left
per idle connection is an Http1Processor, its SocketTransport, and the entries of the selector's
handlers dict and of the server's ``connections`` set. Around that:

  - objects: every object reachable from the server that is new (gc-tracked ones by type, and
    the untracked ones they reference: bytes, ints, tuples), with sys.getsizeof and the size
    pymalloc really hands out (rounded up to 16 bytes; above 512 bytes it is malloc's). The
    server's spare parsers show up as at most 64 HttpParser, whatever N is; more means some
    connections still hold theirs (the heartbeat had not ticked yet);
  - the containers that grow with N (the selector's dicts, the server's set): getsizeof before
    and after;
  - tracemalloc: the traced bytes' delta (requested sizes; --tracemalloc, since its own tables
    cost RSS too);
  - RSS and the process's fd count, before and after (without --tracemalloc).

    python perf/idle_breakdown.py --connections 5000
    python perf/idle_breakdown.py --connections 5000 --tracemalloc
"""

from __future__ import annotations

import argparse
import gc
import os
import selectors
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENT = textwrap.dedent(
    """
    import os, socket, sys
    os.sched_setaffinity(0, {1})
    port, n = int(sys.argv[1]), int(sys.argv[2])
    req = b"GET / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    def one(s):
        s.sendall(req)
        got = b""
        while not got.endswith(b"Hello, World!"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("closed")
            got += chunk
    w = socket.create_connection(("127.0.0.1", port))
    for _ in range(200):
        one(w)
    w.close()
    print("warm", flush=True)
    sys.stdin.readline()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        one(s)
        socks.append(s)
    print("open", flush=True)
    sys.stdin.readline()
    for s in socks:
        one(s)
    print("again", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    """
)

PYMALLOC_MAX = 512


def alloc_size(nbytes: int) -> int:
    """What the allocator hands out for a request of nbytes (pymalloc: 16-byte classes)."""
    if nbytes <= PYMALLOC_MAX:
        return (nbytes + 15) // 16 * 16
    return (nbytes + 8 + 15) // 16 * 16  # glibc malloc: 8-byte header, 16-byte chunks


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


APP = "perf.apps.plaintext:app"  # as rss_probe part 1 serves it (perf/servers.py)
HEARTBEAT_S = 1.0  # the server's heartbeat interval (its default with the default timeouts)
MAX_SPARE_PARSERS = 64  # kestrel/consts.pxi: the spare parsers a server keeps


def tell(client: subprocess.Popen[str], expect: str | None = None) -> None:
    """Wake the client (unless expect only), then wait for its next stage's word."""
    assert client.stdin is not None and client.stdout is not None
    if expect is None:
        client.stdin.write("go\n")
        client.stdin.flush()
        return
    got = client.stdout.readline().strip()
    if got != expect:
        raise SystemExit(f"client said {got!r}, not {expect!r}")


Container = dict[Any, Any] | set[Any]


def containers(selector: object, engine: object) -> dict[str, Container]:
    """The containers that grow with the connections: the selector's dicts, the server's set
    (HttpServer.connections, a C field: found among the server's gc referents)."""
    out: dict[str, Container] = {}
    for ref in gc.get_referents(selector):
        if isinstance(ref, dict) and ref and all(isinstance(k, int) for k in ref):
            # _keys: fd -> SelectorKey (asyncio's readers and writers); handlers: fd ->
            # EpollHandler (the listeners and every connection's SocketTransport)
            if any(isinstance(v, selectors.SelectorKey) for v in ref.values()):
                out["selector _keys (fd -> SelectorKey)"] = ref
            else:
                out["selector handlers (fd -> EpollHandler)"] = ref
        elif isinstance(ref, dict):
            out.setdefault("selector dict (empty)", ref)
    for ref in gc.get_referents(engine):
        if isinstance(ref, set):
            out["server connections set"] = ref
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument(
        "--settle",
        type=float,
        default=1.5 * HEARTBEAT_S,
        help=f"seconds to wait once the connections are idle, before measuring (more than "
        f"one heartbeat tick, {HEARTBEAT_S:g} s, so that they have parked their parsers)",
    )
    args = ap.parse_args()
    n: int = args.connections
    if args.settle <= HEARTBEAT_S:
        ap.error(f"--settle must be more than one heartbeat tick ({HEARTBEAT_S:g} s)")
    os.sched_setaffinity(0, {0})

    import kestrel
    from kestrel import _core
    from kestrel.cli import load_app

    app = load_app(APP)

    with kestrel.serve_in_thread(app, port=0, heartbeat_interval=HEARTBEAT_S) as server:
        engine, loop = server._engine, server._loop
        assert engine is not None and loop is not None
        selector = vars(loop)["_selector"]  # asyncio's SelectorEventLoop attribute
        assert isinstance(selector, _core.EpollSelector)
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(server.port), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        tell(client, "warm")
        time.sleep(args.settle)  # the warm connection's parser is back among the spares
        gc.collect()

        before_sizes = {k: sys.getsizeof(v) for k, v in containers(selector, engine).items()}
        before_ids = {id(o) for o in gc.get_objects()}
        snap0 = None
        if args.tracemalloc:
            tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot()
        rss0, fds0 = rss(), fd_count()

        tell(client)
        tell(client, "open")
        time.sleep(args.settle)  # one heartbeat tick at least: idle connections park parsers
        gc.collect()
        rss1, fds1 = rss(), fd_count()
        snap1 = None
        if args.tracemalloc:
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()

        after = containers(selector, engine)
        new = [o for o in gc.get_objects() if id(o) not in before_ids]
        by_type: Counter[str] = Counter()
        bytes_by_type: Counter[str] = Counter()
        alloc_by_type: Counter[str] = Counter()
        basics: dict[str, tuple[int, bool]] = {}
        seen: set[int] = set()

        def count(o: object, label: str | None = None) -> None:
            if id(o) in seen or id(o) in before_ids:
                return
            seen.add(id(o))
            name = label or type(o).__name__
            size = sys.getsizeof(o)
            by_type[name] += 1
            bytes_by_type[name] += size
            alloc_by_type[name] += alloc_size(size)
            basics[name] = (type(o).__basicsize__, gc.is_tracked(o))

        container_ids = {id(v) for v in after.values()} | {id(before_ids), id(seen)}
        for o in new:
            if id(o) in container_ids or o is new:
                continue
            count(o)
            # untracked referents (bytes, ints, str) of the new objects
            for r in gc.get_referents(o):
                if not gc.is_tracked(r) and r is not None and not isinstance(r, (type, int)):
                    count(r, f"{type(r).__name__} (untracked, via {type(o).__name__})")
        # bytes fields Cython does not traverse: a retained RequestHead's target and packed
        # fields (the latter through an HttpParser fed the same request, as it is not public).
        # A parked parser forgets its last head, so after a heartbeat tick there should be none.
        heads = [o for o in new if isinstance(o, _core.RequestHead)]
        if heads:
            probe = _core.HttpParser()
            probe.feed(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = probe.next_event()
            assert isinstance(head, _core.RequestHead)
            for h in heads:
                count(h.target, "bytes (RequestHead.target)")
            packed = len(b"".join(name + value for name, value in head.headers))
            print(
                f"(RequestHead._fields: bytes of ~{packed}+record overhead per head, "
                "not traversable; see message.pxi FieldRecord)"
            )
        # dict/set keys: the fds
        for cont in after.values():
            if isinstance(cont, dict):
                for k in cont:
                    if id(k) not in before_ids and k >= 257:
                        count(k, "int (fd key of the selector dict)")

        print(f"connections: {n} (measured {args.settle:g} s after they went idle)")
        print(f"\n{'object':58} {'count':>6} {'basic':>6} {'getsizeof':>9} {'alloc/conn':>10}")
        total = 0.0
        for name, c in sorted(by_type.items(), key=lambda kv: -alloc_by_type[kv[0]]):
            per = alloc_by_type[name] / n
            total += per
            print(
                f"{name[:58]:58} {c:6d} {basics[name][0]:6d} {bytes_by_type[name] / c:9.1f} "
                f"{per:10.1f}"
            )
        print(f"{'objects, total':58} {'':6} {'':6} {'':9} {total:10.1f}")
        parsers = by_type["HttpParser"]
        if parsers > MAX_SPARE_PARSERS:
            print(
                f"warning: {parsers} new HttpParser, more than the {MAX_SPARE_PARSERS} spares a "
                "server keeps: some idle connections still hold theirs (no heartbeat tick yet?)"
            )
        print()
        ctotal = 0.0
        for name, cont in after.items():
            b0 = before_sizes.get(name, 0)
            b1 = sys.getsizeof(cont)
            per = (alloc_size(b1) - alloc_size(b0)) / n
            ctotal += per
            print(f"{name:58} {len(cont):6d} entries: {b0:>8} -> {b1:>8} bytes = {per:6.1f}/conn")
        print(f"{'objects + containers':58} {total + ctotal:.1f} bytes/conn")
        print(f"\nfds: {fds0} -> {fds1}")
        if snap0 is not None and snap1 is not None:
            diff = snap1.compare_to(snap0, "lineno")
            traced = sum(d.size_diff for d in diff)
            blocks = sum(d.count_diff for d in diff)
            print(f"tracemalloc: {traced / n:.1f} bytes/conn in {blocks / n:.2f} blocks/conn")
            for d in diff[:8]:
                print("   ", d)
        else:
            print(f"RSS: {rss0} -> {rss1}: {(rss1 - rss0) / n:.1f} bytes/conn")

        tell(client)
        tell(client, "again")
        tell(client)
        client.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
