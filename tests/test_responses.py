"""Return values, Response / StreamingResponse / FileResponse, JSON encoding, HTTPException,
exception handlers and 500s.

Most tests use the TestClient; FileResponse (sendfile with Range) and the 500 logging are
tested against real loopback servers with http.client, httpx and curl.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import http.client
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire import exchange

import kestrel
import kestrel.json_encoding
import kestrel.request
import kestrel.response
from kestrel import (
    App,
    FileResponse,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    StreamingResponse,
    serve_in_thread,
)
from kestrel.testing import TestClient

REPO = Path(kestrel.__file__).resolve().parent.parent


def fetch(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh loopback connection: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


# ---- Return values.


def _returns_app(with_middleware: bool) -> App:
    app = App()

    @app.get("/str")
    async def text(request: Request) -> str:
        return "héllo"

    @app.get("/bytes")
    async def raw(request: Request) -> bytes:
        return b"\x00\x01\xff"

    @app.get("/dict")
    async def mapping(request: Request) -> dict[str, Any]:
        return {"a": 1, "nested": {"b": [1, 2.5, None, True]}, "text": "é€"}

    @app.get("/list")
    def sequence(request: Request) -> list[Any]:  # a def handler: same conversion
        return [1, "two", {"three": 3}]

    @app.get("/none")
    async def nothing(request: Request) -> None:
        return None

    @app.get("/bad")
    async def bad(request: Request) -> object:
        return object()

    if with_middleware:
        # With middleware the App converts the result before the onion sees it; without,
        # the engine serializes str/bytes/None itself. Both must answer the same.
        @app.middleware
        async def passthrough(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            assert isinstance(response, Response)
            return response

    return app


@pytest.mark.parametrize("with_middleware", [False, True])
def test_return_values_become_responses(with_middleware: bool) -> None:
    with TestClient(_returns_app(with_middleware)) as client:
        response = client.get("/str")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.content == "héllo".encode()

        response = client.get("/bytes")
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == b"\x00\x01\xff"

        response = client.get("/dict")
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"a": 1, "nested": {"b": [1, 2.5, None, True]}, "text": "é€"}

        response = client.get("/list")
        assert response.headers["content-type"] == "application/json"
        assert response.json() == [1, "two", {"three": 3}]

        response = client.get("/none")
        assert response.status_code == 204
        assert response.content == b""

        assert client.get("/bad").status_code == 500  # not a type a handler may return


def test_response_is_sent_as_given() -> None:
    app = App()

    @app.get("/created")
    async def created(request: Request) -> Response:
        return Response(
            b"a,b\n1,2\n",
            status=201,
            headers={"x-request-cost": "3", "Cache-Control": "no-store"},
            content_type="text/csv",
        )

    @app.get("/cookies")
    async def cookies(request: Request) -> Response:
        response = Response("body", headers=[("set-cookie", "a=1"), ("set-cookie", "b=2")])
        response.headers["x-late"] = "added after construction"
        return response

    @app.get("/teapot")
    async def teapot(request: Request) -> Response:
        return Response(b"", status=418)

    @app.get("/helpers/{kind}")
    async def helpers(request: Request, kind: str) -> Response:
        if kind == "json":
            return JSONResponse({"ok": True}, status=202)
        if kind == "text":
            return PlainTextResponse("plain")
        if kind == "html":
            return HTMLResponse("<p>hi</p>")
        return RedirectResponse("/elsewhere")

    with TestClient(app) as client:
        response = client.get("/created")
        assert response.status_code == 201
        assert response.headers["content-type"] == "text/csv"
        assert response.headers["x-request-cost"] == "3"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-length"] == "8"
        assert response.content == b"a,b\n1,2\n"

        response = client.get("/cookies")
        assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]
        assert response.headers["x-late"] == "added after construction"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"  # str body
        assert response.text == "body"

        response = client.get("/teapot")
        assert (response.status_code, response.reason) == (418, "I'm a Teapot")

        response = client.get("/helpers/json")
        assert (response.status_code, response.json()) == (202, {"ok": True})
        assert response.headers["content-type"] == "application/json"
        assert client.get("/helpers/text").headers["content-type"] == "text/plain; charset=utf-8"
        assert client.get("/helpers/html").headers["content-type"] == "text/html; charset=utf-8"
        response = client.get("/helpers/redirect")
        assert (response.status_code, response.headers["location"]) == (307, "/elsewhere")

    with pytest.raises(ValueError, match="invalid character"):
        Response(b"", headers={"x-bad": "a\r\nx-injected: 1"}).headers["x"] = "y"


# ---- StreamingResponse.


def test_streaming_response_sync_and_async_iterables() -> None:
    app = App()

    @app.get("/list")
    async def from_list(request: Request) -> StreamingResponse:
        return StreamingResponse([b"a", b"bc", b"def"], content_type="text/plain")

    @app.get("/generator")
    async def from_generator(request: Request) -> StreamingResponse:
        def numbers() -> Iterator[bytes]:
            for i in range(5):
                yield f"{i}\n".encode()

        return StreamingResponse(numbers(), status=201, headers={"x-kind": "sync"})

    @app.get("/async")
    async def from_async(request: Request) -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0)
                yield b"x" * 100_000 + str(i).encode()

        return StreamingResponse(pieces(), content_type="application/octet-stream")

    @app.get("/framed")
    async def framed(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"12", b"345"]), headers={"content-length": "5"})

    with TestClient(app) as client:
        response = client.get("/list")
        assert response.content == b"abcdef"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-type"] == "text/plain"

        response = client.get("/generator")
        assert response.status_code == 201
        assert response.headers["x-kind"] == "sync"
        assert response.content == b"0\n1\n2\n3\n4\n"

        response = client.get("/async")
        expected = b"".join(b"x" * 100_000 + str(i).encode() for i in range(3))
        assert response.content == expected

        response = client.get("/framed")
        assert "transfer-encoding" not in response.headers
        assert response.headers["content-length"] == "5"
        assert response.content == b"12345"

        response = client.head("/generator")
        assert response.status_code == 201
        assert response.content == b""


# ---- JSON: orjson when installed, the standard library otherwise.


def test_json_uses_orjson_when_installed() -> None:
    import orjson  # in the test extras, so this test always runs

    value = {"a": [1, 2.5, None], "é": "€"}
    assert kestrel.response.json_dumps(value) == orjson.dumps(value)
    assert kestrel.request._json_loads is orjson.loads


def test_json_stdlib_encoder_through_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def stdlib_dumps(content: Any) -> bytes:
        calls.append(content)
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()

    monkeypatch.setattr(kestrel.response, "json_dumps", stdlib_dumps)
    # A returned dict's encoder (kestrel._core.to_response reads it there).
    monkeypatch.setattr(kestrel.json_encoding, "json_dumps", stdlib_dumps)
    monkeypatch.setattr(kestrel.request, "_json_loads", json.loads)
    app = App()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"got": await request.json(), "text": "é€"}

    @app.get("/response")
    async def json_response(request: Request) -> JSONResponse:
        return JSONResponse([1, {"b": None}])

    with TestClient(app) as client:
        response = client.post("/echo", json={"n": [1, 2]})
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.content) == {"got": {"n": [1, 2]}, "text": "é€"}
        assert json.loads(client.get("/response").content) == [1, {"b": None}]
        assert client.post("/echo", content=b"{not json").status_code == 400
    assert len(calls) == 2


# Imported in a fresh interpreter where `import orjson` fails.
NO_ORJSON_SCRIPT = """
import json, sys
sys.modules["orjson"] = None  # "import orjson" now raises ImportError
import kestrel.request, kestrel.response
from kestrel import App
from kestrel.testing import TestClient

