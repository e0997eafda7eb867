"""The bundled middleware: CORS, gzip, trusted hosts and request ids.

Each is a class whose instances are middleware (``await instance(request, call_next)``); add
one with its options::

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["example.com", "*.example.com"])
    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example.com"])
    app.add_middleware(GZipMiddleware, minimum_size=1000)

The first added is the outermost: it sees the request first and the response last.
"""

from __future__ import annotations

import gzip
import re
import uuid
import zlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from kestrel._core import Response, StreamingResponse
from kestrel.datastructures import Headers, MutableHeaders
from kestrel.request import Request
from kestrel.types import AnyResponse, CallNext

__all__ = [
    "CORSMiddleware",
    "GZipMiddleware",
    "RequestIdMiddleware",
    "TrustedHostMiddleware",
]

_TEXT = "text/plain; charset=utf-8"


def add_vary(headers: MutableHeaders, name: str) -> None:
    """Add `name` to the Vary header unless it (or ``*``) is already there."""
    tokens = [token.strip() for value in headers.getlist("vary") for token in value.split(",")]
    tokens = [token for token in tokens if token]
    lowered = {token.lower() for token in tokens}
    if name.lower() in lowered or "*" in lowered:
        return
    headers["vary"] = ", ".join([*tokens, name])


def _check_strings(name: str, values: Iterable[str]) -> tuple[str, ...]:
    # A bare string is iterable too: allow_origins="https://a.example" would otherwise
    # silently become a list of one-character origins.
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, not a single {type(values).__name__}")
    return tuple(values)


# ---- CORS.

ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
# Request headers a browser sends without asking (the Fetch standard's CORS-safelisted ones).
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})


