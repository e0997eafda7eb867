"""kestrel MODULE:ATTR --host 127.0.0.1 --port 8000"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from kestrel.app import StartupError
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
        "--max-request-body-size",
        type=int,
        default=30_000_000,
        metavar="BYTES",
        help="largest request body; larger ones get 413 (default 30,000,000, as Kestrel)",
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"kestrel: --port must be 0-65535, not {args.port}")
    if args.max_request_body_size < 0:
        raise SystemExit("kestrel: --max-request-body-size must be 0 or more bytes")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = load_app(args.app)
    server = Server(
        app,
        args.host,
        args.port,
        access_log=args.access_log,
        server_header=None if args.no_server_header else "kestrel",
        max_request_body_size=args.max_request_body_size,
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
