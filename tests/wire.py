"""Raw bytes to a server and its responses read back strictly: the one response reader the
loopback tests share.

Every response is parsed by `ResponseParser`, which is h11 in the client role fed the bytes
the server sent, so a response that is ambiguous on the wire (two lengths, a body after a
204, a split header, a version other than HTTP/1.1) fails the parse instead of passing
unnoticed. The parser is told each response's request method (a HEAD response has no body)
just before it reads that response, which is how pipelined responses are read one by one.

Three ways in:

- `exchange` sends bytes on a fresh connection and reads until the server closes, resets, or
  goes quiet; `responses` reads the responses to the first requests out of that, and
  `split_responses` reads every response in it and requires nothing else to be there.
- `WireClient` keeps one connection open and reads a response at a time as it arrives,
  for tests that interleave sending, waiting and reading (timeouts, drains, 100-continue).
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import h11

HOST = "127.0.0.1"


@dataclass
class Exchange:
    raw: bytes
    closed: bool  # the server closed (FIN) or reset the connection
    reset: bool  # it was a reset (an abort)


def exchange(port: int, payload: bytes, *, wait: float = 1.0, half_close: bool = False) -> Exchange:
    """Send `payload` (then a FIN if `half_close`), and read until the server closes or
    `wait` passes without data."""
    with socket.create_connection((HOST, port), timeout=wait) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        raw = b""
        closed = reset = False
        try:
            while chunk := sock.recv(65536):
                raw += chunk
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = reset = True
        return Exchange(raw, closed, reset)


@dataclass
class WireResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # (lowercased name, value), in order, as latin-1 text
    body: bytes
    interim: list[int] = field(default_factory=list)  # 1xx statuses received before it

    def header(self, name: str) -> str | None:
        """The one value of field `name` (lowercase), None if absent; fails if repeated."""
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"{name!r} repeated: {values}"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        """The server said it closes the connection after this response."""
        return (self.header("connection") or "").lower() == "close"


class ResponseParser:
    """Responses parsed, strictly, from the bytes a server sent: fed with `receive`, read
    with `next_response`. Sans-IO: the callers below own the socket."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._reading = False  # a request was "sent" and its response is not complete
        self._interim: list[int] = []
        self._response: WireResponse | None = None

    def receive(self, data: bytes) -> None:
        """Bytes from the server; b"" when it closed the connection."""
        self._h11.receive_data(data)

    @property
    def unread(self) -> bytes:
        """Bytes received and not yet parsed into a response."""
        return self._h11.trailing_data[0]

    @property
    def started(self) -> bool:
        """The status line and header of the response being read have been parsed."""
        return self._response is not None

    @property
    def interim(self) -> list[int]:
        """The 1xx statuses received before the response being read (not yet complete)."""
        return list(self._interim)

    @property
    def closing(self) -> bool:
        """Between responses, and the server said (or its framing implied) that it closes."""
        return not self._reading and self._h11.their_state in (h11.MUST_CLOSE, h11.CLOSED)

    def next_response(self, method: str = "GET", *, interim: bool = False) -> WireResponse | None:
        """The next complete response (to a request with `method`), or None until more bytes
        arrive; with `interim`, the next 1xx one instead (a 100 Continue), which the final
        response will then not list. Raises h11.RemoteProtocolError for a malformed response
        or one the server cut short by closing, and AssertionError for a response after the
        server said it would close (or a final one where `interim` wanted a 1xx)."""
        client = self._h11
        if not self._reading:
            if client.our_state is h11.DONE and client.their_state is h11.DONE:
                client.start_next_cycle()
            assert not self.closing, (
                f"a response after the server said it would close: {self.unread[:300]!r}"
            )
            client.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
            client.send(h11.EndOfMessage())
            self._reading = True
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.InformationalResponse):
                if interim:
                    return _wire_response(event)
                self._interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                assert not interim, f"a final {event.status_code} where a 1xx was expected"
                self._response = _wire_response(event)
                self._response.interim, self._interim = self._interim, []
            elif isinstance(event, h11.Data):
                assert self._response is not None
                self._response.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                response, self._response = self._response, None
                assert response is not None
                self._reading = False
                return response
            else:  # ConnectionClosed before a response began
                raise h11.RemoteProtocolError("the server closed before responding")


