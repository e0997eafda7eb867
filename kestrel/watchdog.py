"""The watchdog: a warning when something holds the event loop too long.

A blocking call in an ``async def`` handler stalls every connection the process serves. The
engine's selector records when the loop came back from ``epoll_wait`` (``busy_since``, 0.0
while it waits). This thread looks at that a few times per threshold; when one pass of the
loop has run longer than the threshold, it logs one warning naming the route being served
(found on the loop thread's stack) and the line the loop is stuck on.

Nothing is done per request or per callback: the cost is one clock read per loop iteration
in the selector and this thread waking up, which it does only while the loop runs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import FrameType
from typing import Any

log = logging.getLogger("kestrel.watchdog")

DEFAULT_THRESHOLD = 0.1  # seconds


class Watchdog:
    def __init__(self, selector: Any, loop_thread: int, threshold: float = DEFAULT_THRESHOLD):
        if threshold <= 0:
            raise ValueError("the blocking threshold must be more than 0 seconds")
        self.selector = selector
        self.loop_thread = loop_thread
        self.threshold = threshold
        self.reported = 0.0  # busy_since of the last pass reported, so each is reported once
        self.warnings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kestrel-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        interval = self.threshold / 4
        while not self._stop.wait(interval):
            since = self.selector.busy_since
            if since and since != self.reported and time.monotonic() - since > self.threshold:
                self.reported = since
                self._report(time.monotonic() - since)

    def _report(self, held: float) -> None:
        frame = sys._current_frames().get(self.loop_thread)
        if frame is None:
            return
        self.warnings += 1
        route, where = describe(frame)
        log.warning(
            "the event loop has been held for %.0f ms (threshold %.0f ms)%s; at %s. Blocking "
            "code stalls every connection: await it, or make the handler a plain def (it then "
            "runs in the thread pool)",
            held * 1000,
            self.threshold * 1000,
            f" by route {route}" if route else "",
            where,
        )


def describe(frame: FrameType) -> tuple[str | None, str]:
    """(route being served, innermost line of the project's or the user's code)."""
    from kestrel.app import App

    dispatch_code = App._dispatch.__code__
    innermost = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
    route = None
    current: FrameType | None = frame
    while current is not None:
        if current.f_code is dispatch_code:
            request = current.f_locals.get("request")
            if request is not None:
                route = f"{request.method} {getattr(request, 'route', None) or request.path}"
            break
        current = current.f_back
    return route, innermost
