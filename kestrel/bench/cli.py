"""kestrel-bench: load an HTTP/1.1 server and report its rate and latency.

kestrel-bench --url http://127.0.0.1:8000/ --duration 10 --connections 64
kestrel-bench http://127.0.0.1:8000/ -c 256 -d 10s --pipeline 16
kestrel-bench --url http://127.0.0.1:8000/ --rate 50000 --duration 30s --json out.json
kestrel-bench suite [--quick] [--only NAMES] [--out DIR]   (kestrel/bench/suite.py)
kestrel-bench serve [--host 127.0.0.1] [--port 8000]       (kestrel/bench/serve.py)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from kestrel.bench import report
from kestrel.bench.run import Options, run
from kestrel.bench.target import TargetError, check_reachable, make_target

PROG = "kestrel-bench"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """Seconds from '10', '10s', '500ms', '2m'."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 10, 10s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, as every other failure: usage is a --help away.
        self.exit(2, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Load an HTTP/1.1 server; report req/s and latency. "
        "Also: `kestrel-bench suite` (every server, every scenario) and "
        "`kestrel-bench serve` (the benchmark app alone).",
    )
    parser.add_argument("url_arg", nargs="?", metavar="URL", help="the URL (or --url)")
    parser.add_argument("--url", help="http://host[:port]/path?query")
    parser.add_argument("-c", "--connections", type=positive_int, default=64)
    parser.add_argument("-d", "--duration", type=duration, help="how long (default 10s)")
    parser.add_argument("-n", "--requests", type=positive_int, help="stop after this many")
    parser.add_argument("--warmup", type=duration, default=0.0, help="unmeasured load first")
    parser.add_argument(
        "-p",
        "--pipeline",
        type=positive_int,
        default=1,
        help="requests per connection sent together; the next batch when all are answered"
        " (default 1)",
    )
    parser.add_argument("-m", "--method", default="GET")
    parser.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value', repeatable"
    )
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", help="the request body, as text")
    body.add_argument("--body-file", type=Path, help="the request body, from a file")
    parser.add_argument(
        "--timeout",
        type=duration,
        default=10.0,
        help="a connection with no progress for this long is an error",
    )
    parser.add_argument(
        "-t",
        "--threads",
        type=positive_int,
        default=1,
        help="load loops, each on its own core (default 1)",
    )
    parser.add_argument(
        "-R",
        "--rate",
        type=positive_float,
        help="constant arrival rate, req/s (latency corrected for "
        "coordinated omission); without it, a closed loop like wrk",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write everything as JSON to FILE (or stdout)",
    )
    return parser


def _options(args: argparse.Namespace) -> Options:
    if args.duration is not None and args.requests is not None:
        raise TargetError("give --duration or --requests, not both")
    if args.duration is not None and args.duration <= 0:
        raise TargetError("--duration must be more than 0")
    if args.pipeline > 256:
        raise TargetError("--pipeline can be at most 256")
    return Options(
        connections=args.connections,
        duration=None if args.requests is not None else (args.duration or 10.0),
        requests=args.requests,
        warmup=args.warmup,
        pipeline=args.pipeline,
        timeout=args.timeout,
        rate=args.rate,
        threads=args.threads,
    )


class LiveProgress:
    """Elapsed time, the current rate and errors, on one terminal line that updates."""

    def __init__(self) -> None:
        self.last = (0.0, 0)

    def __call__(self, elapsed: float, requests: int, errors: int) -> None:
        then, before = self.last
        rate = (requests - before) / (elapsed - then) if elapsed > then else 0.0
        self.last = (elapsed, requests)
        sys.stderr.write(f"\r  {elapsed:6.1f} s  {rate:>12,.0f} req/s  errors {errors:,}  ")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()


SUBCOMMANDS = ("suite", "serve")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    # A URL is never one of these words, so the load generator's command line is unchanged.
    if argv and argv[0] == "suite":
        from kestrel.bench import suite

        return suite.main(argv[1:])
    if argv and argv[0] == "serve":
        from kestrel.bench import serve

        return serve.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        url = args.url or args.url_arg
        if not url:
            raise TargetError("give the URL to load (e.g. --url http://127.0.0.1:8000/)")
        if args.url and args.url_arg:
            raise TargetError("give the URL once (--url or as the argument)")
        options = _options(args)
        body = b""
        if args.body is not None:
            body = args.body.encode()
        elif args.body_file is not None:
            try:
                body = args.body_file.read_bytes()
            except OSError as exc:
                raise TargetError(f"--body-file {args.body_file}: {exc.strerror}") from None
        target = make_target(url, args.method, args.header, body)
        check_reachable(target, min(options.timeout, 5.0))
    except TargetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    live = LiveProgress() if sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        result = run(target, options, live)
    except KeyboardInterrupt:
        if live:
            live.clear()
        print(f"{PROG}: interrupted after {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 130
    finally:
        if live:
            live.clear()
    if args.json is not None:
        text = report.as_json(result)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.json != "-":
        print(report.summary(result))
    if result.requests == 0:
        print(f"{PROG}: no request was answered ({result.errors:,} errors)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
