"""Running out of file descriptors: the server pauses accepting instead of spinning.

The server runs in a subprocess whose RLIMIT_NOFILE is tiny, so that more clients connect
than it can accept. Their connections wait in the backlog; the server must not burn CPU
while it cannot accept, and must serve them once descriptors are free again.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys
    import kestrel

    async def app(request):
        return "ok"

    async def main():
        server = kestrel.Server(app, port=0)
        task = asyncio.create_task(server.serve())
        while not server.started.is_set():
            await asyncio.sleep(0.01)
        # Few descriptors from here on: the listener, epoll and a handful of clients.
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
        print(server.port, flush=True)
        await task

    loop = kestrel.new_event_loop()
    loop.run_until_complete(main())
    """
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock.recv(4096)


def test_out_of_descriptors_pauses_accepting_and_recovers() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
            try:
                time.sleep(0.3)  # the server accepts what it can, then runs out
                before = cpu_seconds(server.pid)
                time.sleep(1.0)
                spent = cpu_seconds(server.pid) - before
                assert spent < 0.3, (
                    f"the server used {spent:.2f} s of CPU while it could not accept"
                )
                served = [c for c in clients[:20] if get(c).startswith(b"HTTP/1.1 200")]
                assert len(served) == 20
                for client in clients[:30]:
                    client.close()  # free descriptors in the server
                # The rest were waiting in the backlog: all of them are served now.
                for client in clients[30:]:
                    assert get(client).startswith(b"HTTP/1.1 200")
            finally:
                for client in clients:
                    client.close()
        finally:
            server.terminate()
            _, stderr = server.communicate(timeout=10)
    # One warning for the episode, not one per retry.
    assert stderr.count("accept() failed (Too many open files)") == 1, stderr
