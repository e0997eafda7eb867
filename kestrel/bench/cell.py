"""One cell of `kestrel-bench suite`'s table: what one scenario measured on one server.

A cell holds a rate and a p99 where the scenario has them (the load scenarios), named figures
where it measures something else (MB/s, peak RSS, KiB per idle connection), the errors seen,
and a note. A server that cannot do a scenario gets a cell too, with ``unsupported`` saying
why, so the table never leaves a peer out silently; a scenario that failed on a server says
so in ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Cell:
    rate: float | None = None  # requests per second
    p99_us: float | None = None  # microseconds
    figures: dict[str, float] = field(default_factory=dict)  # e.g. {"upload MB/s": 812.0}
    errors: int = 0  # connect, read, write, timeout and malformed, together
    non_2xx: int = 0
    note: str = ""  # what a reader should know about this figure
    unsupported: str | None = None  # why this server cannot run the scenario
    failed: str | None = None  # why the scenario did not complete on this server

    @property
    def ok(self) -> bool:
        return self.unsupported is None and self.failed is None

    def to_dict(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "p99_us": self.p99_us,
            "figures": dict(self.figures),
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "note": self.note,
            "unsupported": self.unsupported,
            "failed": self.failed,
        }