assert kestrel.request._json_loads is json.loads
app = App()

@app.post("/echo")
async def echo(request):
    return {"got": await request.json(), "text": "é€😀", "list": [1, 2.5, None, True]}

with TestClient(app) as client:
    r = client.post("/echo", json={"a": [1, 2]})
    bad = client.post("/echo", content=b"{oops")
    sys.stdout.buffer.write(b"%d %d %s\\n" % (r.status_code, bad.status_code,
                                             r.headers["content-type"].encode()))
    sys.stdout.buffer.write(r.content)
"""


def test_json_falls_back_to_stdlib_without_orjson() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_ORJSON_SCRIPT],
        capture_output=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr.decode()
    first, _, body = result.stdout.partition(b"\n")
    assert first == b"200 400 application/json"
    assert json.loads(body) == {
        "got": {"a": [1, 2]},
        "text": "é€😀",
        "list": [1, 2.5, None, True],
    }
    assert b" " not in body.replace("é€😀".encode(), b"")  # compact, like orjson's


# ---- HTTPException and exception handlers.


def test_http_exception() -> None:
    app = App()

    @app.get("/text")
    async def text(request: Request) -> None:
        raise HTTPException(403, "members only")

    @app.get("/json")
    def as_json(request: Request) -> None:  # raised in the thread pool
        raise HTTPException(422, {"field": "name", "error": "required"})

    @app.get("/default")
    async def default(request: Request) -> None:
        raise HTTPException(404)

    @app.get("/auth")
    async def auth(request: Request) -> None:
        raise HTTPException(401, headers={"WWW-Authenticate": 'Bearer realm="api"'})

    with TestClient(app) as client:
        response = client.get("/text")
        assert (response.status_code, response.text) == (403, "members only")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        response = client.get("/json")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"field": "name", "error": "required"}
        assert (client.get("/default").status_code, client.get("/default").text) == (
            404,
            "Not Found",
        )
        response = client.get("/auth")
        assert (response.status_code, response.text) == (401, "Unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'

    assert HTTPException(409).status_code == 409
    with pytest.raises(ValueError, match="100 to 599"):
        HTTPException(600)


class OutOfStock(LookupError):
    pass


def test_exception_handlers_per_type() -> None:
    app = App()
    seen: list[str] = []

    @app.exception_handler(KeyError)
    async def on_key_error(request: Request, exc: KeyError) -> Response:
        seen.append(f"key {request.path}")
        return Response(f"no such key {exc.args[0]}", status=404)

    @app.exception_handler(LookupError)
    def on_lookup_error(request: Request, exc: LookupError) -> dict[str, str]:
        # A plain def handler, returning a dict: JSON, status 200.
        seen.append(f"lookup {type(exc).__name__}")
        return {"lookup": str(exc)}

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> Response:
        return Response(f"custom {exc.status}: {exc.detail}", status=exc.status)

    @app.get("/key")
    async def key(request: Request) -> None:
        raise KeyError("sku-1")

    @app.get("/stock")
    def stock(request: Request) -> None:  # from the thread pool too
        raise OutOfStock("sold out")

    @app.get("/index")
    async def index(request: Request) -> None:
        [][1]

    @app.get("/http")
    async def http_exc(request: Request) -> None:
        raise HTTPException(409, "conflict")

    @app.get("/other")
    async def other(request: Request) -> None:
        raise ZeroDivisionError

    with TestClient(app) as client:
        response = client.get("/key")
        assert (response.status_code, response.text) == (404, "no such key sku-1")
        # The most specific registered type wins; subclasses use their base's handler.
        assert client.get("/stock").json() == {"lookup": "sold out"}
        assert client.get("/index").json() == {"lookup": "list index out of range"}
        response = client.get("/http")
        assert (response.status_code, response.text) == (409, "custom 409: conflict")
        assert client.get("/other").status_code == 500  # no handler for it
    assert seen == ["key /key", "lookup OutOfStock", "lookup IndexError"]


@pytest.mark.parametrize("debug", [False, True])
def test_http_exception_raised_by_a_middleware(
    debug: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTTPException from a middleware (an auth check, say) is answered with its status,
    over a real socket, as one from a handler is; anything else a middleware raises stays a
    500 with its traceback logged."""
    caplog.set_level(logging.ERROR, logger="kestrel")
    app = App(debug=debug)

    @app.middleware
    async def gate(request: Request, call_next: Any) -> Any:
        if request.path == "/private" and "authorization" not in request.headers:
            raise HTTPException(401, headers={"WWW-Authenticate": 'Bearer realm="api"'})
        if request.path == "/quota":
            raise HTTPException(429, {"retry_after": 30})
        if request.path == "/broken":
            raise ValueError("middleware-detail-44")
        return await call_next(request)

    @app.get("/private")
    async def private(request: Request) -> str:
        return "secret"

    with kestrel.serve_in_thread(app, port=0) as server:
        status, headers, body = fetch(server.port, "GET", "/private")
        assert (status, body) == (401, b"Unauthorized")
        assert headers["www-authenticate"] == 'Bearer realm="api"'
        assert headers["content-type"] == "text/plain; charset=utf-8"
        status, headers, body = fetch(
            server.port, "GET", "/private", headers={"Authorization": "Bearer t"}
        )
        assert (status, body) == (200, b"secret")
        status, headers, body = fetch(server.port, "GET", "/quota")
        assert (status, headers["content-type"]) == (429, "application/json")
        assert json.loads(body) == {"retry_after": 30}
        assert not [r for r in caplog.records if r.exc_info], "an HTTPException is not an error"
        status, _, body = fetch(server.port, "GET", "/broken")
        assert status == 500
        assert (b"middleware-detail-44" in body) is debug  # the traceback only in debug mode
        assert any(isinstance(r.exc_info and r.exc_info[1], ValueError) for r in caplog.records), (
            "no traceback logged for the middleware's ValueError"
        )


