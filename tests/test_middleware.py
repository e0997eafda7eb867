"""The bundled middleware (kestrel.middleware): CORS, gzip, trusted hosts, request ids.

Most tests go through TestClient (the real engine over a socketpair); the streaming, curl
and backpressure tests use a real loopback server from serve_in_thread.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from kestrel import App, FileResponse, Request, Response, StreamingResponse, serve_in_thread
from kestrel.datastructures import Headers
from kestrel.middleware import (
    CORSMiddleware,
    GZipMiddleware,
    RequestIdMiddleware,
    TrustedHostMiddleware,
    accepts_gzip,
    add_vary,
    gzip_stream,
)
from kestrel.testing import TestClient, TestResponse
from kestrel.types import AnyResponse

TIMEOUT_S = 10.0
BIG_TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(40))
SMALL_TEXT = "tiny body"
GZIP = {"accept-encoding": "gzip"}


def make_app(*middleware: Any) -> tuple[App, list[str]]:
    """An app with a few routes, the given middleware instances, and a log of handler calls."""
    app = App()
    calls: list[str] = []
    for item in middleware:
        app.add_middleware(item)

    @app.route("/", methods=["GET", "POST", "PUT", "DELETE"])
    async def root(request: Request) -> str:
        calls.append(request.method)
        return "hello"

    @app.get("/big")
    async def big(request: Request) -> str:
        calls.append("big")
        return BIG_TEXT

    @app.get("/small")
    async def small(request: Request) -> str:
        return SMALL_TEXT

    @app.get("/vary")
    async def vary(request: Request) -> Response:
        return Response(BIG_TEXT, headers={"vary": "Cookie"})

    @app.get("/stale-length")
    async def stale_length(request: Request) -> Response:
        data = BIG_TEXT.encode()
        return Response(data, headers={"content-length": str(len(data))}, content_type="text/plain")

    @app.get("/etag")
    async def etag(request: Request) -> Response:
        return Response(BIG_TEXT, headers={"etag": '"v1"'})

    @app.get("/encoded")
    async def encoded(request: Request) -> Response:
        data = zlib.compress(BIG_TEXT.encode() * 3)
        return Response(data, headers={"content-encoding": "deflate"}, content_type="text/plain")

    @app.get("/image")
    async def image(request: Request) -> Response:
        return Response(b"\x89PNG" + bytes(2000), content_type="image/png")

    @app.get("/svg")
    async def svg(request: Request) -> Response:
        return Response("<svg>" + "<g/>" * 500 + "</svg>", content_type="image/svg+xml")

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield BIG_TEXT.encode()

        return StreamingResponse(pieces(), content_type="text/plain")

    @app.get("/sync-stream")
    async def sync_stream(request: Request) -> StreamingResponse:
        # str and bytes pieces mixed, as the engine accepts; an empty one in between.
        chunks: list[str | bytes] = ["héllo ", b"", b"w\xc3\xb6rld ", "x" * 3000]
        return StreamingResponse(
            iter(chunks), headers={"content-length": "3014"}, content_type="text/plain"
        )

    @app.get("/id")
    async def request_id(request: Request) -> str:
        value: str = request.state.request_id  # type: ignore[attr-defined]
        return value

    return app, calls


def header_list(response: TestResponse, name: str) -> list[str]:
    return response.headers.get_all(name) or []


def vary_tokens(response: TestResponse) -> list[str]:
    return [t.strip().lower() for v in header_list(response, "vary") for t in v.split(",")]


# ---- CORS.

SITE = "https://app.example.com"


def test_cors_request_without_origin_passes_through_untouched() -> None:
    app, calls = make_app(CORSMiddleware(allow_origins=[SITE]))
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 200 and response.text == "hello"
    assert calls == ["GET"]
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert "vary" not in response.headers


def test_cors_simple_request_from_listed_origin_echoes_it() -> None:
    app, _ = make_app(CORSMiddleware(allow_origins=[SITE], expose_headers=["X-Total", "X-Page"]))
    with TestClient(app) as client:
        response = client.get("/", headers={"origin": SITE})
    assert response.status_code == 200 and response.text == "hello"
    assert response.headers["access-control-allow-origin"] == SITE
    assert response.headers["access-control-expose-headers"] == "X-Total, X-Page"
    assert "access-control-allow-credentials" not in response.headers
    assert vary_tokens(response) == ["origin"]


def test_cors_simple_request_from_other_origin_gets_no_grant() -> None:
    app, calls = make_app(CORSMiddleware(allow_origins=[SITE], expose_headers=["X-Total"]))
    with TestClient(app) as client:
        response = client.post("/", headers={"origin": "https://evil.example"})
    # The server still runs the request (CORS is enforced by the browser), but grants nothing.
    assert response.status_code == 200 and calls == ["POST"]
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-expose-headers" not in response.headers
    # The answer depends on the origin, so a shared cache must key on it.
    assert vary_tokens(response) == ["origin"]


def test_cors_wildcard_without_credentials_answers_star_without_vary() -> None:
    app, _ = make_app(CORSMiddleware(allow_origins=["*"]))
    with TestClient(app) as client:
        response = client.get("/", headers={"origin": "https://anywhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "vary" not in response.headers


def test_cors_wildcard_with_credentials_echoes_the_origin() -> None:
    app, _ = make_app(CORSMiddleware(allow_origins=["*"], allow_credentials=True))
    with TestClient(app) as client:
        response = client.get(
            "/", headers={"origin": "https://anywhere.example"}, cookies={"session": "1"}
        )
    # Browsers refuse "*" on a credentialed request: the origin itself must come back.
    assert response.headers["access-control-allow-origin"] == "https://anywhere.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert vary_tokens(response) == ["origin"]


def test_cors_preflight_allowed_is_answered_without_the_handler() -> None:
    cors = CORSMiddleware(
        allow_origins=[SITE],
        allow_methods=["get", "PUT"],
        allow_headers=["X-Token"],
        allow_credentials=True,
        max_age=123,
    )
    app, calls = make_app(cors)
    with TestClient(app) as client:
        response = client.options(
            "/",
            headers={
                "origin": SITE,
                "access-control-request-method": "PUT",
                "access-control-request-headers": "x-token, Content-Type",
            },
        )
    assert response.status_code == 200 and response.text == "OK"
    assert calls == []
    assert response.headers["access-control-allow-origin"] == SITE
    assert response.headers["access-control-allow-methods"] == "GET, PUT"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"x-token", "content-type"} <= allowed
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == "123"
    assert vary_tokens(response) == ["origin"]


@pytest.mark.parametrize(
    ("origin", "method", "request_headers", "expected"),
    [
        ("https://evil.example", "GET", None, "Disallowed CORS origin"),
        (SITE, "DELETE", None, "Disallowed CORS method"),
        (SITE, "GET", "X-Secret", "Disallowed CORS headers"),
        (
            "https://evil.example",
            "PATCH",
            "x-token, x-other",
            "Disallowed CORS origin, method, headers",
        ),
    ],
)
def test_cors_preflight_denied_is_400_naming_what_failed(
    origin: str, method: str, request_headers: str | None, expected: str
) -> None:
    app, calls = make_app(CORSMiddleware(allow_origins=[SITE], allow_headers=["X-Token"]))
    headers = {"origin": origin, "access-control-request-method": method}
    if request_headers is not None:
        headers["access-control-request-headers"] = request_headers
    with TestClient(app) as client:
        response = client.options("/", headers=headers)
    assert response.status_code == 400
    assert response.text == expected
    assert response.headers["content-type"].startswith("text/plain")
    assert calls == []
    if "origin" in expected:
        assert "access-control-allow-origin" not in response.headers
    else:
        assert response.headers["access-control-allow-origin"] == SITE


def test_cors_preflight_with_wildcards() -> None:
    cors = CORSMiddleware(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    app, _ = make_app(cors)
    with TestClient(app) as client:
        response = client.options(
            "/",
            headers={
                "origin": "https://x.example",
                "access-control-request-method": "PATCH",
                "access-control-request-headers": "X-Anything, X-Else",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-headers"] == "X-Anything, X-Else"
    assert "PATCH" in response.headers["access-control-allow-methods"].split(", ")
    assert "vary" not in response.headers


def test_cors_options_without_request_method_is_not_a_preflight() -> None:
    app, _ = make_app(CORSMiddleware(allow_origins=[SITE]))
    with TestClient(app) as client:
        response = client.options("/", headers={"origin": SITE})
    # An ordinary OPTIONS request: routed (no OPTIONS route here, so 405) and decorated.
    assert response.status_code == 405
    assert response.headers["access-control-allow-origin"] == SITE


def test_cors_origin_regex_must_match_the_whole_origin() -> None:
    cors = CORSMiddleware(allow_origin_regex=r"https://[a-z]+\.example\.org")
    app, _ = make_app(cors)
    with TestClient(app) as client:
        good = client.get("/", headers={"origin": "https://shop.example.org"})
        bad = client.get("/", headers={"origin": "https://shop.example.org.evil.net"})
    assert good.headers["access-control-allow-origin"] == "https://shop.example.org"
    assert "access-control-allow-origin" not in bad.headers


def test_cors_keeps_the_handlers_vary() -> None:
    app, _ = make_app(CORSMiddleware(allow_origins=[SITE]))
    with TestClient(app) as client:
        response = client.get("/vary", headers={"origin": SITE})
    assert header_list(response, "vary") == ["Cookie, Origin"]


def test_cors_rejects_a_bare_string_of_origins() -> None:
    with pytest.raises(TypeError, match="allow_origins must be a list"):
        CORSMiddleware(allow_origins=SITE)


# ---- GZip: whole responses.


def test_gzip_leaves_a_body_below_the_threshold_alone() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=500))
    with TestClient(app) as client:
        response = client.get("/small", headers=GZIP)
    assert response.content == SMALL_TEXT.encode()
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(SMALL_TEXT))


def test_gzip_compresses_a_body_above_the_threshold() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=500))
    with TestClient(app) as client:
        response = client.get("/big", headers={"accept-encoding": "br;q=1.0, gzip;q=0.8"})
    assert response.headers["content-encoding"] == "gzip"
    assert vary_tokens(response) == ["accept-encoding"]
    assert header_list(response, "content-length") == [str(len(response.content))]
    assert len(response.content) < len(BIG_TEXT)
    assert gzip.decompress(response.content).decode() == BIG_TEXT


def test_gzip_removes_a_stale_content_length() -> None:
    app, _ = make_app(GZipMiddleware())
    with TestClient(app) as client:
        response = client.get("/stale-length", headers=GZIP)
    # Exactly one Content-Length, and it is the compressed size.
    assert header_list(response, "content-length") == [str(len(response.content))]
    assert gzip.decompress(response.content).decode() == BIG_TEXT


@pytest.mark.parametrize("accept", ["gzip;q=0", "identity", "*;q=0.5, gzip;q=0", "br", ""])
def test_gzip_not_sent_when_not_accepted(accept: str) -> None:
    app, _ = make_app(GZipMiddleware())
    with TestClient(app) as client:
        response = client.get("/big", headers={"accept-encoding": accept})
    assert response.text == BIG_TEXT
    assert "content-encoding" not in response.headers
    # The representation still depends on Accept-Encoding: caches must know.
    assert vary_tokens(response) == ["accept-encoding"]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.001", True),
        ("gzip; q=1.0", True),
        ("x-gzip", True),
        ("*", True),
        ("br, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("gzip;q=oops", False),
        ("", False),
    ],
)
def test_accept_encoding_parsing(value: str, accepted: bool) -> None:
    assert accepts_gzip(value) is accepted


def test_gzip_passes_an_already_encoded_response_through() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=10))
    with TestClient(app) as client:
        response = client.get("/encoded", headers=GZIP)
    assert header_list(response, "content-encoding") == ["deflate"]
    assert zlib.decompress(response.content) == BIG_TEXT.encode() * 3


def test_gzip_skips_compressed_media_types_but_not_svg() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=10))
    with TestClient(app) as client:
        image = client.get("/image", headers=GZIP)
        svg = client.get("/svg", headers=GZIP)
    assert "content-encoding" not in image.headers
    assert image.content == b"\x89PNG" + bytes(2000)
    assert svg.headers["content-encoding"] == "gzip"
    assert gzip.decompress(svg.content).startswith(b"<svg><g/>")


def test_gzip_weakens_a_strong_etag() -> None:
    app, _ = make_app(GZipMiddleware())
    with TestClient(app) as client:
        compressed = client.get("/etag", headers=GZIP)
        plain = client.get("/etag")
    assert compressed.headers["etag"] == 'W/"v1"'
    assert plain.headers["etag"] == '"v1"'


def test_gzip_head_advertises_the_same_headers_as_get() -> None:
    app, _ = make_app(GZipMiddleware())
    with TestClient(app) as client:
        get = client.get("/big", headers=GZIP)
        head = client.head("/big", headers=GZIP)
    assert head.content == b""
    assert head.headers["content-encoding"] == "gzip"
    assert head.headers["content-length"] == get.headers["content-length"]
    assert vary_tokens(head) == ["accept-encoding"]


def test_gzip_leaves_file_responses_alone_so_ranges_work(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_text(BIG_TEXT)
    app = App()
    app.add_middleware(GZipMiddleware, minimum_size=10)

    @app.get("/file")
    async def file(request: Request) -> FileResponse:
        return FileResponse(path)

    with TestClient(app) as client:
        whole = client.get("/file", headers=GZIP)
        part = client.get("/file", headers={**GZIP, "range": "bytes=5-9"})
    assert "content-encoding" not in whole.headers
    assert whole.text == BIG_TEXT
    assert part.status_code == 206
    assert part.content == BIG_TEXT.encode()[5:10]


class FakeRequest:
    """Just what GZipMiddleware reads of a request."""

    def __init__(self, accept_encoding: str) -> None:
        self.headers = Headers([(b"accept-encoding", accept_encoding.encode())])


def run_gzip(response: AnyResponse, accept_encoding: str = "gzip") -> AnyResponse:
    async def call_next(request: Request) -> AnyResponse:
        return response

    middleware = GZipMiddleware(minimum_size=10)
    request = cast(Request, FakeRequest(accept_encoding))
    return asyncio.run(middleware(request, call_next))


@pytest.mark.parametrize("status", [204, 206, 304])
def test_gzip_skips_statuses_without_a_whole_body(status: int) -> None:
    body = BIG_TEXT.encode()
    response = run_gzip(Response(body, status, None, "text/plain"))
    assert isinstance(response, Response)
    assert response.body == body
    assert "content-encoding" not in response.headers


def test_gzip_uses_a_content_type_given_as_a_header() -> None:
    body = b"\xff" * 600
    response = run_gzip(Response(body, 200, {"content-type": "video/mp4"}))
    assert isinstance(response, Response)
    assert response.body == body and "content-encoding" not in response.headers


def test_gzip_rejects_a_bad_level() -> None:
    with pytest.raises(ValueError, match="compresslevel"):
        GZipMiddleware(compresslevel=10)


# ---- GZip: streams.


def test_gzip_streams_an_async_iterable_chunk_by_chunk() -> None:
    app, _ = make_app(GZipMiddleware())
    with TestClient(app) as client:
        response = client.get("/stream", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert vary_tokens(response) == ["accept-encoding"]
    assert gzip.decompress(response.content).decode() == BIG_TEXT * 20


def test_gzip_streams_a_sync_iterable_and_drops_its_content_length() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=100))
    with TestClient(app) as client:
        response = client.get("/sync-stream", headers=GZIP)
        plain = client.get("/sync-stream")
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert gzip.decompress(response.content).decode() == "héllo wörld " + "x" * 3000
    assert plain.headers["content-length"] == "3014"  # not compressed: the app's framing
    assert plain.content == ("héllo wörld " + "x" * 3000).encode()


def test_gzip_leaves_a_stream_declared_smaller_than_the_threshold() -> None:
    app, _ = make_app(GZipMiddleware(minimum_size=5000))
    with TestClient(app) as client:
        response = client.get("/sync-stream", headers=GZIP)
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == "3014"


def test_gzip_stream_closes_the_inner_iterator_when_closed_early() -> None:
    closed: list[str] = []

    async def inner() -> AsyncIterator[bytes]:
        try:
            for i in range(100):
                yield f"chunk {i} ".encode() * 50
        finally:
            closed.append("async")

    def sync_inner() -> Iterator[bytes]:
        try:
            yield b"a" * 100
            yield b"b" * 100
        finally:
            closed.append("sync")

    async def take_one(content: Any) -> bytes:
        stream = gzip_stream(content)
        first = await stream.__anext__()
        await stream.aclose()  # as the engine does when the client goes away
        return first

    first = asyncio.run(take_one(inner()))
    asyncio.run(take_one(sync_inner()))
    assert closed == ["async", "sync"]
    # The first chunk alone decodes to the first piece: it was flushed, not held back.
    assert zlib.decompressobj(31).decompress(first) == b"chunk 0 " * 50


def test_add_vary_merges_and_respects_star() -> None:
    response = Response(b"", headers=[("vary", "Accept"), ("vary", "cookie")])
    add_vary(response.headers, "Origin")
    add_vary(response.headers, "origin")
    assert response.headers.getlist("vary") == ["Accept, cookie, Origin"]
    star = Response(b"", headers={"vary": "*"})
    add_vary(star.headers, "Origin")
    assert star.headers.getlist("vary") == ["*"]


def large_body() -> list[bytes]:
    """Just over 1.5 MiB of text in 16 KiB pieces, each line different."""
    lines = (f"{i:07d} {hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(22000))
    data = "".join(lines).encode()
    assert len(data) > 1024 * 1024
    return [data[i : i + 16384] for i in range(0, len(data), 16384)]


def test_gzip_stream_over_a_socket_decoded_by_httpx() -> None:
    pieces = large_body()
    app = App()
    app.add_middleware(GZipMiddleware)

    @app.get("/large")
    async def large(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece
                await asyncio.sleep(0)

        return StreamingResponse(gen(), content_type="text/plain")

    with serve_in_thread(app, port=0) as server, httpx.Client(timeout=TIMEOUT_S) as client:
        response = client.get(server.url + "/large", headers=GZIP)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert response.content == b"".join(pieces)
    assert response.num_bytes_downloaded < len(response.content) * 3 // 4  # hex: ~56%


def test_gzip_stream_chunks_reach_the_client_as_they_are_produced() -> None:
    released = threading.Event()
    seen_release: list[bool] = []
    app = App()
    app.add_middleware(GZipMiddleware)

    @app.get("/live")
    async def live(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            yield b"first event\n"
            deadline = time.monotonic() + 5
            while not released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            seen_release.append(released.is_set())
            yield b"second event\n"

        return StreamingResponse(gen(), content_type="text/plain")

    decoded = b""
    with (
        serve_in_thread(app, port=0) as server,
        httpx.Client(timeout=TIMEOUT_S) as client,
        client.stream("GET", server.url + "/live", headers=GZIP) as response,
    ):
        decompressor = zlib.decompressobj(31)
        for raw in response.iter_raw():
            decoded += decompressor.decompress(raw)
            if decoded == b"first event\n":
                released.set()  # the client saw the first chunk before the second existed
    assert seen_release == [True]
    assert decoded == b"first event\nsecond event\n"


class SmallWindowConnection(http.client.HTTPConnection):
    """A client with a small receive buffer, so the server's output fills up quickly."""

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        self.sock = sock


