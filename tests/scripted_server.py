"""A tiny HTTP/1.1 server whose every answer is scripted, for testing the load generator: the
n-th request (counted over all connections) gets whatever `answer(n)` says, including
malformed bytes, a close, or a delay. Threads and blocking sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Answer:
    data: bytes
    close: bool = False  # close the connection after sending it
    delay: float = 0.0  # seconds before sending it


def ok(body: bytes = b"ok", status: int = 200, extra: bytes = b"") -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 500: b"Internal Server Error"}.get(status, b"X")
    return b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        reason,
        len(body),
        extra,
        body,
    )


class ScriptedServer:
    def __init__(self, answer: Callable[[int], Answer]) -> None:
        self.answer = answer
        self.count = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port: int = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.stopping = False
        self.threads: list[threading.Thread] = []

    def serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            thread = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def handle(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while not self.stopping:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                with self.lock:
                    index = self.count
                    self.count += 1
                answer = self.answer(index)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    conn.sendall(answer.data)
                except OSError:
                    return
                if answer.close:
                    return

    def stop(self) -> None:
        self.stopping = True
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@contextmanager
def scripted_server(answer: Callable[[int], Answer]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(answer)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)
