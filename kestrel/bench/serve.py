"""`kestrel-bench serve`: the benchmark app (kestrel/bench/bench_app.py) alone on kestrel, for
people who bring their own load generator.

    kestrel-bench serve                      # http://127.0.0.1:8000/
    kestrel-bench serve --host 127.0.0.1 --port 9000

It logs one line with the URL and serves until Ctrl-C or SIGTERM, which stop it cleanly (the
server's own signal handling: requests in flight finish). No access log: the point is load.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from kestrel.server import Server, new_event_loop

PROG = "kestrel-bench serve"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Serve the benchmark app on kestrel.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, not {args.port}")
    from kestrel.bench.bench_app import app

    server = Server(app, args.host, args.port, access_log=False)
    loop = new_event_loop()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        loop.run_until_complete(_serve_announced(server))
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    print(f"{PROG}: stopped", file=sys.stderr)
    return 0


async def _serve_announced(server: Server) -> None:
    """Serve, and say where once the socket listens (with --port 0, the port it got)."""
    serving = asyncio.ensure_future(server.serve())
    while not server.started.is_set() and not serving.done():
        await asyncio.sleep(0.01)
    if server.started.is_set():
        print(
            f"{PROG}: the benchmark app on {server.url}/ (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
    await serving