# ---- 500: traceback logged always, in the body only in debug mode.


def _failing_app(debug: bool) -> App:
    app = App(debug=debug)

    @app.get("/boom")
    async def boom(request: Request) -> str:
        raise ValueError("secret-detail-42")

    @app.get("/sync-boom")
    def sync_boom(request: Request) -> str:
        raise RuntimeError("thread-detail-43")

    @app.get("/fine")
    async def fine(request: Request) -> str:
        return "fine"

    return app


def test_500_logs_traceback_without_leaking_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="kestrel")
    with kestrel.serve_in_thread(_failing_app(debug=False), port=0) as server:
        for path, detail in [("/boom", "secret-detail-42"), ("/sync-boom", "thread-detail-43")]:
            status, _, body = fetch(server.port, "GET", path)
            assert status == 500
            assert body == b"Internal Server Error"
            assert detail.encode() not in body
            records = [r for r in caplog.records if r.exc_info and detail in str(r.exc_info[1])]
            assert records, f"no traceback logged for {path}"
            assert path in records[-1].getMessage()
            assert records[-1].levelno == logging.ERROR
        assert fetch(server.port, "GET", "/fine")[2] == b"fine"  # the server carries on


def test_500_shows_traceback_in_debug_mode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="kestrel")
    with kestrel.serve_in_thread(_failing_app(debug=True), port=0) as server:
        status, headers, body = fetch(server.port, "GET", "/boom")
        assert status == 500
        assert headers["content-type"] == "text/plain; charset=utf-8"
        text = body.decode()
        assert text.startswith("Traceback (most recent call last):")
        assert "ValueError: secret-detail-42" in text
        assert "in boom" in text and __file__ in text
        status, _, body = fetch(server.port, "GET", "/sync-boom")
        assert status == 500
        assert b"RuntimeError: thread-detail-43" in body
        # Logged as well, naming the route.
        logged = [r for r in caplog.records if r.exc_info is not None]
        assert any("GET /boom" in r.getMessage() for r in logged)
        assert any(isinstance(r.exc_info and r.exc_info[1], RuntimeError) for r in logged)
        # Debug mode changes only unhandled errors.
        assert fetch(server.port, "GET", "/missing")[0] == 404
        assert fetch(server.port, "GET", "/fine")[2] == b"fine"


