"""How a kestrel-bench run is shown: the summary a person reads, and the JSON a script reads."""

from __future__ import annotations

import json
from typing import Any

from kestrel.bench.run import Result

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def format_duration(microseconds: float) -> str:
    """A latency in the unit that keeps three significant digits readable."""
    if microseconds < 1000:
        return f"{microseconds:.0f} us"
    if microseconds < 1_000_000:
        return f"{microseconds / 1000:.2f} ms"
    return f"{microseconds / 1_000_000:.2f} s"


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.1f} {unit}" if unit != "B" else f"{count:,.0f} B"
        count /= 1000
    raise AssertionError("unreachable")


def summary(result: Result) -> str:
    o, c, h = result.options, result.counters, result.histogram
    mode = f"{o.rate:,.0f} req/s scheduled" if o.rate else "closed loop"
    lines = [
        f"{result.target.method} {result.target.url} ({result.target.address}): "
        f"{result.elapsed:.1f} s, {o.connections} connections, pipeline {o.pipeline}, "
        f"{result.loops} {'loop' if result.loops == 1 else 'loops'}, {mode}",
        "",
        f"  {result.rate:,.0f} req/s   ({result.requests:,} requests)",
        f"  {format_bytes(c['bytes_read'] / result.elapsed)}/s read, "
        f"{format_bytes(c['bytes_written'] / result.elapsed)}/s written",
        "",
    ]
    if h.count:
        names = [f"p{p:g}" for p in PERCENTILES] + ["max", "mean", "stdev"]
        values = [h.value_at_percentile(p) for p in PERCENTILES] + [h.max, h.mean, h.stdev]
        lines.append("  latency  " + "".join(f"{n:>10}" for n in names))
        lines.append("           " + "".join(f"{format_duration(v):>10}" for v in values))
        if o.rate:
            lines.append(
                "           (from each request's scheduled time: corrected for "
                "coordinated omission)"
            )
        lines.append("")
    errors = c["errors"]
    status = c["status"]
    lines.append(
        "  errors: "
        + ", ".join(f"{name} {errors[name]:,}" for name in errors)
        + f"; non-2xx responses {result.non_2xx:,}"
        + (
            " (" + ", ".join(f"{k} {v:,}" for k, v in status.items() if k != "2xx" and v) + ")"
            if result.non_2xx
            else ""
        )
    )
    if c["reconnects"]:
        lines.append(
            f"  reconnects: {c['reconnects']:,} ({c['closed_by_server']:,} closed by the server)"
        )
    return "\n".join(lines)


def as_dict(result: Result) -> dict[str, Any]:
    o, h = result.options, result.histogram
    return {
        "url": result.target.url,
        "address": result.target.address,
        "method": result.target.method,
        "options": {
            "connections": o.connections,
            "duration": o.duration,
            "requests": o.requests,
            "warmup": o.warmup,
            "pipeline": o.pipeline,
            "timeout": o.timeout,
            "rate": o.rate,
            "threads": result.loops,
        },
        "elapsed": result.elapsed,
        "requests_per_second": result.rate,
        **result.counters,
        "latency_us": {
            "min": h.min,
            "max": h.max,
            "mean": h.mean,
            "stdev": h.stdev,
            "percentiles": {f"{p:g}": h.value_at_percentile(p) for p in (*PERCENTILES, 99.99)},
            "histogram": h.to_dict(),
        },
    }


def as_json(result: Result) -> str:
    return json.dumps(as_dict(result), indent=2)
