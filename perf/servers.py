"""The contenders of perf/bench_http.py and perf/rss_probe.py: how each is started, checked,
measured (CPU, RSS of its whole process tree) and stopped.

Starting, pinning, readiness and stopping are kestrel-bench suite's (kestrel/bench/servers.py:
pinned to core 0 on a free port of 127.0.0.1, in its own session so that stopping it stops its
workers too, in its registry so that nothing outlives the script); so are the peers' command
lines and nginx's config. What is perf's own is the apps served: perf/apps/*.py, by module.
Peers come from the benchmark venv perf/.venv (perf/setup_peers.sh); nginx is Debian's
nginx-light. kestrel is started from a command template and is reported "not available" when
it cannot serve yet.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kestrel.bench import servers as bench_servers

# Re-exported: the scripts in perf/ take these from here, beside the contenders.
from kestrel.bench.procfs import CLK_TCK as CLK_TCK
from kestrel.bench.procfs import Memory as Memory
from kestrel.bench.procfs import core_times as core_times
from kestrel.bench.procfs import core_usage as core_usage
from kestrel.bench.procfs import cpu_ticks as cpu_ticks
from kestrel.bench.procfs import machine as machine
from kestrel.bench.procfs import memory as memory
from kestrel.bench.procfs import process_tree as process_tree
from kestrel.bench.servers import HOST as HOST
from kestrel.bench.servers import ServerProcess
from kestrel.bench.servers import Unavailable as Unavailable
from kestrel.bench.servers import check_hello as check_plaintext
from kestrel.bench.servers import free_port as free_port
from kestrel.bench.servers import tool_path as tool_path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / "perf" / ".venv"
SERVER_CPU = 0
CLIENT_CPU = 1
EXPECTED_BODY = bench_servers.HELLO

DEFAULT_KESTREL_CMD = "{python} -m kestrel {app} --host 127.0.0.1 --port {port} --no-access-log"
PEERS = ("kestrel", "uvicorn", "granian", "socketify", "nginx")
APPS = ("plaintext", "backpressure", "framework")


def run_text(cmd: list[str], *, stderr: bool = False, timeout: float = 30) -> str:
    """Output of a short command run in the checkout ('' if it fails to run)."""
    return bench_servers.run_text(cmd, stderr=stderr, timeout=timeout, cwd=ROOT)


# --------------------------------------------------------------------------------------------
# The contenders


@dataclass
class ServerSpec:
    """How to start one contender serving one of perf/apps (``plaintext`` or ``backpressure``)."""

    name: str
    app: str = "plaintext"
    kestrel_cmd: str = DEFAULT_KESTREL_CMD
    venv: Path = DEFAULT_VENV
    python: str = sys.executable  # the interpreter ``{python}`` stands for in kestrel's command
    nofile: int = 20000  # nginx: worker_rlimit_nofile (and worker_connections below it)

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    def check(self) -> None:
        """Raise Unavailable when the contender is not installed (before trying to start it)."""
        if self.app not in APPS:
            raise Unavailable(f"unknown app {self.app!r}")
        if self.name in ("uvicorn", "granian", "socketify"):
            if not self.venv_python.exists():
                raise Unavailable(f"no benchmark venv at {self.venv}: run perf/setup_peers.sh")
            module = {"uvicorn": "uvicorn", "granian": "granian", "socketify": "socketify"}
            probe = run_text(
                [str(self.venv_python), "-c", f"import {module[self.name]}"], stderr=True
            )
            if probe:
                last = probe.splitlines()[-1]
                raise Unavailable(f"{self.name} does not import in {self.venv}: {last}")
        if self.name in ("socketify", "nginx") and self.app != "plaintext":
            raise Unavailable(f"{self.name} has no {self.app} app here (kestrel and ASGI only)")
        if self.name == "nginx" and tool_path("nginx") is None:
            raise Unavailable("nginx not found: run perf/setup_peers.sh (Debian nginx-light)")
        if self.name not in PEERS:
            raise Unavailable(f"unknown server {self.name!r}; known: {', '.join(PEERS)}")

    def command(self, port: int, workdir: Path) -> list[str]:
        """The server's command line (pinned by ServerProcess, not by a taskset prefix)."""
        py = str(self.venv_python)
        if self.name == "kestrel":
            cmd = self.kestrel_cmd.format(
                python=shlex.quote(self.python), port=port, app=f"perf.apps.{self.app}:app"
            )
            return shlex.split(cmd)
        if self.name == "uvicorn":
            return bench_servers.uvicorn_command(py, f"perf.apps.{self.app}:asgi_app", port)
        if self.name == "granian":
            return bench_servers.granian_command(
                py, f"perf.apps.{self.app}:asgi_app", port, backpressure=max(4096, self.nofile)
            )
        if self.name == "socketify":
            return [
                py,
                "-m",
                "perf.apps.plaintext",
                "socketify",
                "--host",
                HOST,
                "--port",
                str(port),
            ]
        if self.name == "nginx":
            conf = bench_servers.nginx_config(workdir, port, self.nofile)
            return bench_servers.nginx_command(port, workdir, conf)
        raise Unavailable(f"unknown server {self.name!r}")

    def version(self) -> str:
        """The contender's version string, as installed."""
        if self.name in ("uvicorn", "granian", "socketify", "nginx"):
            return bench_servers.CONTENDERS[self.name].version(str(self.venv_python))
        if self.name == "kestrel":
            code = (
                "import kestrel, kestrel._core as c, platform; "
                "print(kestrel.__version__, 'debug' if getattr(c, 'DEBUG_BUILD', False) "
                "else 'release', 'build, CPython', platform.python_version())"
            )
            return run_text([self.python, "-c", code]) or "not importable"
        return "unknown"


# --------------------------------------------------------------------------------------------
# A running server


class Server(ServerProcess):
    """A started contender; use as a context manager (``with Server(spec) as s: ...``)."""

    def __init__(self, spec: ServerSpec, ready_timeout: float = 30.0) -> None:
        super().__init__(
            spec.name,
            spec.command,
            SERVER_CPU,
            cwd=ROOT,
            ready=check_plaintext,
            ready_timeout=ready_timeout,
        )
        self.spec = spec

    def start(self) -> None:
        self.spec.check()
        super().start()


def pin_self_to_client_core() -> None:
    """Keep the driver itself (and so wrk and the probe's clients) off the server's core."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})


def git_commit() -> tuple[str, list[str]]:
    commit = run_text(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    # Not run_text: stripping the output would eat the leading space of " M path".
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        status = ""
    dirty = [line[3:] for line in status.splitlines() if line.strip()]
    return (commit + "+dirty" if dirty else commit), dirty
