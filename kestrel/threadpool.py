"""The thread pool that blocking code runs in: plain ``def`` handlers (and, later, WSGI apps).

A host owns one ``ThreadPool``. The executor behind it is created on the first call, so an
app whose handlers are all ``async def`` never starts a thread, and it is bounded by
``max_threads``: a burst of blocking requests queues for a thread rather than starting one
each. ``shutdown()`` (the host's shutdown, after the last connection closed) drops the queue
and does not wait for threads still running; a later call starts a new pool, as a restarted
app does.

Each call runs in a copy of the caller's context, so context variables a middleware set are
seen by the blocking code, as they are by ``async def`` handlers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DEFAULT_THREADS", "ThreadPool"]

T = TypeVar("T")

# What the pool defaults to: anyio's (Starlette's) default of 40 threads.
DEFAULT_THREADS = 40


class ThreadPool:
    """A lazily created, bounded ThreadPoolExecutor that runs calls from the event loop."""

    def __init__(self, max_threads: int = DEFAULT_THREADS, *, name: str = "kestrel") -> None:
        self.max_threads = max_threads
        self.name = name  # the threads' name prefix
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``await pool.run(func, *args, **kwargs)``: call `func` in a pool thread."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                self.max_threads, thread_name_prefix=self.name
            )
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def shutdown(self) -> None:
        """Drop the queued calls and let the running ones finish on their own."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