class CORSMiddleware:
    """Cross-Origin Resource Sharing, with Starlette's options and behaviour.

    - A request without ``Origin`` passes through untouched.
    - A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
      answered here, without reaching the handler: 200 ``OK`` when the origin, the method and
      every requested header are allowed, otherwise 400 with a text body naming what was
      refused (``Disallowed CORS origin, method``).
    - Any other request with ``Origin`` runs as usual; its response gets
      ``Access-Control-Allow-Origin`` when the origin is allowed (nothing when it is not, and
      the browser then refuses the response to the page), plus ``Allow-Credentials`` and
      ``Expose-Headers`` as configured.

    ``Access-Control-Allow-Origin`` is ``*`` only when every origin is allowed and credentials
    are not; otherwise it echoes the request's origin, since browsers refuse ``*`` on a
    credentialed request. Whenever the answer depends on the origin, ``Vary: Origin`` is added
    (also on responses to refused origins) so a shared cache keeps one copy per origin.

    ``allow_methods=["*"]`` means the usual methods (``ALL_METHODS``), as in Starlette;
    ``allow_headers=["*"]`` echoes whatever headers a preflight asks for. ``allow_origin_regex``
    must match the whole origin (``https://.*\\.example\\.com``).
    """

    def __init__(
        self,
        allow_origins: Sequence[str] = (),
        allow_methods: Sequence[str] = ("GET",),
        allow_headers: Sequence[str] = (),
        allow_credentials: bool = False,
        expose_headers: Sequence[str] = (),
        max_age: int = 600,
        allow_origin_regex: str | None = None,
    ) -> None:
        origins = _check_strings("allow_origins", allow_origins)
        methods = _check_strings("allow_methods", allow_methods)
        headers = _check_strings("allow_headers", allow_headers)
        exposed = _check_strings("expose_headers", expose_headers)
        self.allow_all_origins = "*" in origins
        self.allow_origins = frozenset(origins)
        self.allow_origin_regex = (
            re.compile(allow_origin_regex) if allow_origin_regex is not None else None
        )
        self.allow_methods = ALL_METHODS if "*" in methods else tuple(m.upper() for m in methods)
        self.allow_all_headers = "*" in headers
        self.allow_headers = SAFELISTED_HEADERS | {h.lower() for h in headers}
        self.allow_credentials = allow_credentials
        self.expose_headers = ", ".join(exposed)
        self.max_age = max_age
        # "*" cannot be used with credentials, so then the origin is echoed: the answer
        # depends on the origin whenever it is not the same "*" for everyone.
        self.echo_origin = not self.allow_all_origins or allow_credentials

    def is_allowed_origin(self, origin: str) -> bool:
        if self.allow_all_origins or origin in self.allow_origins:
            return True
        return self.allow_origin_regex is not None and bool(
            self.allow_origin_regex.fullmatch(origin)
        )

    async def __call__(self, request: Request, call_next: CallNext) -> AnyResponse:
        origin = request.headers.get("origin")
        if origin is None:
            return await call_next(request)
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            return self.preflight(request.headers, origin)
        response = await call_next(request)
        headers = response.headers
        if self.is_allowed_origin(origin):
            headers["access-control-allow-origin"] = origin if self.echo_origin else "*"
            if self.allow_credentials:
                headers["access-control-allow-credentials"] = "true"
            if self.expose_headers:
                headers["access-control-expose-headers"] = self.expose_headers
        if self.echo_origin:
            add_vary(headers, "Origin")
        return response

    def preflight(self, request_headers: Headers, origin: str) -> Response:
        """The answer to a preflight request (the handler is not called)."""
        requested_method = request_headers["access-control-request-method"]
        requested_headers = ", ".join(request_headers.getlist("access-control-request-headers"))
        response = Response(b"", 200, None, _TEXT)
        headers = response.headers
        failures = []
        if self.is_allowed_origin(origin):
            headers["access-control-allow-origin"] = origin if self.echo_origin else "*"
        else:
            failures.append("origin")
        if self.echo_origin:
            add_vary(headers, "Origin")
        if requested_method not in self.allow_methods:
            failures.append("method")
        headers["access-control-allow-methods"] = ", ".join(self.allow_methods)
        if self.allow_all_headers:
            if requested_headers:
                headers["access-control-allow-headers"] = requested_headers
        else:
            requested = {h.strip().lower() for h in requested_headers.split(",")} - {""}
            if not requested <= self.allow_headers:
                failures.append("headers")
            headers["access-control-allow-headers"] = ", ".join(sorted(self.allow_headers))
        if self.allow_credentials:
            headers["access-control-allow-credentials"] = "true"
        headers["access-control-max-age"] = str(self.max_age)
        if failures:
            response.status = 400
            response.body = f"Disallowed CORS {', '.join(failures)}".encode()
        else:
            response.body = b"OK"
        return response


# ---- Gzip.

# Already compressed: gzip would spend CPU to make them (slightly) bigger.
UNCOMPRESSIBLE_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "application/zstd",
        "application/x-bzip2",
        "application/x-xz",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "font/woff",
        "font/woff2",
        # Not compressed, but event streams are read as they arrive, and some proxies and
        # clients hold compressed ones back (Starlette leaves them alone too).
        "text/event-stream",
    }
)
UNCOMPRESSIBLE_PREFIXES = ("image/", "video/", "audio/")


