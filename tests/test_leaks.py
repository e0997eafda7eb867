"""Leak checks for the parser.

A debug build (KESTREL_DEBUG=1) counts every parser, RequestHead and line buffer it allocates
and frees; the first test builds one in a scratch copy of the tree and asserts the counts
balance after a workload that touches every path (split lines, bodies, chunked trailers,
errors, EOF). The second checks the release build in this process with tracemalloc: parsing
the same requests many times must not grow memory.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

from kestrel._core import CLOSED, NEED_DATA, PAUSED, HttpParseError, HttpParser

ROOT = Path(__file__).resolve().parents[1]

WORKLOAD = [
    b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nX-Custom-Header: y\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;ext="q"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n',
    b"GET / HTTP/1.1\r\nHost: a\r\nX: bad\x00value\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe",
]


def run_workload(rounds: int) -> int:
    """Parse every request whole and split in two, `rounds` times; return events seen."""
    events = 0
    for _ in range(rounds):
        for raw in WORKLOAD:
            for cut in (len(raw), len(raw) // 2, 7):
                parser = HttpParser()
                parser.feed(raw[:cut])
                parser.feed(raw[cut:])
                parser.feed_eof()
                try:
                    while True:
                        event = parser.next_event()
                        events += 1
                        if event is NEED_DATA or event is PAUSED or event is CLOSED:
                            break
                except HttpParseError:
                    events += 1
    return events


def test_debug_build_counters_balance(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copytree(
        ROOT / "kestrel",
        tree / "kestrel",
        ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"),
    )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copy(Path(__file__), tree / "leak_workload.py")
    env = dict(os.environ, KESTREL_DEBUG="1")
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"debug build failed:\n{build.stderr[-3000:]}"

    assert (tree / "kestrel" / "_core.html").exists(), "debug build writes the annotation"
    script = textwrap.dedent(
        """
        import gc, json
        import kestrel._core as core
        from leak_workload import run_workload
        assert core.DEBUG_BUILD
        events = run_workload(20)
        gc.collect()
        print(json.dumps({"events": events, "counters": core.debug_counters()}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tree,
        env=dict(env, PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    counters = report["counters"]
    assert report["events"] > 1000
    assert counters["parser_alloc"] == counters["parser_free"] == 20 * len(WORKLOAD) * 3
    assert counters["request_head_alloc"] == counters["request_head_free"] > 0
    assert counters["line_buffer_alloc"] == counters["line_buffer_free"] > 0


def test_release_build_does_not_grow() -> None:
    run_workload(50)  # warm caches and freelists
    gc.collect()
    tracemalloc.start()
    try:
        run_workload(50)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        run_workload(500)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 500 rounds are 9,000 parsers and ~30,000 objects; a leak of even one object per parse
    # would show as hundreds of KiB.
    assert after - before < 16 * 1024, f"memory grew by {after - before} bytes"