def test_gzip_stream_keeps_the_engines_backpressure() -> None:
    block = os.urandom(65536)  # incompressible: each gzip chunk is as big as its input
    total = 256  # 16 MiB
    produced = [0]
    app = App()
    app.add_middleware(GZipMiddleware, compresslevel=1)

    @app.get("/flood")
    async def flood(request: Request) -> StreamingResponse:
        def gen() -> Iterator[bytes]:
            for _ in range(total):
                produced[0] += 1
                yield block

        return StreamingResponse(gen(), content_type="application/octet-stream")

    with serve_in_thread(app, port=0) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = SmallWindowConnection(host, int(port), timeout=TIMEOUT_S)
        try:
            connection.request("GET", "/flood", headers=GZIP)
            response = connection.getresponse()
            # Wait until the producer stops because the client is not reading.
            last, stable_since = -1, time.monotonic()
            while time.monotonic() - stable_since < 0.5:
                if produced[0] != last:
                    last, stable_since = produced[0], time.monotonic()
                time.sleep(0.05)
            stalled_at = produced[0]
            body = response.read()
        finally:
            connection.close()
    assert response.getheader("content-encoding") == "gzip"
    # Socket buffers (a few MiB at most) plus the engine's 64 KiB watermark, not 16 MiB.
    assert stalled_at < total // 2
    assert gzip.decompress(body) == block * total


