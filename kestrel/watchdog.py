"""The watchdog: a warning when something holds the event loop too long.

A blocking call in an ``async def`` handler stalls every connection the process serves. The
engine's selector records when the loop came back from ``epoll_wait`` (``busy_since``, 0.0
while it waits). A native thread in the core (kestrel/watchdog.pxi) looks at that a few times
per threshold, without the GIL; when one pass of the loop has run longer than the threshold, it
takes the GIL and calls back here, once per pass, to log one warning naming the route being
served (found on the loop thread's stack) and the line the loop is stuck on.

Nothing is done per request or per callback: the cost is one clock read per loop iteration
in the selector, and a native thread waking up that never touches the interpreter while the
loop is healthy (a Python thread would take the GIL at every wake-up, and the loop would wait
for it back).
"""

from __future__ import annotations

import atexit
import logging
import sys
from types import FrameType
from typing import Any

from kestrel._core import LoopWatch

log = logging.getLogger("kestrel.watchdog")

DEFAULT_THRESHOLD = 0.1  # seconds

# Watchdogs started and not stopped yet. A server stops its own as it ends; any left at exit
# (a server abandoned in a daemon thread) are stopped before the interpreter finalizes, so
# their threads never try to take the GIL of an interpreter that is going away.
_running: set[Watchdog] = set()


@atexit.register
def _stop_all() -> None:
    for watchdog in list(_running):
        watchdog.stop()


class Watchdog:
    def __init__(self, selector: Any, loop_thread: int, threshold: float = DEFAULT_THRESHOLD):
        if threshold <= 0:
            raise ValueError("the blocking threshold must be more than 0 seconds")
        self.selector = selector
        self.loop_thread = loop_thread
        self.threshold = threshold
        self.warnings = 0
        self._watch = LoopWatch(selector, threshold, self._report)

    @property
    def passes(self) -> int:
        """How many times the thread has looked at the loop (without the GIL)."""
        return self._watch.passes

    @property
    def callbacks(self) -> int:
        """How many times the thread has taken the GIL: once per pass over the threshold."""
        return self._watch.callbacks

    def start(self) -> None:
        self._watch.start()
        _running.add(self)

    def stop(self) -> None:
        """Stop the thread and join it; it is woken at once, so this returns at once."""
        self._watch.stop()
        _running.discard(self)

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
