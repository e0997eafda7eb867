"""What kestrel-bench sends, and where: the URL resolved and the request built once, as bytes.

The load generator (kestrel/load_generator.pxi) repeats these bytes unchanged, so everything
a user can get wrong here (the URL, a header, the body) is checked before any load starts,
with one clear line.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = re.compile(rb"^[\t\x20-\x7e\x80-\xff]*$")


class TargetError(ValueError):
    """A URL, header or body kestrel-bench cannot send: its message is the line shown."""


@dataclass(frozen=True)
class Target:
    url: str
    host: str  # as resolved: the address connected to
    port: int
    family: int
    sockaddr: bytes  # packed sockaddr_in / sockaddr_in6, as connect() takes it
    request: bytes
    method: str

    @property
    def address(self) -> str:
        return (
            f"[{self.host}]:{self.port}"
            if self.family == socket.AF_INET6
            else (f"{self.host}:{self.port}")
        )


def parse_url(url: str) -> tuple[str, int, str, str]:
    """(host, port, request-target, Host header value) of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise TargetError(f"{url}: https is not supported (kestrel-bench speaks plain HTTP/1.1)")
    if parts.scheme != "http":
        raise TargetError(f"{url}: the URL must start with http://")
    try:
        port = parts.port or 80
    except ValueError:
        raise TargetError(f"{url}: the port is not a number from 0 to 65535") from None
    host = parts.hostname
    if not host:
        raise TargetError(f"{url}: the URL has no host")
    if parts.fragment:
        raise TargetError(f"{url}: a URL sent to a server has no #fragment")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if any(c in target for c in " \r\n\t\0"):
        raise TargetError(f"{url}: the path has a space or a control character")
    authority = parts.netloc.rpartition("@")[2]
    return host, port, target, authority


def resolve(host: str, port: int) -> tuple[int, str, bytes]:
    """(family, numeric address, packed sockaddr) of the first TCP address of `host`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    address = str(sockaddr[0])
    if family == socket.AF_INET:
        packed = (
            struct.pack("=H", socket.AF_INET)
            + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, address)
            + bytes(8)
        )
    elif family == socket.AF_INET6:
        packed = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", port, sockaddr[2])  # type: ignore[misc]
            + socket.inet_pton(socket.AF_INET6, address)
            + struct.pack("=I", sockaddr[3])  # type: ignore[misc]
        )
    else:  # pragma: no cover - getaddrinfo with SOCK_STREAM gives only these two
        raise TargetError(f"{host!r}: address family {family} is not supported")
    return int(family), address, packed


def parse_header(text: str) -> tuple[bytes, bytes]:
    """'Name: value' from --header, checked as the server would check it."""
    name, sep, value = text.partition(":")
    raw_name, raw_value = name.encode("latin-1", "replace"), value.strip().encode("latin-1")
    if not sep or not _TOKEN.match(raw_name):
        raise TargetError(f"--header {text!r}: expected 'Name: value' with a valid field name")
    if not _FIELD_VALUE.match(raw_value):
        raise TargetError(f"--header {text!r}: the value has a control character")
    lowered = raw_name.lower()
    if lowered in (b"content-length", b"transfer-encoding"):
        raise TargetError(f"--header {text!r}: the body's length is set from --body")
    return raw_name, raw_value


def build_request(
    method: str, target: str, authority: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The request's bytes: request line, Host (unless given), the headers, the body."""
    if not _TOKEN.match(method.encode("latin-1", "replace")):
        raise TargetError(f"--method {method!r}: not a valid method name")
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    if not any(name.lower() == b"host" for name, _ in headers):
        lines.append(b"Host: " + authority.encode("idna"))
    lines.extend(name + b": " + value for name, value in headers)
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def make_target(
    url: str, method: str = "GET", headers: list[str] | None = None, body: bytes = b""
) -> Target:
    host, port, request_target, authority = parse_url(url)
    parsed = [parse_header(h) for h in headers or []]
    if method == "HEAD" and body:
        raise TargetError("--body: a HEAD request has no body")
    request = build_request(method, request_target, authority, parsed, body)
    family, address, packed = resolve(host, port)
    return Target(url, address, port, family, packed, request, method)


def check_reachable(target: Target, timeout: float) -> None:
    """One blocking connect before the load starts, so a wrong port is one clear line."""
    with socket.socket(target.family, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(socket.getaddrinfo(target.host, target.port)[0][4])
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise TargetError(f"cannot connect to {target.address}: {reason}") from None