def _is_compressible(content_type: str | bytes | None) -> bool:
    if content_type is None:
        return True
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "image/svg+xml":
        return True  # text, compresses well
    return media_type not in UNCOMPRESSIBLE_TYPES and not media_type.startswith(
        UNCOMPRESSIBLE_PREFIXES
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """Does an Accept-Encoding value accept gzip? ``gzip;q=0`` refuses it, ``*`` accepts it."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = coding.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # a malformed weight: do not guess that the client wants it
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


class GZipMiddleware:
    """Compress responses with gzip for clients that accept it.

    Compressed: a ``Response`` whose body is at least ``minimum_size`` bytes (its
    Content-Length is recomputed by the engine from the new body), and a
    ``StreamingResponse`` of any size (its length is unknown; each chunk is compressed and
    flushed as it comes, so the engine's output backpressure still applies chunk by chunk).
    A stream whose headers declare a Content-Length below ``minimum_size`` is left alone.

    Left alone: responses that already have a Content-Encoding; status 204, 304 and 206 (and
    anything with Content-Range); ``FileResponse`` (sent as it is, so sendfile(2) and Range
    requests keep working; pre-compress static files if they need it); media types that are
    already compressed (image/*, video/*, audio/*, archives, fonts) and text/event-stream.

    A response that could be compressed gets ``Vary: Accept-Encoding`` whether or not this
    client asked for gzip, because its representation depends on that header; a strong ETag
    on a compressed response is made weak, since the bytes are no longer the ones it named.

    HEAD is treated like GET: the engine sends the same headers (the right Content-Length
    included) and drops the body. For a ``Response`` this costs compressing a body nobody
    receives; a stream is never iterated for HEAD, so it costs nothing.
    """

    def __init__(self, minimum_size: int = 500, compresslevel: int = 6) -> None:
        if not 0 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be from 0 to 9, not {compresslevel}")
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, request: Request, call_next: CallNext) -> AnyResponse:
        response = await call_next(request)
        if isinstance(response, Response):
            if len(response.body) < self.minimum_size or not self._eligible(response):
                return response
            headers = response.headers
            add_vary(headers, "Accept-Encoding")
            if self._accepted(request):
                response.body = gzip.compress(response.body, self.compresslevel, mtime=0)
                self._mark_encoded(headers)
        elif isinstance(response, StreamingResponse):
            if not self._eligible(response) or self._declared_small(response.headers):
                return response
            headers = response.headers
            add_vary(headers, "Accept-Encoding")
            if self._accepted(request):
                response.content = gzip_stream(response.content, self.compresslevel)
                self._mark_encoded(headers)
        return response

    def _eligible(self, response: Response | StreamingResponse) -> bool:
        status = response.status
        if status < 200 or status in (204, 206, 304):
            return False
        headers = response.headers
        if "content-encoding" in headers or "content-range" in headers:
            return False
        return _is_compressible(response.content_type or headers.get("content-type"))

    def _declared_small(self, headers: MutableHeaders) -> bool:
        length = headers.get("content-length", "")
        return length.isdigit() and int(length) < self.minimum_size

    @staticmethod
    def _accepted(request: Request) -> bool:
        values = request.headers.getlist("accept-encoding")
        return bool(values) and accepts_gzip(",".join(values))

    @staticmethod
    def _mark_encoded(headers: MutableHeaders) -> None:
        headers["content-encoding"] = "gzip"
        # The engine writes Content-Length from the body (or chunks a stream without one);
        # a length the application set would describe the uncompressed bytes.
        if "content-length" in headers:
            del headers["content-length"]
        etag = headers.get("etag")
        if etag is not None and not etag.startswith("W/"):
            headers["etag"] = "W/" + etag


async def gzip_stream(content: Any, compresslevel: int = 6) -> AsyncGenerator[bytes, None]:
    """Gzip a sync or async iterable of bytes (or str, sent as UTF-8) chunk by chunk.

    Every chunk is flushed (Z_SYNC_FLUSH) so the client receives what the application has
    produced so far instead of waiting for zlib's window to fill; one chunk in, at most one
    chunk out, so the consumer's pace is the producer's pace.
    """
    compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)  # 31: gzip framing
    is_async = hasattr(content, "__aiter__")
    iterator = content.__aiter__() if is_async else iter(content)
    try:
        while True:
            if is_async:
                try:
                    piece = await iterator.__anext__()
                except StopAsyncIteration:
                    break
            else:
                try:
                    piece = next(iterator)
                except StopIteration:
                    break
            chunk = piece.encode() if isinstance(piece, str) else bytes(piece)
            if chunk:
                yield compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
        yield compressor.flush()
    finally:
        # Closing this generator (the client went away) must close the application's.
        if is_async and hasattr(iterator, "aclose"):
            await iterator.aclose()
        elif not is_async and hasattr(iterator, "close"):
            iterator.close()


# ---- Trusted hosts.


class TrustedHostMiddleware:
    """Answer 400 ``Invalid host header`` unless the Host header names an allowed host.

    Patterns are exact host names (``example.com``) or a leading wildcard for subdomains
    (``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``, not
    ``example.com``); ``"*"`` alone allows every host. Matching ignores case, the port and a
    trailing dot.

    With ``www_redirect`` (the default), a request for ``example.com`` when only
    ``www.example.com`` is listed is redirected there (307, method and body kept). The
    Location is scheme-relative (``//www.example.com/path?query``): the server may sit behind
    a TLS proxy and cannot tell whether the client used https, and the client keeps its own.
    """

    def __init__(self, allowed_hosts: Sequence[str] = ("*",), www_redirect: bool = True) -> None:
        patterns = _check_strings("allowed_hosts", allowed_hosts)
        if not patterns:
            raise ValueError('allowed_hosts is empty: no request could pass; use ["*"]')
        for pattern in patterns:
            if pattern == "*":
                continue
            misplaced_star = "*" in pattern[1:]
            bad_wildcard = pattern.startswith("*") and (len(pattern) < 3 or pattern[1] != ".")
            if not pattern or misplaced_star or bad_wildcard:
                raise ValueError(
                    f"invalid host pattern {pattern!r}: use a host name (example.com) or "
                    f"a leading wildcard (*.example.com)"
                )
        if "*" in patterns and len(patterns) > 1:
            raise ValueError(
                f'"*" allows every host; it cannot be combined with other patterns ({patterns})'
            )
        self.allow_any = patterns == ("*",)
        self.allowed_hosts = tuple(p.lower().rstrip(".") for p in patterns)
        self.www_redirect = www_redirect

    @staticmethod
    def split_host(value: str) -> tuple[str, str]:
        """A Host header value as (host, port): ``[::1]:80`` -> ``("[::1]", "80")``."""
        value = value.strip().lower()
        if value.startswith("[") and "]" in value:
            end = value.index("]") + 1
            return value[:end], value[end:].removeprefix(":")
        host, _, port = value.partition(":")
        return host.rstrip("."), port

    def is_allowed(self, host: str) -> bool:
        for pattern in self.allowed_hosts:
            if host == pattern:
                return True
            # "*.example.com": some non-empty label(s) before ".example.com".
            suffix = pattern[1:]
            if pattern[0] == "*" and host.endswith(suffix) and len(host) > len(suffix):
                return True
        return False

    async def __call__(self, request: Request, call_next: CallNext) -> AnyResponse:
        if self.allow_any:
            return await call_next(request)
        host, port = self.split_host(request.headers.get("host", ""))
        if self.is_allowed(host):
            return await call_next(request)
        if self.www_redirect and "www." + host in self.allowed_hosts:
            # Rebuilt from the checked host and a numeric port only, never copied from the
            # header, so nothing but the listed www host can end up in Location.
            authority = "www." + host + (":" + port if port.isdigit() else "")
            query = request.query_string
            target = request.raw_path + (b"?" + query if query else b"")
            location = b"//" + authority.encode("latin-1") + target
            return Response(b"", 307, [(b"location", location)])
        return Response(b"Invalid host header", 400, None, _TEXT)


# ---- Request ids.

MAX_REQUEST_ID_LENGTH = 200
_SANE_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class RequestIdMiddleware:
    """Give every request an id: ``request.state.request_id``, echoed in a response header.

    An incoming id (``X-Request-Id`` by default, e.g. set by a load balancer) is kept so one
    id follows the request across services, but only if it is sane: 1 to 200 visible ASCII
    characters, no spaces, so it cannot break log lines or headers. Otherwise, or when there
    is none, a new one is made (``uuid4().hex``). Clients can choose their id: treat it as a
    correlation label, never as a secret or a unique key.
    """

    def __init__(self, header_name: str = "x-request-id") -> None:
        if not _TOKEN.fullmatch(header_name):
            raise ValueError(f"invalid header name {header_name!r}")
        self.header_name = header_name.lower()

    async def __call__(self, request: Request, call_next: CallNext) -> AnyResponse:
        incoming = request.headers.get(self.header_name)
        if incoming is not None and _SANE_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = uuid.uuid4().hex
        # State is free-form storage; mypy does not know its attributes.
        request.state.request_id = request_id  # type: ignore[attr-defined]
        response = await call_next(request)
        response.headers[self.header_name] = request_id
        return response
