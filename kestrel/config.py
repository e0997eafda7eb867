"""The request contract's limits: one place for every default, shared by the API and the CLI.

Each field is also a CLI flag, spelled with dashes (``max_drain_size`` is
``--max-drain-size``). Sizes are bytes, times are seconds, rates are bytes per second;
fractions are allowed for times and rates. The defaults follow ASP.NET Core Kestrel's
KestrelServerLimits unless noted (precedents in kestrel/consts.pxi).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limits"]


def _limit(default: Any, help: str, *, zero_disables: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "zero_disables": zero_disables})


@dataclass(frozen=True)
class Limits:
    """What one connection or request may take from the server, and for how long."""

    max_request_body_size: int = _limit(
        30_000_000,
        "largest request body; a larger Content-Length is refused with 413 "
        "before it is read (routes may override)",
    )
    max_request_line_size: int = _limit(8192, "longest request line (414)")
    max_request_headers_size: int = _limit(32768, "largest header section (431)")
    max_request_headers: int = _limit(100, "most header fields (431)")
    max_request_buffer_size: int = _limit(
        1 << 20, "input held per connection before reading pauses (resumes at half)"
    )
    max_response_buffer_size: int = _limit(
        64 << 10, "unsent output per connection before a writer waits (resumes at half)"
    )
    keep_alive_timeout: float = _limit(130.0, "idle time before a keep-alive connection closes")
    request_headers_timeout: float = _limit(
        30.0, "time for a request head to arrive, from its first byte (then 408)"
    )
    min_request_body_rate: float = _limit(
        240.0,
        "slowest request body accepted, counted only while the handler waits for it (then 408)",
        zero_disables=True,
    )
    min_response_rate: float = _limit(
        240.0,
        "slowest client read of a response, counted only while output is blocked "
        "(then the connection is aborted)",
        zero_disables=True,
    )
    min_rate_grace: float = _limit(5.0, "time before the minimum rates apply")
    drain_timeout: float = _limit(
        5.0,
        "time to drain a body the handler left unread before closing instead",
        zero_disables=True,
    )
    max_drain_size: int = _limit(
        256 << 10,
        "most bytes of an unread body drained to keep the connection (Go's "
        "net/http drains 256 KiB)",
        zero_disables=True,
    )
    max_connections: int = _limit(
        0, "most open connections; further ones wait in the listen backlog", zero_disables=True
    )
    backlog: int = _limit(2048, "listen backlog (the kernel caps it at somaxconn)")
    graceful_timeout: float = _limit(
        30.0, "on SIGTERM/SIGINT, time for requests in flight to finish"
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

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for the engine (kestrel._core.HttpServer)."""
        return {
            "max_request_line_size": self.max_request_line_size,
            "max_request_headers_size": self.max_request_headers_size,
            "max_request_headers": self.max_request_headers,
            "max_request_body_size": self.max_request_body_size,
            "max_request_buffer_size": self.max_request_buffer_size,
            "max_response_buffer_size": self.max_response_buffer_size,
            "keep_alive_timeout": self.keep_alive_timeout,
            "request_headers_timeout": self.request_headers_timeout,
            "min_request_body_rate": self.min_request_body_rate,
            "min_response_rate": self.min_response_rate,
            "min_rate_grace": self.min_rate_grace,
            "drain_timeout": self.drain_timeout,
            "max_drain_size": self.max_drain_size,
            "max_connections": self.max_connections,
        }
