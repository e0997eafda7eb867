"""The suite's progress bar: one terminal line with the server, the scenario, the share of the
whole suite done and the time left.

The suite is a sequence of steps whose length is planned in advance (a load cell's warm-up and
duration, a heavy scenario's budget, a second per server start). The share done is planned
seconds behind us (a step in progress counts for the time it has run, up to its plan) over
all planned seconds; the time left is the planned seconds ahead, scaled by how the actual
time has compared with the plan so far. A thread redraws the line twice a second, so the bar
moves during a long step too. Disabled (not a terminal), it draws nothing.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

WIDTH = 24  # cells of the bar itself


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressBar:
    def __init__(self, total_planned: float, *, enabled: bool) -> None:
        self.total = max(total_planned, 1e-9)
        self.enabled = enabled
        self.done = 0.0  # planned seconds of the finished steps
        self.step_planned = 0.0
        self.step_started: float | None = None
        self.label = "starting"
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            sys.stderr.write("\r" + " " * (shutil.get_terminal_size().columns - 1) + "\r")
            sys.stderr.flush()

    @contextmanager
    def step(self, server: str, scenario: str, planned: float) -> Iterator[None]:
        with self._lock:
            self.label = f"{server} · {scenario}"
            self.step_planned = planned
            self.step_started = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.done += planned
                self.step_started = None
            self.draw()

    def skip(self, planned: float) -> None:
        """A step that will not run (unsupported, or its server is not there)."""
        with self._lock:
            self.total -= planned
            self.total = max(self.total, self.done, 1e-9)

    def fraction(self) -> tuple[float, float]:
        """(share of the suite done, seconds left)."""
        with self._lock:
            now = time.monotonic()
            running = 0.0
            if self.step_started is not None:
                running = min(now - self.step_started, self.step_planned)
            behind = self.done + running
            elapsed = now - self.started
            pace = elapsed / behind if behind > 5 else 1.0
            return min(1.0, behind / self.total), max(0.0, self.total - behind) * pace

    def line(self) -> str:
        share, left = self.fraction()
        filled = int(share * WIDTH)
        bar = "█" * filled + "░" * (WIDTH - filled)
        return f"[{bar}] {share * 100:3.0f}%  {self.label}  ~{format_eta(left)} left"

    def draw(self) -> None:
        if not self.enabled:
            return
        columns = shutil.get_terminal_size().columns
        text = self.line()[: columns - 1]
        sys.stderr.write("\r" + text.ljust(columns - 1))
        sys.stderr.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self.draw()