# ---- FileResponse: sendfile, with Range (real loopback server).

SMALL = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kestrel.Server, Path]]:
    root = tmp_path_factory.mktemp("files")
    (root / "small.txt").write_bytes(SMALL)
    (root / "big.bin").write_bytes(os.urandom(5 << 20))
    (root / "empty.bin").write_bytes(b"")
    app = App()

    @app.route("/files/{name}", methods=["GET", "POST"])
    async def files(request: Request, name: str) -> FileResponse:
        return FileResponse(root / name)

    @app.get("/download")
    async def download(request: Request) -> FileResponse:
        return FileResponse(
            root / "small.txt", headers={"x-extra": "1"}, filename="report 2024.txt"
        )

    @app.get("/typed")
    async def typed(request: Request) -> FileResponse:
        return FileResponse(str(root / "big.bin"), content_type="application/x-custom")

    with kestrel.serve_in_thread(app, port=0) as server:
        yield server, root


def test_file_response_whole_file_and_head(file_server: tuple[kestrel.Server, Path]) -> None:
    server, _ = file_server
    status, headers, body = fetch(server.port, "GET", "/files/small.txt")
    assert status == 200
    assert body == SMALL
    assert headers["content-length"] == "1024"
    assert headers["content-type"] == "text/plain; charset=utf-8"  # guessed from the name
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"].startswith('"') and "last-modified" in headers

    status, head_headers, body = fetch(server.port, "HEAD", "/files/small.txt")
    assert (status, body) == (200, b"")
    assert head_headers["content-length"] == "1024"
    assert head_headers["etag"] == headers["etag"]

    status, headers, body = fetch(server.port, "GET", "/download")
    assert body == SMALL
    assert headers["content-disposition"] == 'attachment; filename="report 2024.txt"'
    assert headers["x-extra"] == "1"
    assert fetch(server.port, "HEAD", "/typed")[1]["content-type"] == "application/x-custom"

    status, headers, body = fetch(server.port, "GET", "/files/empty.bin")
    assert (status, headers["content-length"], body) == (200, "0", b"")


