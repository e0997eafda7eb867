"""request.form(): urlencoded and multipart bodies, uploads spooled to disk, and limits.

Every request goes through the real engine (TestClient over a socketpair, and once over a
loopback socket with httpx), so what the parser sees is what a client actually sent. Every
client mistake must come back as a 4xx with a message, never a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kestrel import App, HttpParseError, Request, forms, serve_in_thread
from kestrel.forms import FormData, UploadFile, parse_form
from kestrel.testing import TestClient

URLENCODED = {"content-type": "application/x-www-form-urlencoded"}
BOUNDARY = "b0undary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


async def describe(form: FormData) -> list[list[Any]]:
    """The form as JSON: text fields as they are, uploads by metadata and content."""
    out: list[list[Any]] = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            out.append([name, value])
            continue
        data = await value.read()
        out.append(
            [
                name,
                {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": value.size,
                    "in_memory": value.in_memory,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "data": data.decode("latin-1") if len(data) < 1000 else None,
                    "headers": sorted(value.headers.items()),
                },
            ]
        )
    return out


def make_app() -> App:
    app = App()

    @app.post("/form")
    async def form(request: Request) -> Any:
        parsed = await request.form()
        try:
            return {"items": await describe(parsed)}
        finally:
            await parsed.aclose()

    @app.post("/first")
    async def first(request: Request) -> Any:
        parsed = await request.form()
        return {"a": parsed["a"], "all_a": parsed.getlist("a"), "missing": parsed.get("zz", "-")}

    @app.post("/strict")
    async def strict(request: Request) -> Any:
        parsed = await parse_form(
            request.headers, request.stream(), max_fields=2, max_files=1, max_part_size=10
        )
        try:
            return {"items": await describe(parsed)}
        finally:
            await parsed.aclose()

    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


def part(name: str, value: bytes, extra: str = "") -> bytes:
    """One multipart part in BOUNDARY's body; `extra` goes after the name parameter."""
    head = f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="{name}"{extra}\r\n\r\n'
    return head.encode() + value + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()


# ---- application/x-www-form-urlencoded.


def test_urlencoded_keeps_repeats_and_blanks_and_decodes_plus_and_percent(
    client: TestClient,
) -> None:
    body = "a=1&b=&a=2&flag&sp=x+y&pct=%26%3D%2B%C3%A9"
    response = client.post("/form", content=body, headers=URLENCODED)
    assert response.status_code == 200
    assert response.json()["items"] == [
        ["a", "1"],
        ["b", ""],
        ["a", "2"],
        ["flag", ""],
        ["sp", "x y"],
        ["pct", "&=+é"],
    ]


def test_form_mapping_gives_first_value_and_getlist_gives_all(client: TestClient) -> None:
    response = client.post("/first", data={"a": ["x", "y"]})
    assert response.json() == {"a": "x", "all_a": ["x", "y"], "missing": "-"}


@pytest.mark.parametrize("body", [b"a=%FF", b"a=\xff"], ids=["percent-encoded", "raw"])
def test_urlencoded_non_utf8_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/form", content=body, headers=URLENCODED)
    assert response.status_code == 400
    assert "UTF-8" in response.text


def test_urlencoded_too_many_fields_is_400(client: TestClient) -> None:
    response = client.post("/strict", content=b"a=1&b=2&c=3", headers=URLENCODED)
    assert response.status_code == 400
    assert "more than 2 fields" in response.text


