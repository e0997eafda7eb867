"""The HTTP/1 processor with no socket: a test driver in the manner of h11's ConnectionPair.

ProcessorPair runs the real engine (HttpServer, its response writer, parser, request contract)
on a KestrelEventLoop, over one connection whose transport is a MemoryTransport
(kestrel/transport.pxi). The test is the peer: it sends bytes, split wherever it likes, and
reads back exactly the bytes the server sent. Bytes are fed from a loop callback, outside any
task, as the selector feeds a socket's bytes, so a handler's first step runs as it does in
production; the loop then runs until nothing is left to do.

    pair = ProcessorPair(app)
    pair.send(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n", split=[3, 10])
    assert pair.received() == b"HTTP/1.1 200 OK\\r\\n..."
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import h11

import kestrel
from kestrel._core import HttpServer, MemoryTransport

# What the server's own lines look like, so tests can compare exact bytes.
DATE_LINE_PREFIX = b"date: "


class ProcessorPair:
    """One server and one in-memory connection to it (see the module docstring)."""

    def __init__(
        self,
        app: Callable[..., Any],
        limits: kestrel.Limits | None = None,
        window: int | None = None,
        **server: Any,
    ) -> None:
        self.loop = kestrel.new_event_loop()
        self.server = HttpServer(app, loop=self.loop, limits=limits, server_header=None, **server)
        self.transport: MemoryTransport = self.server.open_in_memory()
        self.window = window
        if window is not None:
            self.transport.read(window)

    # ---- The peer.

    def send(self, data: bytes, split: Iterable[int] = ()) -> None:
        """Send `data`, cut at the offsets in `split`; the loop runs after every piece."""
        start = 0
        for cut in [*sorted(set(split)), len(data)]:
            if cut > start:
                self._from_loop(self.transport.feed, data[start:cut])
            start = max(start, cut)

    def send_eof(self) -> None:
        self._from_loop(self.transport.feed_eof)

    def received(self, window: int | None = None) -> bytes:
        """What the server sent since the last call (the peer reads). With `window`, the
        peer takes at most that many more bytes from now on."""
        data = self.transport.read(window if window is not None else self.window)
        self.run()
        return data + self.transport.read(window if window is not None else self.window)

    def responses(self, method: bytes = b"GET") -> list[h11.Response | h11.Data | Any]:
        """What the server sent, parsed by h11 as answers to `method` requests."""
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
        client.receive_data(self.received())
        events = []
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            events.append(event)
            if isinstance(event, h11.ConnectionClosed):
                break
        return events

    # ---- The loop.

    def run(self, limit: int = 1000) -> None:
        """Run the loop until nothing is ready (timers in the future are left alone)."""

        async def idle() -> None:
            for _ in range(limit):
                await asyncio.sleep(0)
                self.transport.pump()
                if not self.loop._ready:  # type: ignore[attr-defined]
                    await asyncio.sleep(0)
                    if not self.loop._ready:  # type: ignore[attr-defined]
                        return

        self.loop.run_until_complete(idle())

    def _from_loop(self, function: Callable[..., None], *args: Any) -> None:
        self.loop.call_soon(function, *args)
        self.run()

    def advance(self, seconds: float) -> None:
        """The heartbeat's look at the connection, as if `seconds` had passed."""
        import time

        self.server.check_deadlines(time.monotonic() + seconds)
        self.run()

    # ---- What the server saw.

    @property
    def closed(self) -> bool:
        return bool(self.transport.is_closed)

    @property
    def reset(self) -> bool:
        return bool(self.transport.was_reset)

    @property
    def fin_sent(self) -> bool:
        return bool(self.transport.fin_sent)

    def metrics(self) -> dict[str, Any]:
        return dict(self.server.metrics())

    def close(self) -> None:
        self.server.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def __enter__(self) -> ProcessorPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def strip_date(data: bytes) -> bytes:
    """The response bytes without the Date line (its value changes every second)."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.startswith(DATE_LINE_PREFIX))
