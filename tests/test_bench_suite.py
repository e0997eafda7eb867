"""kestrel-bench suite and serve: the benchmark app's contract (kestrel over loopback, the bare
ASGI peer app in-process), --only, a tiny real suite run and its three files, Ctrl-C leaving no
process behind, and serve."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kestrel import serve_in_thread
from kestrel.bench import bench_app, scenarios, servers, suite
from kestrel.bench.procfs import process_tree

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")


# ---- The contract, as cases every flavor must answer alike.


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes
    check: Callable[[Answer], None]


def _is(status: int, content_type: str, body: bytes) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.status == status
        assert answer.headers["content-type"].startswith(content_type)
        assert answer.body == body
        assert answer.headers["x-mw"] == "1"  # the one middleware, on every response

    return check


def _json(expected: object) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert json.loads(answer.body) == expected
        assert answer.headers["x-mw"] == "1"

    return check


def _download(size: int) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-length"] == str(size)
        assert answer.body == b"\0" * size

    return check


def _not_found(answer: Answer) -> None:
    assert answer.status == 404


UPLOAD = bytes(range(256)) * 1200  # 300 KiB: several pieces on every server
CASES = [
    Case("GET", "/", b"", _is(200, "text/plain", b"Hello, World!")),
    Case("GET", "/json", b"", _json({"message": "Hello, World!"})),
    Case("GET", "/users/42?q=hello", b"", _json({"id": 42, "q": "hello"})),
    Case("GET", "/users/7", b"", _json({"id": 7, "q": None})),
    Case("GET", "/users/seven", b"", _not_found),
    Case("POST", "/echo", UPLOAD, _is(200, "application/octet-stream", UPLOAD)),
    Case("POST", "/upload", UPLOAD, _is(200, "text/plain", str(len(UPLOAD)).encode())),
    Case("GET", "/download?bytes=200005", b"", _download(200005)),
    Case("GET", "/download?bytes=0", b"", _download(0)),
    Case("POST", "/early", b"x" * (1 << 20), _is(200, "text/plain", b"early")),
]


def _ids(case: Case) -> str:
    return f"{case.method} {case.path}"


@pytest.fixture(scope="module")
def kestrel_port() -> Iterator[int]:
    with serve_in_thread(bench_app.app, port=0) as server:
        yield server.port


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_the_kestrel_bench_app_keeps_the_contract(kestrel_port: int, case: Case) -> None:
    request = (
        f"{case.method} {case.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(case.body)}\r\n\r\n"
    ).encode() + case.body
    status, headers, body = scenarios.exchange("127.0.0.1", kestrel_port, request, 10.0)
    case.check(Answer(status, headers, body))


def test_every_load_scenario_checks_out_on_kestrel(kestrel_port: int) -> None:
    for scenario in scenarios.LOAD:
        assert scenario.check_answer("127.0.0.1", kestrel_port) is None, scenario.name


# ---- The bare ASGI app, driven in-process (no ASGI server in the test environment).


def _asgi_module() -> ModuleType:
    path = servers.PEER_APPS / "asgi_app.py"
    spec = importlib.util.spec_from_file_location("bench_asgi_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _call_asgi(app: Any, case: Case) -> tuple[Answer, int]:
    """(the answer, how many body messages the app read) of one request, body sent in
    64 KiB messages as a server would."""
    path, _, query = case.path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": case.method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"content-length", str(len(case.body)).encode())],
    }
    pieces = [case.body[i : i + 65536] for i in range(0, len(case.body), 65536)] or [b""]
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[read - 1], "more_body": read < len(pieces)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    assert all(m["type"] == "http.response.body" for m in bodies)
    assert not bodies[-1].get("more_body", False)
    assert all(m.get("more_body") for m in bodies[:-1])
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in bodies)
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body)
    return Answer(start["status"], headers, body), read


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_the_asgi_peer_app_keeps_the_contract(case: Case) -> None:
    answer, read = asyncio.run(_call_asgi(_asgi_module().app, case))
    case.check(answer)
    if case.path == "/early":
        assert read == 0  # answered without reading the body


def test_the_asgi_download_is_sent_in_64k_pieces() -> None:
    app = _asgi_module().app
    sizes: list[int] = []

    async def run() -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sizes.append(len(message["body"]))

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/download",
            "query_string": b"bytes=200005",
        }
        await app(scope, receive, send)

    asyncio.run(run())
    assert sizes == [65536, 65536, 65536, 200005 - 3 * 65536]


def test_the_peer_apps_import_no_kestrel_and_no_framework() -> None:
    for path in servers.PEER_APPS.glob("*.py"):
        text = path.read_text()
        for name in ("kestrel", "starlette", "fastapi"):
            assert f"import {name}" not in text and f"from {name}" not in text, path.name


# ---- --only, and what a server cannot do.


def test_only_takes_servers_and_scenarios_in_any_mix() -> None:
    assert suite.parse_only(["uvicorn,kestrel", "json", "plaintext-keepalive"]) == (
        ("kestrel", "uvicorn"),
        ("plaintext-keepalive", "json"),
    )
    everything = suite.parse_only([])
    assert everything == (tuple(servers.CONTENDERS), tuple(scenarios.SCENARIOS))
    assert suite.parse_only(["nginx"])[1] == tuple(scenarios.SCENARIOS)


def _bench(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kestrel.bench", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--only", "kestrel,bogus"), "'bogus' is neither a server"),
        (("--only", "plaintext"), "'plaintext' is neither a server"),
        (("--duration", "soon"), "is not a number of seconds"),
        (("--duration", "0"), "--duration must be more than 0"),
        (("--peer-python", "/no/such/python"), "not an executable"),
    ],
)
def test_bad_suite_flags_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = _bench("suite", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_what_nginx_and_socketify_cannot_do_is_said() -> None:
    nginx = servers.CONTENDERS["nginx"]
    reasons = {s: suite._unsupported(nginx, s) for s in scenarios.SCENARIOS}
    assert reasons["plaintext-keepalive"] is None and reasons["early-8m"] is None
    for name in ("route", "echo-64k", "transfer-1g"):
        assert reasons[name], name
    assert all(suite._unsupported(servers.CONTENDERS["uvicorn"], s) is None for s in reasons)
    socketify = servers.CONTENDERS["socketify"]
    assert "Content-Length" in (suite._unsupported(socketify, "transfer-1g") or "")
    assert suite._unsupported(socketify, "echo-64k") is None


# ---- A real suite run, small.


def test_a_tiny_suite_writes_the_table_the_json_and_the_chart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _bench(
        "suite",
        "--only", "kestrel,uvicorn",
        "--only", "plaintext-keepalive,route",
        "--warmup", "0.1", "--duration", "0.4",
        # An interpreter without uvicorn: its cells must say so, not vanish.
        "--peer-python", sys.executable,
        "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress bar
    data = json.loads((out / "results.json").read_text())
    kestrel_cell = data["cells"]["plaintext-keepalive"]["kestrel"]
    assert kestrel_cell["rate"] > 100 and kestrel_cell["p99_us"] > 0
    assert kestrel_cell["failed"] is None and kestrel_cell["errors"] == 0
    assert data["cells"]["route"]["kestrel"]["rate"] > 100
    assert data["cells"]["route"]["uvicorn"]["failed"].startswith("not available here")
    assert data["machine"]["cpu"] and data["servers"]["kestrel"]["version"].startswith("kestrel")
    # The server ran on its own core, not the generator's (it once inherited the generator's).
    assert data["servers"]["kestrel"]["cores"] == [data["server_core"]]
    if len(os.sched_getaffinity(0)) > 1:
        assert data["server_core"] != data["generator_core"]
    markdown = (out / "results.md").read_text()
    assert "| plaintext, keep-alive | **" in markdown
    assert "not available here" in markdown and "CPU:" in markdown
    assert "kestrel-bench suite --only kestrel,uvicorn" in markdown
    svg = ElementTree.parse(out / "chart.svg").getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "plaintext, keep-alive" in texts and "requests per second" in texts
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}rect"))) >= 3  # page + 2 kestrel bars
    assert "| plaintext, keep-alive |" in done.stdout


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_suite_leaves_no_server_behind(tmp_path: Path, signum: int) -> None:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "kestrel.bench", "suite",
            "--only", "kestrel", "--only", "plaintext-keepalive",
            "--warmup", "0", "--duration", "30", "--out", str(tmp_path),
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        server_pids: list[int] = []
        while not server_pids:
            assert time.monotonic() < deadline, "the suite started no server"
            assert process.poll() is None, process.communicate()
            server_pids = process_tree(process.pid)[1:]
            time.sleep(0.05)
        time.sleep(0.5)  # under load now
        process.send_signal(signum)
        try:
            _out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # Seen once in CI, never since: make the suite say where it is stuck. With
            # PYTHONFAULTHANDLER set, SIGABRT prints every thread's stack before it dies.
            process.send_signal(signal.SIGABRT)
            _out, err = process.communicate(timeout=10)
            for pid in server_pids:  # the suite died without stopping them
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the suite did not stop within 20 s of the signal:\n{err[-4000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "interrupted" in err
    assert not [pid for pid in server_pids if _alive(pid)]
    assert not (tmp_path / "results.json").exists()


# ---- kestrel-bench serve.


def test_serve_serves_the_app_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kestrel.bench", "serve", "--port", "0"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "the benchmark app on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        servers.check_hello(port)
        assert scenarios.LOAD[3].check_answer("127.0.0.1", port) is None  # the route
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