def test_file_response_missing_file_is_404(file_server: tuple[kestrel.Server, Path]) -> None:
    server, _ = file_server
    status, _, body = fetch(server.port, "GET", "/files/nope.txt")
    assert (status, body) == (404, b"Not Found")
    assert fetch(server.port, "HEAD", "/files/nope.txt")[0] == 404
    # A directory is not a file either.
    assert fetch(server.port, "GET", "/files/..")[0] in (400, 404)


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1000-5000", 1000, 1023),  # last clamped to the end
        ("bytes=1000-", 1000, 1023),
        ("bytes=-10", 1014, 1023),  # suffix
        ("bytes=-5000", 0, 1023),  # suffix longer than the file
        ("bytes = 5 - 9", 5, 9),  # whitespace tolerated
    ],
)
def test_file_response_single_range_is_206(
    file_server: tuple[kestrel.Server, Path], spec: str, first: int, last: int
) -> None:
    server, _ = file_server
    status, headers, body = fetch(server.port, "GET", "/files/small.txt", {"Range": spec})
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/1024"
    assert headers["content-length"] == str(last - first + 1)
    assert body == SMALL[first : last + 1]


@pytest.mark.parametrize("spec", ["bytes=1024-2000", "bytes=5000-6000", "bytes=-0"])
def test_file_response_unsatisfiable_range_is_416(
    file_server: tuple[kestrel.Server, Path], spec: str
) -> None:
    server, _ = file_server
    status, headers, body = fetch(server.port, "GET", "/files/small.txt", {"Range": spec})
    assert status == 416
    assert headers["content-range"] == "bytes */1024"
    assert body == b""


def test_file_response_open_ended_range_past_the_end_is_416(
    file_server: tuple[kestrel.Server, Path],
) -> None:
    server, _ = file_server
    status, _, _ = fetch(server.port, "GET", "/files/small.txt", {"Range": "bytes=2000-"})
    assert status == 416