def _wire_response(event: h11.Response | h11.InformationalResponse) -> WireResponse:
    assert event.http_version == b"1.1", f"an HTTP/{event.http_version!r} response"
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
    return WireResponse(event.status_code, event.reason.decode("latin-1"), headers, b"")


def responses(received: Exchange, methods: list[str]) -> list[WireResponse]:
    """The responses received to requests with these methods, in order, as many as were
    answered; raises if the bytes are not well-framed responses (a cut one is an error)."""
    parser = ResponseParser()
    parser.receive(received.raw)
    if received.closed:
        parser.receive(b"")
    found: list[WireResponse] = []
    for method in methods:
        if parser.closing:
            break
        try:
            response = parser.next_response(method)
        except h11.RemoteProtocolError:
            if not parser.started and received.closed:
                return found  # closed before answering this one
            raise
        if response is None:
            if not parser.started and not found:
                raise AssertionError(f"no complete response in {received.raw!r}")
            if not parser.started:
                return found  # no more responses: the rest were not answered
            raise AssertionError(f"a response was cut short in {received.raw!r}")
        found.append(response)
    return found


def split_responses(received: Exchange, methods: Sequence[str] = ()) -> list[WireResponse]:
    """Every response in what was received, which must hold complete responses and nothing
    else. methods[i] is the i-th request's method (a HEAD response has no body); GET after
    those."""
    parser = ResponseParser()
    parser.receive(received.raw)
    if received.closed:
        parser.receive(b"")
    found: list[WireResponse] = []
    while parser.unread:
        method = methods[len(found)] if len(found) < len(methods) else "GET"
        response = parser.next_response(method)
        assert response is not None, (
            f"incomplete response after {len(found)}: {parser.unread[:300]!r}"
        )
        found.append(response)
    return found


class WireClient:
    """One connection kept open: send bytes as given, read responses one at a time as they
    arrive (through ResponseParser), then the server's close or reset."""

    def __init__(self, port: int, *, timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.parser = ResponseParser()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with an RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    @property
    def local_port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"nothing from the server for {self.sock.gettimeout()} s; "
                f"unread: {self.parser.unread[:300]!r}"
            ) from None

    def response(self, method: str = "GET", *, interim: bool = False) -> WireResponse:
        """The next response (to a request with `method`; with `interim`, the next 1xx),
        waiting for it as needed; fails if the server closes before it is complete."""
        while (response := self.parser.next_response(method, interim=interim)) is None:
            chunk = self._recv()
            self.parser.receive(chunk)
            if not chunk:  # closed: what was received is all there is
                response = self.parser.next_response(method, interim=interim)
                assert response is not None, f"closed mid-response: {self.parser.unread!r}"
        return response

    def read_to_eof(self) -> bytes:
        """Everything not yet read up to the server's close (fails if it does not close)."""
        data = self.parser.unread
        self.parser = ResponseParser()  # the connection is over: nothing more to parse
        while chunk := self._recv():
            data += chunk
        return data

    def at_eof(self, timeout: float) -> bool:
        """True if the server closed (a FIN) within `timeout`; False if it is still open.

        Data arriving instead fails the test; a reset raises ConnectionResetError.
        """
        assert not self.parser.unread, f"unread data before EOF: {self.parser.unread[:200]!r}"
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        assert chunk == b"", f"expected EOF, got {chunk[:200]!r}"
        return True

    def readable(self, timeout: float) -> bool:
        """Response bytes are waiting (received and unread, or in the socket)."""
        if self.parser.unread:
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])
