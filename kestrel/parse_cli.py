"""kestrel-parse: show how kestrel's parser reads raw HTTP request bytes.

    kestrel-parse examples/browser.http        # a file of raw request bytes
    printf 'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n' | kestrel-parse

Each event is printed as the server will see it; a rejected request prints the status the
server answers with and the reason, and the command exits 1. `--lf-to-crlf` converts bare LF
line endings (as in a hand-edited file) to CRLF first, since the parser rejects bare LF.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import BinaryIO

from kestrel._core import (
    CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    HttpParseError,
    HttpParser,
    RequestHead,
)


def describe(data: bytes, out: BinaryIO | None = None) -> int:
    """Parse `data` as one client's input and print the events; return the exit status."""
    write = (out or sys.stdout.buffer).write
    parser = HttpParser()
    parser.feed(data)
    parser.feed_eof()
    body_bytes = 0
    try:
        while True:
            event = parser.next_event()
            if isinstance(event, RequestHead):
                write(
                    f"{event.method} {event.target.decode('latin-1')} "
                    f"HTTP/{event.http_version}\n".encode()
                )
                for name, value in event.headers:
                    write(b"  " + name + b": " + value + b"\n")
                framing = (
                    "chunked"
                    if event.chunked
                    else f"content-length {event.content_length}"
                    if event.content_length >= 0
                    else "no body"
                )
                flags = [framing, "keep-alive" if event.keep_alive else "close"]
                if event.upgrade:
                    flags.append("upgrade")
                if event.expect_continue:
                    flags.append("expect 100-continue")
                write(f"  [{', '.join(flags)}]\n".encode())
            elif isinstance(event, bytes):
                body_bytes += len(event)
            elif event is END_OF_MESSAGE:
                write(f"  body: {body_bytes} bytes\n".encode())
                for name, value in parser.trailers:
                    write(b"  trailer " + name + b": " + value + b"\n")
                body_bytes = 0
            elif event is PAUSED:
                write(b"(parser paused: the connection would close or switch protocol here)\n")
                return 0
            elif event is CLOSED or event is NEED_DATA:
                return 0
    except HttpParseError as error:
        write(f"rejected: {error.status} ({error.reason.name})\n".encode())
        return 1


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="kestrel-parse", description=__doc__.split("\n")[0])
    cli.add_argument("file", nargs="?", help="raw request bytes (default: standard input)")
    cli.add_argument(
        "--lf-to-crlf",
        action="store_true",
        help="turn bare LF line endings into CRLF before parsing",
    )
    args = cli.parse_args(argv)
    if args.file:
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as error:
            cli.error(f"cannot read {args.file}: {error.strerror}")
    else:
        data = sys.stdin.buffer.read()
    if args.lf_to_crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    try:
        return describe(data)
    except BrokenPipeError:
        # The reader went away (`kestrel-parse ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