def test_file_response_ranges_ignored_or_conditional(
    file_server: tuple[kestrel.Server, Path],
) -> None:
    server, _ = file_server
    _, headers, _ = fetch(server.port, "HEAD", "/files/small.txt")
    etag, last_modified = headers["etag"], headers["last-modified"]

    # Several ranges: the whole file in one ordinary 200 (RFC 9110 §14.2 allows ignoring).
    status, headers, body = fetch(
        server.port, "GET", "/files/small.txt", {"Range": "bytes=0-1,5-6"}
    )
    assert (status, body) == (200, SMALL)
    assert "content-range" not in headers
    # Not a byte range: ignored.
    assert fetch(server.port, "GET", "/files/small.txt", {"Range": "lines=1-2"})[0] == 200
    # If-Range: a matching validator gets the range, anything else the whole file.
    for validator in (etag, last_modified):
        status, _, body = fetch(
            server.port, "GET", "/files/small.txt", {"Range": "bytes=0-3", "If-Range": validator}
        )
        assert (status, body) == (206, SMALL[:4]), validator
    status, _, body = fetch(
        server.port, "GET", "/files/small.txt", {"Range": "bytes=0-3", "If-Range": '"stale"'}
    )
    assert (status, body) == (200, SMALL)


def test_file_response_conditional_requests(file_server: tuple[kestrel.Server, Path]) -> None:
    # RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since (412); then If-None-Match, else
    # If-Modified-Since (304 for GET and HEAD).
    server, _ = file_server
    _, headers, _ = fetch(server.port, "HEAD", "/files/small.txt")
    etag, last_modified = headers["etag"], headers["last-modified"]
    modified = email.utils.parsedate_to_datetime(last_modified).timestamp()
    earlier = email.utils.formatdate(modified - 3600, usegmt=True)
    later = email.utils.formatdate(modified + 3600, usegmt=True)
    cases: list[tuple[dict[str, str], int]] = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": f'"other", {etag}'}, 304),
        ({"If-None-Match": f"W/{etag}"}, 304),  # weak comparison
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": last_modified}, 304),
        ({"If-Modified-Since": later}, 304),
        ({"If-Modified-Since": earlier}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        ({"If-None-Match": '"other"', "If-Modified-Since": last_modified}, 200),
        ({"If-Match": etag}, 200),
        ({"If-Match": "*"}, 200),
        ({"If-Match": '"other"'}, 412),
        ({"If-Match": f"W/{etag}"}, 412),  # strong comparison
        ({"If-Unmodified-Since": earlier}, 412),
        ({"If-Unmodified-Since": last_modified}, 200),
        ({"If-Unmodified-Since": "not a date"}, 200),
        ({"If-Match": '"other"', "If-None-Match": etag}, 412),  # If-Match is first
    ]
    for method in ("GET", "HEAD"):
        for request_headers, expected in cases:
            status, headers, body = fetch(server.port, method, "/files/small.txt", request_headers)
            assert status == expected, (method, request_headers)
            if expected == 304:
                assert body == b""
                assert headers["etag"] == etag and headers["last-modified"] == last_modified
                assert "content-length" not in headers
            elif expected == 200:
                assert body == (SMALL if method == "GET" else b"")
    # Not GET or HEAD: a matching If-None-Match fails the precondition; If-Modified-Since
    # does not apply.
    assert fetch(server.port, "POST", "/files/small.txt", {"If-None-Match": etag})[0] == 412
    status, _, body = fetch(server.port, "POST", "/files/small.txt", {"If-Modified-Since": later})
    assert (status, body) == (200, SMALL)
    # A 304 leaves the connection usable.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for request_headers, expected_status, expected_body in [
            ({"If-None-Match": etag}, 304, b""),
            ({}, 200, SMALL),
        ]:
            connection.request("GET", "/files/small.txt", headers=request_headers)
            response = connection.getresponse()
            assert (response.status, response.read()) == (expected_status, expected_body)
            assert not response.will_close
    finally:
        connection.close()


def test_file_response_keep_alive_after_sendfile(file_server: tuple[kestrel.Server, Path]) -> None:
    server, root = file_server
    big = (root / "big.bin").read_bytes()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for headers, expected in [
            ({}, big),
            ({"Range": "bytes=100-199"}, big[100:200]),
            ({}, SMALL),
            ({"Range": "bytes=-3"}, big[-3:]),
        ]:
            path = "/files/small.txt" if expected is SMALL else "/files/big.bin"
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            assert response.read() == expected
            assert not response.will_close
    finally:
        connection.close()