def test_gzip_with_curl_compressed(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is required for this test"
    app, _ = make_app(GZipMiddleware())
    with serve_in_thread(app, port=0) as server:
        results = {}
        for path in ("/big", "/stream"):
            head_file, body_file = tmp_path / "headers", tmp_path / "body"
            subprocess.run(
                [curl, "-sS", "--compressed", "-D", str(head_file), "-o", str(body_file),
                 "--max-time", "10", server.url + path],
                check=True,
                timeout=TIMEOUT_S + 5,
            )  # fmt: skip
            results[path] = (head_file.read_text().lower(), body_file.read_bytes())
    for path, expected in (("/big", BIG_TEXT), ("/stream", BIG_TEXT * 20)):
        headers, body = results[path]
        assert "content-encoding: gzip" in headers
        assert body.decode() == expected  # curl decoded it


# ---- Trusted hosts.


def get_with_host(app: App, host: str, path: str = "/") -> TestResponse:
    with TestClient(app) as client:
        return client.get(path, headers={"host": host})


def test_trusted_host_ignores_port_and_case() -> None:
    app, calls = make_app(TrustedHostMiddleware(allowed_hosts=["example.com"]))
    for host in ("example.com", "example.com:8080", "EXAMPLE.com", "example.com."):
        response = get_with_host(app, host)
        assert response.status_code == 200, host
        assert response.text == "hello"
    assert len(calls) == 4


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("api.example.com", 200),
        ("a.b.example.com:443", 200),
        ("example.com", 400),  # the wildcard is for subdomains only
        ("evilexample.com", 400),
        ("example.com.evil.net", 400),
        (".example.com", 400),
    ],
)
def test_trusted_host_wildcard(host: str, status: int) -> None:
    app, _ = make_app(TrustedHostMiddleware(allowed_hosts=["*.example.com"]))
    assert get_with_host(app, host).status_code == status


