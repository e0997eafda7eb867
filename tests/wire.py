"""Raw bytes to a server and its responses read back strictly: the one response reader the
loopback tests share.

`exchange` sends bytes on a fresh connection and reads until the server closes, resets, or
goes quiet. `responses` parses what came back with h11 as a client would, pipelined requests
included, so a response that is ambiguous on the wire (two lengths, a body after a 204, a
split header) fails the parse instead of passing unnoticed.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import h11


@dataclass
class Exchange:
    raw: bytes
    closed: bool  # the server closed (FIN) or reset the connection
    reset: bool  # it was a reset (an abort)


def exchange(port: int, payload: bytes, *, wait: float = 1.0) -> Exchange:
    """Send `payload`, then read until the server closes or `wait` passes without data."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(payload)
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
    headers: list[tuple[bytes, bytes]]  # lowercased names, in order
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"{name!r} repeated: {values}"
        return values[0] if values else None


def responses(received: Exchange, methods: list[str]) -> list[WireResponse]:
    """The responses received to requests with these methods, in order, as many as were
    answered; raises if the bytes are not well-framed responses (a cut one is an error)."""
    raw = received.raw
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    if received.closed:
        client.receive_data(b"")
    found: list[WireResponse] = []
    for method in methods:
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
        elif client.their_state is h11.MUST_CLOSE or client.their_state is h11.CLOSED:
            break
        client.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        client.send(h11.EndOfMessage())
        response: WireResponse | None = None
        while True:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError:
                if response is None and received.closed:
                    return found  # closed before answering this one
                raise
            if event is h11.NEED_DATA:
                if response is None and not found:
                    raise AssertionError(f"no complete response in {raw!r}")
                if response is None:
                    return found  # no more responses: the rest were not answered
                raise AssertionError(f"a response was cut short in {raw!r}")
            if isinstance(event, h11.Response):
                response = WireResponse(event.status_code, list(event.headers), b"")
            elif isinstance(event, h11.Data):
                assert response is not None
                response.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                found.append(response)
                break
            elif isinstance(event, h11.ConnectionClosed):
                return found
    return found
