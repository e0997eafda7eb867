"""Where an idle keep-alive connection's bytes go, measured inside the server process.

The server (perf/apps/plaintext.py's ``app``, as rss_probe part 1 serves it) runs in a thread of
this process; a client subprocess (pinned to core 1) opens N connections, sends one ``GET /`` on
each, reads the answer and leaves them open. Around that:

  - objects: every object reachable from the server that is new (gc-tracked ones by type, and
    the untracked ones they reference: bytes, ints, tuples), with sys.getsizeof and the size
    pymalloc really hands out (rounded up to 16 bytes; above 512 bytes it is malloc's);
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
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()
    n = args.connections
    os.sched_setaffinity(0, {0})

    import kestrel
    from kestrel import _core
    from perf.apps.plaintext import app  # noqa: F401  (built on first access)

    import perf.apps.plaintext as plaintext

    with kestrel.serve_in_thread(plaintext.app, port=0) as server:
        engine = server._engine
        selector = server._loop._selector
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(server.port), str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert client.stdout.readline().strip() == "warm"
        time.sleep(0.3)
        gc.collect()

        def containers() -> dict[str, object]:
            out = {}
            for ref in gc.get_referents(selector):
                if isinstance(ref, dict) and ref and all(isinstance(k, int) for k in ref):
                    # handlers: fd -> EpollHandler; _keys: fd -> SelectorKey
                    kind = type(next(iter(ref.values()))).__name__
                    out[f"selector dict ({kind} values)"] = ref
                elif isinstance(ref, dict):
                    out.setdefault("selector dict (empty)", ref)
            for ref in gc.get_referents(engine):
                if isinstance(ref, set):
                    out["server connections set"] = ref
            return out

        before_sizes = {k: sys.getsizeof(v) for k, v in containers().items()}
        before_ids = {id(o) for o in gc.get_objects()}
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot()
        rss0, fds0 = rss(), fd_count()

        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "open"
        time.sleep(0.5)
        gc.collect()
        rss1, fds1 = rss(), fd_count()
        if args.tracemalloc:
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()

        after = containers()
        new = [o for o in gc.get_objects() if id(o) not in before_ids]
        by_type: Counter[str] = Counter()
        bytes_by_type: Counter[str] = Counter()
        alloc_by_type: Counter[str] = Counter()
        basics: dict[str, tuple[int, int]] = {}
        seen = set()

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
                if not gc.is_tracked(r) and not isinstance(r, (type, int)):
                    count(r, f"{type(r).__name__} (untracked, via {type(o).__name__})")
        # bytes fields Cython does not traverse: a retained RequestHead's target and packed
        # fields (the latter through an HttpParser fed the same request, as it is not public)
        heads = [o for o in new if type(o).__name__ == "RequestHead"]
        if heads:
            probe = _core.HttpParser()
            probe.feed(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = probe.next_event()
            fields = gc.get_referents(head)
            for h in heads:
                count(h.target, "bytes (RequestHead.target)")
            packed = len(b"".join(n + v for n, v in head.headers))
            print(f"(RequestHead._fields: bytes of ~{packed}+record overhead per head, "
                  "not traversable; see message.pxi FieldRecord)")
        # dict/set keys: the fds
        for name, cont in after.items():
            if isinstance(cont, dict):
                for k in cont:
                    if id(k) not in before_ids and k >= 257:
                        count(k, "int (fd key of the selector dict)")

        print(f"connections: {n}")
        print(f"\n{'object':58} {'count':>6} {'basic':>6} {'getsizeof':>9} {'alloc/conn':>10}")
        total = 0.0
        for name, c in sorted(by_type.items(), key=lambda kv: -alloc_by_type[kv[0]]):
            per = alloc_by_type[name] / n
            total += per
            print(f"{name[:58]:58} {c:6d} {basics[name][0]:6d} {bytes_by_type[name] / c:9.1f} "
                  f"{per:10.1f}")
        print(f"{'objects, total':58} {'':6} {'':6} {'':9} {total:10.1f}")
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
        if args.tracemalloc:
            diff = snap1.compare_to(snap0, "lineno")
            traced = sum(d.size_diff for d in diff)
            blocks = sum(d.count_diff for d in diff)
            print(f"tracemalloc: {traced / n:.1f} bytes/conn in {blocks / n:.2f} blocks/conn")
            for d in diff[:8]:
                print("   ", d)
        else:
            print(f"RSS: {rss0} -> {rss1}: {(rss1 - rss0) / n:.1f} bytes/conn")

        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "again"
        client.stdin.write("go\n")
        client.stdin.flush()
        client.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
