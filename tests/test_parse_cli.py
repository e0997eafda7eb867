"""kestrel-parse, the README's demo command: what it prints and how it exits."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.parse_cli import describe, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_file_prints_each_request_and_succeeds() -> None:
    out = io.BytesIO()
    assert describe((EXAMPLES / "requests.http").read_bytes(), out) == 0
    text = out.getvalue().decode()
    assert "GET /index.html?lang=en HTTP/1.1" in text
    assert "  accept-language: en-US,en;q=0.9" in text
    assert "[chunked, keep-alive]" in text
    assert "  body: 11 bytes" in text
    assert "  trailer x-checksum: 12ab" in text


def test_smuggling_attempt_is_refused_with_status() -> None:
    out = io.BytesIO()
    assert describe((EXAMPLES / "smuggling.http").read_bytes(), out) == 1
    assert out.getvalue().endswith(b"rejected: 400 (CONTENT_LENGTH_WITH_TRANSFER_ENCODING)\n")


def test_incomplete_input_is_reported_as_such() -> None:
    out = io.BytesIO()
    assert describe(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc", out) == 1
    assert out.getvalue().endswith(b"rejected: 400 (INCOMPLETE_MESSAGE)\n")


def test_lf_to_crlf_turns_a_hand_written_file_into_a_request(tmp_path: Path) -> None:
    request = tmp_path / "hand.http"
    request.write_bytes(b"GET / HTTP/1.1\nHost: a\n\n")
    result = subprocess.run(
        [sys.executable, "-m", "kestrel.parse_cli", "--lf-to-crlf", str(request)],
        capture_output=True,
    )
    assert result.returncode == 0
    assert result.stdout.startswith(b"GET / HTTP/1.1\n  host: a\n")
    bare = subprocess.run(
        [sys.executable, "-m", "kestrel.parse_cli", str(request)], capture_output=True
    )
    assert bare.returncode == 1
    assert b"rejected: 400 (INVALID_LINE_ENDING)" in bare.stdout


def test_missing_file_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["/nonexistent/request.http"])
    assert exit_info.value.code == 2
    assert "cannot read /nonexistent/request.http: No such file or directory" in (
        capsys.readouterr().err
    )


def test_closed_pipe_ends_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "kestrel.parse_cli", str(EXAMPLES / "requests.http")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader goes away before anything is printed
        stderr = process.stderr.read()
        assert process.wait() == 0
    assert b"Traceback" not in stderr


def test_both_commands_are_installed() -> None:
    """README command 1 runs `kestrel`; `kestrel-parse` is the parser's tool."""
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("kestrel") == "kestrel.cli:main"
    assert scripts.get("kestrel-parse") == "kestrel.parse_cli:main"
