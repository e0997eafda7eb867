"""Server metrics in the Prometheus text exposition format (what --metrics-path serves)."""

from __future__ import annotations

from typing import Any

# name in the snapshot -> (metric name, type, help)
_SIMPLE = {
    "connections_active": ("kestrel_connections_active", "gauge", "Open connections."),
    "connections_total": ("kestrel_connections_total", "counter", "Connections accepted."),
    "connections_rejected": (
        "kestrel_connections_rejected_total",
        "counter",
        "Connections closed because their request was refused (400, 413, 414, 431, 501, 505).",
    ),
    "requests_total": ("kestrel_requests_total", "counter", "Requests started."),
    "requests_active": ("kestrel_requests_active", "gauge", "Requests being handled."),
    "responses_total": ("kestrel_responses_total", "counter", "Responses sent."),
    "bytes_read": ("kestrel_bytes_read_total", "counter", "Bytes received from clients."),
    "bytes_written": ("kestrel_bytes_written_total", "counter", "Bytes sent to clients."),
    "read_pauses": (
        "kestrel_read_pauses_total",
        "counter",
        "Times a connection stopped being read at the input high watermark.",
    ),
    "write_pauses": (
        "kestrel_write_pauses_total",
        "counter",
        "Times a connection's output waited on a slow reader.",
    ),
    "accept_pauses": (
        "kestrel_accept_pauses_total",
        "counter",
        "Times accepting stopped for a moment because the process was out of descriptors.",
    ),
    "drained_bodies": (
        "kestrel_drained_bodies_total",
        "counter",
        "Unread request bodies drained so the connection could be kept.",
    ),
    "drain_closes": (
        "kestrel_drain_closes_total",
        "counter",
        "Connections closed because an unread body could not be drained in time or budget.",
    ),
    "headers_timeouts": (
        "kestrel_headers_timeouts_total",
        "counter",
        "408s for a request head arriving too slowly.",
    ),
    "body_rate_aborts": (
        "kestrel_body_rate_aborts_total",
        "counter",
        "408s for a request body under the minimum rate.",
    ),
    "response_rate_aborts": (
        "kestrel_response_rate_aborts_total",
        "counter",
        "Connections aborted for reading a response under the minimum rate.",
    ),
    "keep_alive_timeouts": (
        "kestrel_keep_alive_timeouts_total",
        "counter",
        "Idle connections closed.",
    ),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(snapshot: dict[str, Any]) -> bytes:
    """The snapshot of Server.metrics() as Prometheus text format 0.0.4."""
    lines: list[str] = []
    for key, (name, kind, help_text) in _SIMPLE.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {snapshot[key]}"]
    name = "kestrel_connection_ends_total"
    lines += [
        f"# HELP {name} Connections closed, by the one reason each ended for.",
        f"# TYPE {name} counter",
    ]
    for reason, count in snapshot["connection_ends"].items():
        lines.append(f'{name}{{reason="{_escape(reason)}"}} {count}')
    name = "kestrel_rejections_total"
    lines += [
        f"# HELP {name} Requests refused by the parser or a limit, by reason.",
        f"# TYPE {name} counter",
    ]
    for reason, count in sorted(snapshot["rejections"].items()):
        lines.append(f'{name}{{reason="{_escape(reason)}"}} {count}')
    name = "kestrel_pool_blocks"
    lines += [
        f"# HELP {name} Blocks of the buffer pool (4 KiB each).",
        f"# TYPE {name} gauge",
        f'{name}{{state="in_use"}} {snapshot["pool_blocks_in_use"]}',
        f'{name}{{state="free"}} {snapshot["pool_blocks_free"]}',
    ]
    return ("\n".join(lines) + "\n").encode()
