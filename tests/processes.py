"""kestrel as a real process, for the tests that need one: a free port, waiting until a
started server answers, and the CLI started on a port and stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 10.0
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on (the kernel's pick, released again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_listening(
    process: subprocess.Popen[Any], port: int, why_not: Callable[[], str]
) -> None:
    """Return once `port` accepts connections; fail with why_not() if `process` exits first
    or the port stays closed for START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"kestrel exited {process.returncode}: {why_not()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"kestrel did not listen within {START_TIMEOUT_S} s"
            time.sleep(0.05)


@contextmanager
def cli_server(
    app: str, *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m kestrel APP --port N ARGS` in `cwd`, once it listens; killed on the way out
    if it is still running. Its stdout and stderr are pipes (text)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kestrel", app, "--port", str(port), *args],
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(process, port, lambda: process.communicate()[1])
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@contextmanager
def logged_server(
    app_source: str, app_module: str, *args: str, tmp_path: Path, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m kestrel` serving `app_source` (written to tmp_path/APP_MODULE.py) on a free
    port, its output in tmp_path/server.log, once it listens; `prefix` runs it under a
    wrapper (taskset, prlimit). Terminated on the way out (killed after 5 s)."""
    (tmp_path / f"{app_module}.py").write_text(app_source)
    port = free_port()
    log_path = tmp_path / "server.log"
    command = [
        *prefix,
        *(sys.executable, "-m", "kestrel", f"{app_module}:app", "--port", str(port)),
        *("--no-access-log", "--log-level", "warning", *args),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=log, env=env)
        try:
            wait_until_listening(process, port, log_path.read_text)
            yield process, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def send_queues(port: int) -> list[tuple[str, int]]:
    """(state, Send-Q) of every TCP socket on the server's side of `port`, from `ss`: what
    the kernel holds unsent or unacknowledged for each client."""
    lines = subprocess.run(
        ["ss", "-tnH", "state", "all", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.splitlines()
    found = []
    for line in lines:
        state, _recv_q, send_q, *_ = line.split()
        if state != "LISTEN":
            found.append((state, int(send_q)))
    return found