def test_trusted_host_mismatch_is_400_and_the_handler_does_not_run() -> None:
    app, calls = make_app(TrustedHostMiddleware(allowed_hosts=["example.com", "[::1]"]))
    response = get_with_host(app, "attacker.example")
    assert response.status_code == 400
    assert response.text == "Invalid host header"
    assert calls == []
    assert get_with_host(app, "[::1]:8000").status_code == 200


def test_trusted_host_default_allows_any_host() -> None:
    app, _ = make_app(TrustedHostMiddleware())
    assert get_with_host(app, "whatever.invalid:1").status_code == 200


def test_trusted_host_www_redirect_keeps_port_path_and_query() -> None:
    app, calls = make_app(TrustedHostMiddleware(allowed_hosts=["www.example.com"]))
    response = get_with_host(app, "example.com:8000", "/big?page=2&q=a%20b")
    assert response.status_code == 307
    assert response.headers["location"] == "//www.example.com:8000/big?page=2&q=a%20b"
    assert calls == []
    # Only a numeric port is carried over: Location is built, never copied from the header.
    odd_port = get_with_host(app, "Example.com:x1", "/")
    assert odd_port.headers["location"] == "//www.example.com/"
    no_redirect = make_app(
        TrustedHostMiddleware(allowed_hosts=["www.example.com"], www_redirect=False)
    )[0]
    assert get_with_host(no_redirect, "example.com").status_code == 400


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (["*", "example.com"], "cannot be combined"),
        (["ex*ample.com"], "invalid host pattern 'ex\\*ample.com'"),
        (["*example.com"], "invalid host pattern"),
        (["*.example.*"], "invalid host pattern"),
        ([""], "invalid host pattern"),
        (["*."], "invalid host pattern"),
        ([], "empty"),
    ],
)
def test_trusted_host_validates_patterns(hosts: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrustedHostMiddleware(allowed_hosts=hosts)


def test_trusted_host_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="allowed_hosts must be a list"):
        TrustedHostMiddleware(allowed_hosts="example.com")


