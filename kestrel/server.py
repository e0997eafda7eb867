"""Running the engine: in the foreground (`kestrel` CLI) or embedded in a thread.

    with kestrel.serve_in_thread(app, port=0) as server:
        urllib.request.urlopen(server.url)

Until the framework lands (issue #4), an app is an `async def app(request)` that returns
bytes, str, None (204) or a `kestrel.Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from kestrel._core import HttpServer, KestrelEventLoop, Request

Handler = Callable[[Request], Awaitable[Any]]

DEFAULT_BACKLOG = 2048  # uvicorn's and hypercorn's default; the kernel caps it at somaxconn


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio event loop running on the engine's epoll selector."""
    return KestrelEventLoop()


def bind_socket(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """One process serving one app on one address."""

    def __init__(
        self,
        app: Handler,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        access_log: bool = False,
        server_header: str | None = "kestrel",
        backlog: int = DEFAULT_BACKLOG,
        max_request_body_size: int = 30_000_000,
    ) -> None:
        self.app = app
        self.max_request_body_size = max_request_body_size
        self.host = host
        self.port = port
        self.access_log = access_log
        self.server_header = server_header
        self.backlog = backlog
        self.started = threading.Event()
        self._engine: HttpServer | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self) -> None:
        """Serve until stop() is called."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        sock = bind_socket(self.host, self.port, self.backlog)
        self.port = sock.getsockname()[1]
        engine = HttpServer(
            self.app,
            loop=loop,
            access_log=self.access_log,
            server_header=self.server_header,
            max_request_body_size=self.max_request_body_size,
        )
        self._engine = engine
        engine.listen(sock)
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            engine.close()

    def stop(self) -> None:
        """Ask the server to stop; safe to call from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def stats(self) -> dict[str, Any]:
        return self._engine.stats() if self._engine is not None else {}

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        loop = new_event_loop()
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop)
            loop.run_until_complete(self.serve())
        finally:
            loop.close()


@contextlib.contextmanager
def serve_in_thread(
    app: Handler, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[Server]:
    """Run a server in a background thread for the duration of a `with` block."""
    server = Server(app, host, port, **options)
    failure: list[BaseException] = []

    def run() -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:
            failure.append(exc)
            server.started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"kestrel:{port}", daemon=True)
    thread.start()
    server.started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)
