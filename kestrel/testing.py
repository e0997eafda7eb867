"""TestClient: call an app in tests through the real engine, without a network.

    client = TestClient(app)
    response = client.get("/users/1", params={"q": "x"})
    assert response.status_code == 200 and response.json() == {"id": 1, "q": "x"}

Requests are real HTTP/1.1 bytes written into one end of a ``socketpair()``; the engine
serves the other end with the same parser, connection code and response writer as a
listening server, on its own event loop in a background thread. Nothing about the request is
faked, so what passes here passes over TCP.

Used as a context manager, the client runs the app's lifespan (startup on entry, shutdown
on exit); otherwise the engine, and with it the App's startup, starts on the first request,
and the shutdown runs when the client is closed (``client.close()``).
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from kestrel.app import App
from kestrel.server import Server, serve_in_thread
from kestrel.types import FileField

__all__ = ["TestClient", "TestResponse"]

CLIENT_ADDRESS = ("testclient", 50000)


class TestResponse:
    """What the app answered: status, headers (case-insensitive) and the body."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, status: int, reason: str, headers: http.client.HTTPMessage, content: bytes
    ) -> None:
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        return self.content.decode(charset, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status_code} {len(self.content)} bytes>"


class _PairConnection(http.client.HTTPConnection):
    """http.client over a socketpair whose other end the engine serves."""

    def __init__(self, server: Server, timeout: float) -> None:
        super().__init__("testserver", timeout=timeout)
        self._server = server

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        ours.settimeout(self.timeout)
        self._server.adopt(theirs, CLIENT_ADDRESS)
        self.sock = ours


class TestClient:
    """Send requests to `app` through the real engine over an in-memory transport."""

    __test__ = False

    def __init__(
        self,
        app: App | Any,
        base_url: str = "http://testserver",
        timeout: float = 30.0,
        **server_options: Any,
    ) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.server_options = server_options
        self.server_options.setdefault("blocking_threshold", None)
        self._running: AbstractContextManager[Server] | None = None
        self._server: Server | None = None
        self._connection: _PairConnection | None = None
        self._lock = threading.Lock()

    # ---- Lifecycle.

    def _start(self) -> Server:
        if self._server is None:
            running = serve_in_thread(self.app, listen=False, **self.server_options)
            self._server = running.__enter__()
            self._running = running
        return self._server

    def close(self) -> None:
        """Stop the engine; with an App, its shutdown hooks and lifespan exit run."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._running is not None:
            running, self._running, self._server = self._running, None, None
            running.__exit__(None, None, None)

    def __enter__(self) -> TestClient:
        self._start()  # runs the App's startup (lifespan) before the first request
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if self._running is not None:
            self.close()

    # ---- Requests.

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | Iterator[bytes] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, FileField] | None = None,
        json: Any = None,
        cookies: Mapping[str, str] | None = None,
    ) -> TestResponse:
        """Send one request and read the whole response.

        ``content`` is the raw body (an iterator of bytes is sent chunked); ``data`` a form
        (multipart when ``files`` is given), ``json`` a JSON body.
        """
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
        fields: dict[str, str] = {}
        body: Any = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            fields["content-type"] = "application/json"
        elif files is not None:
            body, fields["content-type"] = encode_multipart(data or {}, files)
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            fields["content-type"] = "application/x-www-form-urlencoded"
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        if cookies:
            fields["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        for name, value in (headers or {}).items():
            fields[name.lower()] = value
        encode_chunked = body is not None and not isinstance(body, (bytes, bytearray))
        if encode_chunked:
            fields.setdefault("transfer-encoding", "chunked")
        with self._lock:
            return self._send(method.upper(), target, body, fields, encode_chunked)

    def _send(
        self, method: str, target: str, body: Any, fields: dict[str, str], encode_chunked: bool
    ) -> TestResponse:
        server = self._start()
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = _PairConnection(server, self.timeout)
            connection = self._connection
            try:
                # The engine may answer and close before it has taken the whole request (a
                # 431 for huge headers, a 413 for a body): that answer is waiting to be read.
                # A kept-alive connection the engine had closed has none, and getresponse()
                # raises RemoteDisconnected: then it is retried below.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    connection.request(
                        method, target, body=body, headers=fields, encode_chunked=encode_chunked
                    )
                reply = connection.getresponse()
                content = reply.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                # The engine closed the kept-alive connection: once more on a fresh one.
                connection.close()
                self._connection = None
                if attempt == 2 or not isinstance(body, (bytes, bytearray, type(None))):
                    raise
                continue
            if reply.will_close:
                connection.close()
                self._connection = None
            return TestResponse(reply.status, reply.reason, reply.headers, content)
        raise AssertionError("unreachable")

    def get(self, url: str, **options: Any) -> TestResponse:
        return self.request("GET", url, **options)

    def head(self, url: str, **options: Any) -> TestResponse:
        return self.request("HEAD", url, **options)

    def options(self, url: str, **options: Any) -> TestResponse:
        return self.request("OPTIONS", url, **options)

    def post(self, url: str, **options: Any) -> TestResponse:
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> TestResponse:
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> TestResponse:
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> TestResponse:
        return self.request("DELETE", url, **options)


def encode_multipart(data: Mapping[str, Any], files: Mapping[str, FileField]) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in data.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            out += f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += str(item).encode() + b"\r\n"
    for name, spec in files.items():
        filename, payload = spec[0], spec[1]
        kind = spec[2] if len(spec) == 3 else "application/octet-stream"
        out += (
            f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\ncontent-type: {kind}\r\n\r\n'
        ).encode()
        out += payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