# ---- Request ids.


def test_request_id_is_generated_when_missing() -> None:
    app, _ = make_app(RequestIdMiddleware())
    with TestClient(app) as client:
        first = client.get("/id")
        second = client.get("/id")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert [first.text, second.text] == ids  # the handler saw the id the client got
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]


def test_request_id_reuses_a_sane_incoming_id() -> None:
    incoming = "lb-7f3a:trace=42/" + "z" * 150
    app, _ = make_app(RequestIdMiddleware())
    with TestClient(app) as client:
        response = client.get("/id", headers={"X-Request-ID": incoming})
    assert response.text == incoming
    assert header_list(response, "x-request-id") == [incoming]


@pytest.mark.parametrize("bad", ["has space", "x" * 201, "caf\xe9", "tab\there"])
def test_request_id_replaces_an_insane_incoming_id(bad: str) -> None:
    app, _ = make_app(RequestIdMiddleware())
    with TestClient(app) as client:
        response = client.get("/id", headers={"x-request-id": bad})
    fresh = response.headers["x-request-id"]
    assert fresh != bad and len(fresh) == 32 and int(fresh, 16) >= 0
    assert response.text == fresh


def test_request_id_custom_header_name() -> None:
    app, _ = make_app(RequestIdMiddleware(header_name="X-Correlation-Id"))
    with TestClient(app) as client:
        response = client.get("/id", headers={"x-correlation-id": "abc-123"})
    assert response.headers["x-correlation-id"] == "abc-123" == response.text
    assert "x-request-id" not in response.headers
    with pytest.raises(ValueError, match="invalid header name"):
        RequestIdMiddleware(header_name="bad header")


