"""The request contract from the command line: every limit is a flag, bad values are usage
errors, --metrics-path serves Prometheus text, and SIGTERM drains requests in flight.

The socket-level client is test_contract.py's.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from processes import cli_server
from test_contract import PROMETHEUS_LINE, request
from wire import WireClient

from kestrel.cli import build_parser, main
from kestrel.config import Limits

REPO = Path(__file__).resolve().parents[1]

APP = textwrap.dedent(
    """
    import asyncio

    async def app(request):
        if request.target == b"/slow":
            await asyncio.sleep(2)
            return "slow done"
        return "hi"
    """
)


# ---- Flags.


def test_every_limit_is_a_cli_flag() -> None:
    cli = build_parser()
    assert (
        Limits(
            **{
                f.name: getattr(cli.parse_args(["m:app"]), f.name)
                for f in dataclasses.fields(Limits)
            }
        )
        == Limits()
    )
    help_text = cli.format_help()
    for spec in dataclasses.fields(Limits):
        flag = "--" + spec.name.replace("_", "-")
        assert flag in help_text
        default = getattr(Limits(), spec.name)
        value = "2.5" if isinstance(default, float) else "12345"
        args = cli.parse_args(["m:app", flag, value])
        assert getattr(args, spec.name) == type(default)(value), flag


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--drain-timeout", "abc"], "argument --drain-timeout: expected a number, not 'abc'"),
        (
            ["--max-connections", "1.5"],
            "argument --max-connections: expected a whole number, not '1.5'",
        ),
        (
            ["--keep-alive-timeout", "-1"],
            "argument --keep-alive-timeout: must be 0 or more, not -1",
        ),
        (
            ["--min-request-body-rate", "nan"],
            "argument --min-request-body-rate: expected a number, not 'nan'",
        ),
        (["--keep-alive-timeout", "0"], "--keep-alive-timeout must be more than 0"),
        (
            ["--max-request-buffer-size", "100"],
            "--max-request-buffer-size must be at least 8192 bytes",
        ),
        (["--metrics-path", "metrics"], "--metrics-path must start with '/', not 'metrics'"),
    ],
)
def test_bad_values_are_one_line_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nosuchmodule:app", *args])  # refused before the app is imported
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1] == f"kestrel: error: {message}"


def test_bad_value_exits_2_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kestrel", "nosuchmodule:app", "--drain-timeout", "soon"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "kestrel: error: argument --drain-timeout: expected a number, not 'soon'"
    )
    assert "Traceback" not in result.stderr


# ---- A real process.


@contextmanager
def cli_process(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (tmp_path / "contract_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with cli_server("contract_app:app", *args, cwd=tmp_path, env=env) as started:
        yield started


def prometheus(client: WireClient) -> dict[str, float]:
    client.send(request("GET", "/metrics"))
    response = client.response()
    assert response.status == 200
    values: dict[str, float] = {}
    for line in response.body.decode().splitlines():
        if not line.startswith("#"):
            assert PROMETHEUS_LINE.match(line), line
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(tmp_path: Path) -> None:
    with (
        cli_process(
            tmp_path,
            "--metrics-path",
            "/metrics",
            "--request-headers-timeout",
            "0.5",
            "--graceful-timeout",
            "10",
            "--no-access-log",
        ) as (process, port),
        WireClient(port) as idle,
        WireClient(port) as slow,
        WireClient(port) as partial,
        WireClient(port) as observer,
    ):
        idle.send(request("GET", "/"))
        assert idle.response().body == b"hi"
        # A limit given as a flag reaches the engine: a partial head gets its 408 in time.
        partial.send(b"GET / HTTP/1.1\r\n")
        start = time.monotonic()
        assert partial.response().status == 408
        assert time.monotonic() - start < 1.5
        slow.send(request("GET", "/slow"))
        deadline = time.monotonic() + 3
        while prometheus(observer)["kestrel_requests_active"] < 2:  # /slow and /metrics
            assert time.monotonic() < deadline, "/slow never started"
            time.sleep(0.05)
        sent = time.monotonic()

        process.send_signal(signal.SIGTERM)
        # The idle keep-alive connections close at once.
        assert idle.at_eof(1.0)
        assert observer.at_eof(1.0)
        assert time.monotonic() - sent < 1.0
        # Nothing new is accepted.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        # The request in flight completes, and says the connection closes.
        response = slow.response()
        assert (response.status, response.body, response.closes) == (200, b"slow done", True)
        assert slow.at_eof(2.0)
        slow.close()  # as any client does on EOF; the server's lingering close waits for it
        assert process.wait(timeout=5) == 0
    assert time.monotonic() - sent < 2 + 2


def test_metrics_path_from_the_command_line(tmp_path: Path) -> None:
    with cli_process(tmp_path, "--metrics-path", "/metrics") as (process, port):
        with WireClient(port) as client:
            client.send(request("GET", "/"))
            assert client.response().status == 200
            values = prometheus(client)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    assert values["kestrel_requests_total"] == 2
    assert values["kestrel_connections_active"] == 1
    assert values['kestrel_connection_ends_total{reason="shutdown"}'] == 0
    assert values["kestrel_bytes_read_total"] >= 2 * len(request("GET", "/"))
