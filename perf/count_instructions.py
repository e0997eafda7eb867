"""Instructions per request in the server, counted by callgrind while wrk drives it.

Wall-clock rates on this VM drift by 10-20 % from one minute to the next; callgrind's
instruction count does not. So an engine change is judged here by what it costs per request
(user space only: the kernel's share is not counted), before the rate benchmarks.

The server runs under ``valgrind --tool=callgrind`` (about 50x slower), so wrk's rate is
meaningless and only its request count is used. Counting is zeroed once the server answers its
first request (imports and startup excluded) and dumped when wrk is done:
instructions / requests is the figure, averaged over every request wrk completed.

    python perf/count_instructions.py                          # GET / pipelined, wrk's request
    python perf/count_instructions.py --headers browser        # the same with 9 header fields
    python perf/count_instructions.py --app perf.apps.framework:app --path '/users/42?q=hello'
    python perf/count_instructions.py --depth 1                # keep-alive, one at a time
    python perf/count_instructions.py --top 25                 # and the costliest functions

Needs valgrind (Debian's package) and wrk. The server runs from this checkout with the
current interpreter, so build the core first (release build).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "perf" / "pipeline.lua"
sys.path.insert(0, str(ROOT / "tests"))

from processes import free_port  # noqa: E402

# What a browser sends besides Host (Firefox 120 on a first visit, trimmed to 8 fields).
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
    "Accept-Encoding": "gzip, deflate, br",
    "Connection": "keep-alive",
    "Cookie": "session=abc123; theme=dark",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
}


def wait_for_first_answer(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # startup under callgrind takes a while
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer within 120 s") from None
            time.sleep(0.5)


def costliest(dump: Path, requests: int, top: int) -> list[str]:
    """The `top` functions by their own instructions, per request."""
    report = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+)", line)
        # Rows near 100 % are the frames that were on the stack when counting was zeroed
        # (the interpreter's main loop), not work done per request.
        if match and "PROGRAM TOTALS" not in line and float(match.group(2)) < 90:
            count = int(match.group(1).replace(",", ""))
            name = match.group(3).split("/")[-1].replace("__pyx_f_7kestrel_5_core_", "")
            rows.append(f"{count / requests:8.0f}  {name}")
        if len(rows) == top:
            break
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="perf.apps.plaintext:app")
    parser.add_argument("--path", default="/")
    parser.add_argument("--headers", choices=["wrk", "browser"], default="wrk")
    parser.add_argument("--depth", type=int, default=16, help="pipeline depth (1: keep-alive)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=8, help="wrk seconds")
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: valgrind, wrk)")

    port = free_port()
    url = f"http://127.0.0.1:{port}{args.path}"
    headers = BROWSER_HEADERS if args.headers == "browser" else {}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        log = directory / "server.log"
        server = subprocess.Popen(
            [
                *("valgrind", "--tool=callgrind", f"--callgrind-out-file={directory}/out.%p"),
                *(sys.executable, "-m", "kestrel", args.app, "--host", "127.0.0.1"),
                *("--port", str(port), "--no-access-log", "--log-level", "warning"),
            ],
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_for_first_answer(url, server, log)
            subprocess.run(
                ["callgrind_control", "--zero", str(server.pid)], check=True, capture_output=True
            )
            wrk = subprocess.run(
                [
                    *("wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s"),
                    # perf/pipeline.lua repeats wrk's request (-H fields included) depth times.
                    *(arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")),
                    *("-s", str(PIPELINE), url, "--", str(args.depth)),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            subprocess.run(
                ["callgrind_control", "--dump", str(server.pid)], check=True, capture_output=True
            )
        finally:
            server.terminate()
            server.wait(30)
        match = re.search(r"(\d+) requests in", wrk.stdout)
        if match is None:
            raise SystemExit(f"wrk printed no request count:\n{wrk.stdout}")
        requests = int(match.group(1))
        dumps = sorted(directory.glob("out.*.1"))
        if not dumps:
            raise SystemExit(f"callgrind wrote no dump:\n{log.read_text()}")
        totals = re.search(r"^summary:\s+(\d+)", dumps[0].read_text(), re.M)
        if totals is None:
            raise SystemExit("the callgrind dump has no summary line")
        instructions = int(totals.group(1))
        print(f"app {args.app}  path {args.path}  headers {args.headers}  depth {args.depth}")
        print(f"{requests} requests, {instructions / requests:,.0f} instructions per request")
        for row in costliest(dumps[0], requests, args.top) if args.top else []:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
