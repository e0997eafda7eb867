"""The request contract (issue #5), proved over real loopback sockets.

Each test starts a server in a thread with small limits and talks to it with raw sockets:
early responses to uploads that are still being sent, drains of unread bodies (and the
requests smuggled inside them, which must never run), the headers, keep-alive, body-rate
and response-rate timeouts, lazy ``Expect: 100-continue``, ``max_connections`` and the
metrics that count all of it. The CLI side (flags, ``--metrics-path``, SIGTERM) is in
test_contract_cli.py.
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kestrel import Response, StreamingResponse, serve_in_thread
from kestrel._core import ClientDisconnect, Request
from kestrel.server import Server

MIB = 1 << 20
HOST = "127.0.0.1"

# Small limits, so that every deadline of the contract is reached within a second or two.
FAST: dict[str, Any] = {
    "drain_timeout": 0.5,
    "request_headers_timeout": 0.5,
    "keep_alive_timeout": 5.0,
    "min_rate_grace": 1.0,
    "min_request_body_rate": 1000,
    "heartbeat_interval": 0.05,
}
# How late a deadline may fire: a heartbeat or two, plus a loaded CI machine.
SLACK = 0.4

Handler = Callable[[Request], Awaitable[Any]]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


# ---- A small HTTP/1.1 client over one raw socket.


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen before this one

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class Client:
    """One connection; reads responses (Content-Length, chunked or to EOF) and EOF."""

    def __init__(self, port: int, *, timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unparsed: {self.buffer[:200]!r}")
        self.buffer += chunk

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, *, head: bool = False) -> HttpResponse:
        interim: list[int] = []
        while True:
            lines = self._take_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200:
                interim.append(status)
                continue
            break
        if head or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._take_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._take_until(b"\r\n")
                    break
                parts.append(self._take(size))
                self._take(2)
            body = b"".join(parts)
        else:
            body = self.read_to_eof()
        return HttpResponse(status, headers, body, interim)

    def read_to_eof(self) -> bytes:
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                data, self.buffer = self.buffer, b""
                return data
            self.buffer += chunk

    def at_eof(self, timeout: float) -> bool:
        """True if the server closed (a FIN) within `timeout`; False if it is still open.

        Data arriving instead fails the test; a reset raises ConnectionResetError.
        """
        assert not self.buffer, f"unread data before EOF: {self.buffer[:200]!r}"
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        assert chunk == b"", f"expected EOF, got {chunk[:200]!r}"
        return True

    def readable(self, timeout: float) -> bool:
        if self.buffer:
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])


def head(method: str, path: str, **headers: str | int) -> bytes:
    """A request head; keyword names become header names (content_length: Content-Length)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    for name, value in headers.items():
        lines.append(f"{name.replace('_', '-').title()}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(method: str, path: str, body: bytes | None = None, **headers: str | int) -> bytes:
    if body is not None:
        headers["content_length"] = len(body)
    return head(method, path, **headers) + (body or b"")


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until predicate() holds; return how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def ends(server: Server) -> dict[str, int]:
    result: dict[str, int] = server.metrics()["connection_ends"]
    return result


def all_closed(server: Server) -> Callable[[], bool]:
    return lambda: server.metrics()["connections_active"] == 0