# ---- Several together: the first added is the outermost.

PREFLIGHT = {"origin": SITE, "access-control-request-method": "GET"}


def test_onion_order_decides_whether_a_preflight_gets_a_request_id() -> None:
    outer_id, _ = make_app(RequestIdMiddleware(), CORSMiddleware(allow_origins=[SITE]))
    outer_cors, _ = make_app(CORSMiddleware(allow_origins=[SITE]), RequestIdMiddleware())
    with TestClient(outer_id) as client:
        stamped = client.options("/", headers=PREFLIGHT)
    with TestClient(outer_cors) as client:
        unstamped = client.options("/", headers=PREFLIGHT)
        simple = client.get("/", headers={"origin": SITE})
    # RequestId outside CORS sees the preflight CORS answered; inside, it never runs.
    assert stamped.status_code == unstamped.status_code == 200
    assert len(stamped.headers["x-request-id"]) == 32
    assert "x-request-id" not in unstamped.headers
    assert len(simple.headers["x-request-id"]) == 32
    assert simple.headers["access-control-allow-origin"] == SITE


def test_onion_order_trusted_host_and_cors() -> None:
    hosts = TrustedHostMiddleware(allowed_hosts=["api.example.com"])
    cors = CORSMiddleware(allow_origins=[SITE])
    host_first, _ = make_app(hosts, cors)
    cors_first, _ = make_app(cors, hosts)
    headers = {"host": "bad.example", **PREFLIGHT}
    with TestClient(host_first) as client:
        refused = client.options("/", headers=headers)
    with TestClient(cors_first) as client:
        answered = client.options("/", headers=headers)
        readable_error = client.get("/", headers={"host": "bad.example", "origin": SITE})
    # The host check runs first only when it was added first.
    assert refused.status_code == 400 and refused.text == "Invalid host header"
    assert "access-control-allow-origin" not in refused.headers
    assert answered.status_code == 200 and answered.text == "OK"
    # CORS outside the host check decorates its 400, so the page can read the error.
    assert readable_error.status_code == 400
    assert readable_error.headers["access-control-allow-origin"] == SITE


def test_gzip_outside_request_id_compresses_and_keeps_the_id() -> None:
    app, _ = make_app(GZipMiddleware(), RequestIdMiddleware())
    with TestClient(app) as client:
        response = client.get("/big", headers={**GZIP, "x-request-id": "req-1"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["x-request-id"] == "req-1"
    assert gzip.decompress(response.content).decode() == BIG_TEXT


def test_add_middleware_with_class_and_options() -> None:
    app = App()
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["example.com"])
    app.add_middleware(RequestIdMiddleware, header_name="x-trace")

    @app.get("/")
    async def root(request: Request) -> str:
        return "ok"

    ok = get_with_host(app, "example.com")
    bad = get_with_host(app, "other.com")
    assert ok.status_code == 200 and len(ok.headers["x-trace"]) == 32
    # TrustedHost is outermost: its 400 never passes through RequestId.
    assert bad.status_code == 400 and "x-trace" not in bad.headers