def test_module_default_limits_apply_to_request_form(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # request.form() takes no arguments, so the module defaults are how an app tunes it.
    monkeypatch.setattr(forms, "MAX_FIELDS", 3)
    assert client.post("/form", content=b"a=1&b=2&c=3", headers=URLENCODED).status_code == 200
    response = client.post("/form", content=b"a=1&b=2&c=3&d=4", headers=URLENCODED)
    assert response.status_code == 400
    assert "more than 3 fields" in response.text


# ---- multipart/form-data.


def test_multipart_fields_and_files(client: TestClient) -> None:
    response = client.post(
        "/form",
        data={"title": "hello wörld", "tag": ["a", "b"]},
        files={
            "doc": ("notes.txt", b"line 1\r\nline 2\r\n", "text/plain"),
            "blob": ("data.bin", b"\x00\xff--" + BOUNDARY.encode()),
        },
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[:3] == [["title", "hello wörld"], ["tag", "a"], ["tag", "b"]]
    doc_name, doc = items[3]
    assert doc_name == "doc"
    assert doc["filename"] == "notes.txt"
    assert doc["content_type"] == "text/plain"
    assert doc["size"] == len(b"line 1\r\nline 2\r\n")
    assert doc["data"] == "line 1\r\nline 2\r\n"
    assert ["content-type", "text/plain"] in doc["headers"]
    blob_name, blob = items[4]
    assert blob_name == "blob"
    assert blob["content_type"] == "application/octet-stream"
    assert blob["data"].encode("latin-1") == b"\x00\xff--" + BOUNDARY.encode()


def test_small_upload_stays_in_memory(client: TestClient) -> None:
    response = client.post("/form", files={"f": ("small.txt", b"x" * 1000)})
    assert response.status_code == 200
    [[_, upload]] = response.json()["items"]
    assert upload["in_memory"] is True
    assert upload["size"] == 1000
    assert upload["sha256"] == hashlib.sha256(b"x" * 1000).hexdigest()


def test_large_upload_spills_to_disk_and_round_trips() -> None:
    payload = os.urandom(3 * 1024 * 1024)
    app = App()

    @app.post("/big")
    async def big(request: Request) -> Any:
        parsed = await request.form()
        upload = parsed["f"]
        assert isinstance(upload, UploadFile)
        try:
            # A rolled-over SpooledTemporaryFile is backed by a real (unlinked) file on disk.
            on_disk = not upload.in_memory and stat.S_ISREG(os.fstat(upload.file.fileno()).st_mode)
            disk_size = os.fstat(upload.file.fileno()).st_size
            data = await upload.read()
            return {
                "on_disk": on_disk,
                "disk_size": disk_size,
                "size": upload.size,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        finally:
            await parsed.aclose()

    with TestClient(app) as test_client:
        response = test_client.post("/big", files={"f": ("big.bin", payload)})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "on_disk": True,
        "disk_size": len(payload),
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_utf8_names_and_rfc5987_filename(client: TestClient) -> None:
    body = (
        part("naïve", b"1")
        + part("f", b"raw", '; filename="café.txt"')
        + part("g", b"ext", "; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt")
        + END
    )
    response = client.post("/form", content=body, headers=MULTIPART)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[0] == ["naïve", "1"]
    assert items[1][1]["filename"] == "café.txt"
    assert items[2][1]["filename"] == "€ rates.txt"


def test_empty_filename_is_still_a_file(client: TestClient) -> None:
    # What a browser sends for a file input left empty.
    body = part("f", b"", '; filename=""') + END
    response = client.post("/form", content=body, headers=MULTIPART)
    assert response.status_code == 200
    [[name, upload]] = response.json()["items"]
    assert name == "f"
    assert (upload["filename"], upload["size"]) == ("", 0)


def test_form_twice_returns_the_cached_result(client: TestClient) -> None:
    app = App()

    @app.post("/twice")
    async def twice(request: Request) -> Any:
        first = await request.form()
        second = await request.form()
        try:
            upload = second["f"]
            assert isinstance(upload, UploadFile)
            return {"same": first is second, "data": (await upload.read()).decode()}
        finally:
            await first.aclose()

    with TestClient(app) as test_client:
        response = test_client.post("/twice", data={"a": "1"}, files={"f": ("a.txt", b"hi")})
    assert response.json() == {"same": True, "data": "hi"}


MALFORMED = {
    "wrong boundary": b"--other\r\ncontent-disposition: form-data; name=a\r\n\r\n1\r\n--other--",
    "no closing boundary": part("a", b"1")[:-2],
    "no content-disposition": f"--{BOUNDARY}\r\nx-a: b\r\n\r\n1\r\n".encode() + END,
    "part without a name": f"--{BOUNDARY}\r\ncontent-disposition: form-data\r\n\r\n1\r\n".encode()
    + END,
    "not form-data": (
        f'--{BOUNDARY}\r\ncontent-disposition: attachment; name="a"\r\n\r\n1\r\n'.encode() + END
    ),
    "header without colon": f"--{BOUNDARY}\r\nbroken\r\n\r\n1\r\n".encode() + END,
    "empty body": b"",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_multipart_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/form", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert "multipart" in response.text or "form-data" in response.text


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; charset=x"],
)
def test_missing_boundary_is_400(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/form", content=part("a", b"1") + END, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert "boundary" in response.text


def test_overlong_boundary_is_400(client: TestClient) -> None:
    headers = {"content-type": "multipart/form-data; boundary=" + "x" * 300}
    response = client.post("/form", content=b"--" + b"x" * 300 + b"--\r\n", headers=headers)
    assert response.status_code == 400
    assert "boundary" in response.text


def test_multipart_too_many_fields_is_400(client: TestClient) -> None:
    body = part("a", b"1") + part("b", b"2") + part("c", b"3") + END
    response = client.post("/strict", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert "more than 2 fields" in response.text


def test_multipart_too_many_files_is_400(client: TestClient) -> None:
    files = part("f", b"1", '; filename="1"') + part("g", b"2", '; filename="2"')
    response = client.post("/strict", content=files + END, headers=MULTIPART)
    assert response.status_code == 400
    assert "more than 1 files" in response.text


def test_text_field_over_max_part_size_is_400_but_files_are_not_limited(
    client: TestClient,
) -> None:
    response = client.post("/strict", content=part("a", b"x" * 11) + END, headers=MULTIPART)
    assert response.status_code == 400
    assert "over 10 bytes" in response.text
    body = part("a", b"x" * 10) + part("f", b"y" * 100, '; filename="f"') + END
    response = client.post("/strict", content=body, headers=MULTIPART)
    assert response.status_code == 200
    assert response.json()["items"][0] == ["a", "x" * 10]
    assert response.json()["items"][1][1]["size"] == 100


@pytest.mark.parametrize(
    ("value", "extra"),
    [(b"\xff\xfe", ""), (b"ok", '; filename="\xff.txt"')],
    ids=["field value", "filename"],
)
def test_multipart_non_utf8_is_400(client: TestClient, value: bytes, extra: str) -> None:
    # Build the head by hand: a latin-1 byte must reach the server undecoded.
    head = f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="a"{extra}\r\n\r\n'
    body = head.encode("latin-1") + value + b"\r\n" + END
    response = client.post("/form", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert "not valid UTF-8" in response.text


def test_uploads_are_closed_when_the_parse_fails(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[UploadFile] = []

    class Recorded(UploadFile):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(forms, "UploadFile", Recorded)
    # The upload exists by the time the second part's bad name fails the parse.
    bad_name = f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="\xff"\r\n\r\n'
    body = part("f", b"data", '; filename="a"') + bad_name.encode("latin-1") + b"1\r\n" + END
    response = client.post("/form", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert len(created) == 1
    assert created[0].file.closed


# ---- Content types and body limits.


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/json"}, {"content-type": "text/plain"}, {}],
    ids=["json", "text", "none"],
)
def test_unsupported_content_type_is_415(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/form", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 415
    assert "multipart/form-data" in response.text


def test_body_over_route_limit_is_413() -> None:
    seen: list[int] = []
    app = App()

    @app.post("/u", max_body_size=1000)
    async def upload(request: Request) -> Any:
        try:
            parsed = await request.form()
        except HttpParseError as exc:
            seen.append(exc.status)  # the engine's error, not turned into a 400
            raise
        await parsed.aclose()
        return "parsed"

    # Chunked, so no Content-Length tells the route up front: the body stream refuses it.
    # Pre-encoded and sent in one write: the engine closes right after its 413, and a
    # client still sending chunks then would get EPIPE instead of reading the answer.
    form = part("f", b"x" * 3000, '; filename="a"') + END
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(form), form)
    streamed_headers = {**MULTIPART, "transfer-encoding": "chunked"}

    with TestClient(app) as test_client:
        # With Content-Length the route refuses before the handler runs.
        sized = test_client.post("/u", files={"f": ("a", b"x" * 3000)})
        streamed = test_client.post("/u", content=chunked, headers=streamed_headers)
        small = test_client.post("/u", files={"f": ("a", b"x" * 10)})
    assert sized.status_code == 413
    assert streamed.status_code == 413
    assert seen == [413]
    assert (small.status_code, small.text) == (200, "parsed")


# ---- Over a real socket.


def test_httpx_over_loopback() -> None:
    payload = os.urandom(200_000)
    with serve_in_thread(make_app(), port=0) as server:
        response = httpx.post(
            server.url + "/form",
            data={"name": "kestrel", "n": ["1", "2"]},
            files={"file": ("payload.bin", payload, "application/x-test")},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[:3] == [["name", "kestrel"], ["n", "1"], ["n", "2"]]
    name, upload = items[3]
    assert name == "file"
    assert upload["filename"] == "payload.bin"
    assert upload["content_type"] == "application/x-test"
    assert upload["size"] == len(payload)
    assert upload["sha256"] == hashlib.sha256(payload).hexdigest()


# ---- FormData and UploadFile on their own.


def test_formdata_is_an_immutable_multidict() -> None:
    upload = UploadFile("a.txt")
    form = FormData([("a", "1"), ("f", upload), ("a", "2")])
    assert form["a"] == "1"
    assert form.getlist("a") == ["1", "2"]
    assert form.get("f") is upload
    assert form.get("missing") is None
    assert list(form) == ["a", "f"] and len(form) == 2
    assert form.multi_items() == [("a", "1"), ("f", upload), ("a", "2")]
    assert not hasattr(form, "__setitem__")
    form.close()
    assert upload.file.closed


def test_upload_file_rolls_over_and_reads_back() -> None:
    async def scenario() -> tuple[bool, bool, bytes, bytes, bool]:
        upload = UploadFile("x", spool_threshold=10)
        await upload.write(b"12345")
        small = upload.in_memory
        await upload.write(b"678901")  # crosses the threshold: the data moves to disk
        large = upload.in_memory
        await upload.seek(0)
        head = await upload.read(3)
        rest = await upload.read()
        await FormData([("x", upload)]).aclose()
        return small, large, head, rest, upload.file.closed

    small, large, head, rest, closed = asyncio.run(scenario())
    assert (small, large) == (True, False)
    assert head + rest == b"12345678901"
    assert head == b"123"
    assert closed
