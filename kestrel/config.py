"""The request contract's limits: one place for every default, shared by the API and the CLI.

Each field is also a CLI flag, spelled with dashes (``max_drain_size`` is
``--max-drain-size``). Sizes are bytes, times are seconds, rates are bytes per second;
fractions are allowed for times and rates. The defaults are the core's (kestrel/consts.pxi,
each with its precedent: ASP.NET Core Kestrel's KestrelServerLimits unless noted).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kestrel import _core

__all__ = ["DEFAULT_BACKLOG", "Limits"]

DEFAULT_BACKLOG = 2048  # uvicorn's and hypercorn's default; the kernel caps it at somaxconn


def _limit(default: Any, help: str, *, zero_disables: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "zero_disables": zero_disables})


@dataclass(frozen=True)
class Limits:
    """What one connection or request may take from the server, and for how long."""

    max_request_body_size: int = _limit(
        _core.DEFAULT_MAX_REQUEST_BODY_SIZE,
        "largest request body; a larger Content-Length is refused with 413 "
        "before it is read (routes may override)",
    )
    max_request_line_size: int = _limit(
        _core.DEFAULT_MAX_REQUEST_LINE_SIZE, "longest request line (414)"
    )
    max_request_headers_size: int = _limit(
        _core.DEFAULT_MAX_REQUEST_HEADERS_SIZE, "largest header section (431)"
    )
    max_request_headers: int = _limit(_core.DEFAULT_MAX_REQUEST_HEADERS, "most header fields (431)")
    max_request_buffer_size: int = _limit(
        _core.DEFAULT_MAX_REQUEST_BUFFER_SIZE,
        "input held per connection before reading pauses (resumes at half)",
    )
    max_response_buffer_size: int = _limit(
        _core.DEFAULT_MAX_RESPONSE_BUFFER_SIZE,
        "unsent output per connection before a writer waits (resumes at half)",
    )
    max_kernel_unsent: int = _limit(
        _core.DEFAULT_MAX_KERNEL_UNSENT,
        "most bytes the kernel takes unsent per connection (TCP_NOTSENT_LOWAT; "
        "off: the kernel's default, megabytes for a stalled reader)",
        zero_disables=True,
    )
    keep_alive_timeout: float = _limit(
        _core.DEFAULT_KEEP_ALIVE_TIMEOUT, "idle time before a keep-alive connection closes"
    )
    request_headers_timeout: float = _limit(
        _core.DEFAULT_REQUEST_HEADERS_TIMEOUT,
        "time for a request head to arrive, from its first byte (then 408)",
    )
    min_request_body_rate: float = _limit(
        _core.DEFAULT_MIN_REQUEST_BODY_RATE,
        "slowest request body accepted, counted only while the handler waits for it (then 408)",
        zero_disables=True,
    )
    min_response_rate: float = _limit(
        _core.DEFAULT_MIN_RESPONSE_RATE,
        "slowest client read of a response, counted only while output is blocked "
        "(then the connection is aborted)",
        zero_disables=True,
    )
    min_rate_grace: float = _limit(
        _core.DEFAULT_MIN_RATE_GRACE, "time before the minimum rates apply"
    )
    drain_timeout: float = _limit(
        _core.DEFAULT_DRAIN_TIMEOUT,
        "time to drain a body the handler left unread before closing instead",
        zero_disables=True,
    )
    max_drain_size: int = _limit(
        _core.DEFAULT_MAX_DRAIN_SIZE,
        "most bytes of an unread body drained to keep the connection (Go's "
        "net/http drains 256 KiB)",
        zero_disables=True,
    )
    max_connections: int = _limit(
        0, "most open connections; further ones wait in the listen backlog", zero_disables=True
    )
    backlog: int = _limit(DEFAULT_BACKLOG, "listen backlog (the kernel caps it at somaxconn)")
    graceful_timeout: float = _limit(
        _core.DEFAULT_GRACEFUL_TIMEOUT,
        "on SIGTERM/SIGINT, time for requests in flight to finish",
    )

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{spec.name} must be a number, not {value!r}")
            if value < 0 or value != value:  # NaN is not a limit either
                raise ValueError(f"{spec.name} must be 0 or more, not {value!r}")
            if (
                value == 0
                and not spec.metadata["zero_disables"]
                and spec.name not in ("max_request_body_size",)
            ):
                raise ValueError(f"{spec.name} must be more than 0")
        if self.max_request_buffer_size < 8192:
            raise ValueError("max_request_buffer_size must be at least 8192 bytes")
        if self.max_response_buffer_size < 4096:
            raise ValueError("max_response_buffer_size must be at least 4096 bytes")
        if self.max_kernel_unsent > 2**31 - 1:
            raise ValueError("max_kernel_unsent must fit the kernel's int (at most 2**31 - 1)")
