"""Running the engine: in the foreground (`kestrel` CLI) or embedded in a thread.

    with kestrel.serve_in_thread(app, port=0) as server:
        urllib.request.urlopen(server.url)

The app is a kestrel.App, or a bare `async def app(request)` that the engine calls directly
(it returns bytes, str, None for 204, or a Response, StreamingResponse or FileResponse).
An App's startup runs before the socket is listened on; if it fails, serve() raises
StartupError and nothing is served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from kestrel._core import HttpServer, KestrelEventLoop
from kestrel.config import DEFAULT_BACKLOG, Limits
from kestrel.host import Host, as_host
from kestrel.metrics import render_prometheus
from kestrel.types import Handler
from kestrel.watchdog import DEFAULT_THRESHOLD, Watchdog


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
        app: Handler | Host,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        limits: Limits | None = None,
        access_log: bool = False,
        server_header: str | None = "kestrel",
        blocking_threshold: float | None = DEFAULT_THRESHOLD,
        metrics_path: str | None = None,
        heartbeat_interval: float | None = None,
        **limit_overrides: Any,
    ) -> None:
        """`limits` (kestrel.Limits) sets the request contract; any of its fields may also be
        given directly, e.g. ``Server(app, keep_alive_timeout=5)``."""
        unknown = set(limit_overrides) - {f.name for f in dataclasses.fields(Limits)}
        if unknown:
            raise TypeError(f"unknown Server option(s): {', '.join(sorted(unknown))}")
        self.limits = dataclasses.replace(limits or Limits(), **limit_overrides)
        if metrics_path is not None and not metrics_path.startswith("/"):
            raise ValueError(f"metrics_path must start with '/', not {metrics_path!r}")
        self.metrics_path = metrics_path
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            # 0 or less would run the heartbeat on every turn of the loop (NaN: never).
            raise ValueError(f"heartbeat_interval must be more than 0, not {heartbeat_interval!r}")
        self.heartbeat_interval = heartbeat_interval
        self.app = app
        self.host_app: Host = as_host(app)
        self.blocking_threshold = blocking_threshold
        self.watchdog: Watchdog | None = None
        self.host = host
        self.port = port
        self.access_log = access_log
        self.server_header = server_header
        self.started = threading.Event()
        self._engine: HttpServer | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, listen: bool = True) -> None:
        """Run the app's startup, serve until stop() is called, then run its shutdown.

        With listen=False no socket is bound: connections come only through adopt() (the
        TestClient's in-memory transport).
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        host = self.host_app
        await host.startup()
        try:
            sock = bind_socket(self.host, self.port, self.limits.backlog) if listen else None
            if sock is not None:
                self.port = sock.getsockname()[1]
            engine = HttpServer(
                host.entry,
                loop=loop,
                access_log=self.access_log,
                server_header=self.server_header,
                # The parser refuses only bodies no route could take; each route's own limit
                # (or the server's) is the host's to check per request.
                max_parser_body_size=host.max_body_size(self.limits.max_request_body_size),
                request_class=host.request_class,
                heartbeat_interval=self.heartbeat_interval,
                metrics_path=self.metrics_path,
                metrics_renderer=self._render_metrics,
                error_response=host.error_response,
                accepts_connect=host.accepts_connect,
                limits=self.limits,
            )
            self._engine = engine
            if sock is not None:
                engine.listen(sock)
            if self.blocking_threshold is not None:
                self.watchdog = Watchdog(
                    loop._selector,  # type: ignore[attr-defined]
                    threading.get_ident(),
                    self.blocking_threshold,
                )
                self.watchdog.start()
            self.started.set()
            try:
                await self._stop.wait()
                # Stop accepting, close idle connections, let requests in flight finish.
                await engine.shutdown(self.limits.graceful_timeout)
            finally:
                if self.watchdog is not None:
                    self.watchdog.stop()
                engine.close()
        finally:
            await host.shutdown()

    def stop(self) -> None:
        """Ask the server to stop; safe to call from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def adopt(self, sock: socket.socket, peer: tuple[str, int] | None = None) -> None:
        """Serve an already connected socket (from any thread); the engine takes it over."""
        engine, loop = self._engine, self._loop
        if engine is None or loop is None:
            raise RuntimeError("the server is not running")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def adopt() -> None:
            try:
                engine.adopt(sock, peer)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(adopt)
        done.result(timeout=10)

    def metrics(self) -> dict[str, Any]:
        """A snapshot of the server's counters (connections, requests and responses, bytes,
        read, write and accept pauses, drains, timeouts and aborts, rejections by reason,
        buffer-pool blocks): the one snapshot, for tests, benchmarks and --metrics-path."""
        engine = self._engine
        if engine is None:
            return {}
        return dict(engine.metrics())

    def _render_metrics(self) -> bytes:
        return render_prometheus(self.metrics())

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
    app: Handler | Host,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    listen: bool = True,
    **options: Any,
) -> Iterator[Server]:
    """Run a server in a background thread for the duration of a `with` block."""
    server = Server(app, host, port, **options)
    failure: list[BaseException] = []

    def run() -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(server.serve(listen=listen))
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