def test_file_response_5mib_with_httpx_and_curl(
    file_server: tuple[kestrel.Server, Path], tmp_path: Path
) -> None:
    server, root = file_server
    big = (root / "big.bin").read_bytes()
    response = httpx.get(server.url + "/files/big.bin", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(5 << 20)
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(big).digest()

    out = tmp_path / "big.out"
    result = subprocess.run(
        ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", server.url + "/files/big.bin"],
        capture_output=True,
        timeout=10,
    )
    assert result.stdout == b"200", result.stderr
    assert out.read_bytes() == big


def test_file_response_curl_range(file_server: tuple[kestrel.Server, Path], tmp_path: Path) -> None:
    server, root = file_server
    big = (root / "big.bin").read_bytes()
    for spec, expected in [
        ("0-99", SMALL[:100]),
        ("1000-", SMALL[1000:]),
        ("-24", SMALL[-24:]),
    ]:
        out = tmp_path / "part"
        result = subprocess.run(
            ["curl", "-sS", "-r", spec, "-o", str(out), "-D", "-", server.url + "/files/small.txt"],
            capture_output=True,
            timeout=10,
        )
        assert result.returncode == 0, result.stderr
        head = result.stdout.decode("latin-1").lower()
        assert head.startswith("http/1.1 206 partial content"), head
        first = 1024 - len(expected) if spec.startswith("-") or spec == "1000-" else 0
        assert f"content-range: bytes {first}-{first + len(expected) - 1}/1024" in head
        assert out.read_bytes() == expected
    # A range of the big file, from the middle.
    out = tmp_path / "middle"
    result = subprocess.run(
        ["curl", "-sS", "-r", "2000000-3999999", "-o", str(out), server.url + "/files/big.bin"],
        capture_output=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == big[2_000_000:4_000_000]


# ---- Framing the engine must never get wrong on a kept-alive connection.


def test_no_body_is_sent_with_204_or_304() -> None:
    app = App()

    @app.get("/{status:int}")
    async def empty(request: Request, status: int) -> Response:
        return Response(b"x" * 20, status)  # a body the status forbids

    @app.get("/next")
    async def following(request: Request) -> str:
        return "next"

    with serve_in_thread(app, port=0) as server:
        for status in (204, 304):
            raw = exchange(
                server.port,
                f"GET /{status} HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n"
                "Connection: close\r\n\r\n".encode(),
            ).raw
            first, _, rest = raw.partition(b"\r\n\r\n")
            assert first.startswith(f"HTTP/1.1 {status} ".encode())
            assert b"content-length" not in first.lower()
            # The very next bytes are the second response: nothing of the body leaked.
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
            assert rest.endswith(b"\r\n\r\nnext")


def test_streaming_response_held_to_its_declared_length(caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    forged = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"

    @app.get("/long")
    async def too_long(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"abc", forged]), headers={"content-length": "3"})

    @app.get("/short")
    async def too_short(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"ab"]), headers={"content-length": "3"})

    @app.get("/exact")
    async def exact(request: Request) -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"bc"]), headers={"content-length": "3"})

    request = "GET {} HTTP/1.1\r\nHost: t\r\n\r\nGET /exact HTTP/1.1\r\nHost: t\r\n\r\n"
    with serve_in_thread(app, port=0) as server, caplog.at_level(logging.ERROR):
        for path in ("/long", "/short"):
            raw = exchange(server.port, request.format(path).encode()).raw
            # The connection is aborted: the excess never goes out, and the pipelined
            # request behind it is not answered on a connection whose framing broke.
            assert b"forged" not in raw
            assert raw.count(b"HTTP/1.1 200 OK") == 1
        raw = exchange(server.port, request.format("/exact").encode()).raw
        assert raw.count(b"HTTP/1.1 200 OK") == 2 and raw.endswith(b"abc")
    assert (
        sum(
            "Content-Length" in r.getMessage() or "streamed response failed" in r.getMessage()
            for r in caplog.records
        )
        >= 2
    )
