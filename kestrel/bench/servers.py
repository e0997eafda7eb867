"""The servers `kestrel-bench suite` measures: how each is started, checked and stopped.

A contender is kestrel (the benchmark app of kestrel/bench/bench_app.py, under this
interpreter) or a peer: uvicorn (uvloop + httptools), granian and hypercorn serving the bare
ASGI app of peer_apps/asgi_app.py, socketify's native app (peer_apps/socketify_app.py) and
nginx (peer_apps/nginx.conf). The Python peers run under the peer interpreter (by default
perf/.venv/bin/python of the checkout in the current directory, made by perf/setup_peers.sh),
and are started by file path: kestrel is not installed there. What a contender cannot serve
is in its ``cannot`` map (by endpoint, or by scenario where only one size is refused), with
the reason the suite's table shows.

Every server starts on a free port of 127.0.0.1, pinned to one core, in a session of its own
(so that stopping it stops its workers too and nothing else), with its open-file limit raised
to the hard limit (10k idle connections need more than the usual soft 1024). Every started
process is in a module-level registry until it is stopped: ``stop_all()`` runs on the way out
of the suite, whatever ends it (the end, an exception, Ctrl-C, SIGTERM, or interpreter exit),
so no server and no port is left behind. Signals are blocked while a server is being started
and registered, so an interrupt cannot fall between the two.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from kestrel.bench.procfs import process_tree

HOST = "127.0.0.1"
PEER_APPS = Path(__file__).resolve().parent / "peer_apps"
HELLO = b"Hello, World!"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class Unavailable(Exception):
    """A contender that cannot be started here, or that does not answer as it should."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def run_text(
    cmd: list[str], *, stderr: bool = False, timeout: float = 30, cwd: Path | None = None
) -> str:
    """Output of a short command ('' if it fails to run); ``stderr=True`` merges stderr."""
    try:
        out = subprocess.run(
            cmd,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def tool_path(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (Debian puts nginx there)."""
    found = shutil.which(name)
    if found is None and os.access(f"/usr/sbin/{name}", os.X_OK):
        found = f"/usr/sbin/{name}"
    return found


def default_peer_python() -> str:
    """perf/.venv/bin/python of the checkout in the current directory, else this Python."""
    venv_python = Path.cwd() / "perf" / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def cores() -> tuple[int, int]:
    """(the server's core, the load generator's core): the first two this process may use."""
    usable = sorted(os.sched_getaffinity(0))
    return usable[0], usable[1] if len(usable) > 1 else usable[0]


def kestrel_pythonpath() -> str:
    """The directory the running kestrel was imported from, for the kestrel server's
    PYTHONPATH: the server measured is the build this suite runs."""
    import kestrel

    return str(Path(kestrel.__file__).resolve().parent.parent)


# --------------------------------------------------------------------------------------------
# A running server


_started: dict[int, ServerProcess] = {}


def stop_all() -> None:
    """Stop every server started and not yet stopped (the registry's way out)."""
    for server in list(_started.values()):
        server.stop()


atexit.register(stop_all)


def check_hello(port: int, timeout: float = 2.0) -> None:
    """One ``GET /``: raise Unavailable unless it is 200 ``Hello, World!`` in text/plain."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        content_type = response.getheader("content-type") or ""
    finally:
        conn.close()
    if response.status != 200 or body != HELLO or not content_type.startswith("text/plain"):
        raise Unavailable(
            f"wrong answer to GET /: {response.status}, content-type {content_type!r}, "
            f"body {body[:60]!r}"
        )


def _child_setup(core: int) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec: the signal mask the parent held while
        # starting it is inherited, so it is lifted here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        os.sched_setaffinity(0, {core})
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


@dataclass
class ServerProcess:
    """A server command run on ``port``; ``with ServerProcess(...) as s:`` starts and stops it.

    ``argv`` may name ``workdir`` (a temporary directory of its own, removed on stop) and
    ``port``, which are chosen before it is built: pass a function of (port, workdir).
    """

    name: str
    command: Callable[[int, Path], list[str]]
    core: int
    env: Mapping[str, str] = field(default_factory=dict)  # added to this process's environment
    cwd: Path | None = None
    ready: Callable[[int], None] = check_hello
    ready_timeout: float = 30.0
    port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kestrel-bench-")))
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def start(self) -> None:
        self.port = free_port()
        self.argv = self.command(self.port, self.workdir)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with open(self.log_path, "wb") as log:
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd or self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_child_setup(self.core),
                )
                _started[id(self)] = self
            except OSError as exc:
                raise Unavailable(f"cannot start {self.argv[0]}: {exc.strerror}") from None
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"exited with code {self.proc.returncode} before serving: "
                    f"{self.log_tail() or '(no output)'}"
                )
            try:
                self.ready(self.port)
                return
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise Unavailable(
            f"did not answer within {self.ready_timeout:g} s ({last_error}); "
            f"log: {self.log_tail() or '(empty)'}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The server's whole process tree (nginx's worker, granian's worker process)."""
        return process_tree(self.pid) if self.alive() else []

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after STOP_GRACE; remove workdir."""
        # self.proc is cleared only once the process is gone: an interrupt while waiting
        # leaves it for stop_all() to finish.
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            # Workers left in the group (a master that died first) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None
        _started.pop(id(self), None)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The contenders


NGINX_CONF = (PEER_APPS / "nginx.conf").read_text()


def nginx_config(workdir: Path, port: int, nofile: int = 20000) -> Path:
    """Write the benchmark app's nginx.conf for one run into ``workdir``; return its path."""
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir,
            host=HOST,
            port=port,
            nofile=nofile,
            worker_connections=max(1024, nofile - 64),
        )
    )
    return conf


def nginx_command(port: int, workdir: Path, conf: Path) -> list[str]:
    nginx = tool_path("nginx") or "nginx"
    return [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")]


def uvicorn_command(python: str, app: str, port: int, app_dir: Path | None = None) -> list[str]:
    return [
        python, "-m", "uvicorn", app,
        *(["--app-dir", str(app_dir)] if app_dir else []),
        "--host", HOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
        # kestrel's keep-alive timeout (130 s), not uvicorn's 5 s: idle connections stay open.
        "--timeout-keep-alive", "130",
        "--backlog", "4096",
    ]  # fmt: skip


def granian_command(
    python: str, app: str, port: int, working_dir: Path | None = None, backpressure: int = 20000
) -> list[str]:
    return [
        python, "-m", "granian",
        "--interface", "asgi", "--host", HOST, "--port", str(port),
        "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1",
        "--blocking-threads", "1", "--loop", "uvloop", "--http", "1", "--no-ws",
        "--log-level", "warning", "--no-access-log", "--backlog", "4096",
        # Both non-default, both faster on this VM (perf/RESULTS.md): Rust tasks (CPython
        # < 3.12) and pipeline flush (marked experimental by granian).
        "--task-impl", "rust", "--http1-pipeline-flush",
        # Its default (backlog / workers) caps open connections, not just requests in
        # flight: 10k idle connections need more.
        "--backpressure", str(backpressure),
        *(["--working-dir", str(working_dir)] if working_dir else []),
        app,
    ]  # fmt: skip


def hypercorn_command(python: str, app: str, port: int) -> list[str]:
    return [
        python, "-m", "hypercorn",
        "--bind", f"{HOST}:{port}", "--worker-class", "uvloop",
        # 0: serve in this process (1 would fork a worker from a supervising parent).
        "--workers", "0",
        "--keep-alive", "130", "--backlog", "4096", "--log-level", "warning",
        app,
    ]  # fmt: skip


@dataclass(frozen=True)
class Launch:
    """What a contender's command is built from."""

    port: int
    workdir: Path
    peer_python: str


_NGINX_CANNOT = {
    "route": "nginx runs no application code: no /users/{id} JSON behind a middleware",
    "echo": "nginx (Debian's nginx-light) has no module that echoes a request body",
    "upload": "nginx cannot answer with the count of a request body's bytes",
    "download": "nginx cannot produce N bytes on request (it serves files it has)",
}


@dataclass(frozen=True)
class Contender:
    name: str
    about: str  # how it is run, for the report
    python_modules: tuple[str, ...]  # imported under the peer interpreter to check it is there
    distributions: tuple[str, ...]  # whose versions the report gives
    build: Callable[[Launch], list[str]]
    # why not, by endpoint (every scenario that needs it) or by scenario name
    cannot: Mapping[str, str] = field(default_factory=dict)
    env: Callable[[], Mapping[str, str]] = dict

    @property
    def is_peer_python(self) -> bool:
        return bool(self.python_modules)

    def check(self, peer_python: str) -> None:
        """Raise Unavailable when this contender is not installed for ``peer_python``."""
        if self.name == "nginx":
            if tool_path("nginx") is None:
                raise Unavailable("nginx not found (Debian nginx-light: perf/setup_peers.sh)")
            return
        if not self.is_peer_python:
            return
        if not os.access(peer_python, os.X_OK):
            raise Unavailable(f"no interpreter at {peer_python}")
        probe = run_text(
            [peer_python, "-c", "import " + ", ".join(self.python_modules)], stderr=True
        )
        if probe:
            raise Unavailable(f"not importable by {peer_python}: {probe.splitlines()[-1]}")

    def server(self, peer_python: str, core: int) -> ServerProcess:
        def command(port: int, workdir: Path) -> list[str]:
            return self.build(Launch(port, workdir, peer_python))

        return ServerProcess(self.name, command, core, env=self.env())

    def version(self, peer_python: str) -> str:
        if self.name == "nginx":
            out = run_text([tool_path("nginx") or "nginx", "-v"], stderr=True)
            return out.removeprefix("nginx version: ") or "not installed"
        if not self.is_peer_python:  # kestrel: the build this process runs
            import kestrel
            from kestrel import _core

            build = "debug" if getattr(_core, "DEBUG_BUILD", False) else "release"
            return (
                f"kestrel {kestrel.__version__} ({build} build, "
                f"CPython {platform.python_version()})"
            )
        code = (
            "import importlib.metadata as m, platform\n"
            f"for d in {self.distributions!r}:\n"
            "    try: print(d, m.version(d))\n"
            "    except m.PackageNotFoundError: print(d, 'not installed')\n"
            "print('CPython', platform.python_version())\n"
        )
        lines = run_text([peer_python, "-c", code]).splitlines()
        if not lines:
            return "not installed"
        return f"{lines[0]} ({', '.join(lines[1:])})"


def _kestrel(launch: Launch) -> list[str]:
    return [
        sys.executable, "-m", "kestrel", "kestrel.bench.bench_app:app",
        "--host", HOST, "--port", str(launch.port),
        "--no-access-log", "--log-level", "warning", "--backlog", "4096",
    ]  # fmt: skip


def _socketify(launch: Launch) -> list[str]:
    app = str(PEER_APPS / "socketify_app.py")
    return [launch.peer_python, app, "--host", HOST, "--port", str(launch.port)]


def _nginx(launch: Launch) -> list[str]:
    conf = nginx_config(launch.workdir, launch.port)
    return nginx_command(launch.port, launch.workdir, conf)


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "kestrel",
            "kestrel's native App (kestrel/bench/bench_app.py)",
            (),
            ("kestrel-http",),
            _kestrel,
            env=lambda: {"PYTHONPATH": kestrel_pythonpath()},
        ),
        Contender(
            "uvicorn",
            "uvicorn, uvloop + httptools, bare ASGI app",
            ("uvicorn", "uvloop", "httptools"),
            ("uvicorn", "uvloop", "httptools"),
            lambda run: uvicorn_command(run.peer_python, "asgi_app:app", run.port, PEER_APPS),
        ),
        Contender(
            "granian",
            "granian (one worker, uvloop, Rust tasks), bare ASGI app",
            ("granian", "uvloop"),
            ("granian", "uvloop"),
            lambda run: granian_command(run.peer_python, "asgi_app:app", run.port, PEER_APPS),
        ),
        Contender(
            "socketify",
            "socketify's native API (uWebSockets)",
            ("socketify",),
            ("socketify",),
            _socketify,
            cannot={
                "transfer-1g": "uWebSockets 20 (socketify 0.0.31) answers 400 to a "
                "Content-Length of 10 digits or more: a 1 GiB upload is refused",
            },
        ),
        Contender(
            "hypercorn",
            "hypercorn (uvloop worker, in-process), bare ASGI app",
            ("hypercorn", "uvloop"),
            ("hypercorn", "h11", "uvloop"),
            lambda run: hypercorn_command(
                run.peer_python, str(PEER_APPS / "asgi_app.py") + ":app", run.port
            ),
        ),
        Contender(
            "nginx",
            "nginx (one worker), `return` in its config",
            (),
            (),
            _nginx,
            cannot=_NGINX_CANNOT,
        ),
    )
}
