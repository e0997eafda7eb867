"""kestrel MODULE:ATTR --host 127.0.0.1 --port 8000"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from typing import Any

from kestrel.app import StartupError
from kestrel.config import Limits
from kestrel.server import Server

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def load_app(target: str) -> Any:
    """Import `module:attribute` (attribute may be dotted), with a clear error."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"kestrel: app must be given as MODULE:ATTRIBUTE, not {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: serve apps beside you
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SystemExit(f"kestrel: cannot import module {module_name!r}") from None
        raise
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise SystemExit(
                f"kestrel: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(app):
        raise SystemExit(f"kestrel: {target} is not callable")
    return app


def build_parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="kestrel", description="Serve a kestrel app.")
    cli.add_argument("app", help="the app to serve, as MODULE:ATTRIBUTE")
    cli.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    cli.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    cli.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per response (default on)",
    )
    cli.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    cli.add_argument("--no-server-header", action="store_true", help="send no Server header")
    cli.add_argument(
        "--metrics-path",
        metavar="PATH",
        help="serve the server's metrics in Prometheus text format at this path (e.g. /metrics)",
    )
    limits = cli.add_argument_group(
        "the request contract", "sizes in bytes, times in seconds, rates in bytes per second"
    )
    defaults = Limits()
    for spec in dataclasses.fields(Limits):
        default = getattr(defaults, spec.name)
        is_time_or_rate = isinstance(default, float)
        unit = (
            "SECONDS"
            if "timeout" in spec.name or "grace" in spec.name
            else ("BYTES/S" if "rate" in spec.name else "BYTES")
        )
        if spec.name in ("max_connections", "backlog", "max_request_headers"):
            unit = "N"
        extra = " (0: off)" if spec.metadata["zero_disables"] else ""
        limits.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=_number(float if is_time_or_rate else int),
            default=default,
            metavar=unit,
            help=f"{spec.metadata['help']}{extra} (default {default:g})",
        )
    return cli


def _number(kind: type) -> Any:
    """An argparse type for a limit: a clear message for anything that is not one (argparse
    puts the flag in front of it)."""

    def parse(text: str) -> Any:
        noun = "a number" if kind is float else "a whole number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, not {text!r}") from None
        if value != value:  # NaN
            raise argparse.ArgumentTypeError(f"expected {noun}, not {text!r}")
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    cli = build_parser()
    args = cli.parse_args(argv)
    # A bad value is a usage error like any argparse refuses: one line, exit status 2.
    if not 0 <= args.port <= 65535:
        cli.error(f"--port must be 0-65535, not {args.port}")
    try:
        limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    except (TypeError, ValueError) as exc:
        cli.error(f"--{str(exc).replace('_', '-')}")
    if args.metrics_path is not None and not args.metrics_path.startswith("/"):
        cli.error(f"--metrics-path must start with '/', not {args.metrics_path!r}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = load_app(args.app)
    server = Server(
        app,
        args.host,
        args.port,
        limits=limits,
        access_log=args.access_log,
        server_header=None if args.no_server_header else "kestrel",
        metrics_path=args.metrics_path,
    )
    try:
        server.run()
    except StartupError as exc:
        cause = exc.__cause__
        logging.getLogger("kestrel").error("startup failed", exc_info=cause)
        raise SystemExit(f"kestrel: {exc}; not serving") from None
    except OSError as exc:
        raise SystemExit(
            f"kestrel: cannot listen on {args.host}:{args.port}: {exc.strerror}"
        ) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
